/*
 * FT_MALLOC_HISTORY and show_alloc_mem_ex (issue 4), each in a fresh
 * process.
 *
 * Options are read once at start-up, so every case re-executes this binary
 * (/proc/self/exe) with the options and a marker variable; a constructor
 * below runs the scenario before Criterion's main. The child logs each call
 * it makes ("OP 0xADDR SIZE") and its thread id to fd 3 with write(2) (no
 * stdio: it allocates), then prints with show_alloc_mem_ex() or dies of a
 * signal. The parent captures fds 1 to 4 and the exit status and checks:
 *
 *  - history: "history: last K of M operations" then K lines
 *    "  #SEQ t=NSns tid=T OP 0xADDR SIZE", M the number of calls the child
 *    made (nothing else in it allocates), K = min(M, N), SEQ consecutive up
 *    to M, times non-decreasing, the child's thread id, and the child's
 *    calls in order, with their addresses and sizes
 *    (malloc, free, realloc, calloc and the aligned allocators); with more
 *    than N operations only the last N remain;
 *  - a fatal signal (raise(SIGSEGV), a real fault, abort(), an abort on a
 *    double free) prints "ft_malloc: fatal signal S" and the history, on
 *    stderr or FT_MALLOC_OUTPUT, and the process still dies of that signal;
 *    without the history nothing is printed;
 *  - show_alloc_mem_ex: every line parsed strictly (zone lines with arena,
 *    class, bounds, chunk counts, used/free bytes and fragmentation, LARGE
 *    mapping lines, block lines, hex+ASCII dump lines), each zone's figures
 *    consistent with the blocks listed under it, the blocks exactly the
 *    child's live ones, each dump line byte for byte the block's first 32
 *    bytes (all of them with FT_MALLOC_SHOW_FULL=1), and the blocks and the
 *    Total the same as show_alloc_mem's.
 *
 * ft_malloc only.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
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

#define MARKER "FTM_TEST_DEBUG_HISTORY_CHILD"

/* ======================================================================== */
/* Child side: no stdio, notes written to fd 3.                             */
/* ======================================================================== */

/* "OP 0xADDR SIZE\n": one operation as the history should show it. */
static void log_op(const char *op, uintptr_t p, size_t size)
{
	note(op);
	note(" ");
	note_num(p, 16);
	note(" ");
	note_num(size, 10);
	note("\n");
}

static void *h_malloc(size_t n)
{
	void *p = malloc(n);
	if (!p)
		_exit(121);
	log_op("malloc", (uintptr_t)p, n);
	return p;
}

static void h_free(void *p)
{
	uintptr_t a = (uintptr_t)p;
	__asm__ volatile("" : "+r"(a));
	free(p);
	log_op("free", a, 0);
}

static void *h_realloc(void *p, size_t n)
{
	uintptr_t old = (uintptr_t)p;
	__asm__ volatile("" : "+r"(old)); /* only the number is used after */
	void *q = realloc(p, n);
	if (!old)
		log_op("malloc", (uintptr_t)q, n);
	else if (!n)
		log_op("free", old, 0);
	else
		log_op("realloc", (uintptr_t)q, n);
	return q;
}

static void note_tid(void)
{
	note("tid ");
	note_num((uint64_t)gettid(), 10);
	note("\n");
}

/* Blocks of every kind, freed, reused. */
static void child_history_basic(void)
{
	char *a = h_malloc(24);
	char *b = h_malloc(3000);
	char *c = h_malloc(40000);
	h_free(a);
	char *d = h_malloc(0);
	char *e = h_malloc(24);
	h_free(c);
	h_free(b);
	h_free(e);
	h_free(d);
	note_tid();
}

static void child_history_realloc(void)
{
	char *a = h_malloc(100);
	a = h_realloc(a, 5000);
	a = h_realloc(a, 50);
	a = h_realloc(a, 60000);
	h_free(a);
	char *b = h_realloc(NULL, 70);
	h_realloc(b, 0);
	note_tid();
}

/* calloc and the aligned allocators are allocations too: logged as malloc
 * with the bytes asked for. */
static void child_history_others(void)
{
	char *a = calloc(10, 10);
	log_op("malloc", (uintptr_t)a, 100);
	char *b = calloc(1, 50000);
	log_op("malloc", (uintptr_t)b, 50000);
	char *c = aligned_alloc(64, 128);
	log_op("malloc", (uintptr_t)c, 128);
	void *d = NULL;
	if (posix_memalign(&d, 4096, 5000))
		_exit(122);
	log_op("malloc", (uintptr_t)d, 5000);
	h_free(a);
	h_free(b);
	h_free(c);
	h_free(d);
	note_tid();
}

