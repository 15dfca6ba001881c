/*
 * Spans (src/arena/span.c): zone ranges cut from 4 MiB segments by a buddy
 * system. Every range is aligned to its size and overlaps no other taken
 * one; the smallest free range that fits is cut first; free buddies merge,
 * so a segment given back piece by piece is whole again and goes back to
 * the OS; a range given back reads as zeros, unless its pages were kept.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

#define SEGMENT ((uintptr_t)1 << FTM_SEGMENT_SHIFT)
#define GRANULE ((uintptr_t)1 << FTM_ZONE_MIN_SHIFT)

static struct ftm_arena *arena;

static void init(void)
{
	ftm_ensure_init();
	arena = &ftm_arenas[0];
	cr_assert_null(arena->segments, "the test process made no zone before");
}

TestSuite(span, .init = init);

static uint32_t segment_count(void)
{
	uint32_t n = 0;
	for (struct ftm_segment *seg = arena->segments; seg; seg = seg->next)
		n++;
	return n;
}

/* msync fails with ENOMEM on a range that is not mapped. */
static bool mapped(uintptr_t addr)
{
	return msync((void *)addr, 4096, MS_ASYNC) == 0;
}

Test(span, smallest_fit_first_and_whole_segments_go_back)
{
	uintptr_t a = span_take(arena, 16);
	cr_assert_eq(a % SEGMENT, 0, "a new segment, cut from its start");
	uintptr_t b = span_take(arena, 16);
	cr_assert_eq(b, a + GRANULE, "a's buddy");
	uintptr_t c = span_take(arena, 19);
	cr_assert_eq(c, a + 8 * GRANULE, "512 KiB: the free half of the first MiB");
	uintptr_t d = span_take(arena, 17);
	cr_assert_eq(d, a + 2 * GRANULE, "128 KiB: beside a and b");
	cr_assert_eq(segment_count(), 1);
	uint64_t mapped_bytes = arena->stats.bytes_mapped;
	uint64_t unmaps = ftm_os_unmaps;
	memset((void *)b, 0x11, GRANULE);
	span_give(arena, b, 16, false);
	cr_assert_eq(*(char *)b, 0, "its pages were given back");
	cr_assert(span_is_free(arena, b, 16));
	cr_assert_not(span_is_free(arena, a, 16));
	span_give(arena, a, 16, false);
	cr_assert(span_is_free(arena, a, 17), "a and b merged");
	span_give(arena, c, 19, false);
	cr_assert_eq(ftm_os_unmaps, unmaps, "d still holds the segment");
	span_give(arena, d, 17, false);
	cr_assert_eq(ftm_os_unmaps, unmaps + 1, "the whole segment went back");
	cr_assert_eq(segment_count(), 0);
	cr_assert_eq(arena->stats.bytes_mapped, mapped_bytes - SEGMENT);
	cr_assert_not(mapped(a));
}

Test(span, kept_pages_survive_and_take_at_cuts_around)
{
	uintptr_t a = span_take(arena, 17);
	uintptr_t keep = span_take(arena, 16); /* holds the segment */
	memset((void *)a, 0x22, 2 * GRANULE);
	span_give(arena, a, 17, true);
	cr_assert(span_is_free(arena, a, 17));
	cr_assert(span_take_at(arena, a + GRANULE, 16), "the second half of the free range");
	cr_assert(span_is_free(arena, a, 16), "the first half stays free");
	cr_assert_not(span_is_free(arena, a + GRANULE, 16));
	cr_assert_eq(*(char *)(a + GRANULE), 0x22, "pages kept");
	cr_assert_not(span_take_at(arena, a + GRANULE, 16), "not free any more");
	cr_assert_eq(span_take(arena, 16), a, "the free half is the smallest fit");
	cr_assert_eq(segment_count(), 1);
	span_give(arena, keep, 16, false);
	span_give(arena, a, 16, false);
	span_give(arena, a + GRANULE, 16, false);
	cr_assert_eq(segment_count(), 0);
}

/* Random takes and gives of every size against a model of which granules
 * are taken: each range aligned, in a segment, disjoint from every other;
 * span_is_free agrees with the model on every granule of every segment. */
Test(span, random_takes_and_gives_match_a_model)
{
	enum { MAX = 400 };
	static uintptr_t addr[MAX];
	static uint32_t shift[MAX];
	uint32_t live = 0;
	uint64_t x = 0x2545f4914f6cdd1dull;
	for (int step = 0; step < 20000; step++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (live < MAX && (live == 0 || x % 5 < 3)) {
			uint32_t s = FTM_ZONE_MIN_SHIFT + (uint32_t)(x >> 8) % FTM_ZONE_SHIFTS;
			uintptr_t p = span_take(arena, s);
			cr_assert_neq(p, 0);
			cr_assert_eq(p & (((uintptr_t)1 << s) - 1), 0, "aligned to its size");
			for (uint32_t i = 0; i < live; i++)
				cr_assert(p + ((uintptr_t)1 << s) <= addr[i] ||
					      addr[i] + ((uintptr_t)1 << shift[i]) <= p,
					  "step %d: overlap", step);
			addr[live] = p;
			shift[live++] = s;
		} else {
			uint32_t i = (uint32_t)(x >> 20) % live;
			span_give(arena, addr[i], shift[i], false);
			addr[i] = addr[--live];
			shift[i] = shift[live];
		}
		if (step % 500)
			continue;
		for (struct ftm_segment *seg = arena->segments; seg; seg = seg->next)
			for (uintptr_t g = seg->base; g < seg->base + SEGMENT; g += GRANULE) {
				bool taken = false;
				for (uint32_t i = 0; i < live && !taken; i++)
					taken = g >= addr[i] && g < addr[i] + ((uintptr_t)1 << shift[i]);
				cr_assert_eq(span_is_free(arena, g, 16), !taken, "step %d", step);
			}
	}
	while (live--)
		span_give(arena, addr[live], shift[live], false);
	cr_assert_eq(segment_count(), 0, "everything merged back into whole segments");
}
