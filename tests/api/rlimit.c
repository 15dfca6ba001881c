/*
 * Behaviour when the operating system refuses memory.
 *
 * Each test lowers RLIMIT_AS or RLIMIT_DATA to the process's current usage
 * plus about 64 MiB (Criterion runs every test in its own process, so the
 * limit dies with it), then exhausts it with LARGE, SMALL and TINY requests
 * and with calloc / realloc / posix_memalign / aligned_alloc / memalign /
 * valloc. Pinned down: every failure is a clean NULL (or ENOMEM return) with
 * errno ENOMEM, no crash, no block corrupted by a failed call; after
 * everything is freed memory is reusable under the same limit; once the limit
 * is raised again allocation works in this thread and in a brand-new thread,
 * which proves no failure path left an arena, registry or cache lock held
 * (a leaked lock shows up as a timeout).
 *
 * Results are gathered in stack variables while memory is exhausted and
 * asserted only after the limit is lifted: reporting a failure needs memory.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)
#define HEADROOM (64 * MiB)

/* A value from /proc/self/status ("VmSize", "VmData"), in bytes. */
static size_t proc_status_bytes(const char *field)
{
	char buf[8192];
	int fd = open("/proc/self/status", O_RDONLY);
	cr_assert(fd >= 0);
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	cr_assert(n > 0);
	buf[n] = '\0';
	size_t flen = strlen(field);
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (strncmp(line, field, flen) == 0 && line[flen] == ':')
			return (size_t)strtoull(line + flen + 1, NULL, 10) * KiB;
	cr_assert_fail("no %s in /proc/self/status", field);
	return 0;
}

/* Grow the main thread's stack now: once the limit is reached, a stack
 * page fault could not be served and would kill the test with SIGSEGV. */
static void __attribute__((noinline)) pretouch_stack(void)
{
	volatile char area[768 * 1024];
	for (size_t i = 0; i < sizeof area; i += 1024)
		area[i] = (char)i;
	__asm__ volatile("" ::"r"(area) : "memory");
}

struct limit {
	int resource;
	struct rlimit saved;
};

static void limit_set(struct limit *l, int resource, const char *field)
{
	pretouch_stack();
	l->resource = resource;
	cr_assert(getrlimit(resource, &l->saved) == 0);
	struct rlimit r = l->saved;
	r.rlim_cur = proc_status_bytes(field) + HEADROOM;
	if (r.rlim_max != RLIM_INFINITY && r.rlim_cur > r.rlim_max)
		r.rlim_cur = r.rlim_max;
	cr_assert(setrlimit(resource, &r) == 0, "setrlimit: %s", strerror(errno));
}

static void limit_lift(struct limit *l)
{
	cr_assert(setrlimit(l->resource, &l->saved) == 0);
}

/* Blocks of one exhaustion run are chained through their first word; the
 * second word holds a tag checked at free time. */
struct block {
	struct block *next;
	size_t tag;
	size_t len;
};

struct run {
	struct block *large, *small, *tiny;
	size_t n_large, n_small, n_tiny;
	int large_failed, small_failed, tiny_failed;
	int errno_large, errno_small, errno_tiny;
	/* calls made while exhausted: 1 when they failed the right way */
	int calloc_ok, realloc_ok, realloc_kept, pm_ok, pm_untouched, aa_ok, ma_ok, va_ok;
	int pm_rc, calloc_errno;
	size_t corrupt;      /* blocks whose tag or edges changed */
	int reuse_ok;        /* malloc(1 MiB) after freeing, still under the limit */
};

static struct block *push(struct block *head, void *mem, size_t len, size_t tag)
{
	struct block *b = mem;
	b->next = head;
	b->tag = tag;
	b->len = len;
	((unsigned char *)mem)[len - 1] = (unsigned char)tag;
	return b;
}

static size_t release(struct block *b)
{
	size_t bad = 0;
	while (b) {
		struct block *next = b->next;
		if (((unsigned char *)b)[b->len - 1] != (unsigned char)b->tag)
			bad++;
		free(b);
		b = next;
	}
	return bad;
}

