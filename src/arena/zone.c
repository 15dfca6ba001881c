/*
 * Zones: a range of 2^zone_shift bytes, aligned to its size and cut from
 * the arena's segments (span.c), carved into chunks of a single size
 * class, with its header kept out of line. Chunks
 * are handed out from the free list of returned chunks first, then carved
 * from never-touched memory, so pages a program never needed are never
 * faulted in.
 *
 * The free list lives out of line, in the per-chunk state array: a free
 * chunk's state is the index + 1 of the next free chunk (0 ends the list).
 * Nothing of the allocator's is ever stored inside a chunk, so a write after
 * free cannot steer malloc anywhere, and returning or refilling a batch
 * touches the dense state array instead of one cache line per chunk.
 *
 * Every function here runs under the owning arena's lock.
 */
#include <string.h>

#include "ftm/internal.h"

#define ZONE_MAGIC 0x7a6f6e65f7a11ce5ull

uint64_t ftm_zone_key;

void zone_init_key(void)
{
	ftm_zone_key = ZONE_MAGIC ^ ftm_secret;
}

/* ---- headers ---------------------------------------------------------------
 * An arena packs the headers of its zones (each with its meta, in whole
 * cache lines) into blocks of FTM_HEADER_BLOCK bytes that it never unmaps:
 * a free racing with a zone's end, which looked the zone up in the page map
 * just before it was unregistered, still reads mapped memory, and finds the
 * seal broken. A header outlives its zone on a spare list of its class and
 * only ever serves another zone of that class, so even a racing free that
 * reads it after it was reused computes with the geometry its meta array
 * was sized for: its chunk index stays below capacity (tests/unit/zone.c). */

/* `bytes` from the arena's header blocks, for good: zone headers and
 * segment descriptors (span.c), each on its own cache lines, so that free
 * reads one line of a zone header. */
void *zone_header_space(struct ftm_arena *arena, size_t bytes)
{
	bytes = (bytes + 63) & ~(size_t)63;
	if ((size_t)(arena->header_end - arena->header_next) < bytes) {
		char *block = os_map(FTM_HEADER_BLOCK);
		if (!block)
			return NULL;
		arena->header_next = block;
		arena->header_end = block + FTM_HEADER_BLOCK;
		arena->stats.bytes_mapped += FTM_HEADER_BLOCK;
	}
	void *space = arena->header_next;
	arena->header_next += bytes;
	return space;
}

/* A header for a zone of class cls of the arena (a spare one already is),
 * not yet a zone: zone_open makes it one, zone_unreserve gives it back. */
struct ftm_zone *zone_reserve(struct ftm_arena *arena, uint32_t cls)
{
	struct ftm_zone *zone = arena->spare_header[cls];
	if (zone) {
		arena->spare_header[cls] = zone->avail_next;
		zone->avail_next = NULL;
		return zone;
	}
	if (!(zone = zone_header_space(arena, ftm_classes[cls].header_bytes)))
		return NULL;
	zone->arena = arena;
	zone->cls = cls;
	return zone;
}

/* Breaks the seal first, then leaves the header as a fresh one reads: the
 * counts and lists zero, and the meta of every chunk ever carved back to
 * zero (meta past `carved` was never written). */
static void header_give(struct ftm_zone *zone)
{
	struct ftm_arena *arena = zone->arena;
	__atomic_store_n(&zone->check, 0, __ATOMIC_RELEASE);
	memset(zone->meta, 0, (size_t)zone->carved * sizeof(uint16_t));
	zone->all_next = zone->all_prev = zone->avail_prev = NULL;
	zone->used = zone->carved = zone->in_avail = zone->free_head = zone->warm_bytes = 0;
	zone->avail_next = arena->spare_header[zone->cls];
	arena->spare_header[zone->cls] = zone;
}

void zone_unreserve(struct ftm_zone *zone)
{
	header_give(zone);
}

/* ---- zones on their ranges ---------------------------------------------- */

/* Makes a reserved header the zone on [base, base + the class's zone size),
 * a range taken from the arena's spans. The header is complete before its
 * seal is set, and the seal before the page map names the zone: a free
 * that finds the zone finds it whole. NULL, the header and range given
 * back, when the page map cannot cover the range. */
