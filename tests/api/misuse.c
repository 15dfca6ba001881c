/*
 * Bad input to free() and realloc(): ft_malloc's diagnostics and recovery.
 *
 * For every kind of invalid pointer a program can pass (stack, static data,
 * a mapping the program made itself, 0x1, misaligned, interior of a TINY,
 * SMALL or LARGE block, the start of a zone, a pointer right after an
 * unmapped page) and for double frees of each class (straight after the
 * first free, while the chunk sits in the thread cache, and after the cache
 * was flushed), this pins down:
 *   - exactly one line on stderr, byte for byte
 *     "ft_malloc: CALL(): REASON 0xADDR\n";
 *   - the call is ignored: the process goes on, blocks allocated before the
 *     misuse keep their contents, the misused block (when it is live) is
 *     still live, a double free does not hand the same chunk out twice, and
 *     every class still allocates and frees silently afterwards.
 * With FT_MALLOC_ABORT_ON_ERROR=1 the process dies by SIGABRT right after
 * that single line. Options are read at start-up, so those cases re-execute
 * this binary with the option and a marker variable; a constructor here
 * performs the misuse before Criterion's main ever runs.
 *
 * ft_malloc only: glibc reports (and aborts) differently.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ft_malloc.h"

#include "child.h"

#define MARKER "FTM_TEST_MISUSE_CHILD"

static void *opaque_ptr(void *p)
{
	__asm__ volatile("" : "+r"(p));
	return p;
}

static unsigned char pat(size_t i, unsigned seed)
{
	return (unsigned char)(seed * 29u + i * 3u + (i >> 9));
}

static void fill(void *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		((unsigned char *)p)[i] = pat(i, seed);
}

static size_t check(const void *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (((const unsigned char *)p)[i] != pat(i, seed))
			return i;
	return SIZE_MAX;
}

/* ------------------------------------------------------------------------ */
/* Child mode: runs before Criterion when this binary is re-executed.       */
/* ------------------------------------------------------------------------ */

static void child_say(const void *p)
{
	char buf[64];
	int n = snprintf(buf, sizeof buf, "%p\n", p);
	if (write(1, buf, (size_t)n) != n)
		_exit(90);
}

__attribute__((constructor)) static void misuse_child(void)
{
	const char *mode = getenv(MARKER);
	if (!mode)
		return;
	/* Live blocks the misuse must not disturb (checked when not aborting). */
	void *keep = malloc(3000);
	fill(keep, 3000, 77);
	if (!strcmp(mode, "double_free")) {
		void *p = malloc(64);
		child_say(p);
		free(opaque_ptr(p));
		free(opaque_ptr(p));
	} else if (!strcmp(mode, "invalid")) {
		_Alignas(16) char local[64];
		void *p = local + 16;
		child_say(p);
		free(opaque_ptr(p));
	} else if (!strcmp(mode, "realloc_interior")) {
		char *p = malloc(100000);
		child_say(p + 4096);
		if (realloc(opaque_ptr(p + 4096), 10) != NULL)
			_exit(91);
	} else {
		_exit(92);
	}
	/* Reached only without FT_MALLOC_ABORT_ON_ERROR. */
	if (check(keep, 3000, 77) != SIZE_MAX)
		_exit(93);
	free(keep);
	void *q = malloc(200);
	if (!q)
		_exit(94);
	free(q);
	_exit(0);
}

/* ------------------------------------------------------------------------ */
/* stderr capture                                                           */
/* ------------------------------------------------------------------------ */

struct capture {
	int mfd;
	int saved;
};

static void capture_start(struct capture *c)
{
	fflush(stderr);
	c->mfd = memfd_create("ftm_stderr", 0);
	cr_assert(c->mfd >= 0);
	c->saved = dup(2);
	cr_assert(c->saved >= 0);
	cr_assert(dup2(c->mfd, 2) == 2);
}

