/*
 * Arenas: each owns the TINY and SMALL zones it created, behind one mutex.
 * Threads are bound to the least busy arena on their first allocation; the
 * thread cache is the only regular caller, moving chunks in batches
 * (arena_refill, arena_return), so the lock is taken once per batch.
 *
 * A chunk always goes back to the arena that owns its zone, whichever thread
 * frees it: arena_return groups a batch by owner.
 */
#include <errno.h>

#include "ftm/internal.h"

/* An arena is all zeros until its first thread uses it: a process touches
 * the pages of the arenas it uses, not of all 2 x CPUs of them (on 32
 * arenas, writing each one's fields at start-up cost every process,
 * /bin/true included, 61 page faults: 155 against 94). The counts of bound
 * threads live apart, in one small array, so that binding a thread reads
 * them without touching every arena's page. */
struct ftm_arena ftm_arenas[FTM_MAX_ARENAS];
uint32_t ftm_arena_threads[FTM_MAX_ARENAS];
uint32_t ftm_arena_count = 1;
struct ftm_zone_pages ftm_zone_pages;

/* The arenas a thread was ever handed: only these are locked around a fork
 * or for show_alloc_mem, so a fork child does not write (and copy) the
 * page of every arena to unlock it (a child that only exits faulted 55
 * pages on 32 arenas, 26 on 4; glibc's, 16). An arena is opened under
 * open_lock, which whoever locks them all holds first: the set cannot grow
 * under them, and a thread that saw its arena open did so before. */
static struct ftm_lock open_lock;
static uint64_t opened[FTM_MAX_ARENAS / 64];

static bool arena_is_open(uint32_t i)
{
	return __atomic_load_n(&opened[i / 64], __ATOMIC_ACQUIRE) >> (i % 64) & 1;
}

static struct ftm_arena *arena_open(uint32_t i)
{
	if (FTM_UNLIKELY(!arena_is_open(i))) {
		lock_take(&open_lock);
		__atomic_fetch_or(&opened[i / 64], 1ull << (i % 64), __ATOMIC_RELEASE);
		lock_give(&open_lock);
	}
	return &ftm_arenas[i];
}

void arena_init_all(uint32_t count)
{
	ftm_arena_count = count;
}

uint32_t arena_index(const struct ftm_arena *arena)
{
	return (uint32_t)(arena - ftm_arenas);
}

/* A new thread goes to the arena with the fewest threads bound now, the
 * lowest index on a tie: threads that run one after the other (a worker per
 * task) keep using the same few arenas and their zones, and threads that
 * run at once spread over all of them. Two threads starting together may
 * both pick the same arena; that only makes it one thread busier. */
struct ftm_arena *arena_bind(void)
{
	uint32_t best = 0, least = UINT32_MAX;
	for (uint32_t i = 0; i < ftm_arena_count; i++) {
		uint32_t n = __atomic_load_n(&ftm_arena_threads[i], __ATOMIC_RELAXED);
		if (n < least) {
			least = n;
			best = i;
		}
	}
	__atomic_fetch_add(&ftm_arena_threads[best], 1, __ATOMIC_RELAXED);
	return arena_open(best);
}

void arena_unbind(struct ftm_arena *arena)
{
	__atomic_fetch_sub(&ftm_arena_threads[arena_index(arena)], 1, __ATOMIC_RELAXED);
}

/* For threads without a cache (exited, or the cache could not be mapped). */
struct ftm_arena *arena_for_thread(void)
{
	uintptr_t self = (uintptr_t)pthread_self();
	return arena_open((uint32_t)((self >> 12) % ftm_arena_count));
}

void arena_lock(struct ftm_arena *arena)
{
	if (!lock_take_alone(&arena->lock) && !lock_try(&arena->lock)) {
		lock_wait(&arena->lock);
		arena->stats.contended++;
	}
}

void arena_unlock(struct ftm_arena *arena)
{
	lock_give(&arena->lock);
}

/* ---- lists --------------------------------------------------------------- */

/* A zone of one class is on one of its class's lists at a time, linked
 * through avail_next/avail_prev: the avail list or the idle list. */
static void class_list_push(struct ftm_zone **head, struct ftm_zone *zone)
{
	zone->avail_prev = NULL;
	zone->avail_next = *head;
	if (*head)
		(*head)->avail_prev = zone;
	*head = zone;
}

