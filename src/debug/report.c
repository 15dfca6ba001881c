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

static void install(int sig, void (*handler)(int))
{
	struct sigaction sa = {.sa_handler = handler};
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(sig, &sa, NULL);
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
	if (ftm_options[FTM_OPT_HISTORY] > 0 && history_init((size_t)ftm_options[FTM_OPT_HISTORY]))
		for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(*fatal_signals); i++)
			install(fatal_signals[i], on_fatal_signal);
	if (ftm_options[FTM_OPT_DUMP_SIGNAL] > 0 && ftm_options[FTM_OPT_DUMP_SIGNAL] < NSIG)
		install((int)ftm_options[FTM_OPT_DUMP_SIGNAL], on_dump_signal);
	ftm_debug = ftm_options[FTM_OPT_SCRIBBLE] || ftm_options[FTM_OPT_GUARD] ||
		    ftm_options[FTM_OPT_HISTORY] > 0;
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

/* "leak report: N blocks, B bytes live at exit", one line per size class
 * with live blocks, then every block in address order. */
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
	struct ftm_out o = {.fd = ftm_report_fd};
	if (ftm_options[FTM_OPT_LEAK_REPORT])
		leak_report(&o);
	if (ftm_options[FTM_OPT_STATS])
		stats_print(&o);
	out_flush(&o);
	if (ftm_option_text[FTM_OPT_DUMP])
		dump_heap(true);
}