/* Restores stderr and returns what was written meanwhile (static buffer). */
static const char *capture_end(struct capture *c)
{
	static char buf[4096];
	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	ssize_t n = pread(c->mfd, buf, sizeof buf - 1, 0);
	close(c->mfd);
	cr_assert(n >= 0);
	buf[n] = '\0';
	return buf;
}

static const char *expected_line(const char *call, const char *reason, const void *p)
{
	static char buf[256];
	snprintf(buf, sizeof buf, "ft_malloc: %s(): %s %p\n", call, reason, p);
	return buf;
}

static void assert_line(const char *got, const char *call, const char *reason, const void *p)
{
	const char *want = expected_line(call, reason, p);
	cr_assert(strcmp(got, want) == 0, "stderr was \"%s\", expected exactly \"%s\"", got, want);
}

/* For cases where either diagnosis is right (the chunk's memory may have
 * been given back or merged by the first free). */
static void assert_line_either(const char *got, const char *call, const void *p)
{
	char a[256], b[256];
	snprintf(a, sizeof a, "%s", expected_line(call, "double free", p));
	snprintf(b, sizeof b, "%s", expected_line(call, "invalid pointer", p));
	cr_assert(strcmp(got, a) == 0 || strcmp(got, b) == 0,
		  "stderr was \"%s\", expected exactly \"%s\" or \"%s\"", got, a, b);
}

/* ------------------------------------------------------------------------ */
/* Witness blocks: allocated before the misuse, verified after.             */
/* ------------------------------------------------------------------------ */

static const size_t witness_sizes[] = {24, 64, 500, 3725, 32768, 48847, 300000};
#define NW (sizeof witness_sizes / sizeof *witness_sizes)

struct witnesses {
	void *p[NW];
};

static void witnesses_make(struct witnesses *w)
{
	for (size_t i = 0; i < NW; i++) {
		w->p[i] = malloc(witness_sizes[i]);
		cr_assert(w->p[i]);
		fill(w->p[i], witness_sizes[i], (unsigned)i + 100);
	}
}

/* Contents intact, the allocator still works in every class without a word
 * on stderr, and the witnesses free silently. */
static void witnesses_verify_and_free(struct witnesses *w)
{
	for (size_t i = 0; i < NW; i++)
		cr_assert(check(w->p[i], witness_sizes[i], (unsigned)i + 100) == SIZE_MAX,
			  "witness block of %zu bytes changed after the misuse", witness_sizes[i]);
	struct capture c;
	capture_start(&c);
	void *fresh[NW];
	for (size_t i = 0; i < NW; i++) {
		fresh[i] = malloc(witness_sizes[i]);
		if (fresh[i])
			fill(fresh[i], witness_sizes[i], 1);
	}
	for (size_t i = 0; i < NW; i++) {
		free(w->p[i]);
		free(fresh[i]);
	}
	const char *err = capture_end(&c);
	for (size_t i = 0; i < NW; i++)
		cr_assert(fresh[i] != NULL, "malloc(%zu) failed after the misuse", witness_sizes[i]);
	cr_assert(err[0] == '\0', "legitimate calls after the misuse printed: %s", err);
}

/* free(p) with stderr captured; returns the text written. */
static const char *free_captured(void *p)
{
	struct capture c;
	capture_start(&c);
	free(opaque_ptr(p));
	return capture_end(&c);
}

static void *realloc_captured(void *p, size_t n, const char **err)
{
	struct capture c;
	capture_start(&c);
	void *r = realloc(opaque_ptr(p), n);
	*err = capture_end(&c);
	return r;
}

/* ------------------------------------------------------------------------ */
/* Invalid pointers                                                         */
/* ------------------------------------------------------------------------ */

Test(misuse, free_stack_address)
{
	struct witnesses w;
	witnesses_make(&w);
	_Alignas(16) char local[128];
	memset(local, 0x3c, sizeof local);
	assert_line(free_captured(local + 32), "free", "invalid pointer", local + 32);
	for (size_t i = 0; i < sizeof local; i++)
		cr_assert(local[i] == 0x3c, "free() wrote into the stack buffer at %zu", i);
	witnesses_verify_and_free(&w);
}