/* 20 operations for a ring of 8. */
static void child_history_wrap(void)
{
	void *v[10];
	for (int i = 0; i < 10; i++) {
		v[i] = h_malloc(16 * (size_t)(i + 1));
		if (i % 2)
			h_free(v[i - 1]);
	}
	for (int i = 1; i < 10; i += 2)
		h_free(v[i]);
	note_tid();
}

static void child_show_history(void)
{
	const char *which = getenv("FTM_TEST_DEBUG_HISTORY_WHICH");
	if (!strcmp(which, "basic"))
		child_history_basic();
	else if (!strcmp(which, "realloc"))
		child_history_realloc();
	else if (!strcmp(which, "others"))
		child_history_others();
	else
		child_history_wrap();
	show_alloc_mem_ex();
}

static void child_fatal(void)
{
	const char *how = getenv("FTM_TEST_DEBUG_HISTORY_WHICH");
	char *a = h_malloc(48);
	char *b = h_malloc(7000);
	h_free(a);
	note_tid();
	if (!strcmp(how, "raise_segv")) {
		raise(SIGSEGV);
	} else if (!strcmp(how, "fault")) {
		*(volatile int *)(uintptr_t)8 = 1;
	} else if (!strcmp(how, "abort")) {
		abort();
	} else if (!strcmp(how, "double_free")) {
		note("double ");
		note_num((uintptr_t)b, 16);
		note("\n");
		h_free(b);
		char *volatile again = b;
		free(again);
	}
	note("survived\n");
}

/* A deterministic byte pattern, with printable and unprintable bytes. */
static unsigned char pat(size_t i, unsigned seed)
{
	static const char text[] = "Hello, ft_malloc! 0123456789 ~{}";
	size_t k = (i + seed) % 48;
	return k < 32 ? (unsigned char)text[k] : (unsigned char)(k * 37 + seed);
}

static void *show_block(size_t n, unsigned seed)
{
	unsigned char *p = malloc(n);
	if (!p)
		_exit(123);
	for (size_t i = 0; i < n; i++)
		p[i] = pat(i, seed);
	note_num((uintptr_t)p, 16);
	note(" ");
	note_num(n, 10);
	note(" ");
	note_num(seed, 10);
	note("\n");
	return p;
}

static void child_show_ex(void)
{
	static const size_t sizes[] = {24, 24, 5, 100, 0, 512, 3000, 20000, 40000, 100003};
	for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++)
		show_block(sizes[i], i * 5 + 1);
	free(malloc(24)); /* in the thread cache: not shown */
	free(malloc(70000));
	show_alloc_mem();
	if (write(1, "=====\n", 6) != 6)
		_exit(124);
	show_alloc_mem_ex();
}

__attribute__((constructor)) static void debug_child(void)
{
	const char *mode = getenv(MARKER);
	if (!mode)
		return;
	if (!strcmp(mode, "history"))
		child_show_history();
	else if (!strcmp(mode, "fatal"))
		child_fatal();
	else if (!strcmp(mode, "show_ex"))
		child_show_ex();
	else
		_exit(99);
	exit(0);
}

/* ======================================================================== */
/* Parent side                                                              */
/* ======================================================================== */

/* Runs this binary as scenario `mode` (sub-case `which`) with the
 * FT_MALLOC_ settings in opts (NULL-terminated). */
static void run_child(const char *mode, const char *which, const char *const *opts, struct child *c)
{
	char marker[128], sub[128];
	snprintf(marker, sizeof marker, "%s=%s", MARKER, mode);
	snprintf(sub, sizeof sub, "FTM_TEST_DEBUG_HISTORY_WHICH=%s", which ? which : "");
	child_spawn("api_debug_history", (const char *const[]){marker, sub, NULL}, opts, CHILD_FDS, c);
}

/* ---- history -------------------------------------------------------------- */

struct op {
	char name[16];
	uintptr_t addr;
	uint64_t size;
};

struct ops {
	struct op v[64];
	size_t n;
	unsigned long tid;
};

