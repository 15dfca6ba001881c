/*
 * x_aligned - small aligned blocks, as over-aligned C++ types (alignas(64)
 * counters and queue nodes, through aligned new) and SIMD buffers ask for
 * them. Not one of the suite's models: run by hand or with BENCH_PROGRAM
 * (bench/README.md, Other programs).
 *
 * Each thread keeps a table of 1024 blocks and replaces a random one per
 * unit of work: 8..512 bytes (log-uniform), aligned to 32, 64 or 128 bytes
 * (half of them 64), by aligned_alloc or posix_memalign in turn. The
 * alignment of every block is checked, and its contents when it is freed.
 *
 * ITERS = total replacements, divided among THREADS threads.
 */
#include "common.h"

#define SLOTS 1024

static void *aligned_block(size_t size, size_t align, long turn)
{
	void *p = NULL;

	if (turn & 1) {
		if (posix_memalign(&p, align, size))
			p = NULL;
	} else {
		p = aligned_alloc(align, (size + align - 1) & ~(align - 1));
	}
	if (!p)
		bench_die("aligned allocation returned NULL");
	if ((uintptr_t)p % align)
		bench_die("block not aligned as asked");
	return p;
}

static void *work(void *arg)
{
	static const size_t aligns[4] = {32, 64, 64, 128};
	struct bench_worker *w = arg;
	rng_t r = rng_make(w->seed, (uint64_t)w->id);
	struct obj *slots = calloc(SLOTS, sizeof(*slots));
	uint64_t sum = 0;

	if (!slots)
		bench_die("out of memory");
	for (long done = 0; done < w->iters; done++) {
		struct obj *o = &slots[rng_below(&r, SLOTS)];

		if (o->p)
			sum = mix64(sum, obj_del(o));
		o->size = rng_logsize(&r, 8, 512);
		o->tag = rng_next(&r);
		o->p = aligned_block(o->size, aligns[rng_below(&r, 4)], done);
		obj_fill(o->p, o->size, o->tag);
	}
	w->sum = obj_del_all(slots, SLOTS, sum);
	free(slots);
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a = bench_parse(argc, argv,
		"small aligned blocks, random replacement; ITERS = allocations");

	bench_print_checksum(bench_run(&a, work, BENCH_START_ANY));
	return 0;
}
