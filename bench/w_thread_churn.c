/*
 * w_thread_churn - short-lived threads that allocate a little and exit.
 *
 * Models programs that start a thread per task or per connection: each
 * thread makes its allocator state (thread cache, arena binding) appear and
 * disappear after a few dozen allocations, and hands some of its objects to
 * the thread that outlives it.  Allocators whose per-thread set-up or
 * tear-down is expensive, or that leak or strand the memory cached by dead
 * threads (visible in peak RSS), show it here.
 *
 * The main thread starts THREADS threads at a time and joins them, until
 * ITERS threads have run.  Each thread allocates 32..128 objects (log-uniform
 * 16..4096 bytes), frees all but 4 of them in allocation order, and returns
 * the 4 survivors in a malloc'ed record that the main thread verifies and
 * frees after the join (cross-thread free from a thread that has exited).
 *
 * ITERS = total number of threads created.  Thread i always uses random
 * stream i, and per-thread values are combined by addition, so the checksum
 * does not depend on which threads run together.
 */
#include "common.h"

#define KEEP 4
#define MAXOBJ 128

struct record {
	uint64_t sum;
	struct obj keep[KEEP];
};

struct task {
	uint64_t seed;
	long index;
	struct record *out;
};

static void *work(void *arg)
{
	struct task *t = arg;
	rng_t r = rng_make(t->seed, (uint64_t)t->index);
	int n = (int)rng_range(&r, 32, MAXOBJ);
	struct obj objs[MAXOBJ];
	struct record *rec;
	uint64_t sum;

	for (int i = 0; i < n; i++)
		obj_new(&objs[i], rng_logsize(&r, 16, 4096), &r);
	sum = obj_del_all(objs, (size_t)(n - KEEP), 0);
	rec = bench_malloc(sizeof(*rec));
	rec->sum = sum;
	memcpy(rec->keep, &objs[n - KEEP], sizeof(rec->keep));
	t->out = rec;
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a = bench_parse(argc, argv,
		"short-lived threads, THREADS at a time; ITERS = threads created");
	pthread_t *th = bench_malloc(sizeof(*th) * (size_t)a.threads);
	struct task *tasks = bench_malloc(sizeof(*tasks) * (size_t)a.threads);
	uint64_t sum = 0;
	long started = 0;

	while (started < a.iters) {
		int batch = a.iters - started < a.threads ? (int)(a.iters - started) : a.threads;

		for (int i = 0; i < batch; i++) {
			tasks[i] = (struct task){ a.seed, started + i, NULL };
			bench_spawn(&th[i], NULL, work, &tasks[i]);
		}
		for (int i = 0; i < batch; i++) {
			pthread_join(th[i], NULL);
			sum += obj_del_all(tasks[i].out->keep, KEEP, tasks[i].out->sum);
			free(tasks[i].out);
		}
		started += batch;
	}
	free(th);
	free(tasks);
	bench_print_checksum(sum);
	return 0;
}