static _Alignas(4096) char global_area[8192];
static _Alignas(16) const char ro_area[64] = "read-only data";

Test(misuse, free_static_address)
{
	struct witnesses w;
	witnesses_make(&w);
	memset(global_area, 0x5a, sizeof global_area);
	assert_line(free_captured(global_area), "free", "invalid pointer", global_area);
	assert_line(free_captured(global_area + 4096 + 16), "free", "invalid pointer",
		    global_area + 4096 + 16);
	/* Read-only memory: the allocator must not write even a free-list link. */
	assert_line(free_captured((void *)ro_area), "free", "invalid pointer", ro_area);
	for (size_t i = 0; i < sizeof global_area; i++)
		cr_assert(global_area[i] == 0x5a, "free() wrote into static data at %zu", i);
	witnesses_verify_and_free(&w);
}

Test(misuse, free_own_mmap)
{
	struct witnesses w;
	witnesses_make(&w);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	char *m = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(m != MAP_FAILED);
	memset(m, 0, 4 * page);
	assert_line(free_captured(m), "free", "invalid pointer", m);
	assert_line(free_captured(m + 16), "free", "invalid pointer", m + 16);
	assert_line(free_captured(m + page + 64), "free", "invalid pointer", m + page + 64);
	/* A pointer right after an unmapped page: reading a header in front of
	 * it would fault. And one into a read-only page. */
	cr_assert(munmap(m, page) == 0);
	assert_line(free_captured(m + page), "free", "invalid pointer", m + page);
	assert_line(free_captured(m + page + 16), "free", "invalid pointer", m + page + 16);
	cr_assert(mprotect(m + 3 * page, page, PROT_READ) == 0);
	assert_line(free_captured(m + 3 * page + 32), "free", "invalid pointer", m + 3 * page + 32);
	for (size_t i = page; i < 4 * page; i++)
		cr_assert(m[i] == 0, "free() wrote into the program's mapping at offset %zu", i);
	munmap(m + page, 3 * page);
	witnesses_verify_and_free(&w);
}

Test(misuse, free_tiny_addresses)
{
	struct witnesses w;
	witnesses_make(&w);
	assert_line(free_captured((void *)1), "free", "invalid pointer", (void *)1);
	assert_line(free_captured((void *)16), "free", "invalid pointer", (void *)16);
	assert_line(free_captured((void *)(uintptr_t)0x1000), "free", "invalid pointer",
		    (void *)(uintptr_t)0x1000);
	/* Beyond the user address space. */
	void *high = (void *)(uintptr_t)0xffff800000000010ull;
	assert_line(free_captured(high), "free", "invalid pointer", high);
	witnesses_verify_and_free(&w);
}

/* p is live: misusing p + off must leave it live, intact, freeable in
 * silence. */
static void interior_case(size_t n, size_t off)
{
	struct witnesses w;
	witnesses_make(&w);
	char *p = malloc(n);
	cr_assert(p);
	fill(p, n, 7);
	assert_line(free_captured(p + off), "free", "invalid pointer", p + off);
	cr_assert(check(p, n, 7) == SIZE_MAX, "block changed by free(p + %zu)", off);
	cr_assert(malloc_usable_size(p) >= n, "block of %zu bytes no longer live", n);
	const char *err;
	void *r = realloc_captured(p + off, n * 2, &err);
	cr_assert(r == NULL, "realloc(p + %zu) returned %p", off, r);
	assert_line(err, "realloc", "invalid pointer", p + off);
	cr_assert(check(p, n, 7) == SIZE_MAX);
	const char *quiet = free_captured(p);
	cr_assert(quiet[0] == '\0', "free of the real pointer printed: %s", quiet);
	witnesses_verify_and_free(&w);
}

Test(misuse, free_misaligned)
{
	interior_case(64, 1);
	interior_case(64, 8);
	interior_case(3725, 1);
	interior_case(48847, 8);
}

