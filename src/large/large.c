/*
 * LARGE allocations (> 32 KiB, or aligned beyond a page): one mapping each,
 * with a header at its start, kept in a global registry behind one lock. The
 * registry is a hash table keyed by the pointer the program holds, so free
 * and realloc recognise our blocks in O(1) and refuse any other pointer
 * without reading memory at it.
 *
 * Mapping lengths are rounded to four steps per doubling. Freed mappings
 * are not unmapped at once: their ranges go to the extent cache
 * (extent.c), which merges neighbours and serves later LARGE blocks and
 * growing reallocs from pages already faulted in (numbers in extent.c).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "ftm/internal.h"

#define LARGE_MAGIC 0x6c617267650a11ceull
#define HEADER_SPACE 64 /* header, rounded so the user pointer is 64-aligned */

static struct {
	struct ftm_lock lock;      /* guards the whole registry */
	struct ftm_large **buckets; /* hash chains, keyed by user pointer */
	uint32_t shift;            /* 64 - log2(bucket count) */
	size_t nbuckets;           /* 0 until the first LARGE allocation */
	size_t count;              /* live LARGE blocks */
	size_t bytes_mapped;       /* their mappings, in bytes */
	size_t bytes_warm;         /* the part of them touched (read lock-free) */
	struct ftm_large *all;     /* every live block */
} reg;

/* Adds to bytes_warm (mod 2^64: a shrink adds a negative length). */
static void warm_add(size_t len)
{
	__atomic_store_n(&reg.bytes_warm, reg.bytes_warm + len, __ATOMIC_RELAXED);
}

static uint64_t large_seal(const struct ftm_large *h)
{
	return LARGE_MAGIC ^ (uintptr_t)h ^ ftm_secret;
}

static size_t bucket_of(const void *user)
{
	return (size_t)(((uintptr_t)user >> 4) * 0x9e3779b97f4a7c15ull >> reg.shift);
}

static void registry_link(struct ftm_large *h)
{
	struct ftm_large **chain = &reg.buckets[bucket_of(h->user)];
	h->hash_next = *chain;
	*chain = h;
	h->all_prev = NULL;
	h->all_next = reg.all;
	if (reg.all)
		reg.all->all_prev = h;
	reg.all = h;
	reg.count++;
	reg.bytes_mapped += h->map_len;
	warm_add(h->warm);
}

static void registry_unlink(struct ftm_large *h)
{
	struct ftm_large **link = &reg.buckets[bucket_of(h->user)];
	while (*link != h)
		link = &(*link)->hash_next;
	*link = h->hash_next;
	if (h->all_prev)
		h->all_prev->all_next = h->all_next;
	else
		reg.all = h->all_next;
	if (h->all_next)
		h->all_next->all_prev = h->all_prev;
	reg.count--;
	reg.bytes_mapped -= h->map_len;
	warm_add(-h->warm);
}

static struct ftm_large *registry_find(const void *user)
{
	if (!reg.nbuckets)
		return NULL;
	for (struct ftm_large *h = reg.buckets[bucket_of(user)]; h; h = h->hash_next)
		if (h->user == user)
			return h->check == large_seal(h) ? h : NULL;
	return NULL;
}

/* Doubles the table when it is as full as it has buckets. */
static bool registry_reserve(void)
{
	if (reg.count < reg.nbuckets)
		return true;
	size_t n = reg.nbuckets ? reg.nbuckets * 2 : 512;
	struct ftm_large **fresh = os_map(n * sizeof(*fresh));
	if (!fresh)
		return false;
	struct ftm_large **old = reg.buckets;
	size_t old_n = reg.nbuckets;
	reg.buckets = fresh;
	reg.nbuckets = n;
	reg.shift = (uint32_t)__builtin_clzl(n) + 1;
	for (struct ftm_large *h = reg.all; h; h = h->all_next) {
		struct ftm_large **chain = &reg.buckets[bucket_of(h->user)];
		h->hash_next = *chain;
		*chain = h;
	}
	if (old)
		os_unmap(old, old_n * sizeof(*old));
	return true;
}

static size_t page_round(size_t n)
{
	return (n + ftm_page_size - 1) & ~(ftm_page_size - 1);
}

