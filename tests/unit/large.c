/*
 * The LARGE registry: blocks are found by the exact pointer only, freed
 * once, honour big alignments, shrink in place and grow by remapping with
 * their contents into a growth reserve (or by copying where mremap cannot),
 * reuse freed ranges without caching pages never touched, and the hash
 * table keeps finding every block as it grows. Cached ranges idle for
 * FTM_STALE_MS go when the process grows past the room its busy peak
 * leaves, oldest first.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "ftm/internal.h"

static void init(void)
{
	ftm_ensure_init();
}

TestSuite(large, .init = init);

static bool usable_of(const void *p, size_t *usable)
{
	size_t size;
	return large_lookup(p, &size, usable);
}

Test(large, exact_pointer_only)
{
	char *p = large_alloc(100000, FTM_ALIGN, false);
	cr_assert_not_null(p);
	cr_assert_eq((uintptr_t)p % FTM_ALIGN, 0);
	size_t usable = 0;
	cr_assert(usable_of(p, &usable));
	cr_assert_geq(usable, 100000);
	memset(p, 0x5a, usable);
	cr_assert_not(usable_of(p + 16, &usable));
	cr_assert_not(large_free(p + 16));
	cr_assert_not(large_free(p - 64));
	cr_assert(large_free(p));
	cr_assert_not(large_free(p), "a second free is refused");
}

Test(large, big_alignments)
{
	for (size_t align = 4096; align <= ((size_t)4 << 20); align <<= 1) {
		char *p = large_alloc(50000, align, false);
		cr_assert_not_null(p);
		cr_assert_eq((uintptr_t)p % align, 0, "align %zu", align);
		memset(p, 1, 50000);
		cr_assert(large_free(p));
	}
}

Test(large, realloc_in_place_and_by_remap)
{
	char *p = large_alloc(200000, FTM_ALIGN, false);
	for (size_t i = 0; i < 200000; i++)
		p[i] = (char)(i * 7);
	void *moved = NULL;
	size_t before = 0, usable = 0;
	usable_of(p, &before);
	cr_assert(large_realloc(p, 150000, &moved));
	cr_assert_eq(moved, p, "shrinking stays in place");
	usable_of(p, &usable);
	cr_assert_eq(usable, before, "a mapping still half used keeps its length");
	cr_assert(large_realloc(p, 60000, &moved));
	cr_assert_eq(moved, p);
	usable_of(p, &usable);
	cr_assert_lt(usable, before / 2, "below half, the tail is given back");
	cr_assert_geq(usable, 60000);
	cr_assert(large_realloc(p, 5000000, &moved));
	cr_assert_not_null(moved);
	char *q = moved;
	for (size_t i = 0; i < 60000; i++)
		cr_assert_eq(q[i], (char)(i * 7), "byte %zu", i);
	q[4999999] = 1;
	if (q != p)
		cr_assert_not(usable_of(p, &usable), "the old address is forgotten");
	cr_assert(large_free(q));
}

Test(large, freed_mappings_are_reused_and_zeroed_for_calloc)
{
	large_trim();
	char *p = large_alloc(300000, FTM_ALIGN, false);
	memset(p, 0xab, 300000);
	cr_assert(large_free(p));
	size_t usable = 0;
	cr_assert_not(usable_of(p, &usable), "a cached mapping is not a live block");
	char *q = large_alloc(290000, FTM_ALIGN, true);
	cr_assert_eq(q, p, "a similar size reuses the cached mapping");
	cr_assert(usable_of(q, &usable));
	for (size_t i = 0; i < usable; i++)
		cr_assert_eq(q[i], 0, "calloc'ed byte %zu of a reused mapping", i);
	cr_assert(large_free(q));
	char *r = large_alloc(100000, FTM_ALIGN, false);
	cr_assert_eq(r, p, "a smaller block takes the front of the cached range");
	cr_assert(large_free(r));
	cr_assert_geq(large_trim(), 300000, "trim gives the cache back");
	cr_assert_eq(large_trim(), 0);
}

/* With nothing cached, a block that outgrows its mapping moves by mremap
 * into a reserve four times its new size: growing within the reserve keeps
 * the address, and freeing the block caches the pages it touched (and
 * those faulted in ahead of its growth) but gives the untouched rest of
 * the reserve straight back. */
Test(large, growth_reserve_is_used_in_place_and_not_cached)
{
	const size_t mib = (size_t)1 << 20;
	large_trim();
	char *p = large_alloc(100000, FTM_ALIGN, false);
	for (size_t i = 0; i < 100000; i++)
		p[i] = (char)(i * 3);
	void *moved = NULL;
	cr_assert(large_realloc(p, mib, &moved));
	char *q = moved;
	cr_assert_not_null(q);
	size_t usable = 0;
	cr_assert(usable_of(q, &usable));
	cr_assert_geq(usable, 4 * mib, "the reserve is four times the new size");
	cr_assert(large_realloc(q, 2 * mib, &moved));
	cr_assert_eq(moved, q, "growing within the reserve stays in place");
	for (size_t i = 0; i < 100000; i++)
		cr_assert_eq(q[i], (char)(i * 3), "byte %zu", i);
	cr_assert_eq(large_trim(), 0, "nothing was cached on the way");
	cr_assert(large_free(q));
	large_lock();
	size_t cached = extent_cached_bytes();
	large_unlock();
	/* the header's 64 bytes push the block into one more page; growing,
	 * it had the next FTM_GROW_AHEAD bytes faulted in too (prefault.c) */
	cr_assert_eq(cached, 2 * mib + 4096 + FTM_GROW_AHEAD,
		     "the pages written are cached, not the reserve");
	cr_assert_eq(large_trim(), cached);
}

