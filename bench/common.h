/*
 * common.h - shared helpers for the allocator workload programs in bench/.
 *
 * Every workload program is invoked as `PROGRAM THREADS ITERS SEED`:
 *   THREADS  concurrency (how many threads work at the same time),
 *   ITERS    total amount of work (its unit is described by each program;
 *            it is divided among the threads, so the work does not grow with
 *            THREADS),
 *   SEED     seed of every random choice.
 * and prints one line `checksum=<16 hex digits>` on success.
 *
 * The checksum is built only from values the program itself wrote into the
 * memory it allocated and read back later (tags, sizes, content bytes), never
 * from addresses or timing, and per-thread checksums are combined by addition
 * so that the order in which threads finish does not matter.  The same
 * arguments therefore give the same checksum under every allocator, and the
 * compiler cannot drop any allocation because its contents feed the output.
 *
 * Every object is touched at its first bytes, at its last byte, and at one
 * byte per 4 KiB page in between, so that peak RSS reflects what a program
 * really uses, and is verified when it is freed (a mismatch means the
 * allocator corrupted or lost data: the program reports it and aborts).
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_args {
	int threads;
	long iters;
	uint64_t seed;
};

static inline void bench_usage(const char *prog, const char *what)
{
	fprintf(stderr, "usage: %s THREADS ITERS SEED\n  %s\n", prog, what);
	exit(2);
}

/* Parse `THREADS ITERS SEED`; `what` describes the workload and its units. */
static inline struct bench_args bench_parse(int argc, char **argv, const char *what)
{
	struct bench_args a;
	char *end;

	if (argc != 4)
		bench_usage(argv[0], what);
	errno = 0;
	a.threads = (int)strtol(argv[1], &end, 10);
	if (errno || *end || a.threads < 1 || a.threads > 4096)
		bench_usage(argv[0], what);
	a.iters = strtol(argv[2], &end, 10);
	if (errno || *end || a.iters < 1)
		bench_usage(argv[0], what);
	a.seed = strtoull(argv[3], &end, 0);
	if (errno || *end)
		bench_usage(argv[0], what);
	return a;
}

static inline void bench_die(const char *msg)
{
	fprintf(stderr, "bench: %s\n", msg);
	abort();
}

static inline void *bench_malloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		bench_die("malloc returned NULL");
	return p;
}

static inline void bench_print_checksum(uint64_t sum)
{
	printf("checksum=%016" PRIx64 "\n", sum);
	fflush(stdout);
}

/* ---- random numbers: splitmix64 (seeding) and xorshift64* (stream) ---- */

static inline uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

typedef struct {
	uint64_t s;
} rng_t;

/* Independent stream number `stream` of seed `seed` (one per thread, ...). */
static inline rng_t rng_make(uint64_t seed, uint64_t stream)
{
	uint64_t s = seed ^ (stream * 0xd1342543de82ef95ULL);
	rng_t r;

	r.s = splitmix64(&s);
	if (r.s == 0)
		r.s = 0x2545f4914f6cdd1dULL;
	return r;
}

static inline uint64_t rng_next(rng_t *r)
{
	uint64_t x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, n). */
