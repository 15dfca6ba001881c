/*
 * Debug set-up and the reports: where reports go (FT_MALLOC_OUTPUT), the
 * history ring, the fatal-signal and dump-signal handlers, and what is
 * printed at exit (FT_MALLOC_LEAK_REPORT, _STATS, _DUMP). Every option is
 * read once, at start-up.
 */
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

/* A fatal signal with the history on: print it, then die of the signal. */
static void on_fatal_signal(int sig)
{
	struct ftm_out o = {.fd = ftm_report_fd};
	out_str(&o, "ft_malloc: fatal signal ");
	out_dec(&o, (uint64_t)sig);
	out_line_end(&o);
	history_print(&o);
	out_flush(&o);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Where the JSON dump goes: FT_MALLOC_DUMP's file, rewritten so it always
 * holds one whole dump (the latest), else the report fd. */
static void dump_heap(bool wait)
{
	const char *path = ftm_option_text[FTM_OPT_DUMP];
	int fd = path ? os_open_write(path, false) : ftm_report_fd;
	if (fd < 0)
		return;
	heap_dump_json(fd, wait);
	if (path)
		close(fd);
}

/* The dump signal may interrupt a thread holding an allocator lock: the
 * walk then only tries the locks, and says so if it cannot have them. */
static void on_dump_signal(int sig)
{
	(void)sig;
	int saved = errno;
	dump_heap(false);
	errno = saved;
}

static bool install(int sig, void (*handler)(int))
{
	struct sigaction sa = {.sa_handler = handler};
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	return sigaction(sig, &sa, NULL) == 0;
}

/* An option that cannot take effect: "ft_malloc: FT_MALLOC_<name>=<value>:
 * <why>", to the report output. */
static void report_option_dropped(const char *name, long value, const char *why)
{
	struct ftm_out o = {.fd = ftm_report_fd};
	out_str(&o, "ft_malloc: FT_MALLOC_");
	out_str(&o, name);
	out_str(&o, "=");
	out_dec(&o, (uint64_t)value);
	out_str(&o, why);
	out_line_end(&o);
	out_flush(&o);
}

static int parse_fd(const char *s)
{
	int fd = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || fd > 100000)
			return -1;
		fd = fd * 10 + (*s - '0');
	}
	return fd;
}

/* The stderr the process started with, kept for the reports at exit when
 * they go to stderr: many programs close it before they exit (coreutils and
 * mawk, through gnulib's close_stdout), which would leave them nowhere. The
 * cost: a program that closes stderr to tell a reader it is done (a daemon
 * detaching) keeps it open until it exits, only while a report is asked for. */
static int exit_fd = -1;
static struct os_file_id exit_file;

static void keep_stderr_for_exit(void)
{
	if (ftm_report_fd != 2 || !(ftm_options[FTM_OPT_LEAK_REPORT] || ftm_options[FTM_OPT_STATS]))
		return;
	exit_fd = os_dup_private(2, &exit_file);
}

/* The kept stderr while its number still names it (a program that closes
 * every descriptor may have given the number to one of its own files), else
 * the report fd as it is. */
static int exit_report_fd(void)
{
	struct os_file_id now;
	if (exit_fd >= 0 && os_file_id(exit_fd, &now) && now.device == exit_file.device &&
	    now.inode == exit_file.inode)
		return exit_fd;
	return ftm_report_fd;
}

void debug_init(void)
{
	const char *output = ftm_option_text[FTM_OPT_OUTPUT];
	if (output) {
		int fd = parse_fd(output);
		if (fd < 0)
			fd = os_open_write(output, true);
		if (fd >= 0) {
			ftm_report_fd = fd;
		} else {
			struct ftm_out o = {.fd = 2};
			out_str(&o, "ft_malloc: cannot open FT_MALLOC_OUTPUT=");
			out_str(&o, output);
			out_str(&o, ", reporting on stderr");
			out_line_end(&o);
			out_flush(&o);
		}
	}
	keep_stderr_for_exit();
	/* an option that cannot take effect says so, and costs nothing */
	if (ftm_options[FTM_OPT_HISTORY] > 0) {
		if (history_init((size_t)ftm_options[FTM_OPT_HISTORY])) {
			for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(*fatal_signals); i++)
				install(fatal_signals[i], on_fatal_signal);
		} else {
			report_option_dropped("HISTORY", ftm_options[FTM_OPT_HISTORY],
					     ": no memory for the history, none kept");
			ftm_options[FTM_OPT_HISTORY] = 0;
		}
	}
	if (ftm_options[FTM_OPT_DUMP_SIGNAL] > 0 &&
	    !install((int)ftm_options[FTM_OPT_DUMP_SIGNAL], on_dump_signal))
		report_option_dropped("DUMP_SIGNAL", ftm_options[FTM_OPT_DUMP_SIGNAL],
				     ": the signal cannot be caught, no dump on it");
	ftm_debug = ftm_options[FTM_OPT_SCRIBBLE] || ftm_options[FTM_OPT_GUARD] ||
		    ftm_options[FTM_OPT_HISTORY] > 0 || ftm_options[FTM_OPT_CALLERS];
	if (ftm_options[FTM_OPT_VERBOSE])
		options_print();
}