Test(misuse, free_interior)
{
	interior_case(64, 16);
	interior_case(64, 48);
	interior_case(512, 256);
	interior_case(3725, 2048);
	interior_case(48847, 4096);
	interior_case(48847, 48832);
	interior_case(1 << 20, 65536);
}

/* The address printed in a TINY zone's header line of show_alloc_mem. */
static void *first_zone(const char *kind)
{
	int mfd = memfd_create("ftm_show", 0);
	cr_assert(mfd >= 0);
	fflush(stdout);
	int saved = dup(1);
	dup2(mfd, 1);
	show_alloc_mem();
	dup2(saved, 1);
	close(saved);
	static char buf[1 << 20]; /* Criterion's own blocks are listed too */
	ssize_t n = pread(mfd, buf, sizeof buf - 1, 0);
	close(mfd);
	cr_assert(n > 0 && n < (ssize_t)sizeof buf - 1, "show_alloc_mem wrote %zd bytes", n);
	buf[n] = '\0';
	char key[16];
	snprintf(key, sizeof key, "%s : 0x", kind);
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, key, strlen(key)))
			return (void *)(uintptr_t)strtoull(line + strlen(key) - 2, NULL, 16);
	cr_assert_fail("no %s zone in the show_alloc_mem output", kind);
	return NULL;
}

Test(misuse, free_zone_bytes_that_start_no_chunk)
{
	struct witnesses w;
	witnesses_make(&w);
	/* A zone's address is its chunk 0 (its header lives elsewhere), so
	 * what is refused there is any byte that does not start a chunk. */
	char *tiny = first_zone("TINY");
	char *small = first_zone("SMALL");
	char *large = first_zone("LARGE");
	assert_line(free_captured(tiny + 8), "free", "invalid pointer", tiny + 8);
	assert_line(free_captured(tiny + 1), "free", "invalid pointer", tiny + 1);
	assert_line(free_captured(small + 8), "free", "invalid pointer", small + 8);
	assert_line(free_captured(large), "free", "invalid pointer", large);
	witnesses_verify_and_free(&w);
}

/* ------------------------------------------------------------------------ */
/* Double frees                                                             */
/* ------------------------------------------------------------------------ */

/* After a reported double free of a chunk of size n, the chunk must be in
 * the free structures once: many allocations of that size are distinct. */
static void assert_no_duplicate(size_t n)
{
	enum { K = 64 };
	void *v[K];
	for (int i = 0; i < K; i++) {
		v[i] = malloc(n);
		cr_assert(v[i]);
		for (int j = 0; j < i; j++)
			cr_assert(v[i] != v[j], "malloc(%zu) returned %p twice after a double free", n,
				  v[i]);
	}
	for (int i = 0; i < K; i++)
		free(v[i]);
}

/* Free then immediately free again: the first free went to the thread
 * cache at most. Neighbours stay live so the zone cannot go away. */
static void double_free_immediate(size_t n)
{
	struct witnesses w;
	witnesses_make(&w);
	void *before = malloc(n), *p = malloc(n), *after = malloc(n);
	cr_assert(before && p && after);
	const char *quiet = free_captured(p);
	cr_assert(quiet[0] == '\0', "first free printed: %s", quiet);
	assert_line(free_captured(p), "free", "double free", p);
	assert_no_duplicate(n);
	free(before);
	free(after);
	witnesses_verify_and_free(&w);
}

Test(misuse, double_free_tiny)
{
	double_free_immediate(16);
	double_free_immediate(100);
	double_free_immediate(512);
}

Test(misuse, double_free_small)
{
	double_free_immediate(513);
	double_free_immediate(3725);
	double_free_immediate(32768);
}

Test(misuse, double_free_large)
{
	/* The mapping is gone after the first free: either diagnosis is right,
	 * but it must be one line and no crash. */
	static const size_t sizes[] = {32769, 48847, 1 << 20};
	for (size_t i = 0; i < 3; i++) {
		struct witnesses w;
		witnesses_make(&w);
		void *p = malloc(sizes[i]);
		cr_assert(p);
		const char *quiet = free_captured(p);
		cr_assert(quiet[0] == '\0', "first free printed: %s", quiet);
		assert_line_either(free_captured(p), "free", p);
		witnesses_verify_and_free(&w);
	}
}