static inline uint64_t rng_below(rng_t *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline size_t rng_range(rng_t *r, size_t lo, size_t hi)
{
	return lo + (size_t)rng_below(r, (uint64_t)(hi - lo) + 1);
}

/* Roughly log-uniform in [lo, hi] (small sizes much more frequent). */
static inline size_t rng_logsize(rng_t *r, size_t lo, size_t hi)
{
	unsigned bits_lo = 63 - (unsigned)__builtin_clzll(lo);
	unsigned bits_hi = 63 - (unsigned)__builtin_clzll(hi);
	unsigned b = bits_lo + (unsigned)rng_below(r, bits_hi - bits_lo + 1);
	size_t base = (size_t)1 << b;
	size_t n = base + (size_t)rng_below(r, base);

	return n < lo ? lo : n > hi ? hi : n;
}

/* ---- checksum mixing ---- */

static inline uint64_t mix64(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

/* ---- object contents ---- */

#define BENCH_PAGE 4096

/* Byte stored at offset `off` of an object tagged `tag` (off is 0, a page
 * boundary or the last byte; the first 8 bytes hold the tag itself). */
static inline unsigned char obj_byte(uint64_t tag, size_t off)
{
	return (unsigned char)(tag ^ (off >> 12) ^ 0xa5);
}

/* Write `tag` into a fresh object of `size` bytes (size >= 1). */
static inline void obj_fill(void *p, size_t size, uint64_t tag)
{
	unsigned char *b = p;
	size_t off;

	if (size >= 8)
		memcpy(b, &tag, 8);
	else
		b[0] = obj_byte(tag, 0);
	for (off = BENCH_PAGE; off < size; off += BENCH_PAGE)
		b[off] = obj_byte(tag, off);
	if (size > 8)
		b[size - 1] = obj_byte(tag, size - 1);
}

/* Verify an object written by obj_fill; returns a value for the checksum. */
static inline uint64_t obj_check(const void *p, size_t size, uint64_t tag)
{
	const unsigned char *b = p;
	uint64_t got = 0;
	size_t off;

	if (size >= 8) {
		memcpy(&got, b, 8);
		if (got != tag)
			bench_die("object contents corrupted (tag)");
	} else if (b[0] != obj_byte(tag, 0)) {
		bench_die("object contents corrupted (first byte)");
	}
	for (off = BENCH_PAGE; off < size; off += BENCH_PAGE)
		if (b[off] != obj_byte(tag, off))
			bench_die("object contents corrupted (page byte)");
	if (size > 8 && b[size - 1] != obj_byte(tag, size - 1))
		bench_die("object contents corrupted (last byte)");
	return tag + size;
}

/* An allocated object: its address, size and the tag written into it. */
struct obj {
	void *p;
	size_t size;
	uint64_t tag;
};

/* Allocate `size` bytes for o and fill them with a fresh tag drawn from r. */
static inline void obj_new(struct obj *o, size_t size, rng_t *r)
{
	o->size = size;
	o->tag = rng_next(r);
	o->p = bench_malloc(size);
	obj_fill(o->p, size, o->tag);
}

/* Verify and free o (leaving o->p NULL); returns a value for the checksum. */
static inline uint64_t obj_del(struct obj *o)
{
	uint64_t v = obj_check(o->p, o->size, o->tag);

	free(o->p);
	o->p = NULL;
	return v;
}

/* obj_del every live object of tab[0, n) in order, mixing each into sum. */
static inline uint64_t obj_del_all(struct obj *tab, size_t n, uint64_t sum)
{
	for (size_t i = 0; i < n; i++)
		if (tab[i].p)
			sum = mix64(sum, obj_del(&tab[i]));
	return sum;
}

/* ---- threads ---- */

/* Start fn(arg) on thread *t with attributes attr (NULL: the defaults);
 * aborts if the thread cannot be created. */
static inline void bench_spawn(pthread_t *t, const pthread_attr_t *attr,
	void *(*fn)(void *), void *arg)
{
	int err = pthread_create(t, attr, fn, arg);

	if (err) {
		fprintf(stderr, "bench: pthread_create: %s\n", strerror(err));
		abort();
	}
}

/* Share of `total` work items given to worker `i` of `n`. */
static inline long bench_share(long total, int i, int n)
{
	return total / n + (i < total % n ? 1 : 0);
}

/* What bench_run hands to each worker, and the checksum it gives back. */
struct bench_worker {
	uint64_t seed;
	int id;		/* 0 .. threads - 1, also its random stream */
	int threads;	/* how many workers there are */
	long iters;	/* this worker's share of ITERS */
	uint64_t sum;	/* set by the worker: its checksum */
	pthread_barrier_t *start;	/* BENCH_START_TOGETHER: wait here first */
};

/* How bench_run starts its workers. */
enum bench_start {
	/* each on its own thread, except that a single worker runs on the
	 * main thread (no thread creation in the single-threaded case) */
	BENCH_START_ANY,
	/* each on its own thread, and `start` is a barrier the worker waits at
	 * so that all of them begin at the same moment */
	BENCH_START_TOGETHER,
};

/* Run work(struct bench_worker *) on a->threads workers sharing a->iters,
 * and return the sum of their checksums (which does not depend on the order
 * in which they finish). */
static inline uint64_t bench_run(const struct bench_args *a, void *(*work)(void *),
	enum bench_start how)
{
	pthread_t *t = bench_malloc(sizeof(*t) * (size_t)a->threads);
	struct bench_worker *w = bench_malloc(sizeof(*w) * (size_t)a->threads);
	int on_main = how == BENCH_START_ANY && a->threads == 1;
	pthread_barrier_t start;
	uint64_t sum = 0;

	if (how == BENCH_START_TOGETHER)
		pthread_barrier_init(&start, NULL, (unsigned)a->threads);
	for (int i = 0; i < a->threads; i++) {
		w[i] = (struct bench_worker){ a->seed, i, a->threads,
			bench_share(a->iters, i, a->threads), 0,
			how == BENCH_START_TOGETHER ? &start : NULL };
		if (on_main)
			work(&w[i]);
		else
			bench_spawn(&t[i], NULL, work, &w[i]);
	}
	for (int i = 0; i < a->threads; i++) {
		if (!on_main)
			pthread_join(t[i], NULL);
		sum += w[i].sum;
	}
	if (how == BENCH_START_TOGETHER)
		pthread_barrier_destroy(&start);
	free(t);
	free(w);
	return sum;
}

#endif
