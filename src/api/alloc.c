/*
 * malloc and free: the fast paths, and the one slow path each falls into.
 *
 * malloc(n <= 32 KiB): pop the thread cache's bin for n's class and mark the
 * chunk live with its exact size. free(p): the page map names p's zone; if p
 * is exactly a live chunk and the bin has room, mark it cached and push.
 * Anything else (empty or full bin, first call of a thread, LARGE, bad
 * pointer) goes to malloc_slow/free_slow, where every rare case lives.
 */
#include <errno.h>
#include <string.h>

#include "ftm/internal.h"

/* Records the size the program asked for (<= the chunk's class size). */
void chunk_set_size(void *p, size_t size)
{
	struct ftm_zone *zone = pagemap_zone(p);
	meta_store(zone, zone_chunk_index(zone, p), (uint16_t)(FTM_META_LIVE | (zone->size - size)));
}

/* The calling thread's cache, attaching one on its first call. NULL when the
 * thread has none (it exited, or no memory for one). */
static struct ftm_tcache *thread_cache(void)
{
	struct ftm_tcache *tc = ftm_tls_tcache;
	if (tc == &ftm_tcache_boot)
		return ftm_debug ? NULL : tcache_attach();
	return tc == &ftm_tcache_dead ? NULL : tc;
}

/* Debug mode (see debug/checks.c): every block straight from its arena or
 * the registry, with the hooks around it (the caller records the history
 * and the call site). */
void *debug_block_alloc(size_t size)
{
	size_t need = debug_request(size);
	void *p;
	if (need > FTM_SMALL_MAX) {
		if ((p = large_alloc(size, FTM_ALIGN, false)))
			debug_on_alloc(p, size, true);
		return p;
	}
	uint32_t cls = size_class(need);
	if (!(p = arena_alloc_one(cls)))
		return NULL;
	struct ftm_class_stats *cs = &pagemap_zone(p)->arena->by_class[cls];
	__atomic_fetch_add(&cs->mallocs, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&cs->misses, 1, __ATOMIC_RELAXED);
	chunk_set_size(p, size);
	debug_on_alloc(p, size, false);
	return p;
}

/* malloc in debug mode; `caller` is the program's return address. */
void *malloc_debug(size_t size, const void *caller)
{
	void *p = debug_block_alloc(size);
	if (p)
		debug_on_new_block(HISTORY_MALLOC, p, size, caller);
	return p;
}

/* class_alloc's miss: the bin of cls is empty, or the thread has no cache
 * yet (a first call attaches one) or any more (straight from the arena). */
FTM_COLD static void *class_alloc_miss(uint32_t cls, size_t size)
{
	struct ftm_tcache *tc = thread_cache();
	if (!tc) {
		void *p = arena_alloc_one(cls);
		if (!p)
			return NULL;
		chunk_set_size(p, size);
		return p;
	}
	struct ftm_bin *bin = &tc->bins[cls];
	if (bin->top == bin->base && !tcache_refill(tc, cls))
		return NULL;
	bin->misses++;
	return bin_pop(bin, size);
}

void *class_alloc(uint32_t cls, size_t size)
{
	struct ftm_bin *bin = &ftm_tls_tcache->bins[cls];
	if (FTM_LIKELY(bin->top != bin->base))
		return bin_pop(bin, size);
	return class_alloc_miss(cls, size);
}

FTM_COLD static void *malloc_slow(size_t size, const void *caller)
{
	ftm_ensure_init();
	if (FTM_UNLIKELY(ftm_debug))
		return malloc_debug(size, caller);
	if (size > FTM_SMALL_MAX)
		return large_alloc(size, FTM_ALIGN, false);
	return class_alloc_miss(size_class(size), size);
}

/* One comparison picks the common case, a size up to 1 KiB; its bin, like
 * that of any size up to 32 KiB, is a table lookup. A hit pops the bin and
 * marks the chunk live with its exact size. The boot and dead caches have
 * empty bins, so a thread without a cache falls to malloc_slow like any
 * miss. */
FTM_EXPORT void *ftm_malloc(size_t size)
{
	struct ftm_bin *bin;
	if (FTM_LIKELY(size <= 1024))
		bin = bin_small(ftm_tls_tcache, size);
	else if (size <= FTM_SMALL_MAX)
		bin = bin_medium(ftm_tls_tcache, size);
	else
		return malloc_slow(size, FTM_CALLER);
	if (FTM_LIKELY(bin->top != bin->base))
		return bin_pop(bin, size);
	return malloc_slow(size, FTM_CALLER);
}

/* Says why p, which is not a live pointer of ours, was refused; a zone
 * whose seal is broken is not read any further. */
void report_bad_pointer(const void *p, const char *call)
{
	struct ftm_zone *zone = pagemap_zone(p);
	if (zone && !zone_check(zone)) {
		report_error(call, "zone header overwritten, block left alone", p);
		return;
	}
	uint32_t index = zone ? zone_chunk_index(zone, p) : UINT32_MAX;
	bool freed_chunk = index != UINT32_MAX && index < zone->carved &&
			   !(meta_load(zone, index) & FTM_META_LIVE);
	report_error(call, freed_chunk ? "double free" : "invalid pointer", p);
}

