/*
 * realloc across the SMALL/LARGE line, the cases the fuzzer found: a LARGE
 * block smaller than the new SMALL size (an aligned one) must be copied by
 * what it holds, not by the new size (an over-read past its mapping, which
 * `make asan` reports); every byte malloc_usable_size reported is kept
 * (outside debug mode: there, see the note in api.c's realloc_debug). A
 * chunk that grows moves to a class with room for the next steps, but not
 * past the power of two at or above the new size, and still records the
 * exact size it was asked for.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

Test(realloc, aligned_large_block_to_bigger_small_size)
{
	unsigned char *p = ftm_memalign(8192, 40);
	cr_assert_not_null(p);
	size_t usable = ftm_malloc_usable_size(p);
	cr_assert_lt(usable, 32768, "an aligned LARGE block smaller than the new size");
	memset(p, 7, usable);
	unsigned char *q = ftm_realloc(p, 32768);
	cr_assert_not_null(q);
	for (size_t i = 0; i < usable; i++)
		cr_assert_eq(q[i], 7, "byte %zu", i);
	ftm_free(q);
}

Test(realloc, usable_bytes_survive_every_move)
{
	static const size_t sizes[] = {11, 100, 700, 5000, 40000, 300000, 20, 33000, 1};
	unsigned char *p = ftm_malloc(1);
	size_t usable = ftm_malloc_usable_size(p);
	memset(p, 1, usable);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
		unsigned char *q = ftm_realloc(p, sizes[i]);
		cr_assert_not_null(q);
		size_t kept = usable < sizes[i] ? usable : sizes[i];
		for (size_t b = 0; b < kept; b++)
			cr_assert_eq(q[b], (unsigned char)(i + 1), "step %zu byte %zu", i, b);
		p = q;
		usable = ftm_malloc_usable_size(p);
		memset(p, (int)(i + 2), usable);
	}
	ftm_free(p);
}

/* The size recorded for a live chunk: what show_alloc_mem prints. */
static size_t recorded_size(void *p)
{
	struct ftm_zone *zone = pagemap_zone(p);
	cr_assert_not_null(zone);
	return zone->size - (meta_load(zone, zone_chunk_index(zone, p)) & FTM_META_SLACK);
}

/* A chunk of `from` bytes filled with `fill`, grown to `to`: it must land
 * in a chunk of `usable` bytes that records `to` and kept every byte. */
static unsigned char *grown(size_t from, size_t to, size_t usable, unsigned char fill)
{
	unsigned char *p = ftm_malloc(from);
	cr_assert_eq(ftm_malloc_usable_size(p), from);
	memset(p, fill, from);
	unsigned char *q = ftm_realloc(p, to);
	cr_assert_eq(ftm_malloc_usable_size(q), usable, "%zu -> %zu", from, to);
	cr_assert_eq(recorded_size(q), to);
	for (size_t b = 0; b < from; b++)
		cr_assert_eq(q[b], fill, "byte %zu", b);
	return q;
}

Test(realloc, growth_leaves_room_for_the_next_steps)
{
	unsigned char *q = grown(1024, 1100, 1536, 3); /* 1.5 times the old class */
	memset(q + 1024, 4, 1100 - 1024);
	cr_assert_eq(ftm_realloc(q, 1300), q, "the next step fits in place");
	cr_assert_eq(ftm_realloc(q, 1536), q);
	cr_assert_eq(recorded_size(q), 1536);
	for (size_t b = 0; b < 1100; b++)
		cr_assert_eq(q[b], b < 1024 ? 3 : 4, "byte %zu", b);
	ftm_free(q);
}

/* A buffer capped at 8 KiB (redis's list nodes) ends in the 8192 class,
 * not in the 10240 one that 1.5 times 6 KiB would pick. */
Test(realloc, room_stops_at_the_next_power_of_two)
{
	unsigned char *q = grown(6144, 6400, 8192, 5);
	cr_assert_eq(ftm_realloc(q, 8192), q, "the last step fits in place");
	cr_assert_eq(recorded_size(q), 8192);
	ftm_free(q);
	q = grown(8192, 8193, 12288, 6); /* past the power: 1.5 times again */
	ftm_free(q);
}

/* Sizes no mapping can hold fail cleanly and leave the chunk as it was
 * (the fuzzer found the room's power of two shifting by 64 for these). */
Test(realloc, huge_growth_fails_and_keeps_the_chunk)
{
	static const size_t huge[] = {SIZE_MAX, SIZE_MAX / 2 + 2, (size_t)1 << 63};
	unsigned char *p = ftm_malloc(100);
	memset(p, 9, 100);
	for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
		errno = 0;
		cr_assert_null(ftm_realloc(p, huge[i]), "realloc to %zu", huge[i]);
		cr_assert_eq(errno, ENOMEM);
	}
	cr_assert_eq(recorded_size(p), 100);
	for (size_t b = 0; b < 100; b++)
		cr_assert_eq(p[b], 9, "byte %zu", b);
	ftm_free(p);
}

Test(realloc, room_only_when_growing_and_never_into_large)
{
	unsigned char *p = ftm_malloc(4096);
	unsigned char *q = ftm_realloc(p, 100);
	cr_assert_eq(ftm_malloc_usable_size(q), 112, "a shrink moves to the fitting class");
	cr_assert_eq(recorded_size(q), 100);
	ftm_free(q);
	p = ftm_malloc(28000);
	cr_assert_eq(ftm_malloc_usable_size(p), 28672);
	q = ftm_realloc(p, 30000);
	cr_assert_not_null(pagemap_zone(q), "1.5 times 28 KiB would be LARGE: stays SMALL");
	cr_assert_eq(ftm_malloc_usable_size(q), 32768);
	cr_assert_eq(recorded_size(q), 30000);
	ftm_free(q);
}
