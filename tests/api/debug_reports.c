/*
 * The reports of issue 4, each from a fresh process: FT_MALLOC_LEAK_REPORT,
 * FT_MALLOC_STATS, FT_MALLOC_OUTPUT (a path or a file descriptor),
 * FT_MALLOC_DUMP and FT_MALLOC_DUMP_SIGNAL, and silence when no option is
 * set (or every option is set to off).
 *
 * Options are read once at start-up and the reports are written at exit,
 * so every case re-executes this binary (/proc/self/exe) with the options
 * and a marker variable; a constructor below runs the scenario before
 * Criterion's main and calls exit(), which runs the library's exit report.
 * The child never uses stdio (it allocates buffers that would show up as
 * leaks); it writes what it did, e.g. the address and size of each block
 * it leaves live, to fd 3 with write(2). The parent captures fds 1 to 4 and
 * compares the reports with the child's own account:
 *
 *  - leak report: the whole text, byte for byte (header with count and
 *    bytes, one line per size class group, LARGE last, then each live block
 *    in address order with its size and class), and nothing but the header
 *    when every block was freed;
 *  - stats: every line parsed strictly; each arena's zone and in-use
 *    counters are the sums of its class lines, the total's mallocs the sum
 *    of all class lines; for two classes only the child uses, mallocs,
 *    frees and in-use bytes equal what it did (one class from the main
 *    thread, one from a thread that exited); LARGE blocks, mmap and munmap
 *    counts cover what it mapped and unmapped, and after malloc_trim no
 *    freed LARGE range is left cached;
 *  - output: with FT_MALLOC_OUTPUT=path or =fd, diagnostics and reports go
 *    there and nothing to stderr; an unusable path is reported on stderr;
 *  - dump: every JSON line parsed strictly (flat objects, documented keys
 *    in order), the structure checked (zones and LARGE mappings in address
 *    order, states and chunk lines agreeing, end totals) and the live
 *    blocks equal to the child's, at exit and on each FT_MALLOC_DUMP_SIGNAL;
 *  - quiet: with no option, nothing at all is printed.
 *
 * ft_malloc only.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ft_malloc.h"

#include "child.h"

#define MARKER "FTM_TEST_DEBUG_REPORTS_CHILD"

/* ======================================================================== */
/* Child side: no stdio, notes written to fd 3.                             */
/* ======================================================================== */

/* "0xADDR SIZE\n": a block the child leaves live. */
static void *note_live(void *p, size_t size)
{
	if (!p)
		_exit(121);
	note_num((uintptr_t)p, 16);
	note(" ");
	note_num(size, 10);
	note("\n");
	return p;
}

static void *keep_malloc(size_t size)
{
	return note_live(malloc(size), size);
}

/* "freed 0xADDR\n": a block the child freed. */
static void free_noted(void *p)
{
	uintptr_t a = (uintptr_t)p;
	free(opaque(p));
	note("freed ");
	note_num(a, 16);
	note("\n");
}

/* Leaves a known set of blocks of every kind live, frees others. */
static void child_leaks(void)
{
	static const size_t sizes[] = {24, 24, 24, 100, 0, 3000, 3000, 20000, 40000, 100000};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
		keep_malloc(sizes[i]);
	free(opaque(malloc(50)));
	free(opaque(malloc(5000)));
	free(opaque(malloc(70000)));
	char *r = malloc(64);
	note_live(realloc(r, 4000), 4000);
	note_live(calloc(3, 100), 300);
	void *a = NULL;
	if (posix_memalign(&a, 256, 256))
		_exit(122);
	note_live(a, 256);
}

/* Call sites for FT_MALLOC_CALLERS: exported (the test links with
 * -rdynamic) so that the report can name them. A call site is one call
 * instruction, so each function makes its calls from one place, in a loop
 * the compiler cannot unroll. */
static volatile int twice = 2, thrice = 3;

__attribute__((noinline)) void ftm_test_leak_malloc(void)
{
	for (int i = 0; i < thrice; i++)
		note_live(malloc(40), 40);
	free(opaque(malloc(70)));
}

__attribute__((noinline)) void ftm_test_leak_calloc(void)
{
	for (int i = 0; i < twice; i++)
		note_live(calloc(1, 300), 300);
}

/* one realloc call instruction, reached with NULL and with a block */
__attribute__((noinline)) void *ftm_test_leak_realloc(void *p, size_t size)
{
	return note_live(realloc(opaque(p), size), size);
}

__attribute__((noinline)) void ftm_test_leak_memalign(void)
{
	void *p = NULL;
	if (posix_memalign(&p, 64, 100))
		_exit(122);
	note_live(p, 100);
}

__attribute__((noinline)) void ftm_test_leak_valloc(void)
{
	note_live(valloc(10), 10);
}

static void child_callers(void)
{
	ftm_test_leak_malloc();
	ftm_test_leak_calloc();
	ftm_test_leak_realloc(NULL, 5000);
	ftm_test_leak_realloc(malloc(10), 2000);
	ftm_test_leak_memalign();
	ftm_test_leak_valloc();
}

static void child_no_leaks(void)
{
	void *v[8];
	static const size_t sizes[] = {24, 100, 3000, 20000, 40000, 100000, 0, 512};
	for (size_t i = 0; i < 8; i++)
		v[i] = malloc(sizes[i]);
	v[2] = realloc(v[2], 6000);
	for (size_t i = 0; i < 8; i++)
		free(v[i]);
}

/* A thread that uses the 10240 class alone: 7 mallocs, 3 frees, then exits
 * (its cache goes home and its counters merge into its arena). */
static void *stats_worker(void *arg)
{
	void **v = arg;
	for (int i = 0; i < 7; i++)
		v[i] = malloc(10000);
	for (int i = 0; i < 3; i++)
		free(v[i]);
	return NULL;
}

static void child_stats(void)
{
	/* the 20480 class, from the main thread: 10 mallocs, 4 frees */
	void *v[10];
	for (int i = 0; i < 10; i++)
		v[i] = malloc(20000);
	for (int i = 0; i < 4; i++)
		free(v[i * 2]);
	/* the 10240 class, from a thread that has exited at exit */
	static void *w[7];
	pthread_t t;
	if (pthread_create(&t, NULL, stats_worker, w) || pthread_join(t, NULL))
		_exit(123);
	/* two LARGE blocks live; one too big to keep cached: unmapped */
	keep_malloc(40000);
	keep_malloc(100000);
	free(opaque(malloc(20 << 20)));
	/* hand the main thread's cached chunks back: "in use" is then exactly
	 * the live chunks */
	malloc_trim(0);
}

/* Two LARGE blocks of 1 MiB freed: their ranges stay cached unless
 * FT_MALLOC_DECAY_MS lets them go at once. */