static void class_list_remove(struct ftm_zone **head, struct ftm_zone *zone)
{
	if (zone->avail_prev)
		zone->avail_prev->avail_next = zone->avail_next;
	else
		*head = zone->avail_next;
	if (zone->avail_next)
		zone->avail_next->avail_prev = zone->avail_prev;
}

static void avail_insert(struct ftm_arena *arena, struct ftm_zone *zone)
{
	class_list_push(&arena->avail[zone->cls], zone);
	zone->in_avail = 1;
}

static void avail_remove(struct ftm_arena *arena, struct ftm_zone *zone)
{
	class_list_remove(&arena->avail[zone->cls], zone);
	zone->in_avail = 0;
}

static void zones_insert(struct ftm_arena *arena, struct ftm_zone *zone)
{
	zone->all_prev = NULL;
	zone->all_next = arena->zones;
	if (arena->zones)
		arena->zones->all_prev = zone;
	arena->zones = zone;
}

static void zones_remove(struct ftm_arena *arena, struct ftm_zone *zone)
{
	if (zone->all_prev)
		zone->all_prev->all_next = zone->all_next;
	else
		arena->zones = zone->all_next;
	if (zone->all_next)
		zone->all_next->all_prev = zone->all_prev;
}

/* ---- idle zones -------------------------------------------------------------
 * An emptied zone is kept, pages and all, as its class's next zone: a
 * program whose heap of some class swings up and down (one parse per file,
 * one batch per request) then reuses those pages instead of faulting fresh
 * ones in (cppcheck, whose 96-160 byte classes swing by 20 zones: 4341 page
 * faults against glibc's 1277 when one empty zone per class was kept).
 * Idle zones are bounded two ways:
 *  - by size: the process's zones may hold, idle and busy together, no
 *    more pages than its busy ones ever did, plus a slack (struct
 *    ftm_zone_pages, FTM_IDLE_SLACK), so keeping them barely raises its
 *    peak: a program moving from one class to another gives the
 *    old class's pages back as the new one carves. Each arena gives back
 *    its own, oldest first, when it carves or empties a zone and finds the
 *    process over the bound. The newest idle zone of each class in each
 *    arena stays regardless, so one that drains and refills its last zone
 *    does not map and unmap it over and over;
 *  - by age: idle zones older than FT_MALLOC_DECAY_MS go back to the OS,
 *    looked at whenever a zone empties or a thread's cache is refilled;
 *    malloc_trim gives them all back.
 * A class that needs a new zone takes over the pages of idle zones of
 * other classes (below: idle pages for a new zone; cppcheck's 96 to 192
 * byte classes swing in turn: 69 of their zones were dropped and 1100
 * pages faulted in again for the next).
 * Pages are counted as what a zone carved, page-rounded, or what it came
 * with, whichever is more: the most it can have resident. */

static uint64_t zone_resident_bytes(const struct ftm_zone *zone)
{
	uint64_t bytes = (uint64_t)zone->carved * zone->size;
	bytes = (bytes + ftm_page_size - 1) & ~((uint64_t)ftm_page_size - 1);
	return bytes > zone->warm_bytes ? bytes : zone->warm_bytes;
}

static void pages_add(uint64_t *counter, int64_t bytes)
{
	__atomic_fetch_add(counter, (uint64_t)bytes, __ATOMIC_RELAXED);
}

static void idle_insert(struct ftm_arena *arena, struct ftm_zone *zone, uint64_t now)
{
	class_list_push(&arena->idle[zone->cls], zone);
	zone->idle_next = NULL;
	zone->idle_prev = arena->idle_newest;
	if (arena->idle_newest)
		arena->idle_newest->idle_next = zone;
	else
		arena->idle_oldest = zone;
	arena->idle_newest = zone;
	zone->idle_since = now;
	pages_add(&ftm_zone_pages.idle, (int64_t)zone_resident_bytes(zone));
}

