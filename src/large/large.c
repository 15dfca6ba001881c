/*
 * LARGE allocations (> 32 KiB, or aligned beyond a page): one mapping each,
 * with a header at its start, kept in a global registry behind one lock. The
 * registry is a hash table keyed by the pointer the program holds, so free
 * and realloc recognise our blocks in O(1) and refuse any other pointer
 * without reading memory at it.
 *
 * Mapping lengths are rounded to four steps per doubling, and up to 64
 * freed mappings (32 MiB) are kept for reuse: a program that frees and
 * reallocates big buffers of similar sizes, or grows one by small steps,
 * then neither pays a mmap/munmap pair (and its TLB shootdown) nor faults
 * its pages in again each time. Page faults are what LARGE blocks cost:
 * w_mixed (500k replacements, 1% LARGE of 32 KiB-1 MiB) ran 3.2 s with an
 * 8 MiB cache and 0.9 s with 32 MiB (glibc 0.8 s), peak RSS 91 -> 105 MB
 * (glibc 101 MB).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "ftm/internal.h"

#define LARGE_MAGIC 0x6c617267650a11ceull
#define HEADER_SPACE 64 /* header, rounded so the user pointer is 64-aligned */
#define CACHE_SLOTS 64  /* freed mappings kept for reuse */
#define CACHE_BYTES ((size_t)32 << 20) /* and their total length at most */

struct cached_map {
	void *map;  /* a freed LARGE mapping, pages still in place */
	size_t len; /* its length */
};