static void child_decay(void)
{
	void *a = malloc(1 << 20), *b = malloc(1 << 20);
	free(opaque(a));
	free(opaque(b));
}

/* A double free, a leaked block, then (with FT_MALLOC_GUARD) an overflow:
 * three kinds of output for FT_MALLOC_OUTPUT. */
static void child_output(void)
{
	char *p = malloc(40);
	note("double ");
	note_num((uintptr_t)p, 16);
	note("\n");
	char *volatile again = p;
	free(p);
	free(again);
	keep_malloc(24);
	if (getenv("FT_MALLOC_GUARD")) {
		char *q = malloc(40);
		note("overflow ");
		note_num((uintptr_t)q, 16);
		note("\n");
		q[40] = 'X';
		free(opaque(q));
	}
}

static void dump_section(void)
{
	note("dump\n");
}

/* Blocks of every kind; some freed, two signal dumps, one at exit. */
static void child_dump(void)
{
	int sig = getenv("FT_MALLOC_DUMP_SIGNAL") ? SIGUSR1 : 0;
	dump_section();
	void *live1[] = {keep_malloc(24), keep_malloc(24), keep_malloc(300), keep_malloc(3000),
			 keep_malloc(40000)};
	char *f1 = malloc(24), *f2 = malloc(24), *f3 = malloc(3000);
	free_noted(f1);
	free_noted(f2);
	free_noted(f3);
	if (!sig)
		return;
	raise(sig);
	dump_section();
	free_noted(live1[1]);
	free_noted(live1[4]);
	note_live(live1[0], 24);
	note_live(live1[2], 300);
	note_live(live1[3], 3000);
	keep_malloc(5000);
	keep_malloc(70000);
	keep_malloc(0);
	raise(sig);
	/* the notes of the second dump stand for the exit dump too */
}

static void child_quiet(void)
{
	keep_malloc(24);
	keep_malloc(40000);
	char *p = malloc(3000);
	p = realloc(p, 9000);
	free(p);
	p = calloc(10, 10);
	free(p);
	p = aligned_alloc(64, 128);
	free(p);
	show_alloc_mem_json(-1); /* a bad fd: nothing to see */
}

/* Leaks one block and closes stderr before exit, as coreutils do. */
static void child_closes_stderr(void)
{
	keep_malloc(24);
	close(2);
}

/* Closes every descriptor above the harness's and gives the numbers to its
 * stdout, like a program that closes all and opens files of its own: the
 * report must not land in them. */
static void child_reuses_numbers(void)
{
	keep_malloc(24);
	for (int fd = CHILD_FDS + 1; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0 && dup2(1, fd) != fd)
			_exit(123);
}

__attribute__((constructor)) static void debug_child(void)
{
	const char *mode = getenv(MARKER);
	if (!mode)
		return;
	if (!strcmp(mode, "leaks"))
		child_leaks();
	else if (!strcmp(mode, "no_leaks"))
		child_no_leaks();
	else if (!strcmp(mode, "callers"))
		child_callers();
	else if (!strcmp(mode, "stats"))
		child_stats();
	else if (!strcmp(mode, "output"))
		child_output();
	else if (!strcmp(mode, "decay"))
		child_decay();
	else if (!strcmp(mode, "dump"))
		child_dump();
	else if (!strcmp(mode, "quiet"))
		child_quiet();
	else if (!strcmp(mode, "closes_stderr"))
		child_closes_stderr();
	else if (!strcmp(mode, "reuses_numbers"))
		child_reuses_numbers();
	else
		_exit(99);
	exit(0);
}

/* ======================================================================== */
/* Parent side                                                              */
/* ======================================================================== */

static char *slurp_path(const char *path)
{
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0, "cannot open %s: %s", path, strerror(errno));
	char *s = slurp_fd(fd);
	close(fd);
	return s;
}

/* Runs this binary as scenario `mode` with the FT_MALLOC_ settings in opts
 * (NULL-terminated); nothing else of ours reaches the child. */
static void run_child(const char *mode, const char *const *opts, struct child *c)
{
	char marker[128];
	snprintf(marker, sizeof marker, "%s=%s", MARKER, mode);
	child_spawn("api_debug_reports", (const char *const[]){marker, NULL}, opts, CHILD_FDS, c);
}

/* Class sizes in index order, derived from class_of. */
static size_t class_by_index(size_t index)
{
	size_t size = 0;
	for (size_t i = 0; i <= index; i++)
		size = class_of(size + 1);
	return size;
}

/* ---- the child's notes ---------------------------------------------------- */

struct block {
	uintptr_t addr;
	size_t size;
};

struct account {
	struct block live[64];
	size_t nlive;
	uintptr_t freed[64];
	size_t nfreed;
};

/* Parses the notes of dump section `section` (0-based; sections start with
 * "dump\n"; without any, the whole notes are section 0). Live blocks of a
 * section are those noted in it; freed ones accumulate over sections. */
static void parse_account(const char *notes, int section, struct account *a)
{
	memset(a, 0, sizeof *a);
	int current = strncmp(notes, "dump\n", 5) ? 0 : -1;
	for (const char *line = notes; *line; line = strchr(line, '\n') + 1) {
		uintptr_t addr;
		size_t size;
		if (!strncmp(line, "dump\n", 5)) {
			current++;
			if (current <= section)
				a->nlive = 0;
		} else if (current <= section && sscanf(line, "freed %lx", &addr) == 1) {
			cr_assert(a->nfreed < 64);
			a->freed[a->nfreed++] = addr;
		} else if (current == section && !strncmp(line, "0x", 2) &&
			   sscanf(line, "%lx %zu", &addr, &size) == 2) {
			cr_assert(a->nlive < 64);
			a->live[a->nlive++] = (struct block){addr, size};
		}
		cr_assert(strchr(line, '\n'), "unterminated note: %s", line);
	}
	cr_assert(current >= section, "the child noted no section %d:\n%s", section, notes);
}

static int by_addr(const void *x, const void *y)
{
	const struct block *a = x, *b = y;
	return a->addr < b->addr ? -1 : a->addr > b->addr;
}

/* ======================================================================== */
/* Leak report                                                              */
/* ======================================================================== */