/* Mapping length for n bytes: whole pages, then four steps per doubling
 * past 64 KiB (at most 25% more address space; untouched pages cost no
 * memory), so similar sizes share mappings and growth is amortized. */
static size_t map_length(size_t n)
{
	size_t len = page_round(n);
	if (len <= ((size_t)64 << 10))
		return len;
	size_t step = (size_t)1 << (61 - __builtin_clzl(len - 1));
	return (len + step - 1) & ~(step - 1);
}

static void unmap_dropped(const struct extent_drop *drop)
{
	for (size_t i = 0; i < drop->count; i++)
		os_unmap((void *)drop->range[i].addr, drop->range[i].len);
}

/* Frees [addr, addr + len), of which only the first `warm` bytes may have
 * been touched (registry lock held), to the extent cache; what the cache
 * lets go of is added to *drop for the caller to unmap. An untouched tail
 * as long as the touched part (a growth reserve) costs no memory and would
 * only crowd the cache: it goes straight back to the OS. A shorter one (the
 * rounding of map_length) stays, so that the range still serves a request
 * of the size it was made for. Under FT_MALLOC_GUARD nothing is cached: a
 * range would carry its fence. */
static void range_free(char *addr, size_t len, size_t warm, struct extent_drop *drop)
{
	if (ftm_options[FTM_OPT_GUARD])
		warm = 0;
	else if (warm > len / 2)
		warm = len;
	if (warm < len)
		extent_drop_add(drop, (uintptr_t)addr + warm, len - warm);
	if (warm)
		extent_put(addr, warm, reg.bytes_mapped, os_now_ns(), drop);
}

/* A block that grows past the pages it had may be written up to `end`
 * bytes into its mapping, and the program is about to write the new bytes:
 * their pages, and the next eighth of the block (up to FTM_GROW_AHEAD),
 * are returned to fault in with one call (os_prefault, once the registry
 * lock is released), at most FTM_GROW_PREFAULT_MAX of them. A buffer grown
 * by small appends then takes one madvise every FTM_GROW_AHEAD instead of
 * a page fault every page: w_realloc (800k calls, 9 interleaved runs),
 * 8874 -> 728 page faults and 174 -> 128 ms (mimalloc 145 ms), peak RSS
 * unchanged. Not under FT_MALLOC_GUARD, whose fence page must stay
 * unmapped. */
static struct ftm_page_run grow_warm(struct ftm_large *h, size_t end)
{
	struct ftm_page_run run = {NULL, 0};
	if (end <= h->warm)
		return run;
	size_t ahead = end / 8 < FTM_GROW_AHEAD ? end / 8 : FTM_GROW_AHEAD;
	size_t warm = page_round(end + ahead) < h->map_len ? page_round(end + ahead) : h->map_len;
	if (!ftm_options[FTM_OPT_GUARD]) {
		run.addr = (char *)h + h->warm;
		run.len = warm - h->warm < FTM_GROW_PREFAULT_MAX ? warm - h->warm : FTM_GROW_PREFAULT_MAX;
	}
	h->warm = warm;
	return run;
}

/* Gives every cached range back to the OS; returns the bytes released. */
size_t large_trim(void)
{
	size_t bytes = 0;
	struct extent_drop drop;
	do {
		lock_take(&reg.lock);
		bytes += extent_drain(&drop, sizeof(drop.range) / sizeof(drop.range[0]));
		lock_give(&reg.lock);
		unmap_dropped(&drop);
	} while (drop.count);
	return bytes;
}

/* Gives back the cached ranges past FT_MALLOC_DECAY_MS. extent_put looks
 * at their age when a LARGE block is freed; this is for a process that
 * frees none any more, called when its zones age out (arena_refill). */
void large_decay(void)
{
	struct extent_drop drop;
	do {
		drop.count = 0;
		lock_take(&reg.lock);
		extent_decay(os_now_ns(), &drop);
		lock_give(&reg.lock);
		unmap_dropped(&drop);
	} while (drop.count == sizeof(drop.range) / sizeof(drop.range[0]));
}