/* ---- leak report --------------------------------------------------------- */

struct leaks {
	struct ftm_out *out;
	uint64_t count[FTM_CLASS_COUNT + 1]; /* per class, LARGE last */
	uint64_t bytes[FTM_CLASS_COUNT + 1];
	bool list;                          /* second pass: print each block */
};

static void leak_block(struct leaks *l, uint32_t group, uintptr_t p, size_t size)
{
	if (!l->list) {
		l->count[group]++;
		l->bytes[group] += size;
		return;
	}
	out_str(l->out, "  ");
	out_hex(l->out, p);
	out_str(l->out, " : ");
	out_dec(l->out, size);
	out_str(l->out, group == FTM_CLASS_COUNT ? " bytes LARGE" : " bytes class ");
	if (group < FTM_CLASS_COUNT)
		out_dec(l->out, class_size(group));
	/* a raw address only: naming it would take the loader's lock with
	 * every arena lock held */
	uintptr_t caller = ftm_options[FTM_OPT_CALLERS] ? callsite_of((void *)p) : 0;
	if (caller) {
		out_str(l->out, ", called from ");
		out_hex(l->out, caller - 1);
	}
	out_line_end(l->out);
}

static void leak_zone(const struct ftm_zone *zone, void *ctx)
{
	for (uint32_t i = 0; i < zone->carved; i++) {
		uint16_t meta = meta_load(zone, i);
		if (meta & FTM_META_LIVE)
			leak_block(ctx, zone->cls, (uintptr_t)zone_chunk(zone, i),
				   zone->size - (meta & FTM_META_SLACK));
	}
}

static void leak_large(const struct ftm_large *h, void *ctx)
{
	leak_block(ctx, FTM_CLASS_COUNT, (uintptr_t)h->user, h->size);
}

/* ---- leaks by call site (FT_MALLOC_CALLERS) ------------------------------ */

#define SITES_SHOWN 32 /* the call sites that leak the most bytes, by name */

struct site {
	uintptr_t caller; /* return address; 0: empty slot */
	uint64_t blocks;  /* live blocks allocated there */
	uint64_t bytes;   /* their sizes */
	bool shown;       /* already printed */
};

struct sites {
	struct site *items; /* a power-of-two hash table keyed by caller */
	size_t cap;
	size_t count;       /* distinct callers */
};

/* Counts a block at its call site; a table filled to half (the recording
 * table grew since it was sized) drops new callers rather than spin. */
static void site_add(uintptr_t caller, size_t size, void *ctx)
{
	struct sites *t = ctx;
	size_t i = (size_t)(caller * 0x9e3779b97f4a7c15ull >> 32) & (t->cap - 1);
	while (t->items[i].caller && t->items[i].caller != caller)
		i = (i + 1) & (t->cap - 1);
	if (!t->items[i].caller) {
		if (2 * (t->count + 1) > t->cap)
			return;
		t->items[i].caller = caller;
		t->count++;
	}
	t->items[i].blocks++;
	t->items[i].bytes += size;
}

/* "called from main+0x1b (/path/prog+0x11c8)": the address is the call
 * instruction's (the return address - 1), module+offset ready for addr2line. */
static void out_call_site(struct ftm_out *o, uintptr_t caller)
{
	uintptr_t at = caller - 1;
	struct os_symbol sym;
	out_str(o, "  called from ");
	if (!os_symbol((void *)at, &sym)) {
		out_hex(o, at);
		return;
	}
	if (sym.name) {
		out_str(o, sym.name);
		out_str(o, "+");
		out_hex(o, at - sym.name_addr);
		out_str(o, " ");
	}
	out_str(o, "(");
	out_str(o, sym.module);
	out_str(o, "+");
	out_hex(o, at - sym.module_base);
	out_str(o, ")");
}