/* Fill memory until each size fails; bounded so a broken limit ends too. */
static void exhaust(struct run *r)
{
	size_t tag = 1;
	for (int i = 0; i < 4096; i++) {
		void *p = malloc(1 * MiB);
		if (!p) {
			r->large_failed = 1;
			r->errno_large = errno;
			break;
		}
		r->large = push(r->large, p, 1 * MiB, tag++);
		r->n_large++;
	}
	if (!r->large_failed)
		return;

	/* Every other entry point fails the same way now. */
	errno = 0;
	void *p = calloc(1, 8 * MiB);
	r->calloc_errno = errno;
	r->calloc_ok = p == NULL && errno == ENOMEM;
	free(p);

	if (r->large) {
		errno = 0;
		void *q = realloc(r->large, 96 * MiB);
		r->realloc_ok = q == NULL && errno == ENOMEM;
		if (q)
			r->large = q;
		r->realloc_kept = r->large->tag == tag - 1;
	} else {
		/* a concurrent run can leave this thread no LARGE block at all */
		r->realloc_ok = r->realloc_kept = 1;
	}

	void *sentinel = (void *)0x5eed;
	void *out = sentinel;
	r->pm_rc = posix_memalign(&out, 4096, 8 * MiB);
	r->pm_ok = r->pm_rc == ENOMEM;
	r->pm_untouched = out == sentinel || out == NULL;
	if (r->pm_rc == 0)
		free(out);

	errno = 0;
	p = aligned_alloc(65536, 8 * MiB);
	r->aa_ok = p == NULL && errno == ENOMEM;
	free(p);
	errno = 0;
	p = memalign(4096, 8 * MiB);
	r->ma_ok = p == NULL && errno == ENOMEM;
	free(p);
	errno = 0;
	p = valloc(8 * MiB);
	r->va_ok = p == NULL && errno == ENOMEM;
	free(p);

	for (int i = 0; i < 1000000; i++) {
		void *s = malloc(16000);
		if (!s) {
			r->small_failed = 1;
			r->errno_small = errno;
			break;
		}
		r->small = push(r->small, s, 16000, tag++);
		r->n_small++;
	}
	for (int i = 0; i < 8000000; i++) {
		void *t = malloc(100);
		if (!t) {
			r->tiny_failed = 1;
			r->errno_tiny = errno;
			break;
		}
		r->tiny = push(r->tiny, t, 100, tag++);
		r->n_tiny++;
	}
}

static void drain(struct run *r)
{
	r->corrupt += release(r->tiny);
	r->corrupt += release(r->small);
	r->corrupt += release(r->large);
	r->tiny = r->small = r->large = NULL;
}

static void assert_run(const struct run *r)
{
	cr_assert(r->large_failed, "1 MiB mallocs never failed (%zu made)", r->n_large);
	cr_assert(r->n_large >= 8, "only %zu 1 MiB blocks fit in a 64 MiB headroom", r->n_large);
	cr_assert(r->errno_large == ENOMEM, "failed LARGE malloc: errno %d", r->errno_large);
	cr_assert(r->calloc_ok, "calloc(1, 8 MiB) while exhausted: errno %d", r->calloc_errno);
	cr_assert(r->realloc_ok, "realloc(1 MiB -> 96 MiB) while exhausted did not fail with ENOMEM");
	cr_assert(r->realloc_kept, "failed realloc damaged its block");
	cr_assert(r->pm_ok, "posix_memalign while exhausted returned %d, want ENOMEM", r->pm_rc);
	cr_assert(r->pm_untouched, "failed posix_memalign wrote *memptr");
	cr_assert(r->aa_ok, "aligned_alloc while exhausted did not fail with ENOMEM");
	cr_assert(r->ma_ok, "memalign while exhausted did not fail with ENOMEM");
	cr_assert(r->va_ok, "valloc while exhausted did not fail with ENOMEM");
	cr_assert(r->small_failed, "16000-byte mallocs never failed (%zu made)", r->n_small);
	cr_assert(r->errno_small == ENOMEM, "failed SMALL malloc: errno %d", r->errno_small);
	cr_assert(r->tiny_failed, "100-byte mallocs never failed (%zu made)", r->n_tiny);
	cr_assert(r->errno_tiny == ENOMEM, "failed TINY malloc: errno %d", r->errno_tiny);
	cr_assert(r->corrupt == 0, "%zu blocks changed while memory was exhausted", r->corrupt);
	cr_assert(r->reuse_ok, "after freeing everything, malloc(1 MiB) still failed under the limit");
}

/* One allocation of every class, written and checked: NULL on success,
 * otherwise a description of what went wrong. */
static const char *allocate_everything(void)
{
	static const size_t sizes[] = {1, 100, 512, 600, 16000, 32768, 40000, 1 * MiB, 10 * MiB};
	void *p[sizeof sizes / sizeof *sizes];
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		p[i] = malloc(sizes[i]);
		if (!p[i])
			return "malloc failed after the limit was lifted";
		memset(p[i], (int)i, sizes[i]);
	}
	void *c = calloc(1000, 1000);
	void *a = NULL;
	int rc = posix_memalign(&a, 4096, 50000);
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		const unsigned char *b = p[i];
		if (b[0] != (unsigned char)i || b[sizes[i] - 1] != (unsigned char)i)
			return "block contents changed";
		free(p[i]);
	}
	if (!c || rc != 0)
		return "calloc or posix_memalign failed after the limit was lifted";
	free(c);
	free(a);
	return NULL;
}