/* The calls the child logged, and its thread id. */
static void parse_notes(const char *notes, struct ops *o)
{
	o->n = 0;
	o->tid = 0;
	for (const char *line = notes; *line; line = strchr(line, '\n') + 1) {
		cr_assert(strchr(line, '\n'), "unterminated note");
		struct op op;
		if (sscanf(line, "tid %lu", &o->tid) == 1)
			continue;
		if (sscanf(line, "%15[a-z] 0x%lx %lu", op.name, &op.addr, &op.size) == 3 &&
		    (!strcmp(op.name, "malloc") || !strcmp(op.name, "free") || !strcmp(op.name, "realloc"))) {
			cr_assert(o->n < 64);
			o->v[o->n++] = op;
		}
	}
	cr_assert(o->tid > 0, "the child noted no thread id:\n%s", notes);
}

/* Checks the history block starting at text ("history: ..."): header and
 * lines strictly formatted, sequence numbers consecutive up to M, K =
 * min(M, ring), times non-decreasing, every line from the child's thread,
 * and the child's calls (the last `want` ones logged) as the last lines.
 * Returns what follows the block. */
static const char *check_history(const char *text, size_t ring, const struct ops *want)
{
	unsigned long k = 0, m = 0;
	int used = -1;
	cr_assert(sscanf(text, "history: last %lu of %lu operations%n", &k, &m, &used) == 2 && used > 0,
		  "no history header at:\n%.200s", text);
	char again[128];
	snprintf(again, sizeof again, "history: last %lu of %lu operations\n", k, m);
	cr_assert(!strncmp(text, again, strlen(again)), "history header not canonical: %.80s", text);
	used = (int)strlen(again);
	cr_assert_eq(k, m < ring ? m : ring, "history: K=%lu, M=%lu, ring of %zu", k, m, ring);
	/* nothing else in the child allocates: M counts exactly its calls */
	cr_assert_eq(m, want->n, "%lu operations recorded, the child made %zu calls", m, want->n);
	const char *s = text + used;
	struct op got[1024];
	uint64_t last_ns = 0;
	cr_assert(k <= 1024);
	for (unsigned long i = 0; i < k; i++) {
		unsigned long seq, tid;
		uint64_t ns;
		struct op op;
		const char *nl = strchr(s, '\n');
		cr_assert(nl, "history ends early");
		char line[256];
		snprintf(line, sizeof line, "%.*s", (int)(nl - s), s);
		used = -1;
		cr_assert(sscanf(line, "  #%lu t=%luns tid=%lu %15s 0x%lx %lu%n", &seq, &ns, &tid, op.name, &op.addr,
				 &op.size, &used) == 6 &&
			      used == (int)strlen(line),
			  "bad history line: \"%s\"", line);
		snprintf(again, sizeof again, "  #%lu t=%luns tid=%lu %s 0x%lx %lu", seq, ns, tid, op.name, op.addr,
			 op.size);
		cr_assert_str_eq(line, again, "history line not canonical: \"%s\" vs \"%s\"", line, again);
		cr_assert_eq(seq, m - k + i + 1, "history line %lu has #%lu: %s", i, seq, line);
		cr_assert(ns >= last_ns, "history times go backwards: %s", line);
		last_ns = ns;
		cr_assert_eq(tid, want->tid, "history line from thread %lu, the child is %lu", tid, want->tid);
		cr_assert(!strcmp(op.name, "malloc") || !strcmp(op.name, "free") || !strcmp(op.name, "realloc"),
			  "unknown operation: %s", line);
		got[i] = op;
		s = nl + 1;
	}
	/* the child's calls, last and in order (all of them when they fit) */
	size_t tail = want->n < k ? want->n : k;
	for (size_t i = 0; i < tail; i++) {
		const struct op *g = &got[k - tail + i], *w = &want->v[want->n - tail + i];
		cr_assert(!strcmp(g->name, w->name) && g->addr == w->addr && g->size == w->size,
			  "history entry %zu of the last %zu: \"%s 0x%lx %lu\", the child did \"%s 0x%lx %lu\"", i,
			  tail, g->name, g->addr, g->size, w->name, w->addr, w->size);
	}
	return s;
}

/* show_alloc_mem_ex's output up to its Total line; returns the history. */
static const char *after_total(const char *out)
{
	const char *t = strstr(out, "\nTotal : ");
	cr_assert(t, "no Total line in:\n%s", out);
	const char *nl = strchr(t + 1, '\n');
	cr_assert(nl);
	return nl + 1;
}

