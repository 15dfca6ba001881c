/*
 * w_larson - Larson-style server simulation: heaps handed from thread to
 * thread.
 *
 * Models a server whose connections are served by threads that come and go:
 * a thread inherits a set of live objects that other threads allocated,
 * replaces objects at random for a while, then starts a new thread, hands it
 * the whole set and exits.  Objects are therefore freed by threads other than
 * the ones that allocated them, long after, and by threads that did not
 * exist when they were allocated; the allocator's per-thread state is created
 * and destroyed all the time while its memory outlives it.
 *
 * THREADS chains run at once.  The main thread allocates each chain's initial
 * heap of 1000 objects (log-uniform 16..1024 bytes); each thread of a chain
 * does up to 10000 replacements (free a random object, allocate a new one of
 * a fresh size in its place), then hands the heap to a new thread it creates
 * and exits; when a chain has done its share of ITERS, the main thread frees
 * the heap.
 *
 * ITERS = total number of replacements, divided among the chains (so
 * ITERS/10000 threads are created in all).  Each chain carries its own random
 * state and checksum through its threads, and the chains' checksums are
 * added, so the result does not depend on scheduling.
 */
#include "common.h"

#define OBJECTS 1000
#define STEPS 10000

struct heap {
	struct obj o[OBJECTS];
	rng_t r;
	long left;	/* replacements still to do in this chain */
	uint64_t sum;
};

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int chains_left;
static pthread_attr_t detached;

/* Size of a new object: log-uniform in 16..1024 bytes. */
static inline size_t pick_size(rng_t *r)
{
	return rng_logsize(r, 16, 1024);
}

static void *generation(void *arg)
{
	struct heap *h = arg;
	long steps = h->left < STEPS ? h->left : STEPS;
	rng_t r = h->r;
	uint64_t sum = h->sum;
	pthread_t next;

	for (long i = 0; i < steps; i++) {
		struct obj *o = &h->o[rng_below(&r, OBJECTS)];

		sum = mix64(sum, obj_del(o));
		obj_new(o, pick_size(&r), &r);
	}
	h->r = r;
	h->sum = sum;
	h->left -= steps;
	if (h->left > 0) {
		bench_spawn(&next, &detached, generation, h);
	} else {
		pthread_mutex_lock(&done_lock);
		if (--chains_left == 0)
			pthread_cond_signal(&done_cond);
		pthread_mutex_unlock(&done_lock);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a = bench_parse(argc, argv,
		"threads inherit heaps, replace objects, hand on; ITERS = replacements");
	struct heap **heaps = bench_malloc(sizeof(*heaps) * (size_t)a.threads);
	uint64_t sum = 0;
	pthread_t t;

	pthread_attr_init(&detached);
	pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
	for (int c = 0; c < a.threads; c++) {
		struct heap *h = bench_malloc(sizeof(*h));

		h->r = rng_make(a.seed, (uint64_t)c);
		h->left = bench_share(a.iters, c, a.threads);
		h->sum = 0;
		for (int i = 0; i < OBJECTS; i++)
			obj_new(&h->o[i], pick_size(&h->r), &h->r);
		heaps[c] = h;
		if (h->left > 0)
			chains_left++;
	}
	for (int c = 0; c < a.threads; c++) {
		if (heaps[c]->left > 0)
			bench_spawn(&t, &detached, generation, heaps[c]);
	}
	pthread_mutex_lock(&done_lock);
	while (chains_left > 0)
		pthread_cond_wait(&done_cond, &done_lock);
	pthread_mutex_unlock(&done_lock);
	for (int c = 0; c < a.threads; c++) {
		sum += obj_del_all(heaps[c]->o, OBJECTS, heaps[c]->sum);
		free(heaps[c]);
	}
	free(heaps);
	pthread_attr_destroy(&detached);
	bench_print_checksum(sum);
	return 0;
}
