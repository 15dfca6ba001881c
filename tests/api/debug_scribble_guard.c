/*
 * FT_MALLOC_SCRIBBLE and FT_MALLOC_GUARD (issue 4), each in a fresh process.
 *
 * Options are read once at start-up, so every case re-executes this binary
 * (/proc/self/exe) with the option and a marker variable set; a constructor
 * below sees the marker, runs the scenario before Criterion's main and
 * exits. The child writes what it observed to fd 3 with write(2) (no stdio:
 * it allocates), the parent captures fds 1, 2 and 3 and the exit status and
 * compares them with what the option promises:
 *
 *  - scribble: a new block reads 0xAA in every byte it was asked for (TINY,
 *    SMALL, LARGE, a reused chunk, the grown part of a realloc, the aligned
 *    allocators), calloc's stay zero, and a freed TINY/SMALL chunk reads
 *    0x55 past its first 8 bytes (the free-list link) up to its usable size;
 *  - guard: malloc_usable_size is exactly the size asked for; writing past a
 *    TINY/SMALL block is reported on free and on realloc by exactly one line
 *    "ft_malloc: CALL(): heap overflow past 0xP (N bytes, KIND class of C
 *    bytes) at 0xQ" (P, N, KIND, C and Q checked) after which the process
 *    goes on, or aborts with FT_MALLOC_ABORT_ON_ERROR=1; the first byte past
 *    a LARGE block (its size rounded up to 16) faults with SIGSEGV at exactly
 *    that address, and kills a process that does not catch it.
 *
 * Expected size classes are computed here from the documented rule (16-byte
 * steps to 128, then 9/8, 10/8, 12/8, 14/8 and 16/8 of each power of two
 * to 32 KiB), not from the library. ft_malloc only.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
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

#define MARKER "FTM_TEST_DEBUG_SG_CHILD"
#define ARG "FTM_TEST_DEBUG_SG_ARG"

/* ======================================================================== */
/* Child side: no stdio, notes written to fd 3.                             */
/* ======================================================================== */

static void *volatile sink;

static size_t parse_size(const char **s)
{
	size_t v = 0;
	while (**s >= '0' && **s <= '9')
		v = v * 10 + (size_t)(*(*s)++ - '0');
	if (**s == ':')
		(*s)++;
	return v;
}

/* Notes the first byte of p[from, to) that is not `want`; true if all are. */
static int expect_bytes(const char *what, size_t n, const void *p, size_t from, size_t to,
			unsigned char want)
{
	const unsigned char *b = p;
	for (size_t i = from; i < to; i++)
		if (b[i] != want) {
			note(what);
			note(" ");
			note_dec(n);
			note(": byte ");
			note_dec(i);
			note(" is ");
			note_num(b[i], 16);
			note("\n");
			return 0;
		}
	return 1;
}

static const size_t scribble_sizes[] = {1, 16, 24, 100, 512, 513, 3000, 20000, 32768, 40000, 1 << 20};
#define N_SCRIBBLE (sizeof scribble_sizes / sizeof *scribble_sizes)

static void child_scribble_new(void)
{
	void *live[N_SCRIBBLE];
	for (size_t k = 0; k < N_SCRIBBLE; k++) {
		size_t n = scribble_sizes[k];
		/* a chunk used, freed and handed out again */
		char *old = malloc(n);
		memset(old, 0x11, n);
		free(opaque(old));
		char *p = malloc(n);
		expect_bytes("malloc", n, p, 0, n, 0xaa);
		live[k] = p;
		char *z = calloc(1, n);
		expect_bytes("calloc", n, z, 0, n, 0x00);
		free(z);
	}
	/* realloc: the old bytes move, the new ones read 0xAA */
	char *r = malloc(100);
	memset(r, 0x11, 100);
	size_t steps[] = {3000, 40000, 200000};
	size_t have = 100;
	for (size_t k = 0; k < 3; k++) {
		r = realloc(r, steps[k]);
		expect_bytes("realloc kept", steps[k], r, 0, have, 0x11);
		expect_bytes("realloc grown", steps[k], r, have, steps[k], 0xaa);
		memset(r, 0x11, steps[k]);
		have = steps[k];
	}
	free(r);
	/* every byte malloc_usable_size reports moves with realloc, and the
	 * room past the request reads 0xAA until written */
	size_t asked[] = {20, 3000, 40000};
	for (size_t k = 0; k < 3; k++) {
		char *s = malloc(asked[k]);
		size_t room = malloc_usable_size(s);
		expect_bytes("slack", asked[k], s, 0, room, 0xaa);
		memset(s, 0x22, room);
		s = realloc(s, 4 * room);
		expect_bytes("realloc kept slack", room, s, 0, room, 0x22);
		expect_bytes("realloc grown past slack", room, s, room, 4 * room, 0xaa);
		free(s);
	}
	for (size_t k = 0; k < N_SCRIBBLE; k++)
		free(live[k]);
	note("done\n");
}

