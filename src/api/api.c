/*
 * The rest of the malloc family, built on ftm_malloc/ftm_free, the zones and
 * the LARGE registry: calloc, realloc, the aligned allocators, usable size,
 * trim. Semantics follow glibc where the standards leave a choice:
 * realloc(p, 0) frees p and returns NULL; memalign rounds a non-power-of-two
 * alignment up; aligned_alloc and posix_memalign reject it with EINVAL.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

FTM_EXPORT void *ftm_calloc(size_t count, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(count, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	ftm_ensure_init();
	if (FTM_UNLIKELY(ftm_debug)) {
		void *p = malloc_debug(total, FTM_CALLER);
		if (p)
			memset(p, 0, total);
		return p;
	}
	if (total > FTM_SMALL_MAX)
		return large_alloc(total, FTM_ALIGN, true);
	void *p = ftm_malloc(total);
	if (p)
		memset(p, 0, total);
	return p;
}

/* The size asked for and the room (chunk or mapping) of a live block of
 * ours; false (nothing reported) for anything else. */
static bool block_sizes(const void *p, size_t *size, size_t *room)
{
	struct ftm_zone *zone = pagemap_zone(p);
	if (!zone)
		return large_lookup(p, size, room);
	if (!zone_check(zone))
		return false;
	uint32_t index = zone_chunk_index(zone, p);
	uint16_t meta = index == UINT32_MAX ? 0 : meta_load(zone, index);
	if (!(meta & FTM_META_LIVE))
		return false;
	*size = zone->size - (meta & FTM_META_SLACK);
	*room = zone->size;
	return true;
}

/* Debug mode: every realloc moves, so the old block's canary is checked
 * (reported as realloc's) and it is scribbled; one history entry. The whole
 * room moves, as malloc_usable_size reported it (under guard, the bytes
 * asked for: the rest is canary). */
static void *realloc_debug(void *p, size_t size, const void *caller)
{
	size_t old, room;
	if (!block_sizes(p, &old, &room)) {
		report_bad_pointer(p, "realloc");
		errno = EINVAL;
		return NULL;
	}
	void *q = debug_block_alloc(size);
	if (!q)
		return NULL;
	size_t keep = ftm_options[FTM_OPT_GUARD] ? old : room;
	memcpy(q, p, keep < size ? keep : size);
	free_checked(p, "realloc");
	debug_on_new_block(HISTORY_REALLOC, q, size, caller);
	return q;
}

/* The size a chunk of class size `have` that must grow to `want` bytes is
 * moved to. A buffer that grows by small steps (a string builder, Python's
 * lists) would otherwise move, and be copied, at every class boundary, four
 * times per doubling: it moves to at least 1.5 times its class, so the next
 * steps fit in place. Under /usr/bin/python3 (bench/p_python.py) this takes
 * a sixth of realloc's copying away: glibc, which can grow a chunk into its
 * free neighbour, had run the script in 0.4% fewer instructions, now in the
 * same number; w_realloc -4%, peak RSS within 1%. The room stops at the
 * power of two at or above `want`: buffers that stop growing at a power of
 * two (redis's 8 KiB list nodes, I/O buffers) would otherwise end in the
 * class above it, a fifth of each wasted (redis-benchmark lpush: 67.4 MB
 * of chunks for 54 MB of nodes). A SMALL chunk never grows into LARGE for
 * the room alone. */
static size_t realloc_room(size_t have, size_t want)
{
	if (want <= have || want >= FTM_SMALL_MAX)
		return want;
	size_t room = have + have / 2;
	size_t power = (size_t)1 << (64 - __builtin_clzl(want - 1));
	if (room > power)
		room = power;
	return room > want ? room : want;
}

/* A zone chunk stays where it is while the new size keeps its class or
 * still uses more than half of it; otherwise it moves to a class with room
 * to grow (realloc_room). */
static void *realloc_small(void *p, struct ftm_zone *zone, uint32_t index, uint16_t state,
			   size_t size)
{
	const struct ftm_class *c = &ftm_classes[zone->cls];
	if (size <= c->size && (size_class(size) == zone->cls || size > c->size / 2)) {
		/* a free racing with this realloc wins or loses as a whole */
		if (!meta_replace(zone, index, state, (uint16_t)(FTM_META_LIVE | (c->size - size)))) {
			report_bad_pointer(p, "realloc");
			errno = EINVAL;
			return NULL;
		}
		return p;
	}
	size_t room = realloc_room(c->size, size);
	void *q = ftm_malloc(room);
	if (!q)
		return NULL;
	if (room != size)
		chunk_set_size(q, size);
	memcpy(q, p, size < c->size ? size : c->size);
	ftm_free(p);
	return q;
}

