/*
 * w_churn - churn of small objects (8..256 bytes) on the allocation fast path.
 *
 * Models the bulk of a typical program's allocations: short-lived small
 * objects (nodes, strings, temporary buffers).  The work alternates between
 * blocks of 4096 allocations in two patterns:
 *   - LIFO: push 1..64 objects, then free them in reverse order (call
 *     stacks, scoped temporaries: the best case for a free list);
 *   - random: replace a random slot of a 2048-slot table (objects die in an
 *     order unrelated to their birth, which fragments the free lists).
 * Sizes are log-uniform in 8..256 bytes (as many 8..15 as 128..256).
 *
 * ITERS = total number of malloc calls.  Meant to be run with THREADS=1; with
 * THREADS=N, N independent copies share the ITERS (see w_threads for the
 * multi-threaded variant).
 */
#include "common.h"

#define BLOCK 4096
#define SLOTS 2048
#define DEPTH 64

/* Size of a new object: log-uniform in 8..256 bytes. */
static inline size_t pick_size(rng_t *r)
{
	return rng_logsize(r, 8, 256);
}

static void *work(void *arg)
{
	struct bench_worker *w = arg;
	rng_t r = rng_make(w->seed, (uint64_t)w->id);
	struct obj *slots = calloc(SLOTS, sizeof(*slots));
	struct obj stack[DEPTH];
	uint64_t sum = 0;
	long done = 0;
	int lifo = 1;

	if (!slots)
		bench_die("out of memory");
	while (done < w->iters) {
		long end = done + BLOCK < w->iters ? done + BLOCK : w->iters;

		if (lifo) {
			while (done < end) {
				int depth = (int)rng_range(&r, 1, DEPTH);
				int i;

				if (depth > end - done)
					depth = (int)(end - done);
				for (i = 0; i < depth; i++)
					obj_new(&stack[i], pick_size(&r), &r);
				while (i-- > 0)
					sum = mix64(sum, obj_del(&stack[i]));
				done += depth;
			}
		} else {
			for (; done < end; done++) {
				struct obj *o = &slots[rng_below(&r, SLOTS)];

				if (o->p)
					sum = mix64(sum, obj_del(o));
				obj_new(o, pick_size(&r), &r);
			}
		}
		lifo = !lifo;
	}
	w->sum = obj_del_all(slots, SLOTS, sum);
	free(slots);
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a = bench_parse(argc, argv,
		"small-object churn, LIFO and random order; ITERS = mallocs");

	bench_print_checksum(bench_run(&a, work, BENCH_START_ANY));
	return 0;
}