static void child_scribble_freed(void)
{
	static const size_t sizes[] = {1, 16, 24, 100, 512, 513, 3000, 20000, 32768};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		size_t n = sizes[k];
		/* a neighbour keeps the zone in use, so the freed chunk stays mapped */
		char *keep = malloc(n);
		char *p = malloc(n);
		size_t usable = malloc_usable_size(p);
		memset(p, 0x11, usable);
		free(opaque(p));
		expect_bytes("freed", n, p, 8, usable, 0x55);
		sink = keep;
	}
	note("done\n");
}

static void child_scribble_aligned(void)
{
	void *p;
	char *a = aligned_alloc(64, 100);
	expect_bytes("aligned_alloc(64)", 100, a, 0, 100, 0xaa);
	if (posix_memalign(&p, 256, 3000) == 0)
		expect_bytes("posix_memalign(256)", 3000, p, 0, 3000, 0xaa);
	char *m = memalign(4096, 200);
	expect_bytes("memalign(4096)", 200, m, 0, 200, 0xaa);
	char *v = valloc(5000);
	expect_bytes("valloc", 5000, v, 0, 5000, 0xaa);
	note("done\n");
}

static const size_t guard_sizes[] = {0,    1,    15,    16,    24,    100,   511,    512,
				     513,  3000, 20000, 32767, 32768, 32769, 40000, 1 << 20};
#define N_GUARD (sizeof guard_sizes / sizeof *guard_sizes)

static void child_guard_usable(void)
{
	for (size_t k = 0; k < N_GUARD; k++) {
		size_t n = guard_sizes[k];
		void *p = malloc(n);
		void *z = calloc(n, 1);
		note_dec(n);
		note(" ");
		note_dec(malloc_usable_size(p));
		note(" ");
		note_dec(malloc_usable_size(z));
		p = realloc(p, n + 7);
		note(" ");
		note_dec(malloc_usable_size(p));
		note("\n");
		free(p);
		free(z);
	}
}

/* ARG = "SIZE:OFFSET:free" or "SIZE:OFFSET:realloc". */
static void child_guard_overflow(void)
{
	const char *arg = getenv(ARG);
	size_t n = parse_size(&arg);
	size_t off = parse_size(&arg);
	char *keep = malloc(n);
	memset(keep, 'k', n);
	char *p = malloc(n);
	memset(p, 'a', n);
	note_ptr(p);
	note("\n");
	((volatile char *)p)[n + off] = 'X';
	if (!strcmp(arg, "free")) {
		free(opaque(p));
	} else {
		char *q = realloc(opaque(p), 2 * n + 1);
		if (!q || !expect_bytes("realloc", n, q, 0, n, 'a'))
			note("realloc lost the block\n");
		free(q);
	}
	note("went on\n");
	/* everything still works, silently, and the neighbour is intact */
	char *again = malloc(n);
	memset(again, 'b', n);
	free(again);
	if (!expect_bytes("neighbour", n, keep, 0, n, 'k'))
		_exit(2);
	free(keep);
}

static sigjmp_buf fault_jump;
static void *volatile fault_addr;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	fault_addr = si->si_addr;
	siglongjmp(fault_jump, 1);
}

/* Notes, per LARGE block, "SIZE OFFSET" where OFFSET is where the first
 * fault hit, relative to the block (or "SIZE early OFFSET" when writing
 * inside the block faulted, "SIZE nofault" when nothing did). */
static void probe_large(const char *how, char *p, size_t n)
{
	size_t end = (n + 15) & ~(size_t)15;
	volatile char *vp = p;
	note(how);
	note(" ");
	note_dec(n);
	if (sigsetjmp(fault_jump, 1)) {
		uintptr_t off = (uintptr_t)fault_addr - (uintptr_t)p;
		note(off < end ? " early " : " ");
		note_dec(off);
		note("\n");
		return;
	}
	for (size_t i = 0; i < end; i++)
		vp[i] = (char)i;
	vp[end] = 1;
	note(" nofault\n");
}