static struct {
	pthread_mutex_t lock;      /* guards the whole registry */
	struct ftm_large **buckets; /* hash chains, keyed by user pointer */
	uint32_t shift;            /* 64 - log2(bucket count) */
	size_t nbuckets;           /* 0 until the first LARGE allocation */
	size_t count;              /* live LARGE blocks */
	size_t bytes_mapped;       /* their mappings, in bytes */
	struct ftm_large *all;     /* every live block */
	struct cached_map cache[CACHE_SLOTS]; /* oldest first */
	size_t cached;             /* entries in cache[] */
	size_t cached_bytes;       /* their total length */
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

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

static struct cached_map cache_put(void *map, size_t len);

/* The smallest cached mapping of at least len bytes and at most twice
 * that, or NULL. Past 25% too long, its tail goes back to the cache as a
 * mapping of its own (its pages stay faulted in, which is what makes reuse
 * cheaper than a fresh mapping); *unmap is what the caller must unmap
 * outside the lock, if anything. */
static void *cache_take(size_t len, size_t *got, struct cached_map *unmap)
{
	size_t best = reg.cached;
	for (size_t i = 0; i < reg.cached; i++)
		if (reg.cache[i].len >= len && reg.cache[i].len / 2 <= len &&
		    (best == reg.cached || reg.cache[i].len < reg.cache[best].len))
			best = i;
	if (best == reg.cached)
		return NULL;
	char *map = reg.cache[best].map;
	*got = reg.cache[best].len;
	reg.cached_bytes -= *got;
	reg.cache[best] = reg.cache[--reg.cached];
	if (*got - len > len / 4) {
		*unmap = cache_put(map + len, *got - len);
		*got = len;
	}
	return map;
}

/* Keeps a freed mapping; returns the one the caller must unmap instead
 * (the oldest, or this one when it is too big to keep), or NULL. */
static struct cached_map cache_put(void *map, size_t len)
{
	struct cached_map evicted = {map, len};
	if (len > CACHE_BYTES / 4)
		return evicted;
	evicted.map = NULL;
	if (reg.cached == CACHE_SLOTS || reg.cached_bytes + len > CACHE_BYTES) {
		evicted = reg.cache[0];
		reg.cached_bytes -= evicted.len;
		for (size_t i = 1; i < reg.cached; i++)
			reg.cache[i - 1] = reg.cache[i];
		reg.cached--;
	}
	reg.cache[reg.cached++] = (struct cached_map){map, len};
	reg.cached_bytes += len;
	return evicted;
}

/* Gives every cached mapping back to the OS; returns the bytes released. */
size_t large_trim(void)
{
	struct cached_map drop[CACHE_SLOTS];
	pthread_mutex_lock(&reg.lock);
	size_t n = reg.cached, bytes = reg.cached_bytes;
	for (size_t i = 0; i < n; i++)
		drop[i] = reg.cache[i];
	reg.cached = 0;
	reg.cached_bytes = 0;
	pthread_mutex_unlock(&reg.lock);
	for (size_t i = 0; i < n; i++)
		os_unmap(drop[i].map, drop[i].len);
	return bytes;
}

/* size bytes aligned to align (a power of two), in a mapping of their own:
 * a cached one when one fits, else a fresh one. With `zero`, the block
 * reads as zeros (fresh pages already do). */
void *large_alloc(size_t size, size_t align, bool zero)
{
	ftm_ensure_init();
	size_t slack = align > HEADER_SPACE ? align : HEADER_SPACE;
	if (size > (size_t)PTRDIFF_MAX / 2) {
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
		struct cached_map unmap = {NULL, 0};
		pthread_mutex_lock(&reg.lock);
		map = cache_take(len, &len, &unmap);
		pthread_mutex_unlock(&reg.lock);
		if (unmap.map)
			os_unmap(unmap.map, unmap.len);
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
	if (zero && !fresh)
		memset(h->user, 0, (size_t)(map + len - (char *)h->user));
	pthread_mutex_lock(&reg.lock);
	bool ok = registry_reserve();
	if (ok)
		registry_link(h);
	pthread_mutex_unlock(&reg.lock);
	if (!ok) {
		os_unmap(map, len);
		errno = ENOMEM;
		return NULL;
	}
	return h->user;
}

bool large_free(void *p)
{
	struct cached_map evicted = {NULL, 0};
	pthread_mutex_lock(&reg.lock);
	struct ftm_large *h = registry_find(p);
	if (h) {
		registry_unlink(h);
		h->check = 0; /* a stale pointer to a cached mapping is not ours */
		if (ftm_options[FTM_OPT_GUARD])
			evicted = (struct cached_map){h, h->map_len}; /* its fence stays out of the cache */
		else
			evicted = cache_put(h, h->map_len);
	}
	pthread_mutex_unlock(&reg.lock);
	if (evicted.map)
		os_unmap(evicted.map, evicted.len);
	return h != NULL;
}

/* The size asked for and the usable size of a live LARGE block (up to its
 * mapping's end, or to its guard page). */
bool large_lookup(const void *p, size_t *size, size_t *usable)
{
	pthread_mutex_lock(&reg.lock);
	struct ftm_large *h = registry_find(p);
	if (h) {
		*size = h->size;
		*usable = (size_t)((char *)h + h->map_len - (char *)h->user) -
			  (ftm_options[FTM_OPT_GUARD] ? ftm_page_size : 0);
	}
	pthread_mutex_unlock(&reg.lock);
	return h != NULL;
}

/* Resizes a LARGE block: in place while its mapping has room (giving the
 * tail back once less than half is used), else into a cached mapping that
 * fits (copied), else by mremap to the next mapping length (the pages
 * move, nothing is copied). Returns false when p
 * is not ours; *moved is then untouched, and NULL with ENOMEM when growing
 * failed (p is left as it was). */
bool large_realloc(void *p, size_t size, void **moved)
{
	pthread_mutex_lock(&reg.lock);
	struct ftm_large *h = registry_find(p);
	if (!h) {
		pthread_mutex_unlock(&reg.lock);
		return false;
	}
	size_t offset = (size_t)((char *)p - (char *)h);
	if (size > (size_t)PTRDIFF_MAX - offset - ftm_page_size) {
		pthread_mutex_unlock(&reg.lock);
		errno = ENOMEM;
		*moved = NULL;
		return true;
	}
	size_t len = map_length(offset + size);
	if (len <= h->map_len) {
		struct cached_map unmap = {NULL, 0};
		if (len < h->map_len / 2 && !ftm_options[FTM_OPT_GUARD]) {
			unmap = cache_put((char *)h + len, h->map_len - len);
			reg.bytes_mapped -= h->map_len - len;
			h->map_len = len;
		}
		h->size = size;
		pthread_mutex_unlock(&reg.lock);
		if (unmap.map)
			os_unmap(unmap.map, unmap.len);
		*moved = p;
		return true;
	}
	registry_unlink(h);
	struct cached_map unmap = {NULL, 0};
	size_t got = len;
	char *reuse = ftm_options[FTM_OPT_GUARD] ? NULL : cache_take(len, &got, &unmap);
	pthread_mutex_unlock(&reg.lock);
	if (unmap.map)
		os_unmap(unmap.map, unmap.len);
	struct ftm_large *old = h, *grown;
	if (reuse) {
		/* a cached mapping's pages are already faulted in: copying into
		 * them beats mremap's fresh pages (w_realloc: see the header) */
		grown = (struct ftm_large *)reuse;
		size_t usable = h->map_len - offset;
		memcpy(reuse + offset, p, usable < size ? usable : size);
		len = got;
	} else {
		grown = os_remap(h, h->map_len, len);
	}
	if (grown) {
		h = grown;
		h->check = large_seal(h);
		h->user = (char *)h + offset;
		h->size = size;
		h->map_len = len;
	}
	struct cached_map evicted = {NULL, 0};
	pthread_mutex_lock(&reg.lock);
	registry_link(h); /* the unlink above left room: no growth needed */
	if (reuse) {
		old->check = 0;
		evicted = cache_put(old, old->map_len);
	}
	pthread_mutex_unlock(&reg.lock);
	if (evicted.map)
		os_unmap(evicted.map, evicted.len);
	if (!grown)
		errno = ENOMEM;
	*moved = grown ? h->user : NULL;
	return true;
}

void large_lock(void)
{
	pthread_mutex_lock(&reg.lock);
}

bool large_trylock(void)
{
	return pthread_mutex_trylock(&reg.lock) == 0;
}

void large_unlock(void)
{
	pthread_mutex_unlock(&reg.lock);
}

void large_reinit_lock(void)
{
	pthread_mutex_init(&reg.lock, NULL);
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
