/*
 * Size-class geometry. Classes are fixed (16-byte steps to 128, then five per
 * doubling up to 32 KiB: less than a sixth of a chunk is slack, 48 classes in
 * all, size_class in internal.h);
 * their geometry is computed here once: how big a zone is, how many chunks
 * it holds, how big its out-of-line header is, how many a thread may cache.
 *
 * A zone is the smallest power of two >= 64 KiB that holds at least
 * FTM_ZONE_MIN_CHUNKS chunks: 64 KiB up to the 640-byte class, up to 4 MiB
 * for the 32 KiB class. Being a power of two >= 64 KiB, it is whole pages
 * on every page size Linux uses.
 */
#include "ftm/internal.h"

struct ftm_class ftm_classes[FTM_CLASS_COUNT];
uint8_t ftm_class_lut[65];
uint16_t ftm_bin_lut[65];
uint16_t ftm_bin_lut_medium[FTM_SMALL_MAX / 128 + 1];

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) & ~(to - 1);
}

/* x with odd * x = 1 mod 2^64. odd is its own inverse mod 8 (3 bits);
 * each Newton step doubles the bits that are right: 6, 12, 24, 48, 96. */
static uint64_t odd_inverse(uint64_t odd)
{
	uint64_t x = odd;
	for (int i = 0; i < 5; i++)
		x *= 2 - odd * x;
	return x;
}

/* Thread cache bound: about 8 KiB of each class, between 4 and `most`
 * chunks. Cached chunks stay resident: 32 KiB/64 made 8-thread w_threads
 * peak at 11.4 MB, this 10.2 MB (glibc 9.9 MB), prodcons 8.2 -> 6.3 MB,
 * with no CPU cost visible in the noise. Bins of 16-64 B chunks holding
 * 128 from the start cost w_churn 2.8% and peak RSS 1.04 -> 1.07x glibc's:
 * a bin grows to its 8 KiB only where it swings (struct ftm_bin_phase). */
static uint32_t tcache_cap_for(uint32_t size, uint32_t most)
{
	uint32_t cap = 8192 / size;
	return cap < 4 ? 4 : cap > most ? most : cap;
}

void sizeclass_init(void)
{
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
		struct ftm_class *c = &ftm_classes[cls];
		c->size = class_size(cls);
		c->index_shift = (uint32_t)__builtin_ctz(c->size);
		c->inverse = odd_inverse(c->size >> c->index_shift);
		c->zone_shift = FTM_ZONE_MIN_SHIFT;
		while (((size_t)1 << c->zone_shift) < (size_t)c->size * FTM_ZONE_MIN_CHUNKS)
			c->zone_shift++;
		c->capacity = (uint32_t)(((size_t)1 << c->zone_shift) / c->size);
		c->header_bytes = (uint32_t)round_up(
		    sizeof(struct ftm_zone) + c->capacity * sizeof(uint16_t), 64);
		c->tcache_cap = tcache_cap_for(c->size, FTM_TCACHE_MAX);
		c->tcache_grown = tcache_cap_for(c->size, FTM_TCACHE_GROWN);
		c->batch = (c->tcache_cap + 1) / 2;
	}
	/* The tables walk the classes upward instead of classifying every
	 * entry: this runs in every process the library is preloaded into
	 * (sizeclass_init took 13 200 instructions under /bin/true, 9 200
	 * since). */
	uint32_t cls = 0;
	for (uint32_t k = 0; k < sizeof(ftm_class_lut); k++) {
		while (ftm_classes[cls].size < 16 * k)
			cls++;
		ftm_class_lut[k] = (uint8_t)cls;
		ftm_bin_lut[k] = (uint16_t)offsetof(struct ftm_tcache, bins[cls]);
	}
	cls = 0;
	for (uint32_t k = 0; k < sizeof(ftm_bin_lut_medium) / sizeof(*ftm_bin_lut_medium); k++) {
		while (ftm_classes[cls].size < 128 * k)
			cls++;
		ftm_bin_lut_medium[k] = (uint16_t)offsetof(struct ftm_tcache, bins[cls]);
	}
}