static void *thread_allocate(void *arg)
{
	(void)arg;
	return (void *)allocate_everything();
}

static void assert_recovered(void)
{
	const char *err = allocate_everything();
	cr_assert(err == NULL, "this thread: %s", err);
	pthread_t t;
	cr_assert(pthread_create(&t, NULL, thread_allocate, NULL) == 0);
	void *terr;
	cr_assert(pthread_join(t, &terr) == 0);
	cr_assert(terr == NULL, "new thread: %s", (const char *)terr);
}

static void exhaust_and_recover(int resource, const char *field)
{
	struct limit lim;
	struct run r;
	memset(&r, 0, sizeof r);
	limit_set(&lim, resource, field);
	exhaust(&r);
	drain(&r);
	void *again = malloc(1 * MiB);
	r.reuse_ok = again != NULL;
	free(again);
	limit_lift(&lim);
	assert_run(&r);
	assert_recovered();
}

Test(rlimit, address_space_exhaustion, .timeout = 120)
{
	exhaust_and_recover(RLIMIT_AS, "VmSize");
}

Test(rlimit, data_limit_exhaustion, .timeout = 120)
{
	exhaust_and_recover(RLIMIT_DATA, "VmData");
}

/* Four threads exhaust the limit together, each on its own arena or cache,
 * then free and go on: failure paths taken concurrently leave no lock held. */
enum { NTHREADS = 4 };

struct worker {
	pthread_barrier_t *bar;
	struct run r;
};

static void *concurrent_worker(void *arg)
{
	struct worker *w = arg;
	pthread_barrier_wait(w->bar); /* limit is set */
	exhaust(&w->r);
	pthread_barrier_wait(w->bar); /* everyone is exhausted */
	drain(&w->r);
	pthread_barrier_wait(w->bar); /* everyone has freed */
	pthread_barrier_wait(w->bar); /* limit lifted */
	return (void *)allocate_everything();
}

Test(rlimit, concurrent_exhaustion, .timeout = 120)
{
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NTHREADS + 1);
	static struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].bar = &bar;
		cr_assert(pthread_create(&t[i], NULL, concurrent_worker, &w[i]) == 0);
	}
	struct limit lim;
	limit_set(&lim, RLIMIT_AS, "VmSize");
	pthread_barrier_wait(&bar);
	pthread_barrier_wait(&bar);
	/* While every worker holds its share, the main thread fails cleanly too
	 * (whatever transient room a worker's failure left is taken first). */
	struct run mr;
	memset(&mr, 0, sizeof mr);
	exhaust(&mr);
	drain(&mr);
	pthread_barrier_wait(&bar);
	limit_lift(&lim);
	pthread_barrier_wait(&bar);
	for (int i = 0; i < NTHREADS; i++) {
		void *err;
		cr_assert(pthread_join(t[i], &err) == 0);
		cr_assert(err == NULL, "worker %d after the limit was lifted: %s", i, (const char *)err);
	}
	cr_assert(mr.large_failed && mr.errno_large == ENOMEM,
		  "main thread LARGE exhaustion: failed %d errno %d", mr.large_failed, mr.errno_large);
	cr_assert(mr.tiny_failed && mr.errno_tiny == ENOMEM,
		  "main thread TINY exhaustion: failed %d errno %d", mr.tiny_failed, mr.errno_tiny);
	cr_assert(mr.corrupt == 0);
	size_t large_total = 0;
	for (int i = 0; i < NTHREADS; i++) {
		const struct run *r = &w[i].r;
		cr_assert(r->large_failed && r->errno_large == ENOMEM,
			  "worker %d: LARGE exhaustion errno %d", i, r->errno_large);
		cr_assert(r->small_failed && r->errno_small == ENOMEM,
			  "worker %d: SMALL exhaustion errno %d", i, r->errno_small);
		cr_assert(r->tiny_failed && r->errno_tiny == ENOMEM,
			  "worker %d: TINY exhaustion errno %d", i, r->errno_tiny);
		cr_assert(r->corrupt == 0, "worker %d: %zu blocks changed", i, r->corrupt);
		large_total += r->n_large;
	}
	cr_assert(large_total >= 8, "workers got only %zu 1 MiB blocks in total", large_total);
	assert_recovered();
	pthread_barrier_destroy(&bar);
}