static void history_case(const char *which, const char *ring_opt, size_t ring)
{
	const char *const opts[] = {ring_opt, NULL};
	struct child c;
	run_child("history", which, opts, &c);
	assert_exit0(&c, which);
	cr_assert_str_eq(ERR(&c), "");
	struct ops want;
	parse_notes(NOTES(&c), &want);
	const char *rest = check_history(after_total(OUT(&c)), ring, &want);
	cr_assert_str_eq(rest, "", "more after the history");
	child_free(&c);
}

Test(debug_history, holds_the_calls_in_order)
{
	history_case("basic", "FT_MALLOC_HISTORY=1000", 1000);
}

Test(debug_history, ring_keeps_only_the_last_n)
{
	/* 20 calls, a ring of 8: "last 8 of 20", #13 to #20 */
	history_case("wrap", "FT_MALLOC_HISTORY=8", 8);
}

Test(debug_history, one_entry_per_realloc)
{
	history_case("realloc", "FT_MALLOC_HISTORY=64", 64);
}

Test(debug_history, calloc_and_aligned_allocations_recorded)
{
	history_case("others", "FT_MALLOC_HISTORY=64", 64);
}

Test(debug_history, no_history_without_the_option)
{
	struct child c;
	run_child("history", "basic", NULL, &c);
	assert_exit0(&c, "basic without history");
	cr_assert_str_eq(after_total(OUT(&c)), "", "show_alloc_mem_ex printed after Total without history");
	child_free(&c);
}

/* ---- fatal signals ------------------------------------------------------ */

static void fatal_case(const char *how, int sig, const char *const *opts, bool to_spare)
{
	struct child c;
	run_child("fatal", how, opts, &c);
	assert_signal(&c, sig, how);
	struct ops want;
	parse_notes(NOTES(&c), &want);
	cr_assert(!strstr(NOTES(&c), "survived"));
	const char *report = to_spare ? SPARE(&c) : ERR(&c);
	if (to_spare)
		cr_assert_str_eq(ERR(&c), "", "%s: stderr should be silent with FT_MALLOC_OUTPUT=4", how);
	char head[128] = "";
	if (!strcmp(how, "double_free")) {
		uintptr_t b = (uintptr_t)strtoull(strstr(NOTES(&c), "double ") + 7, NULL, 16);
		snprintf(head, sizeof head, "ft_malloc: free(): double free 0x%lx\n", b);
	}
	snprintf(head + strlen(head), sizeof head - strlen(head), "ft_malloc: fatal signal %d\n", sig);
	cr_assert(!strncmp(report, head, strlen(head)), "%s: report\n%s\nshould start with\n%s", how, report, head);
	const char *rest = check_history(report + strlen(head), 16, &want);
	cr_assert_str_eq(rest, "", "%s: more after the history", how);
	child_free(&c);
}

Test(debug_history, fatal_signal_prints_the_history)
{
	static const char *const opts[] = {"FT_MALLOC_HISTORY=16", NULL};
	fatal_case("raise_segv", SIGSEGV, opts, false);
	fatal_case("fault", SIGSEGV, opts, false);
	fatal_case("abort", SIGABRT, opts, false);
}

Test(debug_history, abort_on_error_prints_the_history)
{
	static const char *const opts[] = {"FT_MALLOC_HISTORY=16", "FT_MALLOC_ABORT_ON_ERROR=1", NULL};
	fatal_case("double_free", SIGABRT, opts, false);
}

Test(debug_history, fatal_signal_report_goes_to_the_output_fd)
{
	static const char *const opts[] = {"FT_MALLOC_HISTORY=16", "FT_MALLOC_OUTPUT=4", NULL};
	fatal_case("raise_segv", SIGSEGV, opts, true);
}

Test(debug_history, no_history_no_fatal_report)
{
	struct child c;
	run_child("fatal", "raise_segv", NULL, &c);
	assert_signal(&c, SIGSEGV, "raise(SIGSEGV) without history");
	cr_assert_str_eq(ERR(&c), "");
	child_free(&c);
	run_child("fatal", "double_free", (const char *const[]){"FT_MALLOC_HISTORY=0", NULL}, &c);
	assert_exit0(&c, "double free, history 0");
	uintptr_t b = (uintptr_t)strtoull(strstr(NOTES(&c), "double ") + 7, NULL, 16);
	char want[128];
	snprintf(want, sizeof want, "ft_malloc: free(): double free 0x%lx\n", b);
	cr_assert_str_eq(ERR(&c), want);
	child_free(&c);
}

/* ---- show_alloc_mem_ex ---------------------------------------------------- */