Test(large, registry_grows)
{
	enum { N = 1500 };
	static void *blocks[N];
	for (int i = 0; i < N; i++) {
		blocks[i] = large_alloc(40000 + (size_t)i, FTM_ALIGN, false);
		cr_assert_not_null(blocks[i]);
	}
	large_lock();
	cr_assert_geq(large_count(), N);
	large_unlock();
	for (int i = 0; i < N; i++) {
		size_t usable;
		cr_assert(usable_of(blocks[i], &usable), "block %d", i);
		cr_assert_geq(usable, 40000 + (size_t)i);
	}
	for (int i = N; i-- > 0;)
		cr_assert(large_free(blocks[i]));
	large_lock();
	cr_assert_eq(large_count(), 0);
	large_unlock();
}

/* A block that grew over a merged cached range can span two kernel
 * mappings (two ranges faulted in apart), which mremap refuses (EFAULT):
 * growing it further must still work, by copying. The two ranges are made
 * here: two separately faulted mappings side by side, put in the cache,
 * where they merge; a block then takes 1.5 MiB across both. */
Test(large, grows_when_its_range_spans_two_mappings)
{
	const size_t half = (size_t)1 << 20;
	large_trim();
	char *area = mmap(NULL, 2 * half, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(area != MAP_FAILED);
	cr_assert(mmap(area, half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == area);
	memset(area, 1, half);
	char *other = mmap(NULL, half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(other != MAP_FAILED);
	memset(other, 2, half);
	cr_assert(mremap(other, half, half, MREMAP_MAYMOVE | MREMAP_FIXED, area + half) == area + half);
	struct extent_drop drop = {.count = 0};
	large_lock();
	extent_put(area, half, 0, os_now_ns(), &drop);
	extent_put(area + half, half, 0, os_now_ns(), &drop);
	large_unlock();

	size_t first = half + half / 2;
	char *p = large_alloc(first, FTM_ALIGN, false);
	cr_assert(p > area && p < area + half, "the block comes from the cached ranges");
	for (size_t i = 0; i < first; i++)
		p[i] = (char)(i * 13);
	void *moved = NULL;
	cr_assert(large_realloc(p, 3 * half, &moved));
	cr_assert_not_null(moved, "growing a block over two mappings");
	char *q = moved;
	for (size_t i = 0; i < first; i++)
		cr_assert_eq(q[i], (char)(i * 13), "byte %zu", i);
	q[3 * half - 1] = 1;
	cr_assert(large_free(q));
	large_trim();
}

#define MIB ((size_t)1 << 20)

/* Caches [p, p + len) as if a block had been freed there at `when`. */
static void put_aged(char *p, size_t len, uint64_t when)
{
	struct extent_drop drop = {.count = 0};
	large_lock();
	extent_put(p, len, 0, when, &drop);
	large_unlock();
	cr_assert_eq(drop.count, 0);
}

#define MARK 0x5a

/* Whether the page at p still holds what the test wrote there; one given
 * back to the OS is unmapped, or zero if a later mapping took its place. */
static bool kept(const char *p)
{
	unsigned char vec;
	return mincore((void *)p, 4096, &vec) == 0 && *p == MARK;
}

/* The busy peak is set by a 16 MiB block, whose freed range the test then
 * takes for itself, so that nothing is busy: ranges cached by hand stay
 * while they fit in the 16 MiB below the peak, however long idle. Past the
 * room (a block or a zone growing), the idle ones go, oldest first, and
 * their pages are unmapped; one put after the clock's reading stays. */
Test(large, stale_ranges_go_only_past_the_busy_peak)
{
	cr_assert_eq(ftm_zone_pages.carved, 0, "no zone yet in this process");
	cr_assert(large_free(large_alloc(16 * MIB - 64, FTM_ALIGN, false)));
	large_lock();
	char *own = extent_take(16 * MIB);
	large_unlock();
	cr_assert(own && extent_cached_bytes() == 0);
	memset(own, MARK, 16 * MIB);
	uint64_t young = os_now_ns() + 3600 * 1000000000ull;
	put_aged(own + 14 * MIB, 2 * MIB, young);
	put_aged(own, 4 * MIB, 1);
	put_aged(own + 5 * MIB, 8 * MIB, 2);
	large_trim_stale();
	cr_assert_eq(extent_cached_bytes(), 14 * MIB, "within the room, idle ranges stay");

	void *busy = large_alloc(10 * MIB - 64, FTM_ALIGN, false); /* too big for any range */
	cr_assert_eq(extent_cached_bytes(), 6 * MIB, "10 MiB busy: 6 MiB of room");
	cr_assert(!kept(own) && !kept(own + 4 * MIB - 4096), "the oldest range went");
	cr_assert(kept(own + 9 * MIB - 4096) && !kept(own + 9 * MIB) && !kept(own + 13 * MIB - 4096),
		  "and the next one's tail");

	void *chunk = ftm_malloc(1000);
	uint64_t carved = ftm_zone_pages.carved;
	cr_assert_gt(carved, 0);
	cr_assert_eq(extent_cached_bytes(), 6 * MIB - carved, "a zone's carved pages take their room");

	void *big = large_alloc(7 * MIB - 64, FTM_ALIGN, false);
	cr_assert_eq(extent_cached_bytes(), 2 * MIB, "a new peak: every idle range went, the young one stays");
	cr_assert(!kept(own + 5 * MIB) && kept(own + 14 * MIB));

	ftm_free(chunk);
	cr_assert(large_free(big) && large_free(busy));
	large_trim();
}