FTM_EXPORT void *ftm_realloc(void *p, size_t size)
{
	if (FTM_UNLIKELY(ftm_debug) && p && size)
		return realloc_debug(p, size, FTM_CALLER);
	if (!p)
		return FTM_UNLIKELY(ftm_debug) ? malloc_debug(size, FTM_CALLER) : ftm_malloc(size);
	if (size == 0) {
		free_slow(p, "realloc");
		return NULL;
	}
	struct ftm_zone *zone = pagemap_zone(p);
	if (zone) {
		uint32_t index = zone_check(zone) ? zone_chunk_index(zone, p) : UINT32_MAX;
		uint16_t state = index == UINT32_MAX ? 0 : meta_load(zone, index);
		if (state & FTM_META_LIVE)
			return realloc_small(p, zone, index, state, size);
	} else if (size > FTM_SMALL_MAX) {
		void *moved;
		if (large_realloc(p, size, &moved))
			return moved;
	} else {
		size_t old, usable;
		if (large_lookup(p, &old, &usable)) {
			/* a LARGE block can be smaller than the new size (an aligned
			 * one): copy what it holds, no more */
			void *q = ftm_malloc(size);
			if (q) {
				memcpy(q, p, size < usable ? size : usable);
				ftm_free(p);
			}
			return q;
		}
	}
	/* not a live pointer of ours: say so, leave it alone */
	report_bad_pointer(p, "realloc");
	errno = EINVAL;
	return NULL;
}