/* ---- kept memory ------------------------------------------------------------
 * Idle zones and cached LARGE ranges keep freed memory resident for reuse,
 * each within bounds of its own (arena.c, extent.c). A program that frees
 * much of one kind and then grows the other held both: clang frees its AST,
 * some 60 MB of LARGE slabs, before code generation fills zones, and the
 * cache kept those slabs while the zones grew beside them. So, counted over
 * the whole process, what is kept (idle zones and cached ranges) may fill
 * the room its busy memory left below its busy peak and no more; past that,
 * cached ranges nothing went into for FTM_STALE_MS go back, oldest first.
 * This is looked at when memory is about to be faulted in (a zone carving
 * pages, a LARGE block mapped fresh): while nothing grows, keeping costs
 * nothing. Ranges freed more recently stay: a program that replaces big
 * blocks at random (w_mixed) takes them back within milliseconds.
 * Busy LARGE memory is counted as the pages its blocks touched, not their
 * mappings: growth reserves and rounding are not resident, and counted in
 * they left room to keep more than was ever busy. */

static uint64_t busy_peak; /* most zone pages busy + LARGE pages touched, ever */

/* Bytes kept past the room the busy peak leaves, `adding` bytes more about
 * to be mapped. Reads counters that other threads move meanwhile: a stale
 * peak only gives back more. */
static uint64_t kept_excess(uint64_t adding)
{
	uint64_t carved = __atomic_load_n(&ftm_zone_pages.carved, __ATOMIC_RELAXED);
	uint64_t idle = __atomic_load_n(&ftm_zone_pages.idle, __ATOMIC_RELAXED);
	uint64_t busy = (carved > idle ? carved - idle : 0) + adding +
			__atomic_load_n(&reg.bytes_warm, __ATOMIC_RELAXED);
	uint64_t peak = __atomic_load_n(&busy_peak, __ATOMIC_RELAXED);
	if (busy > peak)
		__atomic_store_n(&busy_peak, peak = busy, __ATOMIC_RELAXED);
	uint64_t room = peak - busy;
	uint64_t kept = idle + extent_cached_bytes();
	return kept > room ? kept - room : 0;
}

/* Registry lock held. */
static void drop_stale(uint64_t adding, uint64_t now, struct extent_drop *drop)
{
	uint64_t excess = kept_excess(adding);
	if (excess)
		extent_drop_stale(excess, now, FTM_STALE_MS * 1000000ull, drop);
}

/* After a zone carved fresh pages (its arena's lock released, so that the
 * unmapping holds up no other thread of the arena). The registry lock is
 * only tried: threads growing their arenas at once do not queue on it,
 * and the one that holds it, or the next carve, does the work. */
void large_trim_stale(void)
{
	if (!kept_excess(0) || !lock_try(&reg.lock))
		return;
	struct extent_drop drop = {.count = 0};
	drop_stale(0, os_now_ns(), &drop);
	lock_give(&reg.lock);
	unmap_dropped(&drop);
}

/* size bytes aligned to align (a power of two), in a mapping of their own:
 * a cached one when one fits, else a fresh one. With `zero`, the block
 * reads as zeros (fresh pages already do). */
void *large_alloc(size_t size, size_t align, bool zero)
{
	ftm_ensure_init();
	size_t slack = align > HEADER_SPACE ? align : HEADER_SPACE;
	/* the length below adds align twice: 2^63 wrapped it to a few pages,
	 * and posix_memalign returned 0x8000000000000000 */
	if (size > (size_t)PTRDIFF_MAX / 2 || align > (size_t)PTRDIFF_MAX / 4) {
		errno = ENOMEM;
		return NULL;
	}
	/* past a page the user pointer cannot sit at a fixed offset: reserve
	 * room to slide it up to the next multiple of align */
	size_t len = map_length(size + slack + (align > ftm_page_size ? align : 0));
	bool guard = ftm_options[FTM_OPT_GUARD];
	char *map = NULL;
	if (guard) {
		len = page_round(size + slack + align) + ftm_page_size;
	} else {
		struct extent_drop drop = {.count = 0};
		lock_take(&reg.lock);
		if (!(map = extent_take(len)))
			drop_stale(len, os_now_ns(), &drop);
		lock_give(&reg.lock);
		unmap_dropped(&drop);
	}
	bool fresh = !map;
	if (fresh && !(map = os_map(len))) {
		errno = ENOMEM;
		return NULL;
	}
	struct ftm_large *h = (struct ftm_large *)map;
	uintptr_t user = ((uintptr_t)map + sizeof(*h) + align - 1) & ~(uintptr_t)(align - 1);
	h->check = large_seal(h);
	h->user = align > HEADER_SPACE ? (void *)user : map + HEADER_SPACE;
	if (guard) {
		/* the block ends where the PROT_NONE page starts (give or take
		 * the alignment), so the first byte written past it faults */
		char *fence = map + len - ftm_page_size;
		h->user = (void *)((uintptr_t)(fence - size) & ~(uintptr_t)((align > FTM_ALIGN ? align : FTM_ALIGN) - 1));
		os_protect_none(fence, ftm_page_size);
	}
	h->size = size;
	h->map_len = len;
	h->warm = fresh ? page_round((size_t)((char *)h->user - map) + size) : len;
	if (zero && !fresh)
		memset(h->user, 0, (size_t)(map + len - (char *)h->user));
	lock_take(&reg.lock);
	bool ok = registry_reserve();
	if (ok)
		registry_link(h);
	lock_give(&reg.lock);
	if (!ok) {
		os_unmap(map, len);
		errno = ENOMEM;
		return NULL;
	}
	return h->user;
}