static void child_guard_large_probe(void)
{
	struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	static const size_t sizes[] = {32769, 40000, 40001, 40008, 65536, 100003, 1 << 20};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		size_t n = sizes[k];
		probe_large("malloc", malloc(n), n);
		probe_large("calloc", calloc(1, n), n);
		char *r = malloc(n / 2);
		probe_large("realloc", realloc(r, n), n);
	}
}

static void child_guard_large_kill(void)
{
	char *p = malloc(40000);
	memset(p, 1, 40000);
	note("before\n");
	((volatile char *)opaque(p))[40000] = 1;
	note("after\n");
}

__attribute__((constructor)) static void debug_child(void)
{
	const char *mode = getenv(MARKER);
	if (!mode)
		return;
	if (!strcmp(mode, "scribble_new"))
		child_scribble_new();
	else if (!strcmp(mode, "scribble_freed"))
		child_scribble_freed();
	else if (!strcmp(mode, "scribble_aligned"))
		child_scribble_aligned();
	else if (!strcmp(mode, "guard_usable"))
		child_guard_usable();
	else if (!strcmp(mode, "guard_overflow"))
		child_guard_overflow();
	else if (!strcmp(mode, "guard_large_probe"))
		child_guard_large_probe();
	else if (!strcmp(mode, "guard_large_kill"))
		child_guard_large_kill();
	else
		_exit(99);
	exit(0);
}

/* ======================================================================== */
/* Parent side                                                              */
/* ======================================================================== */

/* Runs this binary as scenario `mode` with the given FT_MALLOC_ settings
 * (NULL-terminated "NAME=VALUE" list) and the scenario argument `arg`. No
 * other FT_MALLOC_ variable of ours reaches the child. Captures fds 1, 2
 * and 3 (OUT, ERR, NOTES). */
static void run_child(const char *mode, const char *const *opts, const char *arg, struct child *c)
{
	char marker[128], argv_env[128];
	snprintf(marker, sizeof marker, "%s=%s", MARKER, mode);
	snprintf(argv_env, sizeof argv_env, "%s=%s", ARG, arg ? arg : "");
	child_spawn("api_debug_scribble_guard", (const char *const[]){marker, arg ? argv_env : NULL, NULL}, opts,
		    3, c);
}

Test(debug_sizeclass, rule_sanity)
{
	cr_assert_eq(class_of(1), 16);
	cr_assert_eq(class_of(129), 144);
	cr_assert_eq(class_of(145), 160);
	cr_assert_eq(class_of(161), 192);
	cr_assert_eq(class_of(512), 512);
	cr_assert_eq(class_of(513), 576);
	cr_assert_eq(class_of(1032), 1152);
	cr_assert_eq(class_of(4104), 4608);
	cr_assert_eq(class_of(3001), 3072);
	cr_assert_eq(class_of(20001), 20480);
	cr_assert_eq(class_of(32768), 32768);
}

/* ---- scribble ----------------------------------------------------------- */

static const char *const scribble_on[] = {"FT_MALLOC_SCRIBBLE=1", NULL};

Test(debug_scribble, new_blocks_read_0xaa_calloc_zero)
{
	struct child c;
	run_child("scribble_new", scribble_on, NULL, &c);
	assert_exit0(&c, "scribble_new");
	cr_assert_str_eq(NOTES(&c), "done\n", "FT_MALLOC_SCRIBBLE=1, new blocks:\n%s", NOTES(&c));
	cr_assert_str_eq(ERR(&c), "");
	cr_assert_str_eq(OUT(&c), "");
	child_free(&c);
}

Test(debug_scribble, freed_chunks_read_0x55_past_the_link)
{
	struct child c;
	run_child("scribble_freed", scribble_on, NULL, &c);
	assert_exit0(&c, "scribble_freed");
	cr_assert_str_eq(NOTES(&c), "done\n", "FT_MALLOC_SCRIBBLE=1, freed chunks:\n%s", NOTES(&c));
	cr_assert_str_eq(ERR(&c), "");
	child_free(&c);
}

