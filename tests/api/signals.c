/*
 * Signal handlers that interrupt malloc and free halfway, and run only
 * malloc-free code: the program's own handler (it fills a static buffer
 * and counts), and the allocator's FT_MALLOC_DUMP_SIGNAL handler (it walks
 * the heap, trying the locks only, and writes a JSON dump).
 *
 * Workload model: in a child process, WORKERS threads churn a private set of
 * blocks of every kind (TINY, SMALL, LARGE): each step frees one block after
 * checking every byte of its pattern and allocates a replacement filled with
 * a new pattern. A signalling thread meanwhile sends SIGUSR2 (program
 * handler) and SIGUSR1 (dump) to the workers in turn, ROUNDS of each, and
 * waits for each handler to have run before sending the next one (a counter
 * for the program's handler, a complete dump in the output for ours), so
 * every signal is delivered and none is merged with another.
 *
 * Asserts: every worker ends with every byte of every block intact and its
 * exact step count; the program handler ran exactly ROUNDS times; the dump
 * output holds exactly ROUNDS dumps, never interleaved, each either
 * complete (its end line's zone, LARGE and live-block counts equal the lines
 * it holds) or the documented "heap busy" line; at least one is complete.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child.h"

#define MARKER "FTM_TEST_SIGNALS_CHILD"
#define WORKERS 2
#define SLOTS 64
#define ROUNDS 150

/* ======================================================================== */
/* Child side                                                               */
/* ======================================================================== */

static const size_t sizes[] = {8, 24, 100, 512, 700, 3000, 20000, 40000, 200000};
#define SIZE_COUNT (sizeof sizes / sizeof sizes[0])

static volatile sig_atomic_t handled;
static volatile int workers_done;
static pthread_t workers[WORKERS];
/* Each worker's result, noted by the main thread after the joins: two
 * workers writing their notes at the same moment lost or interleaved them
 * (about one run in 30). */
static struct {
	uint64_t bad;
	bool busy;
} results[WORKERS];
static unsigned char handler_scratch[4096];

/* The program's handler: work that touches no allocator state. */
static void on_usr2(int sig)
{
	for (size_t i = 0; i < sizeof handler_scratch; i++)
		handler_scratch[i] = (unsigned char)(i + (size_t)sig);
	handled = handled + 1;
}

static unsigned char pattern(uintptr_t seed, size_t i)
{
	return (unsigned char)((seed * 2654435761u + i * 31) >> 3);
}

struct slot {
	unsigned char *p;
	size_t size;
	uintptr_t seed;
};

static void *worker(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	struct slot slots[SLOTS] = {0};
	uint64_t rng = 0x9e3779b97f4a7c15ull * (id + 1), steps = 0, bad = 0;
	while (!__atomic_load_n(&workers_done, __ATOMIC_ACQUIRE)) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		struct slot *s = &slots[rng % SLOTS];
		if (s->p) {
			for (size_t i = 0; i < s->size; i++)
				bad += s->p[i] != pattern(s->seed, i);
			free(s->p);
		}
		s->size = sizes[(rng >> 20) % SIZE_COUNT];
		s->seed = rng;
		s->p = malloc(s->size);
		if (!s->p)
			_exit(123);
		for (size_t i = 0; i < s->size; i++)
			s->p[i] = pattern(s->seed, i);
		steps++;
	}
	for (size_t k = 0; k < SLOTS; k++)
		if (slots[k].p) {
			for (size_t i = 0; i < slots[k].size; i++)
				bad += slots[k].p[i] != pattern(slots[k].seed, i);
			free(slots[k].p);
		}
	results[id].bad = bad;
	results[id].busy = steps > ROUNDS;
	return NULL;
}

/* Dumps finished on fd 4 so far (their end or error line written); `seen`
 * is how far whole lines have been read, `count` the dumps among them. */
static size_t dumps_written(off_t *seen, size_t *count)
{
	char buf[8193];
	ssize_t n;
	while ((n = pread(4, buf, sizeof buf - 1, *seen)) > 0) {
		buf[n] = '\0';
		char *last = strrchr(buf, '\n');
		if (!last)
			break;
		last[1] = '\0';
		for (char *line = buf; *line; line = strchr(line, '\n') + 1)
			*count += !strncmp(line, "{\"type\":\"end\"", 13) ||
				  !strncmp(line, "{\"type\":\"error\"", 15);
		*seen += last + 1 - buf;
	}
	return *count;
}

