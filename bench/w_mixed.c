/*
 * w_mixed - a server-like heap: ~50 MiB live, objects replaced at random.
 *
 * Models a long-running server holding caches, sessions and buffers of all
 * sizes.  Each thread owns a table of objects; it first fills it until its
 * share of LIVE_BYTES (50 MiB in all) is live, then repeatedly frees a random
 * object and allocates a new one of a fresh random size in its place, so the
 * live size stays near 50 MiB while the heap fragments.  Sizes (by count):
 *   89%  TINY   16..512 bytes
 *   10%  SMALL  513..32768 bytes
 *    1%  LARGE  32769..1048576 bytes
 * each log-uniform in its range (most of the bytes are in LARGE objects, most
 * of the objects are TINY).  Peak RSS compared with the 50 MiB really live
 * shows the allocator's overhead and fragmentation.
 *
 * ITERS = total number of replacements, divided among THREADS threads (each
 * with its own table: no sharing, no locks in the program).
 */
#include "common.h"

#define LIVE_BYTES (50UL << 20)

static inline size_t pick_size(rng_t *r)
{
	uint64_t c = rng_below(r, 100);

	if (c < 89)
		return rng_logsize(r, 16, 512);
	if (c < 99)
		return rng_logsize(r, 513, 32768);
	return rng_logsize(r, 32769, 1048576);
}

static void *work(void *arg)
{
	struct bench_worker *w = arg;
	rng_t r = rng_make(w->seed, (uint64_t)w->id);
	size_t live_target = LIVE_BYTES / (size_t)w->threads;
	size_t cap = 1024, n = 0, live = 0;
	struct obj *tab = bench_malloc(cap * sizeof(*tab));
	uint64_t sum = 0;

	/* Fill phase: grow the table until the live target is reached. */
	while (live < live_target) {
		if (n == cap) {
			struct obj *bigger = realloc(tab, 2 * cap * sizeof(*tab));

			if (!bigger)
				bench_die("realloc returned NULL");
			tab = bigger;
			cap *= 2;
		}
		obj_new(&tab[n], pick_size(&r), &r);
		live += tab[n].size;
		n++;
	}
	/* Steady state: replace random objects. */
	for (long i = 0; i < w->iters; i++) {
		struct obj *o = &tab[rng_below(&r, n)];

		sum = mix64(sum, obj_del(o));
		obj_new(o, pick_size(&r), &r);
	}
	w->sum = obj_del_all(tab, n, sum);
	free(tab);
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a = bench_parse(argc, argv,
		"50 MiB live heap of mixed sizes; ITERS = replacements");

	bench_print_checksum(bench_run(&a, work, BENCH_START_ANY));
	return 0;
}