/* The exact report for the blocks in a. */
static void expected_leak_report(struct account *a, char *buf, size_t cap)
{
	qsort(a->live, a->nlive, sizeof *a->live, by_addr);
	size_t bytes = 0;
	for (size_t i = 0; i < a->nlive; i++)
		bytes += a->live[i].size;
	size_t len = (size_t)snprintf(buf, cap, "ft_malloc: leak report: %zu blocks, %zu bytes live at exit\n",
				      a->nlive, bytes);
	/* groups: classes by increasing size, LARGE last */
	size_t classes = class_count();
	for (size_t index = 0; index <= classes; index++) {
		size_t cls = index < classes ? class_by_index(index) : 0;
		size_t count = 0, sum = 0;
		for (size_t i = 0; i < a->nlive; i++) {
			size_t s = a->live[i].size;
			if (index < classes ? s <= 32768 && class_of(s) == cls : s > 32768) {
				count++;
				sum += s;
			}
		}
		if (!count)
			continue;
		if (index == classes)
			len += (size_t)snprintf(buf + len, cap - len, "  LARGE: %zu blocks, %zu bytes\n", count, sum);
		else
			len += (size_t)snprintf(buf + len, cap - len, "  %s %zu: %zu blocks, %zu bytes\n",
						cls <= 512 ? "TINY" : "SMALL", cls, count, sum);
	}
	for (size_t i = 0; i < a->nlive; i++) {
		size_t s = a->live[i].size;
		if (s > 32768)
			len += (size_t)snprintf(buf + len, cap - len, "  0x%lx : %zu bytes LARGE\n", a->live[i].addr, s);
		else
			len += (size_t)snprintf(buf + len, cap - len, "  0x%lx : %zu bytes class %zu\n",
						a->live[i].addr, s, class_of(s));
	}
	cr_assert(len < cap);
}

/* Runs the child scenario `mode` with the leak report on: its stderr must
 * hold exactly the report of the `nlive` blocks it noted, its stdout
 * nothing. */
static void check_leak_report(const char *mode, size_t nlive)
{
	static const char *const opts[] = {"FT_MALLOC_LEAK_REPORT=1", NULL};
	struct child c;
	run_child(mode, opts, &c);
	assert_exit0(&c, mode);
	struct account a;
	parse_account(NOTES(&c), 0, &a);
	cr_assert_eq(a.nlive, nlive, "notes: %s", NOTES(&c));
	char want[4096];
	expected_leak_report(&a, want, sizeof want);
	cr_assert_str_eq(ERR(&c), want, "leak report:\n%s\nexpected exactly:\n%s", ERR(&c), want);
	cr_assert_str_eq(OUT(&c), "");
	child_free(&c);
}

Test(debug_leak_report, lists_exactly_the_leaked_blocks)
{
	check_leak_report("leaks", 13);
}

/* The report goes to the stderr the program started with, also when the
 * program closed it before exiting. */
Test(debug_leak_report, reaches_stderr_closed_before_exit)
{
	check_leak_report("closes_stderr", 1);
}

/* A kept stderr whose number now names another file is not written to. */
Test(debug_leak_report, not_into_a_file_that_took_the_kept_number)
{
	check_leak_report("reuses_numbers", 1);
}

Test(debug_leak_report, nothing_live_nothing_listed)
{
	static const char *const opts[] = {"FT_MALLOC_LEAK_REPORT=yes", NULL};
	struct child c;
	run_child("no_leaks", opts, &c);
	assert_exit0(&c, "no_leaks");
	cr_assert_str_eq(ERR(&c), "ft_malloc: leak report: 0 blocks, 0 bytes live at exit\n");
	child_free(&c);
}

/* With guard on, blocks carry a canary byte: the report still gives the
 * sizes the program asked for and the classes they came from. */
Test(debug_leak_report, sizes_asked_for_under_guard)
{
	static const char *const opts[] = {"FT_MALLOC_LEAK_REPORT=1", "FT_MALLOC_GUARD=1", NULL};
	struct child c;
	run_child("leaks", opts, &c);
	assert_exit0(&c, "leaks under guard");
	struct account a;
	parse_account(NOTES(&c), 0, &a);
	size_t bytes = 0;
	for (size_t i = 0; i < a.nlive; i++)
		bytes += a.live[i].size;
	char head[128];
	snprintf(head, sizeof head, "ft_malloc: leak report: %zu blocks, %zu bytes live at exit\n", a.nlive, bytes);
	cr_assert(!strncmp(ERR(&c), head, strlen(head)), "report:\n%s\nexpected to start with\n%s", ERR(&c), head);
	for (size_t i = 0; i < a.nlive; i++) {
		char line[128];
		snprintf(line, sizeof line, "  0x%lx : %zu bytes ", a.live[i].addr, a.live[i].size);
		cr_assert(strstr(ERR(&c), line), "block %s missing from\n%s", line, ERR(&c));
	}
	child_free(&c);
}

/* FT_MALLOC_CALLERS: the leaks grouped by the function that allocated them,
 * most bytes first, and each block's line naming its call site's address
 * (the same address for every block of one site). */
Test(debug_leak_report, call_sites_named_and_counted)
{
	static const char *const opts[] = {"FT_MALLOC_LEAK_REPORT=1", "FT_MALLOC_CALLERS=1", NULL};
	static const struct {
		const char *name;
		size_t blocks, bytes;
	} sites[] = {
	    {"ftm_test_leak_realloc", 2, 7000},
	    {"ftm_test_leak_calloc", 2, 600},
	    {"ftm_test_leak_malloc", 3, 120},
	    {"ftm_test_leak_memalign", 1, 100},
	    {"ftm_test_leak_valloc", 1, 10},
	};
	struct child c;
	run_child("callers", opts, &c);
	assert_exit0(&c, "callers");
	struct account a;
	parse_account(NOTES(&c), 0, &a);
	cr_assert_eq(a.nlive, 9, "notes: %s", NOTES(&c));
	const char *report = ERR(&c);
	cr_assert(!strncmp(report, "ft_malloc: leak report: 9 blocks, 7830 bytes live at exit\n", 58),
		  "report:\n%s", report);
	const char *line = strstr(report, "\n  by call site:\n");
	cr_assert(line, "no call-site section in\n%s", report);
	line += strlen("\n  by call site:\n");
	for (size_t i = 0; i < 5; i++) {
		char head[96], tail[64];
		snprintf(head, sizeof head, "  called from %s+0x", sites[i].name);
		snprintf(tail, sizeof tail, "): %zu blocks, %zu bytes\n", sites[i].blocks, sites[i].bytes);
		const char *end = strchr(line, '\n');
		cr_assert(end && !strncmp(line, head, strlen(head)), "call site %zu should start with '%s':\n%s", i,
			  head, report);
		const char *t = strstr(line, "): ");
		cr_assert(t && t < end && !strncmp(t, tail, strlen(tail)), "call site %zu should end with '%s':\n%s", i,
			  tail, report);
		line = end + 1;
	}
	cr_assert(!strncmp(line, "  0x", 4), "five call sites, then the blocks:\n%s", report);
	/* per block: its site's address, shared by the blocks of one site */
	uintptr_t site_of_size[5001] = {0};
	for (size_t i = 0; i < a.nlive; i++) {
		char want[96];
		snprintf(want, sizeof want, "  0x%lx : %zu bytes ", a.live[i].addr, a.live[i].size);
		const char *at = strstr(report, want);
		cr_assert(at, "block %s missing from\n%s", want, report);
		const char *from = strstr(at, ", called from 0x");
		cr_assert(from && from < strchr(at, '\n'), "block %s has no call site:\n%s", want, report);
		uintptr_t site = strtoul(from + strlen(", called from "), NULL, 16);
		size_t key = a.live[i].size <= 300 ? a.live[i].size : 5000; /* 2000 and 5000: one site */
		cr_assert(!site_of_size[key] || site_of_size[key] == site,
			  "blocks of one call site name different addresses:\n%s", report);
		site_of_size[key] = site;
	}
	child_free(&c);
}

