/*
 * Thread life-cycle edges of the allocator.
 *
 * A thread's per-thread state (cache, arena binding) is created lazily by
 * its first allocator call and torn down when it exits. These tests make
 * that first call something other than malloc (free(NULL), realloc(NULL, n),
 * free of a pointer another thread allocated, calloc, posix_memalign,
 * malloc_usable_size(NULL)), free across threads in both directions, and
 * allocate from pthread key destructors that run after the other
 * destructors (and after the allocator's own thread teardown, whichever
 * mechanism it uses). Pinned down: values are right (errno kept, zeroed
 * memory, alignment, contents), blocks handed between threads stay intact
 * and are freed exactly once (they vanish from show_alloc_mem), blocks
 * allocated during teardown are real live blocks, and many short-lived
 * threads do not make the bytes in use grow without bound.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ft_malloc.h"

static unsigned char pat(size_t i, unsigned seed)
{
	return (unsigned char)(seed * 53u + i * 5u + (i >> 10));
}

static void fill(void *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		((unsigned char *)p)[i] = pat(i, seed);
}

static int intact(const void *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (((const unsigned char *)p)[i] != pat(i, seed))
			return 0;
	return 1;
}

/* Allocates, writes, grows, checks and frees one block of every class;
 * NULL when all went well, else what failed. Safe in any thread. */
static const char *workload(unsigned seed)
{
	static const size_t sizes[] = {1, 24, 200, 512, 513, 3000, 32768, 32769, 100000};
	void *p[sizeof sizes / sizeof *sizes];
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		p[i] = malloc(sizes[i]);
		if (!p[i])
			return "malloc failed";
		if ((uintptr_t)p[i] % 16)
			return "misaligned block";
		fill(p[i], sizes[i], seed + (unsigned)i);
	}
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		void *q = realloc(p[i], sizes[i] * 2 + 1);
		if (!q)
			return "realloc failed";
		if (!intact(q, sizes[i], seed + (unsigned)i))
			return "realloc lost contents";
		p[i] = q;
	}
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
		free(p[i]);
	return NULL;
}

static void *run_workload(void)
{
	return (void *)workload(7);
}

static void assert_thread(void *(*fn)(void *), void *arg, const char *what)
{
	pthread_t t;
	cr_assert(pthread_create(&t, NULL, fn, arg) == 0);
	void *ret;
	cr_assert(pthread_join(t, &ret) == 0);
	cr_assert(ret == NULL, "%s: %s", what, (const char *)ret);
}

/* Runs show_alloc_mem into a memfd; returns the output (malloc'd). */
static char *capture_show(void)
{
	int mfd = memfd_create("ftm_show", 0);
	cr_assert(mfd >= 0);
	fflush(stdout);
	int saved = dup(1);
	cr_assert(dup2(mfd, 1) == 1);
	show_alloc_mem();
	dup2(saved, 1);
	close(saved);
	off_t len = lseek(mfd, 0, SEEK_END);
	char *buf = malloc((size_t)len + 1);
	cr_assert(buf);
	cr_assert(pread(mfd, buf, (size_t)len, 0) == len);
	buf[len] = '\0';
	close(mfd);
	return buf;
}