FTM_EXPORT void *ftm_reallocarray(void *p, size_t count, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(count, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return ftm_realloc(p, total);
}

static bool power_of_two(size_t n)
{
	return n && !(n & (n - 1));
}

/* The smallest class that holds want bytes and whose chunks all start at
 * a multiple of align. A zone is aligned to its own size (64 KiB or more)
 * and chunk i starts i class sizes into it, so the class size must be a
 * multiple of align; the power of two at or above want is one, so a few
 * classes at most are passed over (want 130, align 64: 144, 160, then 192,
 * where rounding up to a power of two took 256). */
static inline uint32_t aligned_class(size_t want, size_t align)
{
	uint32_t cls = want <= 1024 ? size_class_small(want) : size_class(want);
	while (ftm_classes[cls].size & (align - 1))
		cls++;
	return cls;
}

/* Whether a block of want bytes aligned to align (a power of two) comes
 * from a zone. Past 4 KiB of alignment a LARGE mapping wastes less: memalign
 * (16 KiB, 20 000) would take a 32 KiB chunk, where the mapping takes 24
 * KiB, its header page included. Up to it the aligned class is at most the
 * power of two at or above want, and the bytes of it not asked for fit the
 * 14 bits of a chunk's state. */
static bool aligned_in_zone(size_t want, size_t align)
{
	return want <= FTM_SMALL_MAX && align <= 4096;
}

/* The aligned allocators' fast path: a chunk of the aligned class from the
 * thread cache's bin, or NULL when the slow way must serve the block (an
 * empty bin, before start-up, debug mode, a block no zone holds). It
 * touches neither errno nor a lock. */
static inline void *aligned_from_bin(size_t size, size_t align)
{
	size_t want = size < align ? align : size;
	if (FTM_UNLIKELY(!aligned_in_zone(want, align) ||
			 !__atomic_load_n(&ftm_ready, __ATOMIC_ACQUIRE) || ftm_debug))
		return NULL;
	struct ftm_bin *bin = &ftm_tls_tcache->bins[aligned_class(want, align)];
	return FTM_LIKELY(bin->top != bin->base) ? bin_pop(bin, size) : NULL;
}

/* size bytes aligned to align (a power of two), when aligned_from_bin could
 * not: in debug mode a LARGE mapping for every block aligned past 16 bytes
 * (zone chunks are padded for the canary), else a zone chunk up to 4 KiB of
 * alignment and 32 KiB of block (its bin refilled), else a LARGE mapping. */
FTM_COLD static void *malloc_aligned_slow(size_t size, size_t align, const void *caller)
{
	ftm_ensure_init();
	size_t want = size < align ? align : size;
	if (FTM_UNLIKELY(ftm_debug)) {
		if (align <= FTM_ALIGN)
			return malloc_debug(size, caller);
	} else if (aligned_in_zone(want, align)) {
		return class_alloc(aligned_class(want, align), size);
	}
	void *p = large_alloc(size, align, false);
	if (p && FTM_UNLIKELY(ftm_debug)) {
		debug_on_alloc(p, size, true);
		debug_on_new_block(HISTORY_MALLOC, p, size, caller);
	}
	return p;
}

static inline void *malloc_aligned(size_t size, size_t align, const void *caller)
{
	void *p = aligned_from_bin(size, align);
	return FTM_LIKELY(p != NULL) ? p : malloc_aligned_slow(size, align, caller);
}

/* errno survives a success, as glibc's does: only the slow way can touch it. */
FTM_EXPORT int ftm_posix_memalign(void **out, size_t align, size_t size)
{
	if (!power_of_two(align) || align % sizeof(void *))
		return EINVAL;
	void *p = aligned_from_bin(size, align);
	if (FTM_UNLIKELY(!p)) {
		int saved = errno;
		if (!(p = malloc_aligned_slow(size, align, FTM_CALLER)))
			return ENOMEM;
		errno = saved;
	}
	*out = p;
	return 0;
}

FTM_EXPORT void *ftm_aligned_alloc(size_t align, size_t size)
{
	if (!power_of_two(align)) {
		errno = EINVAL;
		return NULL;
	}
	return malloc_aligned(size, align, FTM_CALLER);
}

FTM_EXPORT void *ftm_memalign(size_t align, size_t size)
{
	if (align > ((size_t)1 << 62)) {
		errno = EINVAL;
		return NULL;
	}
	if (!power_of_two(align))
		align = align ? (size_t)1 << (64 - __builtin_clzl(align)) : 1;
	return malloc_aligned(size, align, FTM_CALLER);
}

FTM_EXPORT void *ftm_valloc(size_t size)
{
	ftm_ensure_init();
	return malloc_aligned(size, ftm_page_size, FTM_CALLER);
}

FTM_EXPORT void *ftm_pvalloc(size_t size)
{
	ftm_ensure_init();
	size_t rounded;
	if (__builtin_add_overflow(size, ftm_page_size - 1, &rounded)) {
		errno = ENOMEM;
		return NULL;
	}
	rounded &= ~(ftm_page_size - 1);
	return malloc_aligned(rounded ? rounded : ftm_page_size, ftm_page_size, FTM_CALLER);
}

FTM_COLD static size_t usable_size_slow(void *p)
{
	size_t size, room;
	if (!p)
		return 0;
	/* under FT_MALLOC_GUARD the bytes past the request are the canary */
	if (block_sizes(p, &size, &room))
		return ftm_options[FTM_OPT_GUARD] ? size : room;
	report_bad_pointer(p, "malloc_usable_size");
	return 0;
}

/* Programs that count their own memory call it around every malloc and
 * free (redis's used_memory), so a live chunk outside debug mode takes
 * free's checks and no call: under redis-benchmark it had cost more than
 * malloc and free together (perf, 5.1% of redis-server's time). */
FTM_EXPORT size_t ftm_malloc_usable_size(void *p)
{
	struct ftm_zone *zone = pagemap_zone(p);
	if (FTM_LIKELY(zone && zone_sealed(zone) && !ftm_debug)) {
		uint64_t index = zone_chunk_slot(zone, p);
		if (FTM_LIKELY(index < zone->capacity && (meta_load(zone, index) & FTM_META_LIVE)))
			return zone->size;
	}
	return usable_size_slow(p);
}

/* Flushes the calling thread's cache and gives every empty zone and cached
 * LARGE mapping back to the OS; returns 1 when memory was released, as glibc
 * does. */
FTM_EXPORT int ftm_malloc_trim(size_t pad)
{
	(void)pad;
	ftm_ensure_init();
	struct ftm_tcache *tc = ftm_tls_tcache;
	if (tc != &ftm_tcache_boot && tc != &ftm_tcache_dead)
		tcache_flush_all(tc);
	size_t released = arena_trim();
	return (released + large_trim()) > 0;
}

FTM_OVERRIDE(calloc, ftm_calloc)
FTM_OVERRIDE(__libc_calloc, ftm_calloc)
FTM_OVERRIDE(realloc, ftm_realloc)
FTM_OVERRIDE(__libc_realloc, ftm_realloc)
FTM_OVERRIDE(reallocarray, ftm_reallocarray)
FTM_OVERRIDE(posix_memalign, ftm_posix_memalign)
FTM_OVERRIDE(aligned_alloc, ftm_aligned_alloc)
FTM_OVERRIDE(memalign, ftm_memalign)
FTM_OVERRIDE(__libc_memalign, ftm_memalign)
FTM_OVERRIDE(valloc, ftm_valloc)
FTM_OVERRIDE(pvalloc, ftm_pvalloc)
FTM_OVERRIDE(malloc_usable_size, ftm_malloc_usable_size)
FTM_OVERRIDE(malloc_trim, ftm_malloc_trim)
