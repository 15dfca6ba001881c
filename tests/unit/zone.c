/*
 * Zones and the page map: chunks are carved lazily and in order from the
 * zone's first byte, come back LIFO through the out-of-line free list, a
 * write after free or past the last chunk changes nothing the allocator
 * reads, a corrupted link is reported and never followed, the page map
 * names the zone for every granule it covers and forgets it once the zone
 * is gone, and a header outlives its zone only to serve its class again.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <string.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

static void init(void)
{
	ftm_ensure_init();
}

TestSuite(zone, .init = init);

/* Gives one chunk back, as a flush of one does. */
static void put(struct ftm_zone *zone, uint32_t index)
{
	struct ftm_slot one = {zone_chunk(zone, index), meta_slot(zone, index)};
	cr_assert_eq(zone_put_run(zone, &one, 1), 1);
}

Test(zone, carves_in_order_and_registers)
{
	uint32_t cls = size_class(100);
	const struct ftm_class *c = &ftm_classes[cls];
	struct ftm_zone *zone = zone_create(&ftm_arenas[0], cls);
	cr_assert_not_null(zone);
	size_t bytes = (size_t)1 << c->zone_shift;
	uintptr_t base = zone_base(zone);
	cr_assert_eq(base % bytes, 0, "zone aligned to its size");
	cr_assert_eq(zone->first, base, "chunk 0 at the first byte");
	cr_assert_eq(zone->capacity, bytes / c->size);
	cr_assert_eq((uintptr_t)zone % 64, 0, "header on a cache line");
	cr_assert((uintptr_t)&zone->meta[zone->capacity] <= base || (uintptr_t)zone >= base + bytes,
		  "header and state array out of the zone's mapping");
	cr_assert_null(pagemap_zone(zone), "nor in any other zone");
	for (size_t off = 0; off < bytes; off += 4096)
		cr_assert_eq(pagemap_zone((char *)base + off), zone);
	cr_assert_eq(zone_check(zone), true);
	struct ftm_zone *second = zone_create(&ftm_arenas[0], cls);
	cr_assert_not_null(second);
	cr_assert_eq((uintptr_t)second % 64, 0, "the next header too, after the segment's descriptor");

	struct ftm_slot chunks[10];
	cr_assert_eq(zone_take(zone, chunks, 10), 10);
	for (uint32_t i = 0; i < 10; i++) {
		cr_assert_eq(chunks[i].meta, &zone->meta[i]);
		cr_assert_eq(chunks[i].chunk, zone_chunk(zone, i));
		cr_assert_eq(meta_load(zone, i), FTM_META_CACHED);
	}
	cr_assert_eq(zone->carved, 10);
	cr_assert_eq(zone->used, 10);

	put(zone, 3);
	put(zone, 7);
	cr_assert_eq(meta_load(zone, 7), 3 + 1, "a free chunk's state links to the next free one");
	cr_assert_eq(meta_load(zone, 3), 0, "end of the list");
	cr_assert_eq(zone->used, 8);
	struct ftm_slot again[3];
	cr_assert_eq(zone_take(zone, again, 3), 3);
	cr_assert_eq(again[0].chunk, chunks[7].chunk, "free list is LIFO");
	cr_assert_eq(again[0].meta, &zone->meta[7]);
	cr_assert_eq(again[1].chunk, chunks[3].chunk);
	cr_assert_eq(again[1].meta, &zone->meta[3]);
	cr_assert_eq(again[2].chunk, zone_chunk(zone, 10), "then carving resumes");
	cr_assert_eq(again[2].meta, &zone->meta[10]);

	zone_close(zone, false);
	cr_assert_null(pagemap_zone((void *)base));
}

Test(zone, a_flush_is_put_back_one_run_per_zone)
{
	uint32_t cls = size_class(48);
	struct ftm_zone *a = zone_create(&ftm_arenas[0], cls);
	struct ftm_zone *b = zone_create(&ftm_arenas[0], cls);
	struct ftm_slot from_a[6], from_b[2], flush[7];
	cr_assert_eq(zone_take(a, from_a, 6), 6);
	cr_assert_eq(zone_take(b, from_b, 2), 2);
	/* a's chunks 4, 1, 5, 2, then b's 1 and 0, then a's 3 */
	struct ftm_slot order[7] = {from_a[4], from_a[1], from_a[5], from_a[2], from_b[1], from_b[0], from_a[3]};
	memcpy(flush, order, sizeof(flush));

	cr_assert_eq(zone_put_run(a, flush, 7), 4, "the run ends at b's first chunk");
	cr_assert_eq(a->used, 2);
	cr_assert_eq(a->free_head, 2 + 1, "the last one put heads the list");
	cr_assert_eq(meta_load(a, 2), 5 + 1);
	cr_assert_eq(meta_load(a, 5), 1 + 1);
	cr_assert_eq(meta_load(a, 1), 4 + 1);
	cr_assert_eq(meta_load(a, 4), 0, "the first one ends it");
	cr_assert_eq(meta_load(a, 3), FTM_META_CACHED, "past the run: untouched");

	cr_assert_eq(zone_put_run(b, flush + 4, 3), 2);
	cr_assert_eq(b->used, 0);
	cr_assert_eq(b->free_head, 0 + 1);
	cr_assert_eq(meta_load(b, 0), 1 + 1);
	cr_assert_eq(zone_put_run(a, flush + 6, 1), 1);
	cr_assert_eq(a->used, 1);
	cr_assert_eq(a->free_head, 3 + 1);

	struct ftm_slot again[4];
	cr_assert_eq(zone_take(a, again, 4), 4);
	cr_assert_eq(again[0].chunk, from_a[3].chunk, "LIFO across the runs");
	cr_assert_eq(again[1].chunk, from_a[2].chunk);
	cr_assert_eq(again[2].chunk, from_a[5].chunk);
	cr_assert_eq(again[3].chunk, from_a[1].chunk);
	zone_close(a, false);
	zone_close(b, false);
}