bool large_free(void *p)
{
	struct extent_drop drop = {.count = 0};
	lock_take(&reg.lock);
	struct ftm_large *h = registry_find(p);
	if (h) {
		registry_unlink(h);
		h->check = 0; /* a stale pointer to a cached range is not ours */
		range_free((char *)h, h->map_len, h->warm, &drop);
	}
	lock_give(&reg.lock);
	unmap_dropped(&drop);
	return h != NULL;
}

/* The size asked for and the usable size of a live LARGE block (up to its
 * mapping's end, or to its guard page). */
bool large_lookup(const void *p, size_t *size, size_t *usable)
{
	lock_take(&reg.lock);
	struct ftm_large *h = registry_find(p);
	if (h) {
		*size = h->size;
		*usable = (size_t)((char *)h + h->map_len - (char *)h->user) -
			  (ftm_options[FTM_OPT_GUARD] ? ftm_page_size : 0);
	}
	lock_give(&reg.lock);
	return h != NULL;
}

/* A block that must move to grow moves by mremap into a mapping this many
 * times its new size: the reserve is only address space until the program
 * writes it (and a free gives back its untouched pages at once), and a
 * buffer grown by appends then moves a few times instead of at every
 * quarter of growth. Moving is what costs: on the VM we measure on, the
 * first touch of a page that mremap moved takes about 2 us (a hidden fault
 * in the hypervisor's shadow page tables), against 0.3 us to copy a page
 * and 13 us to fault in a fresh one. w_realloc, 800k calls: 131 MiB moved
 * by mremap -> 44 MiB, 261 -> 222 ms (median of 9 interleaved runs;
 * mimalloc 165 ms); reserves of 2x and 8x moved 64 and 34 MiB. */
#define GROWTH_RESERVE 4

/* Moves h by mremap to hold offset + size bytes, into the growth reserve
 * when the address space allows it; *len becomes the new mapping length. */
static struct ftm_large *remap_grown(struct ftm_large *h, size_t offset, size_t size, size_t *len)
{
	if (size <= ((size_t)PTRDIFF_MAX - offset) / (2 * GROWTH_RESERVE)) {
		size_t reserve = map_length(offset + size * GROWTH_RESERVE);
		struct ftm_large *grown = os_remap(h, h->map_len, reserve);
		if (grown) {
			*len = reserve;
			return grown;
		}
	}
	return os_remap(h, h->map_len, *len);
}

/* large_realloc for everything but the common case (registry lock held, h
 * the block). */