/* ======================================================================== */
/* Statistics                                                               */
/* ======================================================================== */

struct class_line {
	size_t arena, cls;
	uint64_t mallocs, frees, in_use, peak, zones_plus, zones_minus, hits;
};

struct arena_line {
	uint64_t zones_mapped, zones_unmapped, idle, bytes_mapped, in_use, contended;
};

/* sscanf with every byte consumed, then re-printed identically. */
#define PARSE_EXACT(line, fmt, nvals, reprint, ...)                                                           \
	({                                                                                                    \
		int used_ = -1;                                                                               \
		int ok_ = sscanf(line, fmt "%n", __VA_ARGS__, &used_) == (nvals) && used_ == (int)strlen(line); \
		if (ok_) {                                                                                    \
			char again_[512];                                                                     \
			reprint;                                                                              \
			ok_ = !strcmp(again_, line);                                                          \
		}                                                                                             \
		ok_;                                                                                          \
	})

Test(debug_stats, counters_add_up)
{
	static const char *const opts[] = {"FT_MALLOC_STATS=1", NULL};
	struct child c;
	run_child("stats", opts, &c);
	assert_exit0(&c, "stats");
	cr_assert_str_eq(OUT(&c), "");
	struct account a;
	parse_account(NOTES(&c), 0, &a);
	cr_assert_eq(a.nlive, 2);

	char *text = strdup(ERR(&c));
	struct arena_line arenas[256];
	struct class_line classes[512];
	size_t narenas = 0, nclasses = 0, ntotal = 0;
	uint64_t total_mallocs = 0, total_hits = 0, large_blocks = 0, large_bytes = 0, large_cached = 0;
	uint64_t maps = 0, unmaps = 0, prefaults = 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cr_assert(ntotal == 0, "a line after the total line: %s", line);
		size_t idx;
		struct arena_line al;
		struct class_line cl;
		if (!strncmp(line, "ft_malloc: arena ", 17)) {
			cr_assert(PARSE_EXACT(line,
					      "ft_malloc: arena %zu: zones mapped %lu, unmapped %lu, idle %lu, bytes "
					      "mapped %lu, in use %lu, lock contended %lu",
					      7,
					      snprintf(again_, sizeof again_,
						       "ft_malloc: arena %zu: zones mapped %lu, unmapped %lu, idle %lu, "
						       "bytes mapped %lu, in use %lu, lock contended %lu",
						       idx, al.zones_mapped, al.zones_unmapped, al.idle, al.bytes_mapped,
						       al.in_use, al.contended),
					      &idx, &al.zones_mapped, &al.zones_unmapped, &al.idle, &al.bytes_mapped,
					      &al.in_use, &al.contended),
				  "bad arena line: \"%s\"", line);
			cr_assert_eq(idx, narenas, "arena lines out of order: %s", line);
			cr_assert(narenas < 256);
			arenas[narenas++] = al;
		} else if (!strncmp(line, "  class ", 8)) {
			cr_assert(narenas > 0, "class line before any arena line: %s", line);
			cr_assert(PARSE_EXACT(line,
					      "  class %zu: mallocs %lu, frees %lu, in use %lu bytes, peak %lu bytes, "
					      "zones +%lu -%lu, cache hits %lu%%",
					      8,
					      snprintf(again_, sizeof again_,
						       "  class %zu: mallocs %lu, frees %lu, in use %lu bytes, peak %lu "
						       "bytes, zones +%lu -%lu, cache hits %lu%%",
						       cl.cls, cl.mallocs, cl.frees, cl.in_use, cl.peak, cl.zones_plus,
						       cl.zones_minus, cl.hits),
					      &cl.cls, &cl.mallocs, &cl.frees, &cl.in_use, &cl.peak, &cl.zones_plus,
					      &cl.zones_minus, &cl.hits),
				  "bad class line: \"%s\"", line);
			cl.arena = narenas - 1;
			cr_assert(cl.cls <= 32768 && class_of(cl.cls) == cl.cls, "not a class size: %s", line);
			if (nclasses && classes[nclasses - 1].arena == cl.arena)
				cr_assert(classes[nclasses - 1].cls < cl.cls, "classes out of order: %s", line);
			cr_assert(cl.in_use % cl.cls == 0 && cl.peak % cl.cls == 0 && cl.in_use <= cl.peak,
				  "in use / peak not whole chunks: %s", line);
			cr_assert(cl.hits <= 100 && cl.zones_minus <= cl.zones_plus, "%s", line);
			cr_assert(nclasses < 512);
			classes[nclasses++] = cl;
		} else {
			cr_assert(PARSE_EXACT(line,
					      "ft_malloc: total: mallocs %lu, thread cache hits %lu%%, LARGE blocks %lu "
					      "(%lu bytes mapped, %lu bytes cached), mmap calls %lu, munmap calls %lu, "
					      "prefault calls %lu",
					      8,
					      snprintf(again_, sizeof again_,
						       "ft_malloc: total: mallocs %lu, thread cache hits %lu%%, LARGE "
						       "blocks %lu (%lu bytes mapped, %lu bytes cached), mmap calls %lu, "
						       "munmap calls %lu, prefault calls %lu",
						       total_mallocs, total_hits, large_blocks, large_bytes, large_cached,
						       maps, unmaps, prefaults),
					      &total_mallocs, &total_hits, &large_blocks, &large_bytes, &large_cached,
					      &maps, &unmaps, &prefaults),
				  "unexpected line: \"%s\"", line);
			ntotal++;
		}
	}
	free(text);
	cr_assert_eq(ntotal, 1, "no total line in:\n%s", ERR(&c));
	cr_assert(narenas >= 1);

	/* each arena's counters are the sums of its class lines */
	uint64_t sum_mallocs = 0, sum_zones = 0;
	for (size_t i = 0; i < narenas; i++) {
		uint64_t plus = 0, minus = 0, in_use = 0;
		for (size_t k = 0; k < nclasses; k++)
			if (classes[k].arena == i) {
				plus += classes[k].zones_plus;
				minus += classes[k].zones_minus;
				in_use += classes[k].in_use;
			}
		cr_assert_eq(arenas[i].zones_mapped, plus, "arena %zu: zones mapped vs its classes", i);
		cr_assert_eq(arenas[i].zones_unmapped, minus, "arena %zu: zones unmapped vs its classes", i);
		cr_assert_eq(arenas[i].in_use, in_use, "arena %zu: in use vs its classes", i);
		cr_assert(arenas[i].idle <= plus - minus, "arena %zu: more idle zones than zones", i);
		cr_assert(arenas[i].bytes_mapped >= in_use, "arena %zu maps less than it hands out", i);
		sum_zones += plus;
	}
	for (size_t k = 0; k < nclasses; k++)
		sum_mallocs += classes[k].mallocs;
	cr_assert_eq(total_mallocs, sum_mallocs, "total mallocs is not the sum of the class lines");
	cr_assert(total_hits <= 100);

	/* the two classes the child alone used */
	struct {
		size_t cls;
		uint64_t mallocs, frees, live;
	} want[] = {{20480, 10, 4, 6}, {10240, 7, 3, 4}};
	for (size_t w = 0; w < 2; w++) {
		struct class_line s = {0};
		for (size_t k = 0; k < nclasses; k++)
			if (classes[k].cls == want[w].cls) {
				s.mallocs += classes[k].mallocs;
				s.frees += classes[k].frees;
				s.in_use += classes[k].in_use;
				s.peak = s.peak > classes[k].peak ? s.peak : classes[k].peak;
				s.zones_plus += classes[k].zones_plus;
			}
		cr_assert_eq(s.mallocs, want[w].mallocs, "class %zu: mallocs\n%s", want[w].cls, ERR(&c));
		cr_assert_eq(s.frees, want[w].frees, "class %zu: frees\n%s", want[w].cls, ERR(&c));
		cr_assert_eq(s.in_use, want[w].live * want[w].cls, "class %zu: in use\n%s", want[w].cls, ERR(&c));
		cr_assert(s.peak >= want[w].mallocs * want[w].cls, "class %zu: peak below what was live\n%s",
			  want[w].cls, ERR(&c));
		cr_assert(s.zones_plus >= 1, "class %zu: no zone mapped\n%s", want[w].cls, ERR(&c));
	}
	cr_assert_eq(large_blocks, 2, "LARGE blocks\n%s", ERR(&c));
	cr_assert(large_bytes >= 140000, "LARGE bytes mapped\n%s", ERR(&c));
	cr_assert_eq(large_cached, 0, "malloc_trim gave the cached LARGE ranges back\n%s", ERR(&c));
	cr_assert(maps >= sum_zones + 3, "mmap calls %lu for %lu zones and 3 LARGE blocks", maps, sum_zones);
	cr_assert(unmaps >= 1, "munmap calls: a 20 MiB block was freed\n%s", ERR(&c));
	child_free(&c);
}