/* The rest of a free once p's chunk is claimed (its state moved from
 * `state`, live, to cached): the debug hooks, then the chunk goes to the
 * thread's cache, whose bin is made room in first when full, or straight
 * to its arena for a thread without a cache. */
static void free_claimed(struct ftm_zone *zone, void *p, uint32_t index, uint16_t state,
			 const char *call)
{
	if (FTM_UNLIKELY(ftm_debug)) {
		debug_on_free(call, p, zone->size - (state & FTM_META_SLACK), zone->size, false);
		__atomic_fetch_add(&zone->arena->by_class[zone->cls].frees, 1, __ATOMIC_RELAXED);
	}
	struct ftm_tcache *tc = thread_cache();
	struct ftm_slot freed = {p, meta_slot(zone, index)};
	if (!tc) {
		arena_return(zone->cls, &freed, 1);
		return;
	}
	struct ftm_bin *bin = &tc->bins[zone->cls];
	if (bin->top == bin->end)
		tcache_make_room(tc, zone->cls);
	*bin->top++ = freed;
	bin->frees++;
}

/* Frees p after checking it is a live chunk or LARGE block of ours; reports
 * and ignores it otherwise, naming `call`. Returns whether p was freed. */
bool free_checked(void *p, const char *call)
{
	struct ftm_zone *zone = pagemap_zone(p);
	if (!zone) {
		size_t size, usable;
		if (FTM_UNLIKELY(ftm_debug) && large_lookup(p, &size, &usable))
			debug_on_free(call, p, size, usable, true);
		if (large_free(p))
			return true;
		report_bad_pointer(p, call);
		return false;
	}
	uint32_t index = zone_check(zone) ? zone_chunk_index(zone, p) : UINT32_MAX;
	uint16_t meta = index == UINT32_MAX ? 0 : meta_load(zone, index);
	if (!(meta & FTM_META_LIVE) || !meta_replace(zone, index, meta, FTM_META_CACHED)) {
		report_bad_pointer(p, call);
		return false;
	}
	free_claimed(zone, p, index, meta, call);
	return true;
}

/* free's slow path, also realloc(p, 0)'s: errno survives whatever happens. */
FTM_COLD void free_slow(void *p, const char *call)
{
	if (!p)
		return;
	int saved = errno;
	if (free_checked(p, call) && FTM_UNLIKELY(ftm_debug))
		history_record(HISTORY_FREE, p, 0);
	errno = saved;
}

/* free's fast path claimed p's chunk but the bin has no room: full, or the
 * empty bin of a thread without a cache (debug mode, first call, exit). */
FTM_COLD static void free_no_room(struct ftm_zone *zone, void *p, uint32_t index, uint16_t state)
{
	int saved = errno;
	free_claimed(zone, p, index, state, "free");
	if (FTM_UNLIKELY(ftm_debug))
		history_record(HISTORY_FREE, p, 0);
	errno = saved;
}

/* Asks for the cache line of a chunk's state in exclusive state. A chunk
 * freed by another thread than the one that allocated it (larson, a server
 * handing requests between threads) has its state line in that thread's
 * cache, modified by malloc: a plain load fetches it shared and the claim's
 * compare-and-swap then has to upgrade it, two transfers instead of one.
 * GCC emits PREFETCHW only for some -march targets, so it is spelled out;
 * CPUs that lack it (Intel before Broadwell) run it as a no-op. */
static inline void prefetch_for_write(const void *p)
{
#if defined(__x86_64__)
	__asm__ volatile("prefetchw %0" ::"m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1, 3);
#endif
}

/* A pointer is freed here only if its zone's seal is intact (zone_sealed)
 * and it is exactly the start of a live chunk: zone_chunk_slot gives an
 * index below capacity for nothing else (an interior, misaligned or foreign
 * pointer), its state says live, and this call is the one that moves it
 * out of live (meta_replace). The bound also covers a free racing with the
 * zone's end, whose header may already serve another zone of its class
 * (zone.c): the index stays within that header's meta. */
FTM_EXPORT void ftm_free(void *p)
{
	struct ftm_zone *zone = pagemap_zone(p);
	if (FTM_LIKELY(zone && zone_sealed(zone))) {
		uint64_t index = zone_chunk_slot(zone, p);
		struct ftm_bin *bin = (struct ftm_bin *)((char *)ftm_tls_tcache + zone->bin_offset);
		if (FTM_LIKELY(index < zone->capacity)) {
			prefetch_for_write(meta_slot(zone, index));
			uint16_t state = meta_load(zone, index);
			if (FTM_LIKELY((state & FTM_META_LIVE) &&
				       meta_replace(zone, index, state, FTM_META_CACHED))) {
				struct ftm_slot *top = bin->top;
				if (FTM_UNLIKELY(top == bin->end)) {
					free_no_room(zone, p, (uint32_t)index, state);
					return;
				}
				*top = (struct ftm_slot){p, meta_slot(zone, index)};
				bin->top = top + 1;
				bin->frees++;
				return;
			}
		}
	}
	free_slow(p, "free");
}

FTM_OVERRIDE(malloc, ftm_malloc)
FTM_OVERRIDE(__libc_malloc, ftm_malloc)
FTM_OVERRIDE(free, ftm_free)
FTM_OVERRIDE(cfree, ftm_free)
FTM_OVERRIDE(__libc_free, ftm_free)