/* The first free went past the thread cache: many same-size frees in
 * between flush it back to the zone. Every 8th block stays live. */
static void double_free_after_flush(size_t n)
{
	enum { K = 400 };
	struct witnesses w;
	witnesses_make(&w);
	void **v = calloc(K, sizeof *v);
	cr_assert(v);
	for (int i = 0; i < K; i++)
		cr_assert((v[i] = malloc(n)));
	void *p = v[K / 2 + 1];
	cr_assert(free_captured(p)[0] == '\0');
	for (int i = 0; i < K; i++)
		if (i != K / 2 + 1 && i % 8)
			free(v[i]);
	const char *err = free_captured(p);
	assert_line(err, "free", "double free", p);
	assert_no_duplicate(n);
	for (int i = 0; i < K; i += 8)
		free(v[i]);
	free(v);
	witnesses_verify_and_free(&w);
}

Test(misuse, double_free_after_cache_flush)
{
	double_free_after_flush(48);
	double_free_after_flush(400);
	double_free_after_flush(2000);
	double_free_after_flush(20000);
}

/* A chunk freed by one thread, then freed again by another. */
static void *free_in_thread(void *p)
{
	free(p);
	return NULL;
}

Test(misuse, double_free_across_threads)
{
	struct witnesses w;
	witnesses_make(&w);
	void *keep = malloc(80);
	void *p = malloc(80);
	cr_assert(p && keep);
	pthread_t t;
	cr_assert(pthread_create(&t, NULL, free_in_thread, p) == 0);
	cr_assert(pthread_join(t, NULL) == 0);
	assert_line(free_captured(p), "free", "double free", p);
	assert_no_duplicate(80);
	free(keep);
	witnesses_verify_and_free(&w);
}

/* ------------------------------------------------------------------------ */
/* realloc of bad pointers                                                  */
/* ------------------------------------------------------------------------ */

Test(misuse, realloc_invalid_pointer)
{
	struct witnesses w;
	witnesses_make(&w);
	_Alignas(16) char local[64];
	const char *err;
	void *r = realloc_captured(local + 16, 100, &err);
	cr_assert(r == NULL, "realloc(stack) returned %p", r);
	assert_line(err, "realloc", "invalid pointer", local + 16);
	r = realloc_captured(global_area + 32, 5000, &err);
	cr_assert(r == NULL);
	assert_line(err, "realloc", "invalid pointer", global_area + 32);
	r = realloc_captured((void *)1, 10, &err);
	cr_assert(r == NULL);
	assert_line(err, "realloc", "invalid pointer", (void *)1);
	/* Shrinking to 0 does not make a bad pointer acceptable either. */
	r = realloc_captured(local + 16, 0, &err);
	cr_assert(r == NULL);
	assert_line(err, "realloc", "invalid pointer", local + 16);
	witnesses_verify_and_free(&w);
}

Test(misuse, realloc_freed_pointer)
{
	static const size_t sizes[] = {100, 3725};
	for (size_t i = 0; i < 2; i++) {
		struct witnesses w;
		witnesses_make(&w);
		void *keep = malloc(sizes[i]);
		void *p = malloc(sizes[i]);
		cr_assert(p && keep);
		free(opaque_ptr(p));
		const char *err;
		void *r = realloc_captured(p, sizes[i] * 2, &err);
		cr_assert(r == NULL, "realloc of a freed pointer returned %p", r);
		assert_line_either(err, "realloc", p);
		assert_no_duplicate(sizes[i]);
		free(keep);
		witnesses_verify_and_free(&w);
	}
}

static size_t usable_size_captured(void *p, const char **err)
{
	struct capture c;
	capture_start(&c);
	size_t n = malloc_usable_size(opaque_ptr(p));
	*err = capture_end(&c);
	return n;
}