Test(zone, takes_everything_then_stops)
{
	uint32_t cls = FTM_CLASS_COUNT - 1;
	const struct ftm_class *c = &ftm_classes[cls];
	struct ftm_zone *zone = zone_create(&ftm_arenas[0], cls);
	struct ftm_slot chunks[256];
	cr_assert_eq(zone_take(zone, chunks, 256), c->capacity);
	cr_assert_eq(chunks[c->capacity - 1].meta, &zone->meta[c->capacity - 1]);
	cr_assert_eq(zone_take(zone, chunks, 1), 0);
	zone_close(zone, false);
}

Test(zone, write_after_free_is_harmless)
{
	uint32_t cls = size_class(64);
	struct ftm_zone *zone = zone_create(&ftm_arenas[0], cls);
	struct ftm_slot chunks[4];
	cr_assert_eq(zone_take(zone, chunks, 4), 4);
	put(zone, 0);
	put(zone, 1);
	/* the program writes into chunks it freed: the allocator keeps
	 * nothing there, so the next chunks handed out are unchanged */
	memset(chunks[0].chunk, 0x41, 64);
	memset(chunks[1].chunk, 0x41, 64);
	struct ftm_slot got[3];
	cr_assert_eq(zone_take(zone, got, 3), 3);
	cr_assert_eq(got[0].chunk, chunks[1].chunk);
	cr_assert_eq(got[1].chunk, chunks[0].chunk);
	cr_assert_eq(got[2].chunk, zone_chunk(zone, 4));
	cr_assert_eq(got[2].meta, &zone->meta[4]);
	zone_close(zone, false);
}

Test(zone, corrupted_link_is_reported_not_followed, .init = cr_redirect_stderr)
{
	ftm_ensure_init();
	uint32_t cls = size_class(64);
	struct ftm_zone *zone = zone_create(&ftm_arenas[0], cls);
	struct ftm_slot chunks[4];
	cr_assert_eq(zone_take(zone, chunks, 4), 4);
	put(zone, 0);
	put(zone, 1);
	/* an overflow into the state array rewrites chunk 1's link */
	meta_store(zone, 1, 3000);
	struct ftm_slot got[4];
	uint32_t n = zone_take(zone, got, 4);
	cr_assert_eq(n, 4);
	cr_assert_eq(got[0].chunk, chunks[1].chunk, "the head is still good");
	cr_assert_eq(got[1].chunk, zone_chunk(zone, 4),
		     "the bad link is dropped with the rest of the list, carving goes on");
	char want[128];
	snprintf(want, sizeof(want), "ft_malloc: malloc(): corrupted free list in zone of %p\n",
		 (void *)zone);
	cr_assert_stderr_eq_str(want);
}

/* No chunk borders a header, but a wild write can still reach one; it
 * rewrites the header from the first byte up when it comes from the header
 * below, so the seal breaks before the chunk geometry can change. Here the
 * geometry is bent the way an attacker would: chunk 0 moved down
 * by one chunk, so that p reads as its live neighbour q. free and realloc
 * must report p and leave both blocks as they are rather than trust the
 * geometry; restored, the header works again. */