struct shown {
	uintptr_t addr;
	size_t size;
	unsigned seed;
};

/* One expected dump line: bytes [from, from + 16) of a block of n bytes. */
static void dump_line(char *buf, size_t cap, size_t from, size_t n, unsigned seed)
{
	size_t len = (size_t)snprintf(buf, cap, "    ");
	for (size_t i = from; i < from + 16; i++)
		len += (size_t)(i < n ? snprintf(buf + len, cap - len, "%02x ", pat(i, seed))
				      : snprintf(buf + len, cap - len, "   "));
	len += (size_t)snprintf(buf + len, cap - len, " |");
	for (size_t i = from; i < from + 16 && i < n; i++) {
		unsigned char b = pat(i, seed);
		buf[len++] = b >= 32 && b < 127 ? (char)b : '.';
	}
	snprintf(buf + len, cap - len, "|");
}

/* Next line of *s (NUL-terminated copy in line), advancing *s. */
static bool next_line(const char **s, char *line, size_t cap)
{
	const char *nl = strchr(*s, '\n');
	if (!nl)
		return false;
	snprintf(line, cap, "%.*s", (int)(nl - *s), *s);
	*s = nl + 1;
	return true;
}

static void show_ex_case(bool full)
{
	const char *const opts[] = {full ? "FT_MALLOC_SHOW_FULL=1" : NULL, NULL};
	struct child c;
	run_child("show_ex", NULL, opts, &c);
	assert_exit0(&c, "show_ex");
	cr_assert_str_eq(ERR(&c), "");

	/* the child's blocks */
	struct shown blocks[32];
	size_t nblocks = 0;
	for (const char *l = NOTES(&c); *l; l = strchr(l, '\n') + 1) {
		cr_assert(nblocks < 32);
		struct shown *b = &blocks[nblocks++];
		cr_assert(sscanf(l, "0x%lx %zu %u", &b->addr, &b->size, &b->seed) == 3, "bad note: %s", l);
	}
	cr_assert_eq(nblocks, 10);

	/* show_alloc_mem's part: its block lines and Total */
	const char *sep = strstr(OUT(&c), "=====\n");
	cr_assert(sep, "no separator in:\n%s", OUT(&c));
	char plain[8192] = "";
	for (const char *s = OUT(&c); s < sep;) {
		char line[256];
		cr_assert(next_line(&s, line, sizeof line));
		if (!strncmp(line, "0x", 2) || !strncmp(line, "Total", 5)) {
			strcat(plain, line);
			strcat(plain, "\n");
		}
	}

	/* the _ex part, line by line */
	const char *s = sep + 6;
	char line[256], want[256], same[8192] = "";
	uintptr_t last_region = 0;
	size_t listed = 0, sum = 0;
	bool total_seen = false;
	struct {
		bool large;
		uintptr_t lo, hi;
		uint64_t cls, live, carved, cap, used, free_b, frag, arena;
		uint64_t seen_live, seen_used;
	} z = {0};
	while (next_line(&s, line, sizeof line)) {
		cr_assert(!total_seen, "a line after Total: %s", line);
		int used = -1;
		uintptr_t a, e;
		size_t n;
		if (!strncmp(line, "TINY : ", 7) || !strncmp(line, "SMALL : ", 8)) {
			cr_assert(!z.lo || z.large || (z.seen_live == z.live && z.seen_used == z.used),
				  "previous zone: %lu blocks / %lu bytes listed, its line said %lu / %lu", z.seen_live,
				  z.seen_used, z.live, z.used);
			char kind[8];
			memset(&z, 0, sizeof z);
			cr_assert(sscanf(line,
					 "%7s : 0x%lx - 0x%lx arena %lu, class %lu B, chunks %lu live / %lu carved / %lu, "
					 "used %lu B, free %lu B, fragmentation %lu%%%n",
					 kind, &z.lo, &z.hi, &z.arena, &z.cls, &z.live, &z.carved, &z.cap, &z.used,
					 &z.free_b, &z.frag, &used) == 11 &&
				      used == (int)strlen(line),
				  "bad zone line: \"%s\"", line);
			snprintf(want, sizeof want,
				 "%s : 0x%lx - 0x%lx arena %lu, class %lu B, chunks %lu live / %lu carved / %lu, used %lu "
				 "B, free %lu B, fragmentation %lu%%",
				 z.cls <= 512 ? "TINY" : "SMALL", z.lo, z.hi, z.arena, z.cls, z.live, z.carved, z.cap,
				 z.used, z.free_b, z.frag);
			cr_assert_str_eq(line, want, "zone line not canonical (or wrong kind)");
			cr_assert(z.lo > last_region, "zones not in address order");
			last_region = z.lo;
			cr_assert(z.live <= z.carved && z.carved <= z.cap && z.cap >= 100, "%s", line);
			cr_assert(z.cap * z.cls <= z.hi - z.lo, "%s: capacity exceeds the zone", line);
			cr_assert_eq(z.free_b, z.cap * z.cls - z.used, "%s: free is not capacity - used", line);
			uint64_t carved_b = z.carved * z.cls;
			cr_assert_eq(z.frag, carved_b ? (carved_b - z.used) * 100 / carved_b : 0,
				     "%s: fragmentation is not the share of carved bytes not live", line);
		} else if (!strncmp(line, "LARGE : ", 8)) {
			cr_assert(!z.lo || z.large || (z.seen_live == z.live && z.seen_used == z.used),
				  "previous zone: %lu blocks / %lu bytes listed, its line said %lu / %lu", z.seen_live,
				  z.seen_used, z.live, z.used);
			uint64_t len;
			memset(&z, 0, sizeof z);
			cr_assert(sscanf(line, "LARGE : 0x%lx - 0x%lx mapping of %lu B%n", &z.lo, &z.hi, &len, &used) ==
					      3 &&
				      used == (int)strlen(line),
				  "bad LARGE line: \"%s\"", line);
			snprintf(want, sizeof want, "LARGE : 0x%lx - 0x%lx mapping of %lu B", z.lo, z.hi, len);
			cr_assert_str_eq(line, want);
			cr_assert_eq(z.hi - z.lo, len);
			cr_assert(z.lo > last_region, "zones not in address order");
			last_region = z.lo;
			z.large = true;
		} else if (sscanf(line, "0x%lx - 0x%lx : %zu bytes%n", &a, &e, &n, &used) == 3 &&
			   used == (int)strlen(line)) {
			snprintf(want, sizeof want, "0x%lx - 0x%lx : %zu bytes", a, e, n);
			cr_assert_str_eq(line, want);
			strcat(same, line);
			strcat(same, "\n");
			cr_assert(z.lo && a >= z.lo && e <= z.hi && e - a == n, "block outside its zone: %s", line);
			cr_assert(!z.large || z.seen_live == 0, "two blocks in one LARGE mapping");
			z.seen_live++;
			z.seen_used += n;
			sum += n;
			size_t k = 0;
			while (k < nblocks && blocks[k].addr != a)
				k++;
			cr_assert(k < nblocks, "block %s is not one of the child's", line);
			cr_assert_eq(blocks[k].size, n, "block %s: the child asked for %zu", line, blocks[k].size);
			listed++;
			size_t shown = full || n < 32 ? n : 32;
			for (size_t from = 0; from < shown; from += 16) {
				cr_assert(next_line(&s, line, sizeof line), "dump of 0x%lx ends early", a);
				dump_line(want, sizeof want, from, shown, blocks[k].seed);
				cr_assert_str_eq(line, want, "dump of 0x%lx at byte %zu", a, from);
			}
		} else if (sscanf(line, "Total : %zu bytes%n", &n, &used) == 1 && used == (int)strlen(line)) {
			cr_assert(!z.lo || z.large || (z.seen_live == z.live && z.seen_used == z.used),
				  "last zone: %lu blocks / %lu bytes listed, its line said %lu / %lu", z.seen_live,
				  z.seen_used, z.live, z.used);
			cr_assert_eq(n, sum, "Total %zu, blocks listed sum to %zu", n, sum);
			strcat(same, line);
			strcat(same, "\n");
			total_seen = true;
		} else {
			cr_assert_fail("unexpected line: \"%s\"", line);
		}
	}
	cr_assert(total_seen, "no Total line");
	cr_assert_str_eq(s, "", "unterminated last line");
	cr_assert_eq(listed, nblocks, "%zu blocks listed, the child has %zu live", listed, nblocks);
	cr_assert_str_eq(same, plain, "show_alloc_mem_ex's blocks and Total differ from show_alloc_mem's");
	child_free(&c);
}

Test(debug_show_ex, zones_blocks_and_first_bytes)
{
	show_ex_case(false);
}

Test(debug_show_ex, full_dump)
{
	show_ex_case(true);
}
