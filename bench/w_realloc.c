/*
 * w_realloc - buffers growing by small steps with realloc, up to MiBs.
 *
 * Models string builders, growing vectors and read-until-EOF buffers that
 * call realloc on every append: the allocator is rewarded for growing in
 * place (or moving pages instead of copying bytes) and punished for copying
 * the whole buffer each time, which makes the growth quadratic.
 *
 * Eight buffers grow at once, interleaved (so that a buffer is rarely the
 * last thing allocated and cannot always grow for free).  Each step picks a
 * random buffer and appends 1..256 bytes to it with realloc, writing every
 * appended byte; after each realloc the first byte and the previous last
 * byte are verified.  When a buffer reaches its target length (log-uniform in
 * 16 bytes..4 MiB, so most buffers stay small and a few reach MiBs), it is
 * verified at every 4 KiB and freed, and a new one starts from NULL.
 *
 * ITERS = total number of realloc calls.  Meant to be run with THREADS=1;
 * with THREADS=N, N independent copies share the ITERS.
 */
#include "common.h"

#define BUFFERS 8
#define MAX_TARGET (4UL << 20)

struct buf {
	unsigned char *p;
	size_t len, target;
	uint64_t seed;
};

/* Content of byte `i` of a buffer: changes every 64 bytes. */
static inline unsigned char content(const struct buf *b, size_t i)
{
	return (unsigned char)(b->seed + (i >> 6));
}

static void buf_start(struct buf *b, rng_t *r)
{
	b->p = NULL;
	b->len = 0;
	b->target = rng_logsize(r, 16, MAX_TARGET);
	b->seed = rng_next(r);
}

static uint64_t buf_finish(struct buf *b)
{
	uint64_t v = b->len;

	for (size_t i = 0; i < b->len; i += BENCH_PAGE) {
		if (b->p[i] != content(b, i))
			bench_die("realloc lost buffer contents");
		v = mix64(v, b->p[i]);
	}
	if (b->len && b->p[b->len - 1] != content(b, b->len - 1))
		bench_die("realloc lost buffer contents (end)");
	free(b->p);
	return v;
}

static void *work(void *arg)
{
	struct bench_worker *w = arg;
	rng_t r = rng_make(w->seed, (uint64_t)w->id);
	struct buf bufs[BUFFERS];
	uint64_t sum = 0;

	for (int i = 0; i < BUFFERS; i++)
		buf_start(&bufs[i], &r);
	for (long n = 0; n < w->iters; n++) {
		struct buf *b = &bufs[rng_below(&r, BUFFERS)];
		size_t step = rng_range(&r, 1, 256);
		size_t old = b->len, i;
		unsigned char *p;

		if (old + step > b->target)
			step = b->target - old;	/* >= 1: len < target here */
		p = realloc(b->p, old + step);
		if (!p)
			bench_die("realloc returned NULL");
		if (old && (p[0] != content(b, 0) || p[old - 1] != content(b, old - 1)))
			bench_die("realloc lost buffer contents");
		/* Append: fill [old, old + step) run by run of equal bytes. */
		for (i = old; i < old + step;) {
			size_t run_end = ((i >> 6) + 1) << 6;

			if (run_end > old + step)
				run_end = old + step;
			memset(p + i, content(b, i), run_end - i);
			i = run_end;
		}
		b->p = p;
		b->len = old + step;
		if (b->len >= b->target) {
			sum = mix64(sum, buf_finish(b));
			buf_start(b, &r);
		}
	}
	for (int i = 0; i < BUFFERS; i++)
		if (bufs[i].p)
			sum = mix64(sum, buf_finish(&bufs[i]));
	w->sum = sum;
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a = bench_parse(argc, argv,
		"buffers grown by realloc in small steps; ITERS = realloc calls");

	bench_print_checksum(bench_run(&a, work, BENCH_START_ANY));
	return 0;
}
