/*
 * w_threads - many threads, each churning its own objects (scalability).
 *
 * Models a thread pool whose workers allocate and free privately (request
 * buffers, parse trees): no object crosses threads, so an allocator that
 * scales adds no cost per thread, and one with a global lock or shared
 * counters slows down as threads are added (and collapses when the threads
 * outnumber the cores and a lock holder is preempted).
 *
 * Each thread keeps a private table of 512 objects and, for each unit of
 * work, either (7 times in 8) replaces a random object of its table, or
 * (1 time in 8) allocates a burst of 16 objects and frees them in FIFO order.
 * Sizes: 75% log-uniform 16..512 bytes, 25% log-uniform 513..8192 bytes.
 *
 * ITERS = total number of malloc calls, divided among THREADS threads that
 * all run at once (so, with more threads than cores, the same work is done
 * by more threads than can run).
 */
#include "common.h"

#define SLOTS 512
#define BURST 16

/* Size of a new object: 75% in 16..512 bytes, 25% in 513..8192 bytes. */
static inline size_t pick_size(rng_t *r)
{
	return rng_below(r, 4) ? rng_logsize(r, 16, 512) : rng_logsize(r, 513, 8192);
}

static void *work(void *arg)
{
	struct bench_worker *w = arg;
	rng_t r = rng_make(w->seed, (uint64_t)w->id);
	struct obj *slots, burst[BURST];
	uint64_t sum = 0;
	long done = 0;

	pthread_barrier_wait(w->start);
	slots = calloc(SLOTS, sizeof(*slots));
	if (!slots)
		bench_die("out of memory");
	while (done < w->iters) {
		if (rng_below(&r, 8) == 0 && w->iters - done >= BURST) {
			for (int i = 0; i < BURST; i++)
				obj_new(&burst[i], pick_size(&r), &r);
			for (int i = 0; i < BURST; i++)
				sum = mix64(sum, obj_del(&burst[i]));
			done += BURST;
		} else {
			struct obj *o = &slots[rng_below(&r, SLOTS)];

			if (o->p)
				sum = mix64(sum, obj_del(o));
			obj_new(o, pick_size(&r), &r);
			done++;
		}
	}
	w->sum = obj_del_all(slots, SLOTS, sum);
	free(slots);
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a = bench_parse(argc, argv,
		"per-thread churn, all threads at once; ITERS = mallocs in total");

	/* Start every worker at the same moment so that they really overlap. */
	bench_print_checksum(bench_run(&a, work, BENCH_START_TOGETHER));
	return 0;
}
