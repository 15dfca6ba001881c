/*
 * realloc across the SMALL/LARGE line, the cases the fuzzer found: a LARGE
 * block smaller than the new SMALL size (an aligned one) must be copied by
 * what it holds, not by the new size (an over-read past its mapping, which
 * `make asan` reports); every byte malloc_usable_size reported is kept
 * (outside debug mode: there, see the note in api.c's realloc_debug).
 */
#include <criterion/criterion.h>
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