/* malloc_usable_size has its own fast path: it must refuse what free does. */
Test(misuse, usable_size_of_bad_pointers)
{
	static const size_t sizes[] = {24, 100, 3725, 32768};
	struct witnesses w;
	witnesses_make(&w);
	const char *err;
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		char *keep = malloc(sizes[i]);
		char *p = malloc(sizes[i]);
		cr_assert(p && keep);
		cr_assert_eq(usable_size_captured(p + 16, &err), 0, "interior of a %zu-byte block", sizes[i]);
		assert_line(err, "malloc_usable_size", "invalid pointer", p + 16);
		free(opaque_ptr(p));
		cr_assert_eq(usable_size_captured(p, &err), 0, "freed %zu-byte block", sizes[i]);
		assert_line(err, "malloc_usable_size", "double free", p);
		free(keep);
	}
	_Alignas(16) char local[64];
	cr_assert_eq(usable_size_captured(local, &err), 0);
	assert_line(err, "malloc_usable_size", "invalid pointer", local);
	cr_assert_eq(usable_size_captured(NULL, &err), 0);
	cr_assert_str_empty(err, "malloc_usable_size(NULL) is 0, silently");
	witnesses_verify_and_free(&w);
}

/* ------------------------------------------------------------------------ */
/* FT_MALLOC_ABORT_ON_ERROR, in a fresh process                             */
/* ------------------------------------------------------------------------ */

struct child_result {
	int status;
	char out[256];  /* stdout: the address the child misused */
	char err[1024]; /* stderr */
};

static void run_child(const char *mode, int abort_on_error, struct child_result *res)
{
	/* Environment: ours minus Criterion's worker variables and any option
	 * we set ourselves, plus the marker and the option. */
	char marker[128];
	snprintf(marker, sizeof marker, "%s=%s", MARKER, mode);
	char **envp = env_without((const char *const[]){"BXFI_", MARKER "=", "FT_MALLOC_ABORT_ON_ERROR=", NULL},
				  (const char *const[]){marker,
							abort_on_error ? "FT_MALLOC_ABORT_ON_ERROR=1"
								       : "FT_MALLOC_ABORT_ON_ERROR=0",
							NULL},
				  NULL);

	int out[2], err[2];
	cr_assert(pipe(out) == 0 && pipe(err) == 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct rlimit no_core = {0, 0};
		setrlimit(RLIMIT_CORE, &no_core);
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(out[0]);
		close(err[0]);
		close(out[1]);
		close(err[1]);
		char *argv[] = {"api_misuse", NULL};
		execve("/proc/self/exe", argv, envp);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	read_all(out[0], res->out, sizeof res->out);
	read_all(err[0], res->err, sizeof res->err);
	close(out[0]);
	close(err[0]);
	cr_assert(waitpid(pid, &res->status, 0) == pid);
	free(envp);
}

static void abort_case(const char *mode, const char *call, const char *reason)
{
	struct child_result r;
	run_child(mode, 1, &r);
	cr_assert(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT,
		  "%s with FT_MALLOC_ABORT_ON_ERROR=1: status %#x (exit %d), stderr: %s", mode,
		  r.status, WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1, r.err);
	void *p = NULL;
	cr_assert(sscanf(r.out, "%p", &p) == 1, "child printed no address: \"%s\"", r.out);
	assert_line(r.err, call, reason, p);

	/* The same misuse without the option: one line, and the child goes on. */
	run_child(mode, 0, &r);
	cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0,
		  "%s without abort: status %#x (exit %d), stderr: %s", mode, r.status,
		  WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1, r.err);
	cr_assert(sscanf(r.out, "%p", &p) == 1);
	assert_line(r.err, call, reason, p);
}

Test(misuse, abort_on_double_free, .timeout = 60)
{
	abort_case("double_free", "free", "double free");
}

Test(misuse, abort_on_invalid_free, .timeout = 60)
{
	abort_case("invalid", "free", "invalid pointer");
}

Test(misuse, abort_on_realloc_interior, .timeout = 60)
{
	abort_case("realloc_interior", "realloc", "invalid pointer");
}
