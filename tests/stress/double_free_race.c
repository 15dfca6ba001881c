/*
 * Stress test: two threads free the same pointers at the same instant.
 *
 * Workload model: in each round the main thread allocates a batch of blocks
 * (TINY and SMALL classes, one LARGE), then two freeing threads are released
 * together by a barrier and both free the whole batch in the same order, so
 * the two frees of a block land within a few instructions of each other.
 * The program is wrong (every block is freed twice); the allocator must still
 * let exactly one free of each block through and report the other.
 *
 * Asserts: one diagnostic per block (one per racing pair, never zero, never
 * two), reading "double free" for every zone block; afterwards, with both
 * freeing threads gone, a run of allocations of every size used returns
 * pairwise distinct blocks (a block cached by both threads would come back
 * twice).
 *
 * Diagnostics go to stderr (fd 2), which the test points at a memfd for the
 * duration and counts lines in.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ROUNDS 3000
#define BATCH 24
#define DISTINCT 4096

static const size_t sizes[] = {16, 48, 128, 400, 1024, 3000, 20000, 100000};
#define SIZE_COUNT (sizeof sizes / sizeof sizes[0])

static void *batch[BATCH];
static pthread_barrier_t start, done;

static void *free_everything(void *arg)
{
	(void)arg;
	for (int round = 0; round < ROUNDS; round++) {
		pthread_barrier_wait(&start);
		for (int i = 0; i < BATCH; i++)
			free(batch[i]);
		pthread_barrier_wait(&done);
	}
	return NULL;
}

static size_t count_lines_with(int fd, const char *needle)
{
	off_t len = lseek(fd, 0, SEEK_END);
	char *text = calloc(1, (size_t)len + 1);
	cr_assert(text);
	cr_assert_eq(pread(fd, text, (size_t)len, 0), len);
	size_t n = 0;
	for (char *at = text; (at = strstr(at, needle)); at += strlen(needle))
		n++;
	free(text);
	return n;
}

static int compare_pointers(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return (x > y) - (x < y);
}

Test(double_free_race, exactly_one_of_two_racing_frees_wins)
{
	int report = memfd_create("reports", 0);
	cr_assert_geq(report, 0);
	int saved_stderr = dup(2);
	cr_assert(dup2(report, 2) == 2);

	pthread_barrier_init(&start, NULL, 3);
	pthread_barrier_init(&done, NULL, 3);
	pthread_t a, b;
	cr_assert_eq(pthread_create(&a, NULL, free_everything, NULL), 0);
	cr_assert_eq(pthread_create(&b, NULL, free_everything, NULL), 0);
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < BATCH; i++) {
			batch[i] = malloc(sizes[(size_t)(round + i) % SIZE_COUNT]);
			cr_assert(batch[i]);
		}
		pthread_barrier_wait(&start);
		pthread_barrier_wait(&done);
	}
	pthread_join(a, NULL);
	pthread_join(b, NULL);

	dup2(saved_stderr, 2);
	close(saved_stderr);
	size_t zone_blocks = 0;
	for (int round = 0; round < ROUNDS; round++)
		for (int i = 0; i < BATCH; i++)
			zone_blocks += sizes[(size_t)(round + i) % SIZE_COUNT] <= 32768;
	size_t reports = count_lines_with(report, "ft_malloc:");
	size_t double_frees = count_lines_with(report, "(): double free 0x");
	close(report);
	cr_expect_eq(reports, (size_t)ROUNDS * BATCH, "reports: %zu, blocks freed twice: %d", reports,
		     ROUNDS * BATCH);
	/* a freed LARGE block is unmapped or cached, and no longer known as
	 * ours: its second free reads "invalid pointer" */
	cr_expect_eq(double_frees, zone_blocks, "double-free reports: %zu, zone blocks: %zu",
		     double_frees, zone_blocks);

	static uintptr_t held[DISTINCT];
	for (size_t s = 0; s < SIZE_COUNT; s++) {
		for (size_t i = 0; i < DISTINCT; i++) {
			held[i] = (uintptr_t)malloc(sizes[s]);
			cr_assert(held[i]);
		}
		qsort(held, DISTINCT, sizeof held[0], compare_pointers);
		for (size_t i = 1; i < DISTINCT; i++)
			cr_assert_neq(held[i - 1], held[i], "malloc(%zu) returned %#lx twice", sizes[s],
				      (unsigned long)held[i]);
		for (size_t i = 0; i < DISTINCT; i++)
			free((void *)held[i]);
	}
}
