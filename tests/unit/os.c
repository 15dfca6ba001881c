/*
 * The OS layer (src/os/os.c): its start-up facts, read without libc's
 * sysconf and affinity wrappers, agree with what libc says; an aligned
 * mapping is aligned, with a page of its own mapped below it.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ftm/internal.h"

Test(os, page_size_is_the_kernels)
{
	cr_assert_eq(os_page_size(), (size_t)sysconf(_SC_PAGESIZE));
}

Test(os, cpu_count_is_the_affinity_masks)
{
	cpu_set_t set;
	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	cr_assert_eq(os_cpu_count(), (uint32_t)CPU_COUNT(&set));
}

/* Narrowed to one CPU, the count follows the mask, not the machine. */
Test(os, cpu_count_follows_a_narrowed_mask)
{
	cpu_set_t set;
	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	int last = -1;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &set))
			last = cpu;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(last, &one);
	cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
	cr_assert_eq(os_cpu_count(), 1);
}

/* msync fails with ENOMEM on a page that is not mapped. */
static bool mapped(const char *page)
{
	return msync((void *)page, 4096, MS_ASYNC) == 0;
}

Test(os, aligned_mapping_keeps_one_page_below)
{
	ftm_ensure_init();
	size_t page = ftm_page_size, size = (size_t)4 << 20;
	for (int i = 0; i < 8; i++) {
		char *p = os_map_aligned(size, size);
		cr_assert_not_null(p);
		cr_assert_eq((uintptr_t)p % size, 0);
		cr_assert(mapped(p - page) && mapped(p) && mapped(p + size - page));
		p[0] = p[size - 1] = 1;
		os_unmap_aligned(p, size);
		cr_assert(!mapped(p - page) && !mapped(p) && !mapped(p + size - page));
	}
}