static void idle_remove(struct ftm_arena *arena, struct ftm_zone *zone)
{
	class_list_remove(&arena->idle[zone->cls], zone);
	if (zone->idle_prev)
		zone->idle_prev->idle_next = zone->idle_next;
	else
		arena->idle_oldest = zone->idle_next;
	if (zone->idle_next)
		zone->idle_next->idle_prev = zone->idle_prev;
	else
		arena->idle_newest = zone->idle_prev;
	zone->idle_since = 0;
	pages_add(&ftm_zone_pages.idle, -(int64_t)zone_resident_bytes(zone));
}

/* ---- zones in and out ---------------------------------------------------- */

/* Takes an idle zone off the arena's books, about to end. */
static void arena_drop_zone(struct ftm_arena *arena, struct ftm_zone *zone)
{
	idle_remove(arena, zone);
	zones_remove(arena, zone);
	pages_add(&ftm_zone_pages.carved, -(int64_t)zone_resident_bytes(zone));
	arena->stats.zones_unmapped++;
	arena->by_class[zone->cls].zones_unmapped++;
}

/* Gives an idle zone back to the OS. */
static void arena_release_zone(struct ftm_arena *arena, struct ftm_zone *zone)
{
	arena_drop_zone(arena, zone);
	zone_close(zone, false);
}

/* Puts a new zone on the arena's books, with the resident bytes its range
 * came with. */
static void arena_adopt_zone(struct ftm_arena *arena, struct ftm_zone *zone, uint64_t warm)
{
	zone->warm_bytes = (uint32_t)warm;
	pages_add(&ftm_zone_pages.carved, (int64_t)warm);
	zones_insert(arena, zone);
	arena->stats.zones_mapped++;
	arena->by_class[zone->cls].zones_mapped++;
}

/* ---- idle pages for a new zone ---------------------------------------------
 * A class that needs a zone and has no idle one takes the pages of idle
 * zones of other classes before it faults in fresh ones (each idle zone the
 * newest of its class excepted, oldest first):
 *  - one of its own size: the zone starts over on that range;
 *  - smaller ones that, with free ranges, fill an aligned range of its size
 *    (their segment's buddy system keeps neighbours together): they end and
 *    one zone opens over them;
 *  - a bigger one: it ends and is cut into zones of the class, as many as
 *    its resident pages cover; the first serves now, the others wait idle.
 * sqlite3 (bench/README.md) swings between 1 KiB buffers in zones of
 * 128 KiB and 4 KiB pages in zones of 512 KiB: before, 76 zones of buffers
 * were given back as the pages grew and faulted in again later. */

static bool idle_spare(const struct ftm_arena *arena, const struct ftm_zone *zone)
{
	return zone && zone->arena == arena && zone->idle_since &&
	       arena->idle[zone->cls] != zone;
}

/* Spare idle zones and free ranges that fill [base, base + 2^shift), into
 * olds[]; their count, or 0 if anything else is in that range. */
static uint32_t idle_cover(const struct ftm_arena *arena, uintptr_t base, uint32_t shift,
			   struct ftm_zone **olds)
{
	uint32_t n = 0;
	uintptr_t end = base + ((uintptr_t)1 << shift);
	for (uintptr_t at = base; at < end;) {
		struct ftm_zone *zone = pagemap_zone((void *)at);
		if (zone) {
			if (!idle_spare(arena, zone))
				return 0;
			olds[n++] = zone;
			at = zone_base(zone) + zone_bytes(zone);
		} else if (span_is_free(arena, at, FTM_GRANULE_SHIFT)) {
			at += (uintptr_t)1 << FTM_GRANULE_SHIFT;
		} else {
			return 0;
		}
	}
	return n;
}

/* Ends olds[] and opens one zone of class cls over [base, its zone size),
 * which they and free ranges fill. Their pages, each zone's a prefix of its
 * range, count as resident up to the furthest one. */
static struct ftm_zone *idle_merge(struct ftm_arena *arena, uint32_t cls, uintptr_t base,
				   struct ftm_zone **olds, uint32_t n)
{
	struct ftm_zone *zone = zone_reserve(arena, cls);
	if (!zone)
		return NULL;
	uint64_t warm = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t reach = zone_base(olds[i]) - base + zone_resident_bytes(olds[i]);
		warm = reach > warm ? reach : warm;
		arena_drop_zone(arena, olds[i]);
		zone_close(olds[i], true);
	}
	if (!span_take_at(arena, base, ftm_classes[cls].zone_shift)) {
		zone_unreserve(zone); /* idle_cover said free: not reached */
		return NULL;
	}
	if (!(zone = zone_open(zone, base)))
		return NULL;
	arena_adopt_zone(arena, zone, warm);
	return zone;
}