Test(debug_scribble, aligned_allocators_are_scribbled_too)
{
	struct child c;
	run_child("scribble_aligned", scribble_on, NULL, &c);
	assert_exit0(&c, "scribble_aligned");
	cr_assert_str_eq(NOTES(&c), "done\n", "FT_MALLOC_SCRIBBLE=1, aligned blocks:\n%s", NOTES(&c));
	child_free(&c);
}

/* Without the option, the same scenario sees no 0xAA (a fresh zone reads 0):
 * the scribbling comes from the option, not from chance. */
Test(debug_scribble, off_by_default)
{
	struct child c;
	run_child("scribble_new", NULL, NULL, &c);
	assert_exit0(&c, "scribble_new without the option");
	cr_assert(strstr(NOTES(&c), "malloc ") != NULL, "notes: %s", NOTES(&c));
	cr_assert_str_eq(ERR(&c), "");
	child_free(&c);
}

/* ---- guard: usable size --------------------------------------------------- */

Test(debug_guard, usable_size_is_the_size_asked)
{
	static const char *const opts[] = {"FT_MALLOC_GUARD=1", NULL};
	struct child c;
	run_child("guard_usable", opts, NULL, &c);
	assert_exit0(&c, "guard_usable");
	char want[4096] = "";
	for (size_t k = 0; k < N_GUARD; k++) {
		size_t n = guard_sizes[k];
		size_t len = strlen(want);
		snprintf(want + len, sizeof want - len, "%zu %zu %zu %zu\n", n, n, n, n + 7);
	}
	cr_assert_str_eq(NOTES(&c), want, "malloc_usable_size under FT_MALLOC_GUARD=1 (size, malloc, calloc, realloc +7):\n%s",
			 NOTES(&c));
	cr_assert_str_eq(ERR(&c), "");
	child_free(&c);
}

/* ---- guard: canary ------------------------------------------------------ */

static void overflow_case(size_t n, size_t off, const char *call)
{
	char arg[64];
	snprintf(arg, sizeof arg, "%zu:%zu:%s", n, off, call);
	size_t cls = class_of(n + 1);
	const char *kind = cls <= 512 ? "TINY" : "SMALL";

	/* reported, ignored, the process goes on */
	static const char *const go_on[] = {"FT_MALLOC_GUARD=1", NULL};
	struct child c;
	run_child("guard_overflow", go_on, arg, &c);
	assert_exit0(&c, arg);
	uintptr_t p = 0;
	cr_assert(sscanf(NOTES(&c), "%lx", &p) == 1, "no address noted: %s", NOTES(&c));
	char want[256];
	snprintf(want, sizeof want,
		 "ft_malloc: %s(): heap overflow past 0x%lx (%zu bytes, %s class of %zu bytes) at 0x%lx\n", call,
		 p, n, kind, cls, p + n + off);
	cr_assert_str_eq(ERR(&c), want, "%s with FT_MALLOC_GUARD=1: stderr\n%s\nexpected exactly\n%s", arg, ERR(&c),
			 want);
	char notes[64];
	snprintf(notes, sizeof notes, "0x%lx\nwent on\n", p);
	cr_assert_str_eq(NOTES(&c), notes, "%s: notes %s", arg, NOTES(&c));
	child_free(&c);

	/* with FT_MALLOC_ABORT_ON_ERROR=1: the same line, then SIGABRT */
	static const char *const stop[] = {"FT_MALLOC_GUARD=1", "FT_MALLOC_ABORT_ON_ERROR=1", NULL};
	run_child("guard_overflow", stop, arg, &c);
	cr_assert(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGABRT,
		  "%s with FT_MALLOC_ABORT_ON_ERROR=1: status %#x, stderr %s", arg, c.status, ERR(&c));
	cr_assert(sscanf(NOTES(&c), "%lx", &p) == 1, "no address noted: %s", NOTES(&c));
	snprintf(want, sizeof want,
		 "ft_malloc: %s(): heap overflow past 0x%lx (%zu bytes, %s class of %zu bytes) at 0x%lx\n", call,
		 p, n, kind, cls, p + n + off);
	cr_assert_str_eq(ERR(&c), want, "%s aborting: stderr\n%s\nexpected exactly\n%s", arg, ERR(&c), want);
	snprintf(notes, sizeof notes, "0x%lx\n", p);
	cr_assert_str_eq(NOTES(&c), notes, "%s aborting: went on after the report", arg);
	child_free(&c);
}