/* The "bytes cached" of FT_MALLOC_STATS's total line after child_decay. */
static unsigned long cached_after_decay(const char *decay_ms)
{
	const char *opts[] = {"FT_MALLOC_STATS=1", decay_ms, NULL};
	struct child c;
	run_child("decay", opts, &c);
	assert_exit0(&c, "decay");
	const char *at = strstr(ERR(&c), " bytes mapped, ");
	unsigned long cached = ~0ul;
	cr_assert(at && sscanf(at, " bytes mapped, %lu bytes cached", &cached) == 1, "%s", ERR(&c));
	child_free(&c);
	return cached;
}

/* Freed LARGE ranges stay cached by default; FT_MALLOC_DECAY_MS=0 gives
 * them back to the OS at once. */
Test(debug_stats, decay_ms_zero_caches_nothing)
{
	cr_assert_geq(cached_after_decay(NULL), 2ul << 20, "two 1 MiB blocks cached");
	cr_assert_eq(cached_after_decay("FT_MALLOC_DECAY_MS=0"), 0);
}

/* ======================================================================== */
/* Output                                                                   */
/* ======================================================================== */

static uintptr_t noted(const char *notes, const char *key)
{
	const char *at = strstr(notes, key);
	cr_assert(at, "no \"%s\" in the notes: %s", key, notes);
	return (uintptr_t)strtoull(at + strlen(key), NULL, 16);
}

/* The double free line then the leak report: what the output child says. */
static void expected_output(const char *notes, bool guard, char *buf, size_t cap)
{
	struct account a;
	parse_account(notes, 0, &a);
	cr_assert_eq(a.nlive, 1);
	size_t len = (size_t)snprintf(buf, cap, "ft_malloc: free(): double free 0x%lx\n", noted(notes, "double "));
	if (guard) {
		uintptr_t q = noted(notes, "overflow ");
		len += (size_t)snprintf(buf + len, cap - len,
					"ft_malloc: free(): heap overflow past 0x%lx (40 bytes, TINY class of 48 "
					"bytes) at 0x%lx\n",
					q, q + 40);
	}
	expected_leak_report(&a, buf + len, cap - len);
}

static char tmp_dir[64];

static void tmp_dir_make(void)
{
	snprintf(tmp_dir, sizeof tmp_dir, "/tmp/ftm_debug_XXXXXX");
	cr_assert(mkdtemp(tmp_dir));
}

static void tmp_dir_remove(const char *file)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", tmp_dir, file);
	unlink(path);
	rmdir(tmp_dir);
}

Test(debug_output, to_a_path)
{
	tmp_dir_make();
	char opt[300], path[256];
	snprintf(path, sizeof path, "%s/report.txt", tmp_dir);
	snprintf(opt, sizeof opt, "FT_MALLOC_OUTPUT=%s", path);
	const char *const opts[] = {opt, "FT_MALLOC_LEAK_REPORT=1", "FT_MALLOC_STATS=1", NULL};
	struct child c;
	run_child("output", opts, &c);
	assert_exit0(&c, "output to a path");
	cr_assert_str_eq(ERR(&c), "", "stderr should be silent, got: %s", ERR(&c));
	cr_assert_str_eq(OUT(&c), "");
	char *file = slurp_path(path);
	char want[4096];
	expected_output(NOTES(&c), false, want, sizeof want);
	cr_assert(!strncmp(file, want, strlen(want)), "%s holds:\n%s\nexpected it to start with:\n%s", path, file,
		  want);
	/* the statistics follow, ending with the total line */
	cr_assert(!strncmp(file + strlen(want), "ft_malloc: arena 0: ", 20), "no stats after the leak report");
	cr_assert(strstr(file, "\nft_malloc: total: mallocs "), "no total stats line in %s", path);
	free(file);
	child_free(&c);
	tmp_dir_remove("report.txt");
}