static bool large_resize(struct ftm_large *h, void *p, size_t size, void **moved)
{
	size_t offset = (size_t)((char *)p - (char *)h);
	if (size > (size_t)PTRDIFF_MAX - offset - ftm_page_size) {
		lock_give(&reg.lock);
		errno = ENOMEM;
		*moved = NULL;
		return true;
	}
	size_t len = map_length(offset + size);
	bool guard = ftm_options[FTM_OPT_GUARD];
	struct extent_drop drop = {.count = 0};
	if (len <= h->map_len || (!guard && extent_take_at((char *)h + h->map_len, len - h->map_len))) {
		size_t warm_before = h->warm;
		if (len > h->map_len) {
			h->warm = len; /* the cached range's pages were touched */
		} else if (len < h->map_len / 2 && !guard) {
			range_free((char *)h + len, h->map_len - len, h->warm > len ? h->warm - len : 0, &drop);
			h->warm = h->warm < len ? h->warm : len;
		} else {
			len = h->map_len;
		}
		reg.bytes_mapped += len - h->map_len;
		h->map_len = len;
		h->size = size;
		struct ftm_page_run grown = grow_warm(h, offset + size);
		warm_add(h->warm - warm_before);
		lock_give(&reg.lock);
		unmap_dropped(&drop);
		os_prefault(grown);
		*moved = p;
		return true;
	}
	registry_unlink(h);
	char *reuse = guard ? NULL : extent_take(len);
	lock_give(&reg.lock);
	struct ftm_large *old = h, *grown = NULL;
	struct ftm_page_run fresh = {NULL, 0};
	size_t warm = reuse ? len : h->warm;
	/* mremap moves the pages without copying, but only within one kernel
	 * mapping: a block grown over a merged range may span two, and is then
	 * copied into a fresh mapping like into a cached range */
	if (!reuse && !(grown = remap_grown(h, offset, size, &len)))
		reuse = os_map(len);
	if (reuse) {
		grown = (struct ftm_large *)reuse;
		size_t usable = h->map_len - offset, copied = usable < size ? usable : size;
		memcpy(reuse + offset, p, copied);
		warm = warm > offset + copied ? warm : offset + copied;
	}
	if (grown) {
		h = grown;
		h->check = large_seal(h);
		h->user = (char *)h + offset;
		h->size = size;
		h->map_len = len;
		h->warm = warm < len ? warm : len;
		fresh = grow_warm(h, offset + size);
	}
	lock_take(&reg.lock);
	registry_link(h); /* the unlink above left room: no growth needed */
	if (reuse) {
		old->check = 0;
		range_free((char *)old, old->map_len, old->warm, &drop);
	}
	lock_give(&reg.lock);
	unmap_dropped(&drop);
	os_prefault(fresh);
	if (!grown)
		errno = ENOMEM;
	*moved = grown ? h->user : NULL;
	return true;
}

/* Resizes a LARGE block: in place while its mapping has room (giving the
 * tail back when it shrinks to less than half) or while the cached range
 * right after it can be added to it, else into a cached range that fits
 * (copied: its pages are faulted in already), else by mremap into a growth
 * reserve (the pages move, nothing is copied), else into a fresh mapping.
 * Returns false when p is not ours; *moved is then untouched, and NULL with
 * ENOMEM when growing failed (p is left as it was).
 *
 * A buffer grown by small appends almost always still fits in its mapping:
 * that case is checked first and costs the
 * lock, the lookup and a store (w_realloc under callgrind: large_realloc
 * 70 -> 38 instructions a call, the lookup's 22 apart). */
bool large_realloc(void *p, size_t size, void **moved)
{
	lock_take(&reg.lock);
	struct ftm_large *h = registry_find(p);
	if (!h) {
		lock_give(&reg.lock);
		return false;
	}
	size_t room = h->map_len - (size_t)((char *)p - (char *)h);
	if (size <= room && (size >= h->size || size > room / 2) && !ftm_options[FTM_OPT_GUARD]) {
		h->size = size;
		size_t warm_before = h->warm;
		struct ftm_page_run grown = grow_warm(h, h->map_len - room + size);
		warm_add(h->warm - warm_before);
		lock_give(&reg.lock);
		os_prefault(grown);
		*moved = p;
		return true;
	}
	return large_resize(h, p, size, moved);
}

void large_lock(void)
{
	lock_take(&reg.lock);
}

bool large_trylock(void)
{
	return lock_try(&reg.lock);
}

void large_unlock(void)
{
	lock_give(&reg.lock);
}

void large_reinit_lock(void)
{
	reg.lock = (struct ftm_lock){0};
}

/* Registry totals; the caller holds the registry lock. */
size_t large_bytes_mapped(void)
{
	return reg.bytes_mapped;
}

size_t large_count(void)
{
	return reg.count;
}

void large_for_each(void (*visit)(const struct ftm_large *, void *), void *ctx)
{
	for (struct ftm_large *h = reg.all; h; h = h->all_next)
		visit(h, ctx);
}
