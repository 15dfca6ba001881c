/*
 * The OS layer's start-up facts (src/os/os.c), read without libc's sysconf
 * and affinity wrappers: they must agree with what libc says.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <sched.h>
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
