/*
 * Zones: one mapping of 2^zone_shift bytes, aligned to its size, carved into
 * chunks of a single size class. Chunks are handed out from the free list of
 * returned chunks first, then carved from never-touched memory, so pages a
 * program never needed are never faulted in.
 *
 * The free list lives inside the free chunks; each link is stored XORed with
 * the process secret and the address of the link itself (safe-linking), and
 * every decoded link is checked against the zone before it is followed, so a
 * write after free cannot make malloc hand out an arbitrary address.
 *
 * Every function here runs under the owning arena's lock.
 */
#include "ftm/internal.h"

#define ZONE_MAGIC 0x7a6f6e65f7a11ce5ull

static uint64_t zone_seal(const struct ftm_zone *zone)
{
	return ZONE_MAGIC ^ (uintptr_t)zone ^ ftm_secret;
}

bool zone_check(const struct ftm_zone *zone)
{
	return zone->check == zone_seal(zone) && zone->cls < FTM_CLASS_COUNT;
}

static uintptr_t link_key(const void *chunk)
{
	return ftm_secret ^ ((uintptr_t)chunk >> 4);
}

struct ftm_zone *zone_create(struct ftm_arena *arena, uint32_t cls)
{
	size_t size = (size_t)1 << ftm_classes[cls].zone_shift;
	struct ftm_zone *zone = os_map_aligned(size, size);
	if (!zone)
		return NULL;
	if (!pagemap_register(zone, size)) {
		os_unmap(zone, size);
		return NULL;
	}
	/* the mapping is zeroed: every chunk starts FTM_META_FREE */
	const struct ftm_class *c = &ftm_classes[cls];
	zone->first = (uintptr_t)zone + c->data_offset;
	zone->recip = c->recip;
	zone->size = c->size;
	zone->capacity = c->capacity;
	zone->check = zone_seal(zone);
	zone->arena = arena;
	zone->cls = cls;
	return zone;
}

void zone_destroy(struct ftm_zone *zone)
{
	size_t size = (size_t)1 << ftm_classes[zone->cls].zone_shift;
	pagemap_unregister(zone, size);
	os_unmap(zone, size);
}

/* The chunk after `chunk` on the free list, or NULL at the end. A link that
 * does not decode to a free chunk of this zone means the chunk was written
 * after it was freed: report it and drop the rest of the list (those chunks
 * are leaked, which is safe; following the link is not). */
static void *free_list_next(struct ftm_zone *zone, void *chunk)
{
	uintptr_t next = *(uintptr_t *)chunk ^ link_key(chunk);
	if (!next)
		return NULL;
	uint32_t index = zone_chunk_index(zone, (void *)next);
	if (index == UINT32_MAX || index >= zone->carved || meta_load(zone, index) != FTM_META_FREE) {
		report_error("malloc", "corrupted free list in zone of", zone);
		return NULL;
	}
	return (void *)next;
}

/* Hands up to `want` chunks (as tokens) to a thread cache; they become
 * FTM_META_CACHED. */
uint32_t zone_take(struct ftm_zone *zone, uintptr_t *out, uint32_t want)
{
	uint32_t got = 0;
	void *chunk = (void *)(zone->free_list ? zone->free_list ^ link_key(&zone->free_list) : 0);
	while (got < want && chunk) {
		void *next = free_list_next(zone, chunk);
		uint32_t index = zone_chunk_index(zone, chunk);
		meta_store(zone, index, FTM_META_CACHED);
		out[got++] = token_make(chunk, index);
		chunk = next;
	}
	zone->free_list = chunk ? (uintptr_t)chunk ^ link_key(&zone->free_list) : 0;
	while (got < want && zone->carved < zone->capacity) {
		uint32_t index = zone->carved++;
		meta_store(zone, index, FTM_META_CACHED);
		out[got++] = token_make(zone_chunk(zone, index), index);
	}
	zone->used += got;
	return got;
}

/* Takes back one chunk (cached or live) from a thread. */
void zone_put(struct ftm_zone *zone, void *chunk, uint32_t index)
{
	void *head = (void *)(zone->free_list ? zone->free_list ^ link_key(&zone->free_list) : 0);
	*(uintptr_t *)chunk = (uintptr_t)head ^ link_key(chunk);
	zone->free_list = (uintptr_t)chunk ^ link_key(&zone->free_list);
	meta_store(zone, index, FTM_META_FREE);
	zone->used--;
}