Test(debug_output, to_a_file_descriptor)
{
	const char *const opts[] = {"FT_MALLOC_OUTPUT=4", "FT_MALLOC_LEAK_REPORT=1", "FT_MALLOC_GUARD=1", NULL};
	struct child c;
	run_child("output", opts, &c);
	assert_exit0(&c, "output to fd 4");
	cr_assert_str_eq(ERR(&c), "", "stderr should be silent, got: %s", ERR(&c));
	char want[4096];
	expected_output(NOTES(&c), true, want, sizeof want);
	cr_assert_str_eq(SPARE(&c), want, "fd 4 got:\n%s\nexpected exactly:\n%s", SPARE(&c), want);
	child_free(&c);
}

/* A path that cannot be opened: said on stderr (naming the path), and the
 * diagnostics stay on stderr. */
Test(debug_output, unusable_path_is_reported)
{
	static const char path[] = "/nonexistent-ftm-dir/report.txt";
	const char *const opts[] = {"FT_MALLOC_OUTPUT=/nonexistent-ftm-dir/report.txt", NULL};
	struct child c;
	run_child("output", opts, &c);
	assert_exit0(&c, "unusable output path");
	const char *nl = strchr(ERR(&c), '\n');
	cr_assert(nl, "nothing on stderr");
	char first[512];
	snprintf(first, sizeof first, "%.*s", (int)(nl - ERR(&c)), ERR(&c));
	cr_assert(!strncmp(first, "ft_malloc: ", 11) && strstr(first, path),
		  "the first line should say FT_MALLOC_OUTPUT's path %s cannot be used, got: %s", path, first);
	char want[128];
	snprintf(want, sizeof want, "ft_malloc: free(): double free 0x%lx\n", noted(NOTES(&c), "double "));
	cr_assert_str_eq(nl + 1, want, "after the first line, stderr should hold only the double free");
	child_free(&c);
}

/* ======================================================================== */
/* Heap dump (JSON lines)                                                   */
/* ======================================================================== */

#define MAX_FIELDS 16

struct jfield {
	char key[32];
	char str[1024]; /* the string value, or the number's digits */
	bool is_str;
	uint64_t num;
};

struct jobj {
	struct jfield f[MAX_FIELDS];
	size_t n;
};

/* A strict parser for one flat JSON object: {"k":"v","k":123,...}, string
 * values without escapes, non-negative integers without leading zeros. */
static bool parse_object(const char *s, size_t len, struct jobj *o)
{
	const char *end = s + len;
	o->n = 0;
	if (s == end || *s++ != '{')
		return false;
	for (;;) {
		if (o->n == MAX_FIELDS || s == end || *s++ != '"')
			return false;
		struct jfield *f = &o->f[o->n++];
		size_t k = 0;
		while (s < end && *s != '"' && *s != '\\' && (unsigned char)*s >= 32 && k < sizeof f->key - 1)
			f->key[k++] = *s++;
		f->key[k] = '\0';
		if (!k || s == end || *s++ != '"' || s == end || *s++ != ':' || s == end)
			return false;
		k = 0;
		if (*s == '"') {
			s++;
			while (s < end && *s != '"' && *s != '\\' && (unsigned char)*s >= 32 && k < sizeof f->str - 1)
				f->str[k++] = *s++;
			if (s == end || *s++ != '"')
				return false;
			f->is_str = true;
		} else {
			if (*s < '0' || *s > '9' || (*s == '0' && s + 1 < end && s[1] >= '0' && s[1] <= '9'))
				return false;
			f->num = 0;
			while (s < end && *s >= '0' && *s <= '9' && k < 20) {
				f->num = f->num * 10 + (uint64_t)(*s - '0');
				f->str[k++] = *s++;
			}
			f->is_str = false;
		}
		f->str[k] = '\0';
		if (s == end)
			return false;
		if (*s == '}')
			return s + 1 == end;
		if (*s++ != ',')
			return false;
	}
}

/* The object's keys must be exactly `keys` (space separated, in order), with
 * the type given by a prefix: '$' string, '#' number. */
static bool has_shape(const struct jobj *o, const char *keys)
{
	char copy[256];
	snprintf(copy, sizeof copy, "%s", keys);
	size_t i = 0;
	char *save = NULL;
	for (char *k = strtok_r(copy, " ", &save); k; k = strtok_r(NULL, " ", &save), i++)
		if (i >= o->n || strcmp(o->f[i].key, k + 1) || o->f[i].is_str != (k[0] == '$'))
			return false;
	return i == o->n;
}

static const struct jfield *field(const struct jobj *o, const char *key)
{
	for (size_t i = 0; i < o->n; i++)
		if (!strcmp(o->f[i].key, key))
			return &o->f[i];
	cr_assert_fail("no field %s", key);
	return NULL;
}

static uint64_t num(const struct jobj *o, const char *key)
{
	return field(o, key)->num;
}

static const char *str(const struct jobj *o, const char *key)
{
	return field(o, key)->str;
}

/* A "0x..." string as the allocator writes addresses: lowercase, no
 * leading zeros. */
static uintptr_t addr(const struct jobj *o, const char *key)
{
	const char *s = str(o, key);
	char again[32];
	uintptr_t v = (uintptr_t)strtoull(s, NULL, 16);
	snprintf(again, sizeof again, "0x%lx", v);
	cr_assert_str_eq(s, again, "%s is not a canonical address", key);
	return v;
}

struct zone_seen {
	uintptr_t addr, first;
	uint64_t chunk_size, carved;
	char states[8192];
	size_t chunks; /* chunk lines naming it */
};

/* Checks one dump (the lines in [s, s + len)) against the blocks the child
 * had live (a->live) and freed (a->freed); returns where it ended. */