struct ftm_zone *zone_open(struct ftm_zone *zone, uintptr_t base)
{
	uint32_t cls = zone->cls;
	const struct ftm_class *c = &ftm_classes[cls];
	size_t size = (size_t)1 << c->zone_shift;
	zone->first = base;
	zone->inverse = c->inverse;
	zone->index_shift = c->index_shift;
	zone->size = c->size;
	zone->capacity = c->capacity;
	zone->bin_offset = (uint32_t)offsetof(struct ftm_tcache, bins[cls]);
	__atomic_store_n(&zone->check, ftm_zone_key, __ATOMIC_RELEASE);
	if (!pagemap_register(base, size, zone)) {
		header_give(zone);
		span_give(zone->arena, base, c->zone_shift, false);
		return NULL;
	}
	return zone;
}

struct ftm_zone *zone_create(struct ftm_arena *arena, uint32_t cls)
{
	struct ftm_zone *zone = zone_reserve(arena, cls);
	if (!zone)
		return NULL;
	uintptr_t base = span_take(arena, ftm_classes[cls].zone_shift);
	if (!base) {
		header_give(zone);
		return NULL;
	}
	return zone_open(zone, base);
}

/* Ends a zone: out of the page map, its header spare, its range back to the
 * arena's spans, with its pages when `keep_pages` (the caller opens a zone
 * on them before it unlocks the arena). */
void zone_close(struct ftm_zone *zone, bool keep_pages)
{
	struct ftm_arena *arena = zone->arena;
	uint32_t shift = ftm_classes[zone->cls].zone_shift;
	uintptr_t base = zone_base(zone);
	pagemap_unregister(base, (size_t)1 << shift);
	header_give(zone);
	span_give(arena, base, shift, keep_pages);
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
uint32_t zone_take(struct ftm_zone *zone, struct ftm_slot *out, uint32_t want)
{
	uint32_t got = 0;
	while (got < want && zone->free_head) {
		uint32_t i = zone->free_head - 1;
		zone->free_head = free_list_next(zone, i);
		meta_store(zone, i, FTM_META_CACHED);
		out[got++] = (struct ftm_slot){zone_chunk(zone, i), meta_slot(zone, i)};
	}
	/* carving steps a chunk and its slot along instead of computing them
	 * from the index: a build-up phase (jq parsing its input) carves every
	 * chunk it gets, and this loop was 20 instructions a chunk */
	uint32_t fresh = zone->capacity - zone->carved;
	if (fresh > want - got)
		fresh = want - got;
	char *chunk = zone_chunk(zone, zone->carved);
	uint16_t *meta = meta_slot(zone, zone->carved);
	size_t size = zone->size;
	for (struct ftm_slot *slot = out + got, *end = slot + fresh; slot < end; slot++) {
		__atomic_store_n(meta, FTM_META_CACHED, __ATOMIC_RELAXED);
		*slot = (struct ftm_slot){chunk, meta++};
		chunk += size;
	}
	zone->carved += fresh;
	zone->used += got + fresh;
	return got + fresh;
}

/* The pages that the chunks carved since the zone had `from` carved cover
 * whole and that were never touched: the page a carve ends in is left to
 * fault in on first use, as the chunks past the carve share it and may
 * never be handed out; so is the start of a recycled range, still
 * resident (warm_bytes). */
struct ftm_page_run zone_carved_pages(const struct ftm_zone *zone, uint32_t from)
{
	size_t page = ftm_page_size;
	size_t start = ((size_t)from * zone->size + page - 1) & ~(page - 1);
	size_t end = ((size_t)zone->carved * zone->size) & ~(page - 1);
	if (start < zone->warm_bytes)
		start = zone->warm_bytes;
	return (struct ftm_page_run){zone_chunk(zone, 0) + start, end > start ? end - start : 0};
}

/* Takes back chunks[0], of this zone, and those after it that are this
 * zone's too (their state slots lie in its array), into its free list;
 * returns how many. A thread's cache flushes chunks mostly in runs from one
 * zone, so the zone's fields are written once per run. */
uint32_t zone_put_run(struct ftm_zone *zone, const struct ftm_slot *chunks, uint32_t count)
{
	uintptr_t meta = (uintptr_t)zone->meta;
	uintptr_t meta_bytes = (uintptr_t)zone->capacity * sizeof(uint16_t);
	uint16_t head = (uint16_t)zone->free_head;
	const struct ftm_slot *slot = chunks, *end = chunks + count;
	do {
		uintptr_t at = (uintptr_t)slot->meta - meta;
		__atomic_store_n(slot->meta, head, __ATOMIC_RELAXED);
		head = (uint16_t)(at / sizeof(uint16_t) + 1);
	} while (++slot < end && (uintptr_t)slot->meta - meta < meta_bytes);
	uint32_t n = (uint32_t)(slot - chunks);
	zone->free_head = head;
	zone->used -= n;
	return n;
}