/* Ends a bigger idle zone and opens zones of class cls over the part of
 * its range that may be resident; the range past it stays free. */
static struct ftm_zone *idle_split(struct ftm_arena *arena, uint32_t cls, struct ftm_zone *old)
{
	uint32_t shift = ftm_classes[cls].zone_shift;
	uint64_t piece = (uint64_t)1 << shift, warm = zone_resident_bytes(old);
	uint32_t n = (uint32_t)((warm + piece - 1) >> shift);
	struct ftm_zone *pieces[1u << (FTM_ZONE_SHIFTS - 1)];
	for (uint32_t i = 0; i < n; i++)
		if (!(pieces[i] = zone_reserve(arena, cls))) {
			while (i--)
				zone_unreserve(pieces[i]);
			return NULL;
		}
	uintptr_t base = zone_base(old);
	arena_drop_zone(arena, old);
	zone_close(old, true);
	uint64_t now = os_now_ns();
	struct ftm_zone *first = NULL;
	for (uint32_t i = 0; i < n; i++) {
		uintptr_t at = base + i * piece;
		struct ftm_zone *zone = NULL;
		if (span_take_at(arena, at, shift))
			zone = zone_open(pieces[i], at);
		else
			zone_unreserve(pieces[i]); /* the range was just given back: not reached */
		if (!zone)
			continue;
		arena_adopt_zone(arena, zone, warm - i * piece < piece ? warm - i * piece : piece);
		if (!first)
			first = zone;
		else
			idle_insert(arena, zone, now);
	}
	return first;
}

/* A zone of class cls on the pages of idle zones of other classes, or NULL
 * when none can give theirs. The search, under the arena lock, looks at
 * FTM_TAKEOVER_LOOKS idle zones at most: 8000 idle 64 KiB zones, each
 * fenced by a busy one so that none could serve, made 20 000 mallocs of
 * 4000 bytes take 72 ms (3 runs); 43 ms with the bound. sqlite3, jq and
 * clang fault in the same pages with it as without. */
static struct ftm_zone *idle_take_over(struct ftm_arena *arena, uint32_t cls)
{
	uint32_t shift = ftm_classes[cls].zone_shift;
	struct ftm_zone *olds[1u << (FTM_ZONE_SHIFTS - 1)];
	struct ftm_zone *zone = arena->idle_oldest;
	for (uint32_t looks = 0; zone && looks < FTM_TAKEOVER_LOOKS; zone = zone->idle_next) {
		if (!idle_spare(arena, zone))
			continue;
		looks++;
		uint32_t old_shift = ftm_classes[zone->cls].zone_shift;
		if (old_shift > shift)
			return idle_split(arena, cls, zone);
		uintptr_t base = zone_base(zone) & ~(((uintptr_t)1 << shift) - 1);
		uint32_t n = idle_cover(arena, base, shift, olds);
		if (n)
			return idle_merge(arena, cls, base, olds, n);
	}
	return NULL;
}

/* A new zone of class cls, on idle pages when it can be. */
FTM_COLD static struct ftm_zone *arena_grow(struct ftm_arena *arena, uint32_t cls)
{
	struct ftm_zone *zone = idle_take_over(arena, cls);
	if (!zone) {
		if (!(zone = zone_create(arena, cls)))
			return NULL;
		arena_adopt_zone(arena, zone, 0);
	}
	avail_insert(arena, zone);
	return zone;
}

/* Idle zones past the time limit go, oldest first; returns whether any
 * did. */
static bool arena_idle_decay(struct ftm_arena *arena, uint64_t now)
{
	uint64_t ms = (uint64_t)ftm_options[FTM_OPT_DECAY_MS];
	uint64_t limit = ms > UINT64_MAX / 1000000u ? UINT64_MAX : ms * 1000000u;
	bool released = false;
	while (arena->idle_oldest && now - arena->idle_oldest->idle_since >= limit) {
		arena_release_zone(arena, arena->idle_oldest);
		released = true;
	}
	return released;
}