static const char *check_dump(const char *s, pid_t pid, struct account *a, char freed_state)
{
	static struct zone_seen zones[256];
	struct block found[128];
	size_t nzones = 0, nlarge = 0, nfound = 0, live_bytes = 0;
	uintptr_t last_addr = 0;
	struct jobj o;
	bool ended = false;
	for (size_t line_no = 0; !ended; line_no++) {
		const char *nl = strchr(s, '\n');
		cr_assert(nl, "dump ends without an end line at line %zu", line_no + 1);
		cr_assert(parse_object(s, (size_t)(nl - s), &o), "not a flat JSON object: %.*s", (int)(nl - s), s);
		const char *type = str(&o, "type");
		if (line_no == 0) {
			cr_assert(has_shape(&o, "$type #pid #page_size #arenas #classes") && !strcmp(type, "heap"),
				  "first line: %.*s", (int)(nl - s), s);
			cr_assert_eq(num(&o, "pid"), (uint64_t)pid);
			cr_assert_eq(num(&o, "page_size"), (uint64_t)sysconf(_SC_PAGESIZE));
			cr_assert_eq(num(&o, "classes"), class_count());
			cr_assert(num(&o, "arenas") >= 1 && num(&o, "arenas") <= 256);
		} else if (!strcmp(type, "zone")) {
			cr_assert(has_shape(&o, "$type $addr $kind #arena #class #chunk_size #size $first #capacity "
						"#carved $states"),
				  "zone line: %.*s", (int)(nl - s), s);
			struct zone_seen *z = &zones[nzones++];
			cr_assert(nzones < 256);
			z->addr = addr(&o, "addr");
			z->first = addr(&o, "first");
			z->chunk_size = num(&o, "chunk_size");
			z->carved = num(&o, "carved");
			z->chunks = 0;
			uint64_t size = num(&o, "size");
			cr_assert(z->addr > last_addr, "zones and LARGE mappings not in address order");
			last_addr = z->addr;
			cr_assert(num(&o, "class") < class_count() && class_by_index(num(&o, "class")) == z->chunk_size,
				  "class %lu has not chunks of %lu bytes", num(&o, "class"), z->chunk_size);
			cr_assert_str_eq(str(&o, "kind"), z->chunk_size <= 512 ? "TINY" : "SMALL");
			cr_assert(size && !(size & (size - 1)) && z->addr % size == 0, "zone size/alignment");
			cr_assert(z->first == z->addr && z->first + num(&o, "capacity") * z->chunk_size <= z->addr + size,
				  "chunks outside their zone");
			cr_assert(num(&o, "capacity") >= 100, "a zone holds at least 100 chunks");
			cr_assert(z->carved <= num(&o, "capacity"));
			snprintf(z->states, sizeof z->states, "%s", str(&o, "states"));
			cr_assert_eq(strlen(z->states), z->carved, "one state per carved chunk");
			cr_assert_eq(strspn(z->states, "LCF"), z->carved, "states: L, C or F only");
		} else if (!strcmp(type, "chunk")) {
			cr_assert(has_shape(&o, "$type $addr #size $zone"), "chunk line: %.*s", (int)(nl - s), s);
			cr_assert(nzones > 0 && addr(&o, "zone") == zones[nzones - 1].addr,
				  "chunk line not right after its zone");
			struct zone_seen *z = &zones[nzones - 1];
			uintptr_t p = addr(&o, "addr");
			uint64_t size = num(&o, "size");
			cr_assert(p >= z->first && (p - z->first) % z->chunk_size == 0, "chunk not at a chunk start");
			uint64_t index = (p - z->first) / z->chunk_size;
			cr_assert(index < z->carved && z->states[index] == 'L', "chunk line for a chunk not live");
			cr_assert(size <= z->chunk_size && (size > 32768 || class_of(size) == z->chunk_size),
				  "chunk of %lu bytes in a zone of %lu", size, z->chunk_size);
			cr_assert(!nfound || found[nfound - 1].addr < p, "chunks out of order");
			z->chunks++;
			cr_assert(nfound < 128);
			found[nfound++] = (struct block){p, size};
			live_bytes += size;
		} else if (!strcmp(type, "large")) {
			cr_assert(has_shape(&o, "$type $addr $user #size #map_len"), "large line: %.*s", (int)(nl - s), s);
			uintptr_t m = addr(&o, "addr"), u = addr(&o, "user");
			uint64_t size = num(&o, "size"), len = num(&o, "map_len");
			cr_assert(m > last_addr, "zones and LARGE mappings not in address order");
			last_addr = m;
			cr_assert(u > m && u % 16 == 0 && u + size <= m + len && len % sysconf(_SC_PAGESIZE) == 0,
				  "LARGE block outside its mapping");
			nlarge++;
			cr_assert(nfound < 128);
			found[nfound++] = (struct block){u, size};
			live_bytes += size;
		} else if (!strcmp(type, "end")) {
			cr_assert(has_shape(&o, "$type #zones #large #live_bytes #live_blocks #cached_chunks #free_chunks"),
				  "end line: %.*s", (int)(nl - s), s);
			cr_assert_eq(num(&o, "zones"), nzones);
			cr_assert_eq(num(&o, "large"), nlarge);
			cr_assert_eq(num(&o, "live_bytes"), live_bytes);
			cr_assert_eq(num(&o, "live_blocks"), nfound);
			size_t cached = 0, freed = 0;
			for (size_t i = 0; i < nzones; i++)
				for (const char *c = zones[i].states; *c; c++) {
					cached += *c == 'C';
					freed += *c == 'F';
				}
			cr_assert_eq(num(&o, "cached_chunks"), cached, "C letters of every zone");
			cr_assert_eq(num(&o, "free_chunks"), freed, "F letters of every zone");
			ended = true;
		} else {
			cr_assert_fail("unexpected line: %.*s", (int)(nl - s), s);
		}
		s = nl + 1;
	}
	for (size_t i = 0; i < nzones; i++) {
		size_t live = 0;
		for (const char *c = zones[i].states; *c; c++)
			live += *c == 'L';
		cr_assert_eq(live, zones[i].chunks, "zone 0x%lx: %zu L states, %zu chunk lines", zones[i].addr, live,
			     zones[i].chunks);
	}
	/* the live blocks are exactly the child's */
	qsort(found, nfound, sizeof *found, by_addr);
	qsort(a->live, a->nlive, sizeof *a->live, by_addr);
	cr_assert_eq(nfound, a->nlive, "the dump lists %zu live blocks, the child has %zu", nfound, a->nlive);
	for (size_t i = 0; i < nfound; i++)
		cr_assert(found[i].addr == a->live[i].addr && found[i].size == a->live[i].size,
			  "dump: block 0x%lx of %zu bytes, child: 0x%lx of %zu bytes", found[i].addr, found[i].size,
			  a->live[i].addr, a->live[i].size);
	/* freed TINY/SMALL blocks: C while in the thread cache, F without one */
	for (size_t f = 0; f < a->nfreed; f++)
		for (size_t i = 0; i < nzones; i++) {
			struct zone_seen *z = &zones[i];
			uintptr_t p = a->freed[f];
			if (p < z->first || p >= z->first + z->carved * z->chunk_size)
				continue;
			char st = z->states[(p - z->first) / z->chunk_size];
			cr_assert_eq(st, freed_state, "freed block 0x%lx: state %c, expected %c", p, st, freed_state);
		}
	return s;
}