/* Blocks and bytes per call site, the SITES_SHOWN biggest by name (symbols
 * are looked up with no allocator lock held), then one line for the rest. */
static void leak_sites(struct ftm_out *o)
{
	struct sites t = {NULL, 64, 0};
	while (t.cap < 2 * callsite_count())
		t.cap *= 2;
	size_t map_bytes = (t.cap * sizeof(*t.items) + ftm_page_size - 1) & ~(ftm_page_size - 1);
	if (!(t.items = os_map(map_bytes)))
		return;
	callsite_for_each(site_add, &t);
	uint64_t rest_blocks = 0, rest_bytes = 0;
	size_t n = 0;
	for (size_t i = 0; i < t.cap; i++)
		if (t.items[i].caller) {
			t.items[n++] = t.items[i];
			rest_blocks += t.items[i].blocks;
			rest_bytes += t.items[i].bytes;
		}
	out_str(o, "  by call site:");
	out_line_end(o);
	for (size_t shown = 0; shown < n && shown < SITES_SHOWN; shown++) {
		struct site *best = NULL;
		for (size_t i = 0; i < n; i++)
			if (!t.items[i].shown &&
			    (!best || t.items[i].bytes > best->bytes ||
			     (t.items[i].bytes == best->bytes && t.items[i].caller < best->caller)))
				best = &t.items[i];
		best->shown = true;
		rest_blocks -= best->blocks;
		rest_bytes -= best->bytes;
		out_call_site(o, best->caller);
		out_str(o, ": ");
		out_dec(o, best->blocks);
		out_str(o, " blocks, ");
		out_dec(o, best->bytes);
		out_str(o, " bytes");
		out_line_end(o);
	}
	if (n > SITES_SHOWN) {
		out_str(o, "  ");
		out_dec(o, n - SITES_SHOWN);
		out_str(o, " more call sites: ");
		out_dec(o, rest_blocks);
		out_str(o, " blocks, ");
		out_dec(o, rest_bytes);
		out_str(o, " bytes");
		out_line_end(o);
	}
	os_unmap(t.items, map_bytes);
}

/* "leak report: N blocks, B bytes live at exit", one line per size class
 * with live blocks, then (FT_MALLOC_CALLERS) per call site, then every block
 * in address order. */
static void leak_report(struct ftm_out *o)
{
	static const struct heap_visitor visit = {leak_zone, leak_large};
	struct leaks l = {.out = o};
	heap_walk(&visit, &l, true);
	uint64_t blocks = 0, bytes = 0;
	for (uint32_t g = 0; g <= FTM_CLASS_COUNT; g++) {
		blocks += l.count[g];
		bytes += l.bytes[g];
	}
	out_str(o, "ft_malloc: leak report: ");
	out_dec(o, blocks);
	out_str(o, " blocks, ");
	out_dec(o, bytes);
	out_str(o, " bytes live at exit");
	out_line_end(o);
	for (uint32_t g = 0; g <= FTM_CLASS_COUNT; g++) {
		if (!l.count[g])
			continue;
		out_str(o, g == FTM_CLASS_COUNT ? "  LARGE" : g < FTM_TINY_CLASSES ? "  TINY " : "  SMALL ");
		if (g < FTM_CLASS_COUNT)
			out_dec(o, class_size(g));
		out_str(o, ": ");
		out_dec(o, l.count[g]);
		out_str(o, " blocks, ");
		out_dec(o, l.bytes[g]);
		out_str(o, " bytes");
		out_line_end(o);
	}
	if (blocks && ftm_options[FTM_OPT_CALLERS])
		leak_sites(o);
	l.list = true;
	if (blocks)
		heap_walk(&visit, &l, true);
}

/* ---- at exit ------------------------------------------------------------- */

/* The library is loaded first, so it is finalized last: the program's own
 * destructors have run and what is live now was never freed. */
__attribute__((destructor)) static void report_at_exit(void)
{
	if (!ftm_ready)
		return;
	struct ftm_out o = {.fd = exit_report_fd()};
	if (ftm_options[FTM_OPT_LEAK_REPORT])
		leak_report(&o);
	if (ftm_options[FTM_OPT_STATS])
		stats_print(&o);
	out_flush(&o);
	if (ftm_option_text[FTM_OPT_DUMP])
		dump_heap(true);
}
