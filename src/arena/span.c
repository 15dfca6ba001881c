/*
 * Spans: the address ranges zones live on, cut from the arena's segments by
 * a buddy system (struct ftm_segment). A zone of 2^shift bytes takes a free
 * range of that order, splitting a bigger one if it must; a zone that ends
 * gives its range back, and free buddies merge. Free ranges hold no pages
 * (span_give discards them), except for the moment arena.c hands an idle
 * zone's range straight to another zone.
 *
 * Mapping a zone on its own cost one mmap and one munmap (to trim it to its
 * alignment): jq over 25 MB of JSON made 4 966 mmap and 4 847 munmap
 * calls, now 203 and 160 (bench/README.md). And a range that fits any zone
 * size lets a bigger zone be assembled from smaller idle ones, and an idle
 * zone be cut into smaller ones, with their pages (arena.c: arena_grow).
 *
 * Every function here runs under the owning arena's lock.
 */
#include "ftm/internal.h"

#define SEGMENT_BYTES ((size_t)1 << FTM_SEGMENT_SHIFT)
#define TOP_ORDER (FTM_ZONE_SHIFTS - 1)

static uint32_t order_of(uint32_t shift)
{
	return shift - FTM_ZONE_MIN_SHIFT;
}

static struct ftm_segment *segment_of(const struct ftm_arena *arena, uintptr_t addr)
{
	uintptr_t base = addr & ~(uintptr_t)(SEGMENT_BYTES - 1);
	for (struct ftm_segment *seg = arena->segments; seg; seg = seg->next)
		if (seg->base == base)
			return seg;
	return NULL;
}

/* Index of the range of `order` that holds addr in its segment. */
static uint32_t range_index(const struct ftm_segment *seg, uintptr_t addr, uint32_t order)
{
	return (uint32_t)((addr - seg->base) >> (FTM_ZONE_MIN_SHIFT + order));
}

static bool range_free(const struct ftm_segment *seg, uint32_t order, uint32_t index)
{
	return seg->free[order] >> index & 1;
}

/* The order of the free range that holds [addr, addr + 2^shift), or
 * FTM_ZONE_SHIFTS when some of it is taken. */
static uint32_t free_order_at(const struct ftm_segment *seg, uintptr_t addr, uint32_t shift)
{
	for (uint32_t order = order_of(shift); order <= TOP_ORDER; order++)
		if (range_free(seg, order, range_index(seg, addr, order)))
			return order;
	return FTM_ZONE_SHIFTS;
}

bool span_is_free(const struct ftm_arena *arena, uintptr_t addr, uint32_t shift)
{
	const struct ftm_segment *seg = segment_of(arena, addr);
	return seg && free_order_at(seg, addr, shift) <= TOP_ORDER;
}

bool span_take_at(struct ftm_arena *arena, uintptr_t addr, uint32_t shift)
{
	struct ftm_segment *seg = segment_of(arena, addr);
	if (!seg)
		return false;
	uint32_t want = order_of(shift);
	uint32_t order = free_order_at(seg, addr, shift);
	if (order > TOP_ORDER)
		return false;
	seg->free[order] &= ~(1ull << range_index(seg, addr, order));
	/* the halves not holding addr stay free, one per order on the way down */
	while (order-- > want)
		seg->free[order] |= 1ull << (range_index(seg, addr, order) ^ 1);
	return true;
}

/* A new segment, whole and free; NULL when out of memory. */
FTM_COLD static struct ftm_segment *segment_add(struct ftm_arena *arena)
{
	struct ftm_segment *seg = arena->spare_segments;
	if (seg)
		arena->spare_segments = seg->next;
	else if (!(seg = zone_header_space(arena, sizeof(*seg))))
		return NULL;
	void *base = os_map_aligned(SEGMENT_BYTES, SEGMENT_BYTES);
	if (!base) {
		seg->next = arena->spare_segments;
		arena->spare_segments = seg;
		return NULL;
	}
	*seg = (struct ftm_segment){.base = (uintptr_t)base, .next = arena->segments};
	seg->free[TOP_ORDER] = 1;
	arena->segments = seg;
	arena->stats.bytes_mapped += SEGMENT_BYTES;
	return seg;
}

static void segment_remove(struct ftm_arena *arena, struct ftm_segment *seg)
{
	struct ftm_segment **link = &arena->segments;
	while (*link != seg)
		link = &(*link)->next;
	*link = seg->next;
	os_unmap_aligned((void *)seg->base, SEGMENT_BYTES);
	arena->stats.bytes_mapped -= SEGMENT_BYTES;
	seg->next = arena->spare_segments;
	arena->spare_segments = seg;
}

/* The smallest free range of at least the order asked for, in any segment,
 * so that big ranges stay whole for big zones. */
uintptr_t span_take(struct ftm_arena *arena, uint32_t shift)
{
	for (uint32_t order = order_of(shift); order <= TOP_ORDER; order++)
		for (struct ftm_segment *seg = arena->segments; seg; seg = seg->next)
			if (seg->free[order]) {
				uint32_t index = (uint32_t)__builtin_ctzll(seg->free[order]);
				uintptr_t addr = seg->base + ((uintptr_t)index << (FTM_ZONE_MIN_SHIFT + order));
				span_take_at(arena, addr, shift);
				return addr;
			}
	struct ftm_segment *seg = segment_add(arena);
	if (!seg)
		return 0;
	span_take_at(arena, seg->base, shift);
	return seg->base;
}

/* Gives [addr, addr + 2^shift) back, merging it with its free buddies. Its
 * pages go back to the OS, the whole segment if nothing else in it is
 * taken, unless `keep_pages`: the caller takes a range holding it again
 * before it lets go of the lock. */
void span_give(struct ftm_arena *arena, uintptr_t addr, uint32_t shift, bool keep_pages)
{
	struct ftm_segment *seg = segment_of(arena, addr);
	uint32_t order = order_of(shift);
	uint32_t index = range_index(seg, addr, order);
	while (order < TOP_ORDER && range_free(seg, order, index ^ 1)) {
		seg->free[order] &= ~(1ull << (index ^ 1));
		index >>= 1;
		order++;
	}
	if (order == TOP_ORDER && !keep_pages) {
		segment_remove(arena, seg);
		return;
	}
	seg->free[order] |= 1ull << index;
	if (!keep_pages)
		os_discard((void *)addr, (size_t)1 << shift);
}
