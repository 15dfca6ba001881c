/*
 * Zones: one mapping of 2^zone_shift bytes, aligned to its size, carved into
 * chunks of a single size class. Chunks are handed out from the free list of
 * returned chunks first, then carved from never-touched memory, so pages a
 * program never needed are never faulted in.
 *
 * The free list lives out of line, in the per-chunk state array: a free
 * chunk's state is the index + 1 of the next free chunk (0 ends the list).
 * Nothing of the allocator's is ever stored inside a chunk, so a write after
 * free cannot steer malloc anywhere, and returning or refilling a batch
 * touches the dense state array instead of one cache line per chunk.
 *
 * Every function here runs under the owning arena's lock.
 */
#include "ftm/internal.h"

#define ZONE_MAGIC 0x7a6f6e65f7a11ce5ull

uint64_t ftm_zone_key;

void zone_init_key(void)
{
	ftm_zone_key = ZONE_MAGIC ^ ftm_secret;
}

bool zone_check(const struct ftm_zone *zone)
{
	return zone_sealed(zone) && zone->cls < FTM_CLASS_COUNT;
}

/* ---- retired zones ---------------------------------------------------------
 * A zone given back keeps its address range: its pages are discarded (the
 * memory goes back to the OS and the range reads as zeros), and the next
 * zone of the same size made by the arena reuses the range. A free racing
 * with the zone's end may have looked the zone up in the page map just
 * before it was unregistered: it then reads a header of zeros, whose seal
 * fails, instead of faulting on an unmapped page (tests/unit/zone.c). Past
 * FTM_RETIRED_MAX per size, a zone is unmapped. */

static uintptr_t retired_take(struct ftm_arena *arena, uint32_t shift)
{
	uint32_t row = shift - FTM_ZONE_MIN_SHIFT;
	if (!arena->retired_count[row])
		return 0;
	return arena->retired[row][--arena->retired_count[row]];
}

static bool retired_put(struct ftm_arena *arena, uintptr_t base, uint32_t shift)
{
	uint32_t row = shift - FTM_ZONE_MIN_SHIFT;
	if (arena->retired_count[row] == FTM_RETIRED_MAX)
		return false;
	arena->retired[row][arena->retired_count[row]++] = base;
	os_discard((void *)base, (size_t)1 << shift);
	return true;
}

/* Where the header of the zone mapped at `base` goes: a cache line chosen
 * by hashing the base, so that the headers (and the state arrays after
 * them) of the zones a program uses at once spread over FTM_ZONE_COLOURS
 * cache sets instead of all landing in the one set of their 64 KiB
 * alignment, where eight of them already evict each other from L1 and L2.
 * The same base always gets the same colour. */
static struct ftm_zone *zone_at(uintptr_t base)
{
	uint64_t colour = ((base >> FTM_ZONE_MIN_SHIFT) * 0x9e3779b97f4a7c15ull) >> 59;
	_Static_assert(FTM_ZONE_COLOURS == 32, "the hash keeps 5 bits");
	return (struct ftm_zone *)(base + colour * 64);
}

struct ftm_zone *zone_create(struct ftm_arena *arena, uint32_t cls)
{
	uint32_t shift = ftm_classes[cls].zone_shift;
	size_t size = (size_t)1 << shift;
	uintptr_t base = retired_take(arena, shift);
	if (!base && !(base = (uintptr_t)os_map_aligned(size, size)))
		return NULL;
	struct ftm_zone *zone = zone_at(base);
	if (!pagemap_register(base, size, zone)) {
		os_unmap((void *)base, size);
		return NULL;
	}
	/* the range is zeroed (fresh or discarded): every chunk starts free */
	const struct ftm_class *c = &ftm_classes[cls];
	zone->first = base + c->data_offset;
	zone->recip = c->recip;
	zone->size = c->size;
	zone->capacity = c->capacity;
	zone->check = (uintptr_t)zone ^ ftm_zone_key;
	zone->arena = arena;
	zone->cls = cls;
	zone->bin_offset = (uint32_t)offsetof(struct ftm_tcache, bins[cls]);
	return zone;
}

void zone_destroy(struct ftm_zone *zone)
{
	uint32_t shift = ftm_classes[zone->cls].zone_shift;
	uintptr_t base = zone_base(zone);
	pagemap_unregister(base, (size_t)1 << shift);
	if (!retired_put(zone->arena, base, shift))
		os_unmap((void *)base, (size_t)1 << shift);
}

/* The free chunk after `index`, or 0 at the end of the list. A link that
 * does not name a carved chunk in a free state means the state array was
 * overwritten: report it and end the list there (the chunks after it leak,
 * which is safe; following the link could hand out a live chunk). */
static uint32_t free_list_next(struct ftm_zone *zone, uint32_t index)
{
	uint32_t next = meta_load(zone, index);
	if (next && (next > zone->carved || meta_load(zone, next - 1) > FTM_META_FREE_MAX)) {
		report_error("malloc", "corrupted free list in zone of", zone);
		return 0;
	}
	return next;
}

/* Hands up to `want` chunks, with their state slots, to a thread cache;
 * they become FTM_META_CACHED. */
uint32_t zone_take(struct ftm_zone *zone, void **chunk, uint16_t **meta, uint32_t want)
{
	uint32_t got = 0;
	while (got < want && zone->free_head) {
		uint32_t i = zone->free_head - 1;
		zone->free_head = free_list_next(zone, i);
		meta_store(zone, i, FTM_META_CACHED);
		chunk[got] = zone_chunk(zone, i);
		meta[got++] = meta_slot(zone, i);
	}
	while (got < want && zone->carved < zone->capacity) {
		uint32_t i = zone->carved++;
		meta_store(zone, i, FTM_META_CACHED);
		chunk[got] = zone_chunk(zone, i);
		meta[got++] = meta_slot(zone, i);
	}
	zone->used += got;
	return got;
}

/* Takes back one chunk (cached or live) from a thread. */
void zone_put(struct ftm_zone *zone, uint32_t index)
{
	meta_store(zone, index, (uint16_t)zone->free_head);
	zone->free_head = index + 1;
	zone->used--;
}