/* The size listed for p by show_alloc_mem, or -1 when p is not listed. */
static long listed_size(const char *dump, const void *p)
{
	char key[64];
	int klen = snprintf(key, sizeof key, "%p - ", p);
	for (const char *line = dump; line && *line;) {
		if (!strncmp(line, key, (size_t)klen)) {
			const char *colon = strstr(line, " : ");
			return colon ? strtol(colon + 3, NULL, 10) : -2;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Unusual first calls                                                      */
/* ------------------------------------------------------------------------ */

static void *first_free_null(void *arg)
{
	(void)arg;
	errno = 4711;
	free(NULL);
	if (errno != 4711)
		return "free(NULL) as first call changed errno";
	return run_workload();
}

static void *first_realloc_null(void *arg)
{
	(void)arg;
	errno = 0;
	unsigned char *p = realloc(NULL, 100);
	if (!p)
		return "realloc(NULL, 100) as first call returned NULL";
	if ((uintptr_t)p % 16 || malloc_usable_size(p) < 100)
		return "realloc(NULL, 100): bad alignment or usable size";
	fill(p, 100, 3);
	unsigned char *q = realloc(p, 5000);
	if (!q || !intact(q, 100, 3))
		return "growing the first block lost its contents";
	free(q);
	return run_workload();
}

static void *first_calloc(void *arg)
{
	(void)arg;
	unsigned char *p = calloc(333, 3);
	if (!p)
		return "calloc as first call failed";
	for (size_t i = 0; i < 999; i++)
		if (p[i])
			return "calloc as first call: memory not zeroed";
	free(p);
	return run_workload();
}

static void *first_posix_memalign(void *arg)
{
	(void)arg;
	void *p = NULL;
	if (posix_memalign(&p, 4096, 700) != 0 || !p || (uintptr_t)p % 4096)
		return "posix_memalign as first call failed";
	fill(p, 700, 1);
	if (!intact(p, 700, 1))
		return "posix_memalign block not writable";
	free(p);
	return run_workload();
}

static void *first_usable_size_null(void *arg)
{
	(void)arg;
	if (malloc_usable_size(NULL) != 0)
		return "malloc_usable_size(NULL) as first call != 0";
	return run_workload();
}

Test(threads, first_call_free_null)
{
	assert_thread(first_free_null, NULL, "free(NULL) first");
}

Test(threads, first_call_realloc_null)
{
	assert_thread(first_realloc_null, NULL, "realloc(NULL, 100) first");
}

Test(threads, first_call_calloc_memalign_usable)
{
	assert_thread(first_calloc, NULL, "calloc first");
	assert_thread(first_posix_memalign, NULL, "posix_memalign first");
	assert_thread(first_usable_size_null, NULL, "malloc_usable_size(NULL) first");
}

/* ------------------------------------------------------------------------ */
/* Frees across threads                                                     */
/* ------------------------------------------------------------------------ */

static const size_t foreign_sizes[] = {100, 3000, 100000};
#define NF 3

static void *first_free_foreign(void *arg)
{
	void **p = arg;
	/* The very first allocator call of this thread frees another thread's
	 * block; the contents must be what the owner wrote. */
	if (!intact(p[0], foreign_sizes[0], 20))
		return "foreign block changed before the free";
	errno = 99;
	free(p[0]);
	if (errno != 99)
		return "free of a foreign block changed errno";
	for (int i = 1; i < NF; i++) {
		if (!intact(p[i], foreign_sizes[i], 20 + (unsigned)i))
			return "foreign block changed before the free";
		free(p[i]);
	}
	return run_workload();
}

Test(threads, first_call_frees_foreign_block)
{
	void *p[NF];
	for (int i = 0; i < NF; i++) {
		p[i] = malloc(foreign_sizes[i]);
		cr_assert(p[i]);
		fill(p[i], foreign_sizes[i], 20 + (unsigned)i);
	}
	assert_thread(first_free_foreign, p, "free of a foreign pointer first");
	char *dump = capture_show();
	for (int i = 0; i < NF; i++)
		cr_assert(listed_size(dump, p[i]) == -1,
			  "block %p freed by another thread is still listed", p[i]);
	free(dump);
	/* The freed chunks went back exactly once: the sizes hand out distinct
	 * blocks. */
	for (int i = 0; i < NF; i++) {
		void *v[40];
		for (int j = 0; j < 40; j++) {
			v[j] = malloc(foreign_sizes[i]);
			cr_assert(v[j]);
			for (int k = 0; k < j; k++)
				cr_assert(v[j] != v[k], "malloc(%zu) returned %p twice", foreign_sizes[i],
					  v[j]);
		}
		for (int j = 0; j < 40; j++)
			free(v[j]);
	}
}

static void *allocate_and_exit(void *arg)
{
	void **out = arg;
	for (int i = 0; i < NF; i++) {
		out[i] = malloc(foreign_sizes[i]);
		if (!out[i])
			return "malloc failed";
		fill(out[i], foreign_sizes[i], 40 + (unsigned)i);
	}
	/* Leave some chunks in this thread's cache when it exits. */
	for (int i = 0; i < 50; i++)
		free(malloc(64));
	return NULL;
}

Test(threads, free_blocks_of_exited_thread)
{
	void *p[NF];
	assert_thread(allocate_and_exit, p, "allocating thread");
	char *dump = capture_show();
	for (int i = 0; i < NF; i++) {
		cr_assert(intact(p[i], foreign_sizes[i], 40 + (unsigned)i),
			  "block of an exited thread changed");
		cr_assert(listed_size(dump, p[i]) == (long)foreign_sizes[i],
			  "block %p of an exited thread listed as %ld bytes", p[i],
			  listed_size(dump, p[i]));
	}
	free(dump);
	for (int i = 0; i < NF; i++) {
		errno = 5;
		free(p[i]);
		cr_assert(errno == 5);
	}
	dump = capture_show();
	for (int i = 0; i < NF; i++)
		cr_assert(listed_size(dump, p[i]) == -1);
	free(dump);
}

/* A producer allocates and writes, a consumer checks and frees: every block
 * crosses threads, both caches stay busy. */
enum { HANDOFFS = 20000 };

struct handoff {
	int fd[2];
	size_t bad, got;
};

static void *producer(void *arg)
{
	struct handoff *h = arg;
	for (unsigned i = 0; i < HANDOFFS; i++) {
		size_t n = i % 97 == 0 ? 40000 + i : i % 5 == 0 ? 600 + i % 3000 : 1 + i % 512;
		unsigned char *p = malloc(n);
		if (!p)
			return "producer: malloc failed";
		fill(p, n, i);
		struct { void *p; size_t n; unsigned seed; } msg = {p, n, i};
		if (write(h->fd[1], &msg, sizeof msg) != (ssize_t)sizeof msg)
			return "producer: pipe write failed";
	}
	close(h->fd[1]);
	return NULL;
}

static void *consumer(void *arg)
{
	struct handoff *h = arg;
	struct { void *p; size_t n; unsigned seed; } msg;
	for (;;) {
		size_t have = 0;
		while (have < sizeof msg) {
			ssize_t r = read(h->fd[0], (char *)&msg + have, sizeof msg - have);
			if (r <= 0)
				return have ? "consumer: short message" : NULL;
			have += (size_t)r;
		}
		if (!intact(msg.p, msg.n, msg.seed))
			h->bad++;
		free(msg.p);
		h->got++;
	}
}

Test(threads, producer_consumer_remote_frees, .timeout = 120)
{
	struct handoff h = {.bad = 0, .got = 0};
	cr_assert(pipe(h.fd) == 0);
	pthread_t tp, tc;
	cr_assert(pthread_create(&tc, NULL, consumer, &h) == 0);
	cr_assert(pthread_create(&tp, NULL, producer, &h) == 0);
	void *rp, *rc;
	cr_assert(pthread_join(tp, &rp) == 0);
	cr_assert(pthread_join(tc, &rc) == 0);
	close(h.fd[0]);
	cr_assert(rp == NULL, "%s", (const char *)rp);
	cr_assert(rc == NULL, "%s", (const char *)rc);
	cr_assert(h.got == HANDOFFS, "consumer freed %zu of %d blocks", h.got, HANDOFFS);
	cr_assert(h.bad == 0, "%zu blocks arrived damaged", h.bad);
	cr_assert(workload(3) == NULL);
}

/* ------------------------------------------------------------------------ */
/* pthread key destructors                                                  */
/* ------------------------------------------------------------------------ */

enum { KEY_THREADS = 16, KEY_BATCH = 4 };

static pthread_key_t keys[3];
static __thread int dtors_done;   /* destructors of keys[0], keys[1] run */
static __thread int late_rounds;  /* times the late destructor re-armed itself */

struct key_result {
	const char *err;  /* NULL when every check passed */
	void *handed;     /* block malloc'd by the late destructor, freed by main */
	size_t handed_n;
	unsigned handed_seed;
	int late_ran;
};

static struct key_result key_results[KEY_THREADS];
static __thread int key_slot;

static void dtor_block(void *v)
{
	size_t *p = v;
	if (!intact(p + 1, p[0], (unsigned)p[0]))
		key_results[key_slot].err = "value of a key changed before its destructor";
	free(v);
	dtors_done++;
}

/* Runs last: it re-arms itself until both other destructors ran and once
 * more, so it also runs after any destructor round the allocator uses for
 * its own teardown. Then it allocates, frees, and hands a block over. */
static void dtor_late(void *v)
{
	struct key_result *r = &key_results[key_slot];
	if (dtors_done < 2 || late_rounds < 1) {
		late_rounds++;
		if (pthread_setspecific(keys[2], v) != 0)
			r->err = "pthread_setspecific in a destructor failed";
		return;
	}
	r->late_ran = 1;
	const char *err = workload((unsigned)key_slot);
	if (err && !r->err)
		r->err = err;
	r->handed_n = 300 + (size_t)key_slot;
	r->handed_seed = 900 + (unsigned)key_slot;
	r->handed = malloc(r->handed_n);
	if (!r->handed) {
		r->err = "malloc in a late destructor failed";
		return;
	}
	fill(r->handed, r->handed_n, r->handed_seed);
	void *c = calloc(50, 50);
	if (!c) {
		r->err = "calloc in a late destructor failed";
		return;
	}
	for (size_t i = 0; i < 2500; i++)
		if (((unsigned char *)c)[i])
			r->err = "calloc in a late destructor: not zeroed";
	free(c);
}

static void *key_thread(void *arg)
{
	key_slot = (int)(intptr_t)arg;
	for (int k = 0; k < 2; k++) {
		size_t n = k ? 5000 : 100;
		size_t *p = malloc(sizeof(size_t) + n);
		if (!p)
			return "malloc failed";
		p[0] = n;
		fill(p + 1, n, (unsigned)n);
		pthread_setspecific(keys[k], p);
	}
	pthread_setspecific(keys[2], (void *)1);
	return (void *)workload(11);
}

Test(threads, key_destructor_allocates_after_teardown, .timeout = 60)
{
	cr_assert(pthread_key_create(&keys[0], dtor_block) == 0);
	cr_assert(pthread_key_create(&keys[1], dtor_block) == 0);
	cr_assert(pthread_key_create(&keys[2], dtor_late) == 0);
	for (int base = 0; base < KEY_THREADS; base += KEY_BATCH) {
		pthread_t t[KEY_BATCH];
		for (int i = 0; i < KEY_BATCH; i++)
			cr_assert(pthread_create(&t[i], NULL, key_thread, (void *)(intptr_t)(base + i)) == 0);
		for (int i = 0; i < KEY_BATCH; i++) {
			void *ret;
			cr_assert(pthread_join(t[i], &ret) == 0);
			cr_assert(ret == NULL, "thread %d: %s", base + i, (const char *)ret);
		}
	}
	char *dump = capture_show();
	for (int i = 0; i < KEY_THREADS; i++) {
		struct key_result *r = &key_results[i];
		cr_assert(r->err == NULL, "thread %d: %s", i, r->err);
		cr_assert(r->late_ran, "thread %d: the late destructor never got to allocate", i);
		cr_assert(intact(r->handed, r->handed_n, r->handed_seed),
			  "thread %d: block allocated in a destructor changed after the thread ended", i);
		cr_assert(listed_size(dump, r->handed) == (long)r->handed_n,
			  "thread %d: block from a destructor listed as %ld bytes, want %zu", i,
			  listed_size(dump, r->handed), r->handed_n);
	}
	free(dump);
	for (int i = 0; i < KEY_THREADS; i++) {
		errno = 31;
		free(key_results[i].handed);
		cr_assert(errno == 31);
	}
	cr_assert(workload(5) == NULL);
	for (int k = 0; k < 3; k++)
		pthread_key_delete(keys[k]);
}

/* ------------------------------------------------------------------------ */
/* Many short-lived threads                                                 */
/* ------------------------------------------------------------------------ */

static void *short_lived(void *arg)
{
	(void)arg;
	void *v[64];
	for (int i = 0; i < 64; i++)
		v[i] = malloc((size_t)(i * 37 % 2000) + 1);
	for (int i = 0; i < 64; i++) {
		if (!v[i])
			return "malloc failed";
		free(v[i]);
	}
	/* Exit with a warm cache: some chunks of several classes cached. */
	for (int i = 0; i < 20; i++)
		free(malloc((size_t)(i * 24) + 8));
	return NULL;
}

static size_t in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void spawn_short_lived(int count)
{
	for (int i = 0; i < count; i += 4) {
		pthread_t t[4];
		for (int j = 0; j < 4; j++)
			cr_assert(pthread_create(&t[j], NULL, short_lived, NULL) == 0);
		for (int j = 0; j < 4; j++) {
			void *ret;
			cr_assert(pthread_join(t[j], &ret) == 0);
			cr_assert(ret == NULL, "%s", (const char *)ret);
		}
	}
}

Test(threads, exited_threads_do_not_leak, .timeout = 120)
{
	spawn_short_lived(40);
	size_t warm = in_use();
	spawn_short_lived(200);
	size_t after = in_use();
	/* Caches of exited threads are reused or returned: 200 more threads may
	 * not pin memory of their own (each one cached several KiB). */
	cr_assert(after < warm + 256 * 1024,
		  "bytes in use grew from %zu to %zu over 200 short-lived threads", warm, after);
}
