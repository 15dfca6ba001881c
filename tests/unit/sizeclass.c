/*
 * Size classes and zone geometry: every request maps to the smallest class
 * that holds it, slack stays under a sixth past 128 bytes and under a ninth
 * just past a power of two, and every zone is a
 * page-multiple power of two, the smallest that holds at least 100 chunks
 * of its class from its first byte, and its out-of-line header (with a
 * state slot per chunk, plus one) fits a header block.
 */
#include <criterion/criterion.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

static void init(void)
{
	ftm_ensure_init();
}

TestSuite(sizeclass, .init = init);

Test(sizeclass, smallest_fitting_class)
{
	for (size_t n = 0; n <= FTM_SMALL_MAX; n++) {
		uint32_t cls = size_class(n);
		cr_assert_lt(cls, FTM_CLASS_COUNT, "n=%zu", n);
		cr_assert_geq(class_size(cls), n, "n=%zu", n);
		if (cls > 0)
			cr_assert_lt(class_size(cls - 1), n, "n=%zu does not take the smallest class", n);
		if (n > 128)
			cr_assert_lt((class_size(cls) - n) * 6, class_size(cls), "n=%zu wastes a sixth", n);
	}
	cr_assert_eq(size_class(FTM_TINY_MAX), FTM_TINY_CLASSES - 1);
	static struct ftm_tcache cache;
	struct ftm_tcache *tc = &cache;
	for (size_t n = 0; n <= 1024; n++) {
		cr_assert_eq(size_class_small(n), size_class(n), "lookup table disagrees at %zu", n);
		cr_assert_eq(bin_small(tc, n), &tc->bins[size_class(n)], "bin table disagrees at %zu", n);
	}
	for (size_t n = 1025; n <= FTM_SMALL_MAX; n++)
		cr_assert_eq(bin_medium(tc, n), &tc->bins[size_class(n)], "bin table disagrees at %zu", n);
	cr_assert_eq(size_class(FTM_SMALL_MAX), FTM_CLASS_COUNT - 1);
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++)
		cr_assert_lt(ftm_classes[cls].zone_shift - FTM_ZONE_MIN_SHIFT, FTM_ZONE_SHIFTS,
			     "class %u: zone bigger than a segment", cls);
}

/* A page or buffer with a small header in front (4096 + 8, 1024 + 16...)
 * takes the class at 9/8 of the power of two, not one at 5/4. */
Test(sizeclass, just_past_a_power_of_two)
{
	for (size_t pow = 128; pow < FTM_SMALL_MAX; pow *= 2) {
		for (size_t n = pow + 1; n <= pow + pow / 8; n++) {
			uint32_t cls = size_class(n);
			cr_assert_eq(class_size(cls), pow + pow / 8, "n=%zu", n);
			cr_assert_lt((class_size(cls) - n) * 9, class_size(cls), "n=%zu", n);
		}
	}
	cr_assert_eq(class_size(size_class(4104)), 4608);
	cr_assert_eq(class_size(size_class(1032)), 1152);
}

Test(sizeclass, sizes_increase_and_are_aligned)
{
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
		cr_assert_eq(class_size(cls) % FTM_ALIGN, 0);
		cr_assert_eq(ftm_classes[cls].size, class_size(cls));
		if (cls)
			cr_assert_gt(class_size(cls), class_size(cls - 1));
	}
	cr_assert_eq(class_size(FTM_CLASS_COUNT - 1), FTM_SMALL_MAX);
}

Test(sizeclass, zone_geometry)
{
	size_t page = ftm_page_size;
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
		const struct ftm_class *c = &ftm_classes[cls];
		size_t zone = (size_t)1 << c->zone_shift;
		cr_assert_eq(zone % page, 0, "class %u", cls);
		cr_assert_geq(c->capacity, FTM_ZONE_MIN_CHUNKS, "class %u", cls);
		cr_assert_eq(c->capacity, zone / c->size, "class %u: chunks from the first byte", cls);
		if (c->zone_shift > FTM_ZONE_MIN_SHIFT)
			cr_assert_lt(zone / 2 / c->size, FTM_ZONE_MIN_CHUNKS, "class %u: smallest zone", cls);
		cr_assert_eq(c->header_bytes % 64, 0);
		cr_assert_geq(c->header_bytes, sizeof(struct ftm_zone) + c->capacity * sizeof(uint16_t));
		cr_assert_leq(c->header_bytes, FTM_HEADER_BLOCK);
		if (cls < FTM_TINY_CLASSES)
			cr_assert_eq(zone, (size_t)64 << 10, "TINY zones are 64 KiB");
		cr_assert_geq(c->tcache_cap, 4);
		cr_assert_leq(c->tcache_cap, 64);
	}
}