/* This arena's idle zones go, oldest first, while the process's are over
 * the bound, sparing the newest idle zone of each class. The counters move
 * under other arenas' locks meanwhile: a stale peak only gives back more. */
static void arena_idle_bound(struct ftm_arena *arena)
{
	uint64_t carved = __atomic_load_n(&ftm_zone_pages.carved, __ATOMIC_RELAXED);
	uint64_t idle = __atomic_load_n(&ftm_zone_pages.idle, __ATOMIC_RELAXED);
	uint64_t busy = carved > idle ? carved - idle : 0;
	uint64_t peak = __atomic_load_n(&ftm_zone_pages.busy_peak, __ATOMIC_RELAXED);
	if (busy > peak)
		__atomic_store_n(&ftm_zone_pages.busy_peak, peak = busy, __ATOMIC_RELAXED);
	uint64_t room = peak - busy + peak / FTM_IDLE_SLACK;
	struct ftm_zone *zone = arena->idle_oldest;
	while (zone && __atomic_load_n(&ftm_zone_pages.idle, __ATOMIC_RELAXED) > room) {
		struct ftm_zone *next = zone->idle_next;
		if (arena->idle[zone->cls] != zone)
			arena_release_zone(arena, zone);
		zone = next;
	}
}

static void arena_zone_emptied(struct ftm_arena *arena, struct ftm_zone *zone)
{
	uint64_t now = os_now_ns();
	avail_remove(arena, zone);
	idle_insert(arena, zone, now);
	arena_idle_decay(arena, now);
	arena_idle_bound(arena);
}

/* The zone the next chunks of class cls come from. Chunks that were used
 * before (their pages resident) go first, a partly used zone's before an
 * idle one's; only then is memory carved, from a partly used zone before a
 * new one, so that no page is faulted in while resident free chunks of the
 * class sit in an idle zone. */
static struct ftm_zone *arena_zone_for(struct ftm_arena *arena, uint32_t cls)
{
	struct ftm_zone *zone = arena->avail[cls];
	if (zone && zone->free_head)
		return zone;
	struct ftm_zone *idle = arena->idle[cls];
	if (idle) {
		idle_remove(arena, idle);
		avail_insert(arena, idle);
		return idle;
	}
	return zone ? zone : arena_grow(arena, cls);
}

/* Fills out[] with up to `want` chunks of class cls and their state slots,
 * marked cached. The pages of newly carved chunks are faulted in once the
 * lock is released (os_prefault): the thread is about to write them. A
 * refill carves from two zones at most (a zone holds more chunks than a
 * refill asks for), so two runs suffice. */
uint32_t arena_refill(struct ftm_arena *arena, uint32_t cls, struct ftm_slot *out, uint32_t want)
{
	uint32_t got = 0;
	struct ftm_page_run fresh[2] = {{0}};
	uint32_t runs = 0;
	arena_lock(arena);
	uint64_t carved = 0;
	while (got < want) {
		struct ftm_zone *zone = arena_zone_for(arena, cls);
		if (!zone)
			break;
		uint64_t before = zone_resident_bytes(zone);
		uint32_t carved_from = zone->carved;
		got += zone_take(zone, out + got, want - got);
		carved += zone_resident_bytes(zone) - before;
		struct ftm_page_run run = zone_carved_pages(zone, carved_from);
		if (run.len && runs < 2)
			fresh[runs++] = run;
		if (zone->used == zone->capacity)
			avail_remove(arena, zone);
	}
	if (carved) {
		pages_add(&ftm_zone_pages.carved, (int64_t)carved);
		arena_idle_bound(arena);
	}
	arena->stats.chunks_out += got;
	arena->stats.bytes_out += (uint64_t)got * ftm_classes[cls].size;
	struct ftm_class_stats *cs = &arena->by_class[cls];
	cs->chunks_out += got;
	if (cs->chunks_out > cs->peak_out)
		cs->peak_out = cs->chunks_out;
	/* a server whose heap shrank empties no zone while it serves its
	 * remaining keys: its idle zones age out at its next refills, and
	 * its cached LARGE ranges with them (it may free no LARGE block) */
	bool aged = arena->idle_oldest && arena_idle_decay(arena, os_now_ns());
	arena_unlock(arena);
	if (aged)
		large_decay();
	if (carved)
		large_trim_stale();
	for (uint32_t i = 0; i < runs; i++)
		os_prefault(fresh[i]);
	if (!got)
		errno = ENOMEM;
	return got;
}

