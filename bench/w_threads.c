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

struct obj {
	void *p;
	size_t size;
	uint64_t tag;
};

struct worker {
	uint64_t seed;
	int id;
	long iters;
	uint64_t sum;
	pthread_barrier_t *start;
};

static inline void obj_new(struct obj *o, rng_t *r)
{
	o->size = rng_below(r, 4) ? rng_logsize(r, 16, 512) : rng_logsize(r, 513, 8192);
	o->tag = rng_next(r);
	o->p = bench_malloc(o->size);
	obj_fill(o->p, o->size, o->tag);
}

static inline uint64_t obj_del(struct obj *o)
{
	uint64_t v = obj_check(o->p, o->size, o->tag);

	free(o->p);
	o->p = NULL;
	return v;
}

static void *work(void *arg)
{
	struct worker *w = arg;
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
				obj_new(&burst[i], &r);
			for (int i = 0; i < BURST; i++)
				sum = mix64(sum, obj_del(&burst[i]));
			done += BURST;
		} else {
			struct obj *o = &slots[rng_below(&r, SLOTS)];

			if (o->p)
				sum = mix64(sum, obj_del(o));
			obj_new(o, &r);
			done++;
		}
	}
	for (int i = 0; i < SLOTS; i++)
		if (slots[i].p)
			sum = mix64(sum, obj_del(&slots[i]));
	free(slots);
	w->sum = sum;
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a = bench_parse(argc, argv,
		"per-thread churn, all threads at once; ITERS = mallocs in total");
	pthread_t *t = bench_malloc(sizeof(*t) * (size_t)a.threads);
	struct worker *w = bench_malloc(sizeof(*w) * (size_t)a.threads);
	pthread_barrier_t start;
	uint64_t sum = 0;

	/* Start every worker at the same moment so that they really overlap. */
	pthread_barrier_init(&start, NULL, (unsigned)a.threads);
	for (int i = 0; i < a.threads; i++) {
		w[i] = (struct worker){ a.seed, i, bench_share(a.iters, i, a.threads), 0, &start };
		bench_spawn(&t[i], work, &w[i]);
	}
	for (int i = 0; i < a.threads; i++) {
		pthread_join(t[i], NULL);
		sum += w[i].sum;
	}
	pthread_barrier_destroy(&start);
	free(t);
	free(w);
	bench_print_checksum(sum);
	return 0;
}