/* The division-free chunk index is exact at every chunk start and rejects
 * every other offset tried (interior, misaligned, below, past the end). */
Test(sizeclass, chunk_index_is_exact)
{
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
		const struct ftm_class *c = &ftm_classes[cls];
		char *base = (char *)0x7f0000000000;
		struct ftm_zone fake = {.first = (uintptr_t)base, .inverse = c->inverse,
					.index_shift = c->index_shift, .size = c->size,
					.capacity = c->capacity, .cls = cls};
		for (uint32_t i = 0; i < c->capacity; i++) {
			char *chunk = base + (size_t)i * c->size;
			cr_assert_eq(zone_chunk_index(&fake, chunk), i, "class %u chunk %u", cls, i);
			if (c->size > 16)
				cr_assert_eq(zone_chunk_index(&fake, chunk + 16), UINT32_MAX);
			cr_assert_eq(zone_chunk_index(&fake, chunk + 1), UINT32_MAX);
		}
		cr_assert_eq(zone_chunk_index(&fake, base - 16), UINT32_MAX);
		cr_assert_eq(zone_chunk_index(&fake, base + (size_t)c->capacity * c->size), UINT32_MAX);
	}
}

/* Byte by byte, from one zone below to one zone past: exactly the chunk
 * starts get an index below capacity, and it is theirs. */
Test(sizeclass, chunk_slot_accepts_only_chunk_starts)
{
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
		const struct ftm_class *c = &ftm_classes[cls];
		int64_t span = (int64_t)1 << c->zone_shift;
		uintptr_t base = (uintptr_t)0x7f0000000000;
		struct ftm_zone fake = {.first = base, .inverse = c->inverse,
					.index_shift = c->index_shift, .capacity = c->capacity};
		uint64_t accepted = 0, wrong = 0;
		for (int64_t off = -span; off < 2 * span; off++) {
			uint64_t index = zone_chunk_slot(&fake, (void *)(base + off));
			if (index >= c->capacity)
				continue;
			accepted++;
			wrong += (uint64_t)off != index * c->size;
		}
		cr_assert_eq(accepted, c->capacity, "class %u", cls);
		cr_assert_eq(wrong, 0, "class %u", cls);
	}
}

/* An aligned block of up to 32 KiB, aligned to at most 4 KiB, is a chunk
 * of the smallest class that holds it and whose size is a multiple of the
 * alignment (so every chunk of the class is aligned): never bigger than the
 * power of two at or above the size, where it used to take that power of
 * two. Its state records the exact size. Past 4 KiB of alignment, a LARGE
 * mapping. */
Test(sizeclass, aligned_blocks_take_the_smallest_aligned_class)
{
	for (size_t align = 32; align <= 4096; align *= 2) {
		for (size_t n = 0; n <= FTM_SMALL_MAX; n += n < 1100 ? 1 : 97) {
			size_t want = n < align ? align : n;
			uint32_t expect = 0;
			while (class_size(expect) < want || class_size(expect) % align)
				expect++;
			unsigned char *p = ftm_memalign(align, n);
			cr_assert_not_null(p);
			cr_assert_eq((uintptr_t)p % align, 0, "memalign(%zu, %zu) = %p", align, n, p);
			struct ftm_zone *zone = pagemap_zone(p);
			cr_assert_not_null(zone, "memalign(%zu, %zu) is not a zone chunk", align, n);
			cr_assert_eq(zone->cls, expect, "memalign(%zu, %zu): class of %u bytes, want %u",
				     align, n, zone->size, class_size(expect));
			cr_assert_leq(zone->size, (size_t)1 << (64 - __builtin_clzl(want - 1)));
			uint16_t meta = meta_load(zone, zone_chunk_index(zone, p));
			cr_assert_eq(meta, FTM_META_LIVE | (zone->size - n), "memalign(%zu, %zu)", align,
				     n);
			ftm_free(p);
		}
	}
	void *p = ftm_memalign(8192, 100);
	cr_assert_null(pagemap_zone(p), "an alignment past 4 KiB takes a LARGE mapping");
	cr_assert_eq((uintptr_t)p % 8192, 0);
	ftm_free(p);
}