static void child_signals(void)
{
	struct sigaction sa = {.sa_handler = on_usr2, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, NULL);
	for (uintptr_t i = 0; i < WORKERS; i++)
		if (pthread_create(&workers[i], NULL, worker, (void *)i))
			_exit(124);
	off_t seen = 0;
	size_t dumps = 0;
	for (int round = 0; round < ROUNDS; round++) {
		pthread_kill(workers[round % WORKERS], SIGUSR2);
		while (handled != round + 1)
			sched_yield();
		pthread_kill(workers[(round + 1) % WORKERS], SIGUSR1);
		while (dumps_written(&seen, &dumps) != (size_t)round + 1)
			sched_yield();
	}
	__atomic_store_n(&workers_done, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(workers[i], NULL);
		note("worker bad ");
		note_dec(results[i].bad);
		note(results[i].busy ? " busy\n" : " idle\n");
	}
	note("handled ");
	note_dec((uint64_t)handled);
	note("\n");
}

__attribute__((constructor)) static void signals_child(void)
{
	const char *mode = getenv(MARKER);
	if (!mode)
		return;
	if (!strcmp(mode, "signals"))
		child_signals();
	else
		_exit(99);
	exit(0);
}

/* ======================================================================== */
/* Parent side                                                              */
/* ======================================================================== */

static unsigned long field(const char *line, const char *key)
{
	const char *at = strstr(line, key);
	cr_assert(at, "no %s in %s", key, line);
	return strtoul(at + strlen(key), NULL, 10);
}

Test(signals, handlers_interrupting_malloc_and_free_change_nothing, .timeout = 120)
{
	static const char *const vars[] = {MARKER "=signals", NULL};
	static const char *const opts[] = {"FT_MALLOC_DUMP_SIGNAL=10", "FT_MALLOC_OUTPUT=4", NULL};
	struct child c;
	child_spawn("api_signals", vars, opts, CHILD_FDS, &c);
	assert_exit0(&c, "signals");

	char want[256] = "";
	for (int i = 0; i < WORKERS; i++)
		strcat(want, "worker bad 0 busy\n");
	char handled[64];
	snprintf(handled, sizeof handled, "handled %d\n", ROUNDS);
	strcat(want, handled);
	cr_assert_str_eq(NOTES(&c), want, "notes:\n%s", NOTES(&c));

	/* ROUNDS dumps, one after the other, each complete or "busy" */
	size_t dumps = 0, complete = 0, zones = 0, larges = 0, blocks = 0;
	bool inside = false;
	for (char *line = SPARE(&c); *line;) {
		char *end = strchr(line, '\n');
		cr_assert(end, "unterminated dump line: %s", line);
		*end = '\0';
		if (!strncmp(line, "{\"type\":\"heap\"", 14)) {
			cr_assert(!inside, "dump %zu starts inside the previous one", dumps + 1);
			inside = true;
			zones = larges = blocks = 0;
		} else {
			cr_assert(inside, "line outside a dump: %s", line);
			if (!strncmp(line, "{\"type\":\"zone\"", 14)) {
				zones++;
			} else if (!strncmp(line, "{\"type\":\"chunk\"", 15)) {
				blocks++;
			} else if (!strncmp(line, "{\"type\":\"large\"", 15)) {
				larges++;
				blocks++;
			} else if (!strncmp(line, "{\"type\":\"end\"", 13)) {
				cr_assert_eq(field(line, "\"zones\":"), zones, "%s", line);
				cr_assert_eq(field(line, "\"large\":"), larges, "%s", line);
				cr_assert_eq(field(line, "\"live_blocks\":"), blocks, "%s", line);
				complete++;
				dumps++;
				inside = false;
			} else {
				cr_assert_str_eq(line, "{\"type\":\"error\",\"reason\":\"heap busy or out of memory\"}");
				dumps++;
				inside = false;
			}
		}
		line = end + 1;
	}
	cr_assert(!inside, "the last dump is cut short");
	cr_assert_eq(dumps, ROUNDS);
	cr_assert_geq(complete, 1, "no dump could take the locks");
	cr_assert_str_eq(ERR(&c), "");
	child_free(&c);
}
