/*
 * LARGE allocations (> 32 KiB, or aligned beyond a page): one mapping each,
 * with a header at its start, kept in a global registry behind one lock. The
 * registry is a hash table keyed by the pointer the program holds, so free
 * and realloc recognise our blocks in O(1) and refuse any other pointer
 * without reading memory at it.
 */
#include <errno.h>
#include <stdint.h>

#include "ftm/internal.h"

#define LARGE_MAGIC 0x6c617267650a11ceull
#define HEADER_SPACE 64 /* header, rounded so the user pointer is 64-aligned */

static struct {
	pthread_mutex_t lock;      /* guards the whole registry */
	struct ftm_large **buckets; /* hash chains, keyed by user pointer */
	uint32_t shift;            /* 64 - log2(bucket count) */
	size_t nbuckets;           /* 0 until the first LARGE allocation */
	size_t count;              /* live LARGE blocks */
	size_t bytes_mapped;       /* their mappings, in bytes */
	struct ftm_large *all;     /* every live block */
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

/* A new mapping holding size bytes aligned to align (a power of two); its
 * pages are fresh, hence zero. */
void *large_alloc(size_t size, size_t align)
{
	ftm_ensure_init();
	size_t slack = align > HEADER_SPACE ? align : HEADER_SPACE;
	if (size > (size_t)PTRDIFF_MAX - slack - 2 * ftm_page_size) {
		errno = ENOMEM;
		return NULL;
	}
	/* past a page the user pointer cannot sit at a fixed offset: reserve
	 * room to slide it up to the next multiple of align */
	size_t len = page_round(size + slack + (align > ftm_page_size ? align : 0));
	char *map = os_map(len);
	if (!map) {
		errno = ENOMEM;
		return NULL;
	}
	struct ftm_large *h = (struct ftm_large *)map;
	uintptr_t user = ((uintptr_t)map + sizeof(*h) + align - 1) & ~(uintptr_t)(align - 1);
	h->check = large_seal(h);
	h->user = align > HEADER_SPACE ? (void *)user : map + HEADER_SPACE;
	h->size = size;
	h->map_len = len;
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
	pthread_mutex_lock(&reg.lock);
	struct ftm_large *h = registry_find(p);
	if (h)
		registry_unlink(h);
	pthread_mutex_unlock(&reg.lock);
	if (h)
		os_unmap(h, h->map_len);
	return h != NULL;
}

bool large_usable_size(const void *p, size_t *usable)
{
	pthread_mutex_lock(&reg.lock);
	struct ftm_large *h = registry_find(p);
	if (h)
		*usable = (size_t)((char *)h + h->map_len - (char *)h->user);
	pthread_mutex_unlock(&reg.lock);
	return h != NULL;
}

/* Resizes a LARGE block: in place when its mapping already has room or can
 * shed its tail, else by mremap (the pages move, nothing is copied). Returns
 * false when p is not ours; *moved is then untouched, and NULL with ENOMEM
 * when growing failed (p is left as it was). */
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
	size_t len = page_round(offset + size);
	if (len <= h->map_len) {
		if (len < h->map_len) {
			os_unmap((char *)h + len, h->map_len - len);
			reg.bytes_mapped -= h->map_len - len;
			h->map_len = len;
		}
		h->size = size;
		pthread_mutex_unlock(&reg.lock);
		*moved = p;
		return true;
	}
	registry_unlink(h);
	pthread_mutex_unlock(&reg.lock);
	struct ftm_large *grown = os_remap(h, h->map_len, len);
	if (grown) {
		h = grown;
		h->check = large_seal(h);
		h->user = (char *)h + offset;
		h->size = size;
		h->map_len = len;
	}
	pthread_mutex_lock(&reg.lock);
	registry_link(h); /* the unlink above left room: no growth needed */
	pthread_mutex_unlock(&reg.lock);
	if (!grown)
		errno = ENOMEM;
	*moved = grown ? h->user : NULL;
	return true;
}

void large_lock(void)
{
	pthread_mutex_lock(&reg.lock);
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