Test(debug_dump, at_exit_to_a_path)
{
	tmp_dir_make();
	char opt[300], path[256];
	snprintf(path, sizeof path, "%s/heap.jsonl", tmp_dir);
	snprintf(opt, sizeof opt, "FT_MALLOC_DUMP=%s", path);
	const char *const opts[] = {opt, NULL};
	struct child c;
	run_child("dump", opts, &c);
	assert_exit0(&c, "dump at exit");
	cr_assert_str_eq(ERR(&c), "");
	cr_assert_str_eq(OUT(&c), "");
	char *file = slurp_path(path);
	struct account a;
	parse_account(NOTES(&c), 0, &a);
	cr_assert_eq(a.nlive, 5);
	const char *rest = check_dump(file, c.pid, &a, 'C');
	cr_assert_str_eq(rest, "", "more after the end line");
	free(file);
	child_free(&c);
	tmp_dir_remove("heap.jsonl");
}

Test(debug_dump, on_signal_and_at_exit)
{
	tmp_dir_make();
	char opt[300], path[256];
	snprintf(path, sizeof path, "%s/heap.jsonl", tmp_dir);
	snprintf(opt, sizeof opt, "FT_MALLOC_DUMP=%s", path);
	const char *const opts[] = {opt, "FT_MALLOC_DUMP_SIGNAL=10", NULL};
	struct child c;
	run_child("dump", opts, &c);
	assert_exit0(&c, "dump on SIGUSR1");
	cr_assert_str_eq(ERR(&c), "");
	char *file = slurp_path(path);
	/* each dump rewrites the file (two on the signal, one at exit): it
	 * holds exactly the last one, whole */
	const char *s = file;
	struct account a;
	parse_account(NOTES(&c), 1, &a);
	cr_assert(a.nlive >= 5);
	s = check_dump(s, c.pid, &a, 'C');
	cr_assert_str_eq(s, "", "more than one dump in the file");
	free(file);
	child_free(&c);
	tmp_dir_remove("heap.jsonl");
}

/* Without FT_MALLOC_DUMP, the signal's dump goes to the report output. */
Test(debug_dump, on_signal_to_the_report_output)
{
	const char *const opts[] = {"FT_MALLOC_DUMP_SIGNAL=10", "FT_MALLOC_OUTPUT=4", NULL};
	struct child c;
	run_child("dump", opts, &c);
	assert_exit0(&c, "dump on SIGUSR1 to fd 4");
	cr_assert_str_eq(ERR(&c), "");
	const char *s = SPARE(&c);
	for (int d = 0; d < 2; d++) {
		struct account a;
		parse_account(NOTES(&c), d, &a);
		s = check_dump(s, c.pid, &a, 'C');
	}
	cr_assert_str_eq(s, "", "a dump at exit without FT_MALLOC_DUMP");
	child_free(&c);
}

/* With the debug checks on there is no thread cache: freed chunks read F. */
Test(debug_dump, under_guard_freed_chunks_are_free)
{
	tmp_dir_make();
	char opt[300], path[256];
	snprintf(path, sizeof path, "%s/heap.jsonl", tmp_dir);
	snprintf(opt, sizeof opt, "FT_MALLOC_DUMP=%s", path);
	const char *const opts[] = {opt, "FT_MALLOC_GUARD=1", NULL};
	struct child c;
	run_child("dump", opts, &c);
	assert_exit0(&c, "dump under guard");
	char *file = slurp_path(path);
	struct account a;
	parse_account(NOTES(&c), 0, &a);
	const char *rest = check_dump(file, c.pid, &a, 'F');
	cr_assert_str_eq(rest, "");
	free(file);
	child_free(&c);
	tmp_dir_remove("heap.jsonl");
}

/* ======================================================================== */
/* Silence by default, and bad values                                       */
/* ======================================================================== */

Test(debug_quiet, no_option_no_output)
{
	struct child c;
	run_child("quiet", NULL, &c);
	assert_exit0(&c, "quiet");
	cr_assert_str_eq(ERR(&c), "", "stderr without any option: %s", ERR(&c));
	cr_assert_str_eq(OUT(&c), "", "stdout without any option: %s", OUT(&c));
	cr_assert_str_eq(SPARE(&c), "");
	child_free(&c);
}

Test(debug_quiet, every_option_off_no_output)
{
	static const char *const opts[] = {"FT_MALLOC_SCRIBBLE=0",      "FT_MALLOC_GUARD=off",
					   "FT_MALLOC_HISTORY=0",       "FT_MALLOC_LEAK_REPORT=no",
					   "FT_MALLOC_STATS=false",     "FT_MALLOC_DUMP=",
					   "FT_MALLOC_DUMP_SIGNAL=0",   "FT_MALLOC_OUTPUT=",
					   "FT_MALLOC_ABORT_ON_ERROR=0", NULL};
	struct child c;
	run_child("quiet", opts, &c);
	assert_exit0(&c, "quiet, options off");
	cr_assert_str_eq(ERR(&c), "", "stderr with every option off: %s", ERR(&c));
	cr_assert_str_eq(OUT(&c), "");
	child_free(&c);
}

/* A value the option cannot use says so on its own line, and the program
 * runs as without it: a signal out of range or that cannot be caught, a
 * history ring past the address space. */
Test(debug_quiet, unusable_values_are_said)
{
	static const struct {
		const char *opt, *said;
	} cases[] = {
	    {"FT_MALLOC_DUMP_SIGNAL=99", "ft_malloc: ignoring FT_MALLOC_DUMP_SIGNAL=99 (invalid value)\n"},
	    {"FT_MALLOC_DUMP_SIGNAL=9",
	     "ft_malloc: FT_MALLOC_DUMP_SIGNAL=9: the signal cannot be caught, no dump on it\n"},
	    {"FT_MALLOC_HISTORY=4000G",
	     "ft_malloc: FT_MALLOC_HISTORY=4294967296000: no memory for the history, none kept\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		const char *opts[] = {cases[i].opt, NULL};
		struct child c;
		run_child("quiet", opts, &c);
		assert_exit0(&c, cases[i].opt);
		cr_assert_str_eq(ERR(&c), cases[i].said, "%s", cases[i].opt);
		cr_assert_str_eq(OUT(&c), "");
		child_free(&c);
	}
}

Test(debug_quiet, invalid_value_is_said_and_ignored)
{
	static const char *const opts[] = {"FT_MALLOC_LEAK_REPORT=maybe", NULL};
	struct child c;
	run_child("quiet", opts, &c);
	assert_exit0(&c, "invalid value");
	cr_assert_str_eq(ERR(&c), "ft_malloc: ignoring FT_MALLOC_LEAK_REPORT=maybe (invalid value)\n");
	cr_assert_str_eq(OUT(&c), "");
	child_free(&c);
}