Test(debug_guard, one_byte_overflow_tiny_reported_on_free)
{
	overflow_case(0, 0, "free");
	overflow_case(1, 0, "free");
	overflow_case(24, 0, "free");
	overflow_case(100, 0, "free");
	overflow_case(500, 0, "free");
}

Test(debug_guard, overflow_further_into_the_canary)
{
	overflow_case(24, 7, "free");
	overflow_case(100, 11, "free");
	overflow_case(3000, 15, "free");
}

Test(debug_guard, one_byte_overflow_small_reported_on_free)
{
	overflow_case(512, 0, "free");
	overflow_case(3000, 0, "free");
	overflow_case(20000, 0, "free");
	overflow_case(32767, 0, "free");
}

Test(debug_guard, overflow_reported_once_on_realloc)
{
	overflow_case(24, 0, "realloc");
	overflow_case(3000, 0, "realloc");
}

/* A 32768-byte request is the largest SMALL one: its overflow must be caught
 * too, by a report (canary) or by a fault (guard page). */
Test(debug_guard, overflow_of_the_largest_small_request_is_caught)
{
	static const char *const opts[] = {"FT_MALLOC_GUARD=1", NULL};
	struct child c;
	run_child("guard_overflow", opts, "32768:0:free", &c);
	uintptr_t p = 0;
	cr_assert(sscanf(NOTES(&c), "%lx", &p) == 1, "no address noted: %s", NOTES(&c));
	if (WIFSIGNALED(c.status)) {
		cr_assert_eq(WTERMSIG(c.status), SIGSEGV, "killed by signal %d", WTERMSIG(c.status));
	} else {
		char head[128], tail[64];
		snprintf(head, sizeof head, "ft_malloc: free(): heap overflow past 0x%lx (32768 bytes, ", p);
		snprintf(tail, sizeof tail, " bytes) at 0x%lx\n", p + 32768);
		cr_assert(!strncmp(ERR(&c), head, strlen(head)) && strlen(ERR(&c)) > strlen(tail) &&
			      !strcmp(ERR(&c) + strlen(ERR(&c)) - strlen(tail), tail) && !strchr(ERR(&c), '\n')[1],
			  "malloc(32768), p[32768] = 'X', free(p) under FT_MALLOC_GUARD=1: expected one "
			  "heap overflow line or SIGSEGV, got status %#x and stderr \"%s\"",
			  c.status, ERR(&c));
	}
	child_free(&c);
}

/* ---- guard: LARGE guard page ---------------------------------------------- */

Test(debug_guard, large_block_ends_against_a_protected_page)
{
	static const char *const opts[] = {"FT_MALLOC_GUARD=1", NULL};
	struct child c;
	run_child("guard_large_probe", opts, NULL, &c);
	assert_exit0(&c, "guard_large_probe");
	static const size_t sizes[] = {32769, 40000, 40001, 40008, 65536, 100003, 1 << 20};
	char want[2048] = "";
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		size_t end = (sizes[k] + 15) & ~(size_t)15;
		size_t len = strlen(want);
		snprintf(want + len, sizeof want - len, "malloc %zu %zu\ncalloc %zu %zu\nrealloc %zu %zu\n", sizes[k],
			 end, sizes[k], end, sizes[k], end);
	}
	cr_assert_str_eq(NOTES(&c), want, "first faulting offset per LARGE block (size rounded up to 16 expected):\n%s",
			 NOTES(&c));
	cr_assert_str_eq(ERR(&c), "");
	child_free(&c);
}

Test(debug_guard, large_overflow_kills_with_sigsegv)
{
	static const char *const opts[] = {"FT_MALLOC_GUARD=1", NULL};
	struct child c;
	run_child("guard_large_kill", opts, NULL, &c);
	cr_assert(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGSEGV,
		  "writing one byte past malloc(40000): status %#x (exit %d), notes %s", c.status,
		  WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -1, NOTES(&c));
	cr_assert_str_eq(NOTES(&c), "before\n");
	cr_assert_str_eq(ERR(&c), "");
	child_free(&c);

	/* without the guard the same write lands in the mapping's slack */
	run_child("guard_large_kill", NULL, NULL, &c);
	assert_exit0(&c, "guard_large_kill without FT_MALLOC_GUARD");
	cr_assert_str_eq(NOTES(&c), "before\nafter\n");
	child_free(&c);
}
