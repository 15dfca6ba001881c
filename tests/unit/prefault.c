/*
 * Prefaulting (os_prefault): the pages of newly carved chunks, and those a
 * LARGE block grows into (plus FTM_GROW_AHEAD past its end, at most
 * FTM_GROW_PREFAULT_MAX at once), are resident before the program writes
 * them; the page a carve ends in, pages past the window and everything
 * under FT_MALLOC_PREFAULT=0 are not. Residency is read with mincore.
 * A refusal from the kernel turns it off. Skipped where the kernel lacks
 * MADV_POPULATE_WRITE (before 5.14).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "ftm/internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static struct ftm_arena *arena;

/* One open arena, used by nothing but the test; prefaulting on. */
static void init(void)
{
	arena_init_all(1);
	arena = arena_for_thread();
	cr_assert_eq(arena, &ftm_arenas[0]);
	ftm_options[FTM_OPT_PREFAULT] = 1;
}

TestSuite(prefault, .init = init);

static void require_kernel_support(void)
{
	void *probe = mmap(NULL, ftm_page_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(probe, MAP_FAILED);
	int rc = madvise(probe, ftm_page_size, MADV_POPULATE_WRITE);
	int err = errno;
	munmap(probe, ftm_page_size);
	if (rc != 0 && err == EINVAL)
		cr_skip_test("no MADV_POPULATE_WRITE on this kernel");
	cr_assert_eq(rc, 0, "madvise: errno %d", err);
}

/* Resident pages in [p, p + len), p page-aligned. */
static size_t resident_pages(const void *p, size_t len)
{
	size_t pages = (len + ftm_page_size - 1) / ftm_page_size, n = 0;
	unsigned char vec[4096];
	cr_assert_leq(pages, sizeof(vec));
	cr_assert_eq(mincore((void *)p, len, vec), 0);
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	return n;
}

Test(prefault, carved_chunks_are_resident_before_use)
{
	require_kernel_support();
	uint32_t cls = size_class(8192);
	struct ftm_slot slots[4];
	uint64_t calls = ftm_os_prefaults;
	errno = EDOM;
	cr_assert_eq(arena_refill(arena, cls, slots, 2), 2);
	cr_assert_eq(errno, EDOM, "the program's errno survives");
	cr_assert_eq(ftm_os_prefaults, calls + 1, "one call for the carve");
	char *first = slots[0].chunk;
	cr_assert_eq((uintptr_t)first % ftm_page_size, 0, "a fresh zone's first chunk");
	cr_assert_eq(resident_pages(first, 2 * 8192), 4, "both chunks faulted in, unwritten");
	cr_assert_eq(resident_pages(first + 2 * 8192, 8192), 0, "nothing past the carve");

	ftm_options[FTM_OPT_PREFAULT] = 0;
	cr_assert_eq(arena_refill(arena, cls, slots + 2, 2), 2);
	cr_assert_eq(resident_pages(first + 2 * 8192, 2 * 8192), 0,
		     "FT_MALLOC_PREFAULT=0 leaves them to fault in");
	ftm_options[FTM_OPT_PREFAULT] = 1;
	arena_return(cls, slots, 4);
}

/* Chunks of 48 bytes: a carve of 100 ends inside its second page, which
 * the chunks past the carve share: only the first page is faulted in. */
Test(prefault, the_page_a_carve_ends_in_is_left_alone)
{
	require_kernel_support();
	uint32_t cls = size_class(48);
	cr_assert_eq(ftm_classes[cls].size, 48);
	struct ftm_slot slots[100];
	cr_assert_eq(arena_refill(arena, cls, slots, 100), 100);
	char *zone_first = (char *)pagemap_zone(slots[0].chunk)->first;
	cr_assert_eq(resident_pages(zone_first, ftm_page_size), 1);
	cr_assert_eq(resident_pages(zone_first + ftm_page_size, ftm_page_size), 0,
		     "4800 bytes carved: the second page is shared with uncarved chunks");
	arena_return(cls, slots, 100);
}

/* The start of a LARGE block's mapping (its header shares the first page). */
static char *mapping_of(const char *p)
{
	return (char *)((uintptr_t)p & ~(uintptr_t)(ftm_page_size - 1));
}

static size_t page_round(size_t n)
{
	return (n + ftm_page_size - 1) & ~(ftm_page_size - 1);
}

/* Grown by appends of 1000 bytes, a block that passes its resident pages
 * has them extended to an eighth past its end (FTM_GROW_AHEAD at most) in
 * one call: every page up to there is resident, none past it; the bytes
 * it held stay. */
Test(prefault, a_growing_block_faults_in_ahead_of_its_end)
{
	require_kernel_support();
	const size_t start = 40000, last = 400000;
	char *p = large_alloc(start, FTM_ALIGN, false);
	cr_assert_not_null(p);
	for (size_t i = 0; i < start; i++)
		p[i] = (char)(i * 7);
	size_t size = start, warm = page_round((size_t)(p - mapping_of(p)) + start);
	uint64_t extended = 0, calls = ftm_os_prefaults;
	while (size < last) {
		size += 1000;
		void *moved = NULL;
		cr_assert(large_realloc(p, size, &moved));
		cr_assert_not_null(moved);
		p = moved;
		size_t end = (size_t)(p - mapping_of(p)) + size, old = 0, usable = 0;
		cr_assert(large_lookup(p, &old, &usable));
		size_t map_len = (size_t)(p - mapping_of(p)) + usable;
		if (end > warm) {
			size_t ahead = end / 8 < FTM_GROW_AHEAD ? end / 8 : FTM_GROW_AHEAD;
			warm = page_round(end + ahead) < map_len ? page_round(end + ahead) : map_len;
			extended++;
		}
		cr_assert_eq(resident_pages(mapping_of(p), warm), warm / ftm_page_size,
			     "size %zu: every page up to %zu resident", size, warm);
		if (warm < map_len) {
			size_t past = map_len - warm < 65536 ? map_len - warm : 65536;
			cr_assert_eq(resident_pages(mapping_of(p) + warm, past), 0,
				     "size %zu: nothing past %zu", size, warm);
		}
	}
	cr_assert_eq(ftm_os_prefaults - calls, extended, "one call each time the block passes its pages");
	cr_assert_lt(extended, (last - start) / ftm_page_size / 4,
		     "a call every few pages, not every page: %lu", (unsigned long)extended);
	for (size_t i = 0; i < start; i++)
		cr_assert_eq(p[i], (char)(i * 7), "byte %zu", i);
	cr_assert(large_free(p));
}

/* A block that jumps by many MiB gets at most FTM_GROW_PREFAULT_MAX of its
 * new pages faulted in: a reservation need not be resident. */
Test(prefault, a_big_jump_faults_in_at_most_the_cap)
{
	require_kernel_support();
	const size_t mib = (size_t)1 << 20;
	large_trim();
	char *p = large_alloc(100000, FTM_ALIGN, false);
	cr_assert_not_null(p);
	memset(p, 1, 100000);
	void *moved = NULL;
	cr_assert(large_realloc(p, 64 * mib, &moved));
	cr_assert_not_null(moved);
	char *map = mapping_of(moved);
	size_t written = page_round((size_t)((char *)moved - map) + 100000);
	size_t resident = 0;
	for (size_t off = 0; off < 64 * mib; off += 4096 * ftm_page_size)
		resident += resident_pages(map + off, 4096 * ftm_page_size);
	cr_assert_eq(resident * ftm_page_size, written + FTM_GROW_PREFAULT_MAX,
		     "the written pages and the capped run");
	cr_assert(large_free(moved));
	large_trim();
}

/* A kernel that refuses MADV_POPULATE_WRITE says EINVAL; a misaligned run
 * gets the same answer from any kernel. After it nothing is prefaulted,
 * and the program's errno is untouched throughout. */
Test(prefault, a_refusal_turns_it_off)
{
	require_kernel_support();
	char *probe = mmap(NULL, 2 * ftm_page_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(probe, MAP_FAILED);
	errno = EDOM;
	os_prefault((struct ftm_page_run){probe + 1, ftm_page_size});
	cr_assert_eq(errno, EDOM);
	os_prefault((struct ftm_page_run){probe, ftm_page_size});
	cr_assert_eq(resident_pages(probe, 2 * ftm_page_size), 0, "off after the refusal");
	uint32_t cls = size_class(8192);
	struct ftm_slot slots[2];
	cr_assert_eq(arena_refill(arena, cls, slots, 2), 2);
	cr_assert_eq(resident_pages(slots[0].chunk, 2 * 8192), 0);
	arena_return(cls, slots, 2);
	munmap(probe, 2 * ftm_page_size);
}
