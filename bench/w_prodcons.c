/*
 * w_prodcons - producer/consumer: objects allocated by some threads and freed
 * by others (cross-thread free), passed through a bounded queue.
 *
 * Models a pipeline (network thread -> worker threads, logger queues): every
 * object is freed by a thread other than the one that allocated it, which
 * defeats allocators whose thread caches only take back their own memory and
 * stresses the path that returns memory to its owner.
 *
 * THREADS is split into P = ceil(THREADS/2) producers and C = THREADS - P
 * consumers (at least one of each, so THREADS=1 runs two threads).  Producers
 * allocate messages (log-uniform 16..2048 bytes), fill them, and push them in
 * batches of 32 (each batch is itself a malloc'ed object) into one bounded
 * queue of 64 batches protected by a mutex and two condition variables;
 * consumers pop batches, verify and free every message, then the batch.
 *
 * ITERS = total number of messages, divided among the producers.  Which
 * consumer gets which batch depends on scheduling, so consumers combine the
 * per-message values by addition, which does not depend on the order.
 */
#include "common.h"

#define BATCH 32
#define QCAP 64

struct batch {
	int n;
	struct obj m[BATCH];	/* the messages */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	struct batch *ring[QCAP];
	unsigned head, count;
	int producers_left;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
	PTHREAD_COND_INITIALIZER, { 0 }, 0, 0, 0 };

static void push(struct batch *b)
{
	pthread_mutex_lock(&q.lock);
	while (q.count == QCAP)
		pthread_cond_wait(&q.not_full, &q.lock);
	q.ring[(q.head + q.count) % QCAP] = b;
	q.count++;
	pthread_cond_signal(&q.not_empty);
	pthread_mutex_unlock(&q.lock);
}

/* Next batch, or NULL once every producer is done and the queue is empty. */
static struct batch *pop(void)
{
	struct batch *b = NULL;

	pthread_mutex_lock(&q.lock);
	while (q.count == 0 && q.producers_left > 0)
		pthread_cond_wait(&q.not_empty, &q.lock);
	if (q.count > 0) {
		b = q.ring[q.head];
		q.head = (q.head + 1) % QCAP;
		q.count--;
		pthread_cond_signal(&q.not_full);
	}
	pthread_mutex_unlock(&q.lock);
	return b;
}

static void *produce(void *arg)
{
	struct bench_worker *w = arg;
	rng_t r = rng_make(w->seed, (uint64_t)w->id);
	struct batch *b = NULL;

	for (long i = 0; i < w->iters; i++) {
		if (!b) {
			b = bench_malloc(sizeof(*b));
			b->n = 0;
		}
		obj_new(&b->m[b->n++], rng_logsize(&r, 16, 2048), &r);
		if (b->n == BATCH) {
			push(b);
			b = NULL;
		}
	}
	if (b)
		push(b);
	pthread_mutex_lock(&q.lock);
	if (--q.producers_left == 0)
		pthread_cond_broadcast(&q.not_empty);
	pthread_mutex_unlock(&q.lock);
	return NULL;
}

static void *consume(void *arg)
{
	struct bench_worker *w = arg;
	struct batch *b;
	uint64_t sum = 0;

	while ((b = pop()) != NULL) {
		for (int i = 0; i < b->n; i++)
			sum += mix64(0, obj_del(&b->m[i]));
		free(b);
	}
	w->sum = sum;
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a = bench_parse(argc, argv,
		"producers allocate, consumers free; ITERS = messages in total");
	int np = (a.threads + 1) / 2;
	int nc = a.threads - np > 0 ? a.threads - np : 1;
	int n = np + nc;
	pthread_t *t = bench_malloc(sizeof(*t) * (size_t)n);
	struct bench_worker *w = bench_malloc(sizeof(*w) * (size_t)n);
	uint64_t sum = 0;

	q.producers_left = np;
	for (int i = 0; i < n; i++) {
		w[i] = (struct bench_worker){ .seed = a.seed, .id = i, .threads = n,
			.iters = i < np ? bench_share(a.iters, i, np) : 0 };
		bench_spawn(&t[i], NULL, i < np ? produce : consume, &w[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		sum += w[i].sum;
	}
	free(t);
	free(w);
	bench_print_checksum(sum);
	return 0;
}