/* Takes n chunks of class cls off what the arena counts as handed out. */
static void arena_uncount(struct ftm_arena *arena, uint32_t cls, uint32_t n)
{
	arena->stats.chunks_out -= n;
	arena->stats.bytes_out -= (uint64_t)n * ftm_classes[cls].size;
	arena->by_class[cls].chunks_out -= n;
}

/* Gives chunks of class cls (validated by the caller) back to the arenas
 * owning their zones, taking each arena's lock and counting once per run
 * of chunks it owns. A flush is mostly runs of chunks from one zone, put
 * back together (zone_put_run): on jq's teardown of 3 million objects, one
 * page-map lookup and zone update per chunk made this 39 instructions a
 * chunk. */
void arena_return(uint32_t cls, const struct ftm_slot *chunks, uint32_t count)
{
	struct ftm_arena *locked = NULL;
	uint32_t run = 0;
	for (uint32_t i = 0; i < count;) {
		struct ftm_zone *zone = pagemap_zone(chunks[i].chunk);
		if (zone->arena != locked) {
			if (locked) {
				arena_uncount(locked, cls, run);
				arena_unlock(locked);
			}
			locked = zone->arena;
			run = 0;
			arena_lock(locked);
		}
		uint32_t n = zone_put_run(zone, chunks + i, count - i);
		i += n;
		run += n;
		if (!zone->in_avail)
			avail_insert(locked, zone);
		if (!zone->used)
			arena_zone_emptied(locked, zone);
	}
	if (locked) {
		arena_uncount(locked, cls, run);
		arena_unlock(locked);
	}
}

/* One chunk straight from the arena, for a thread that has no cache. */
void *arena_alloc_one(uint32_t cls)
{
	struct ftm_slot one;
	return arena_refill(arena_for_thread(), cls, &one, 1) ? one.chunk : NULL;
}

/* Gives every idle zone back to the OS; returns the bytes released. */
size_t arena_trim(void)
{
	size_t released = 0;
	for (uint32_t i = 0; i < ftm_arena_count; i++) {
		if (!arena_is_open(i))
			continue;
		struct ftm_arena *arena = &ftm_arenas[i];
		arena_lock(arena);
		while (arena->idle_oldest) {
			released += zone_bytes(arena->idle_oldest);
			arena_release_zone(arena, arena->idle_oldest);
		}
		arena_unlock(arena);
	}
	return released;
}

/* fork and show_alloc_mem take every open arena's lock in index order. */
void arena_lock_all(void)
{
	lock_take(&open_lock);
	for (uint32_t i = 0; i < ftm_arena_count; i++)
		if (arena_is_open(i))
			lock_take(&ftm_arenas[i].lock);
}

/* All or nothing: on failure no arena lock is held. */
bool arena_trylock_all(void)
{
	if (!lock_try(&open_lock))
		return false;
	for (uint32_t i = 0; i < ftm_arena_count; i++)
		if (arena_is_open(i) && !lock_try(&ftm_arenas[i].lock)) {
			while (i-- > 0)
				if (arena_is_open(i))
					lock_give(&ftm_arenas[i].lock);
			lock_give(&open_lock);
			return false;
		}
	return true;
}

void arena_unlock_all(void)
{
	for (uint32_t i = ftm_arena_count; i-- > 0;)
		if (arena_is_open(i))
			lock_give(&ftm_arenas[i].lock);
	lock_give(&open_lock);
}

/* The child of a fork has one thread, bound to `mine` (NULL when it has no
 * cache): the bindings of its parent's other threads are forgotten. Only
 * the open arenas were locked. */
void arena_reinit_after_fork(struct ftm_arena *mine)
{
	open_lock = (struct ftm_lock){0};
	for (uint32_t i = 0; i < ftm_arena_count; i++) {
		if (arena_is_open(i))
			ftm_arenas[i].lock = (struct ftm_lock){0};
		ftm_arena_threads[i] = &ftm_arenas[i] == mine;
	}
}