Test(zone, overwritten_header_is_reported_not_trusted, .init = cr_redirect_stderr)
{
	ftm_ensure_init();
	char *p = ftm_malloc(100);
	char *q = ftm_malloc(100);
	struct ftm_zone *zone = pagemap_zone(p);
	cr_assert_eq(pagemap_zone(q), zone);
	uint32_t ip = zone_chunk_index(zone, p), iq = zone_chunk_index(zone, q);
	struct ftm_zone saved = *zone;
	zone->check ^= 0x4141414141414141ull;
	zone->first -= (uintptr_t)(q - p);
	ftm_free(p);
	cr_assert_null(ftm_realloc(p, 50));
	cr_assert(meta_load(zone, ip) & FTM_META_LIVE, "p stays live");
	cr_assert_eq(meta_load(zone, iq), saved.size - 100 + FTM_META_LIVE, "q stays live, size unchanged");
	zone->check = saved.check;
	zone->first = saved.first;
	ftm_free(p);
	ftm_free(q);
	cr_assert_not(meta_load(zone, ip) & FTM_META_LIVE, "freed once the header is whole");
	fflush(stderr);
	char want[256];
	snprintf(want, sizeof(want),
		 "ft_malloc: free(): zone header overwritten, block left alone %p\n"
		 "ft_malloc: realloc(): zone header overwritten, block left alone %p\n",
		 (void *)p, (void *)p);
	cr_assert_stderr_eq_str(want);
}

/* A zone given back leaves its range to its segment, zeroed: a free that
 * looked the zone up just before it went reads a header whose seal fails,
 * the memory is the OS's again, and the arena's next zone of that size
 * reuses the range; the next zone of that class reuses the header, as
 * fresh as a new one. (A neighbour keeps the segment mapped.) */
Test(zone, given_back_zone_reads_zero_and_is_reused)
{
	ftm_ensure_init();
	uint32_t cls = size_class(100);
	struct ftm_zone *zone = zone_create(&ftm_arenas[0], cls);
	cr_assert_not_null(zone);
	struct ftm_zone *neighbour = zone_create(&ftm_arenas[0], cls);
	cr_assert_not_null(neighbour);
	struct ftm_slot taken;
	cr_assert_eq(zone_take(zone, &taken, 1), 1);
	char *chunk = taken.chunk;
	memset(chunk, 0x5a, 100);
	put(zone, (uint32_t)(taken.meta - zone->meta));
	zone_close(zone, false);
	cr_assert_null(pagemap_zone(chunk), "no longer in the page map");
	cr_assert_not(zone_sealed(zone), "a late reader finds a broken seal");
	cr_assert_eq(chunk[0], 0, "the pages were given back");
	struct ftm_zone *again = zone_create(&ftm_arenas[0], cls);
	cr_assert_eq(again, zone, "the next zone of that class reuses the header");
	cr_assert_eq(zone_base(again), (uintptr_t)chunk, "and the next one of that size the range");
	cr_assert(zone_sealed(again));
	cr_assert_eq(pagemap_zone(chunk), again);
	cr_assert_eq(again->carved, 0);
	cr_assert_eq(again->used, 0);
	cr_assert_eq(again->free_head, 0);
	cr_assert_eq(meta_load(again, 0), 0, "chunk 0's state is fresh again");
	cr_assert_eq(zone_take(again, &taken, 1), 1);
	cr_assert_eq(taken.chunk, chunk, "carving starts over");
	zone_close(again, false);
	zone_close(neighbour, false);
}

/* Filling every byte of a zone's mapping, as an overflow running through
 * all its chunks would, leaves its header and the page map as they were. */
Test(zone, overflow_through_the_mapping_reaches_no_header)
{
	ftm_ensure_init();
	uint32_t cls = size_class(48);
	struct ftm_zone *zone = zone_create(&ftm_arenas[0], cls);
	cr_assert_not_null(zone);
	struct ftm_zone *next = zone_create(&ftm_arenas[0], cls);
	cr_assert_not_null(next);
	struct ftm_zone saved = *zone, saved_next = *next;
	memset((void *)zone_base(zone), 0x41, zone_bytes(zone));
	cr_assert(zone_check(zone) && zone_check(next));
	cr_assert_eq(memcmp(&saved, zone, sizeof(saved)), 0);
	cr_assert_eq(memcmp(&saved_next, next, sizeof(saved_next)), 0);
	cr_assert_eq(meta_load(zone, 0), 0);
	cr_assert_eq(pagemap_zone((void *)zone_base(zone)), zone);
	zone_close(next, false);
	zone_close(zone, false);
}

/* A free racing with a zone's end can read its header after the header went
 * to another zone of its class, mapped elsewhere: whatever the pointer,
 * free's chunk index is either below capacity, within the meta the header
 * holds, and then exactly a chunk start of the zone, or free refuses it. */
Test(zone, stale_header_index_stays_within_meta)
{
	ftm_ensure_init();
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
		struct ftm_zone *zone = zone_create(&ftm_arenas[0], cls);
		cr_assert_not_null(zone);
		uint64_t x = 0x9e3779b97f4a7c15ull * (cls + 1);
		for (int i = 0; i < 20000; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			uintptr_t p = i & 1 ? (uintptr_t)x & ((1ull << 47) - 16) : zone->first - 16 * (uintptr_t)i;
			uint64_t index = zone_chunk_slot(zone, (void *)p);
			if (index < zone->capacity)
				cr_assert_eq(p, zone->first + index * zone->size, "class %u pointer %#lx",
					     cls, (unsigned long)p);
		}
		zone_close(zone, false);
	}
}
