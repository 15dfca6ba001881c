/*
 * show_alloc_mem: its exact output format and what the output claims.
 *
 * A strict parser accepts only
 *     TINY : 0xADDR | SMALL : 0xADDR | LARGE : 0xADDR
 *     0xSTART - 0xEND : N bytes
 *     Total : N bytes            (last line, exactly once)
 * (every parsed line is re-formatted and must match byte for byte: lowercase
 * hex, no leading zeros, single spaces) and checks the structure: zone
 * headers strictly increasing, allocations increasing and non-overlapping
 * within and across zones, each allocation inside its zone (from a TINY or
 * SMALL zone's address, after a LARGE one's, before the next zone), 16-byte aligned, END - START == N, at most
 * one allocation per LARGE mapping, Total == the sum of N.
 *
 * On top of that: each of our live pointers is listed exactly once with the
 * exact size asked for (malloc, calloc, realloc grown or shrunk, memalign,
 * malloc(0)), in the zone kind its size implies, under a zone line that
 * names the start of the zone's mapping; a freed pointer disappears
 * (even when it only went to the thread cache) and the Total drops by its
 * size; dumps taken while 8 threads allocate and free are each whole and
 * consistent (no torn line, a correct Total) and do not disturb the
 * threads' data; with FT_MALLOC_ARENAS=4 (fresh process) the blocks of four
 * threads living in different arenas appear in one dump in address order.
 *
 * ft_malloc only.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ft_malloc.h"

#include "child.h"

#define MARKER "FTM_TEST_SHOW_CHILD"
#define TINY_MAX 512
#define SMALL_MAX 32768

/* ------------------------------------------------------------------------ */
/* Parser                                                                   */
/* ------------------------------------------------------------------------ */

enum kind { TINY, SMALL, LARGE };
static const char *const kind_name[] = {"TINY", "SMALL", "LARGE"};

struct zone_rec {
	enum kind kind;
	uintptr_t addr;
};

struct alloc_rec {
	uintptr_t start, end;
	size_t n;
	size_t zone; /* index in dump.zones */
};

struct dump {
	struct zone_rec *zones;
	size_t nzones, zcap;
	struct alloc_rec *allocs;
	size_t nallocs, acap;
	size_t total;
	char err[512];
};

static void dump_free(struct dump *d)
{
	free(d->zones);
	free(d->allocs);
	memset(d, 0, sizeof *d);
}

static int fail(struct dump *d, size_t lineno, const char *line, size_t len, const char *why)
{
	snprintf(d->err, sizeof d->err, "line %zu \"%.*s\": %s", lineno, (int)(len > 200 ? 200 : len),
		 line, why);
	return -1;
}

/* Parses one show_alloc_mem output of len bytes. 0 when it is well formed
 * and consistent, -1 with d->err set otherwise. Uses no assertion, so it
 * may run anywhere. */
static int parse_dump(const char *text, size_t len, struct dump *d)
{
	memset(d, 0, sizeof *d);
	int seen_total = 0;
	size_t lineno = 0;
	size_t sum = 0;
	const char *p = text, *end = text + len;
	if (len == 0)
		return fail(d, 0, "", 0, "empty output");
	while (p < end) {
		lineno++;
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return fail(d, lineno, p, (size_t)(end - p), "last line not terminated by a newline");
		size_t l = (size_t)(nl - p);
		char line[256], again[256];
		if (l >= sizeof line)
			return fail(d, lineno, p, l, "line too long");
		memcpy(line, p, l);
		line[l] = '\0';
		p = nl + 1;
		if (seen_total)
			return fail(d, lineno, line, l, "line after the Total line");

		unsigned long a, b;
		size_t n;
		char word[8];
		int used = -1;
		if (sscanf(line, "Total : %zu bytes%n", &n, &used) == 1 && used == (int)l) {
			snprintf(again, sizeof again, "Total : %zu bytes", n);
			if (strcmp(again, line))
				return fail(d, lineno, line, l, "malformed Total line");
			if (n != sum) {
				char why[128];
				snprintf(why, sizeof why, "Total %zu but the lines add up to %zu", n, sum);
				return fail(d, lineno, line, l, why);
			}
			d->total = n;
			seen_total = 1;
			continue;
		}
		used = -1;
		if (sscanf(line, "%5[A-Z] : 0x%lx%n", word, &a, &used) == 2 && used == (int)l) {
			int k;
			for (k = 0; k < 3; k++)
				if (!strcmp(word, kind_name[k]))
					break;
			if (k == 3)
				return fail(d, lineno, line, l, "unknown zone kind");
			snprintf(again, sizeof again, "%s : 0x%lx", kind_name[k], a);
			if (strcmp(again, line))
				return fail(d, lineno, line, l, "malformed zone header");
			if (d->nzones && a <= d->zones[d->nzones - 1].addr)
				return fail(d, lineno, line, l, "zone address not above the previous zone");
			if (d->nallocs && a < d->allocs[d->nallocs - 1].end)
				return fail(d, lineno, line, l, "zone starts inside the previous allocation");
			if (d->nzones == d->zcap) {
				d->zcap = d->zcap ? 2 * d->zcap : 64;
				d->zones = realloc(d->zones, d->zcap * sizeof *d->zones);
				if (!d->zones)
					return fail(d, lineno, line, l, "test out of memory");
			}
			d->zones[d->nzones++] = (struct zone_rec){(enum kind)k, a};
			continue;
		}
		used = -1;
		if (sscanf(line, "0x%lx - 0x%lx : %zu bytes%n", &a, &b, &n, &used) == 3 &&
		    used == (int)l) {
			snprintf(again, sizeof again, "0x%lx - 0x%lx : %zu bytes", a, b, n);
			if (strcmp(again, line))
				return fail(d, lineno, line, l, "malformed allocation line");
			if (!d->nzones)
				return fail(d, lineno, line, l, "allocation before any zone header");
			if (b < a || b - a != n)
				return fail(d, lineno, line, l, "end - start differs from the byte count");
			if (a % 16)
				return fail(d, lineno, line, l, "allocation not 16-byte aligned");
			const struct zone_rec *z = &d->zones[d->nzones - 1];
			/* a TINY or SMALL zone's address is its chunk 0; a LARGE
			 * mapping's starts with its header */
			if (a < z->addr || (z->kind == LARGE && a == z->addr))
				return fail(d, lineno, line, l, "allocation before its zone's address");
			if (d->nallocs) {
				const struct alloc_rec *prev = &d->allocs[d->nallocs - 1];
				if (a <= prev->start || a < prev->end)
					return fail(d, lineno, line, l,
						    "allocation not above the previous one (order or overlap)");
				if (z->kind == LARGE && prev->zone == d->nzones - 1)
					return fail(d, lineno, line, l, "second allocation in a LARGE mapping");
			}
			if (d->nallocs == d->acap) {
				d->acap = d->acap ? 2 * d->acap : 256;
				d->allocs = realloc(d->allocs, d->acap * sizeof *d->allocs);
				if (!d->allocs)
					return fail(d, lineno, line, l, "test out of memory");
			}
			d->allocs[d->nallocs++] = (struct alloc_rec){a, b, n, d->nzones - 1};
			sum += n;
			continue;
		}
		return fail(d, lineno, line, l, "does not parse");
	}
	if (!seen_total)
		return fail(d, lineno, "", 0, "no Total line");
	/* Each allocation ends before the next zone begins. */
	for (size_t i = 0; i < d->nallocs; i++) {
		size_t z = d->allocs[i].zone;
		if (z + 1 < d->nzones && d->allocs[i].end > d->zones[z + 1].addr) {
			snprintf(d->err, sizeof d->err,
				 "allocation %#lx-%#lx runs past the next zone header %#lx",
				 (unsigned long)d->allocs[i].start, (unsigned long)d->allocs[i].end,
				 (unsigned long)d->zones[z + 1].addr);
			return -1;
		}
	}
	return 0;
}

/* The allocation line that starts at p, or NULL; asserts it is unique. */
static const struct alloc_rec *find(const struct dump *d, const void *p)
{
	uintptr_t a = (uintptr_t)p;
	size_t lo = 0, hi = d->nallocs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (d->allocs[mid].start < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < d->nallocs && d->allocs[lo].start == a) {
		/* starts are strictly increasing, so no second line can match */
		return &d->allocs[lo];
	}
	return NULL;
}

static enum kind expected_kind(size_t n)
{
	return n <= TINY_MAX ? TINY : n <= SMALL_MAX ? SMALL : LARGE;
}

/* ------------------------------------------------------------------------ */
/* Capture                                                                  */
/* ------------------------------------------------------------------------ */

/* Text of a memfd from offset a to b (malloc'd, NUL terminated). */
static char *slurp(int fd, off_t a, off_t b)
{
	char *buf = malloc((size_t)(b - a) + 1);
	cr_assert(buf);
	cr_assert(pread(fd, buf, (size_t)(b - a), a) == b - a);
	buf[b - a] = '\0';
	return buf;
}

struct capture {
	int mfd, saved;
};

static void capture_start(struct capture *c)
{
	fflush(stdout);
	c->mfd = memfd_create("ftm_show", 0);
	cr_assert(c->mfd >= 0);
	c->saved = dup(1);
	cr_assert(dup2(c->mfd, 1) == 1);
}

/* Where the next dump starts. */
static off_t capture_mark(struct capture *c)
{
	return lseek(c->mfd, 0, SEEK_CUR);
}

static void capture_stop(struct capture *c)
{
	dup2(c->saved, 1);
	close(c->saved);
}

/* One show_alloc_mem call, captured and parsed (asserting it parses). */
static char *show_parsed(struct dump *d)
{
	struct capture c;
	capture_start(&c);
	show_alloc_mem();
	capture_stop(&c);
	char *text = slurp(c.mfd, 0, capture_mark(&c));
	close(c.mfd);
	cr_assert(parse_dump(text, strlen(text), d) == 0, "%s\nfull output:\n%s", d->err, text);
	return text;
}

static void assert_listed(const struct dump *d, const void *p, size_t n, int check_kind)
{
	const struct alloc_rec *r = find(d, p);
	cr_assert(r != NULL, "live %zu-byte block %p is not listed", n, p);
	cr_assert(r->n == n, "block %p listed with %zu bytes, asked for %zu", p, r->n, n);
	if (check_kind)
		cr_assert(d->zones[r->zone].kind == expected_kind(n),
			  "%zu-byte block %p listed in a %s zone", n, p, kind_name[d->zones[r->zone].kind]);
}

/* ------------------------------------------------------------------------ */
/* Single-threaded content checks                                           */
/* ------------------------------------------------------------------------ */

Test(show, parser_rejects_bad_output)
{
	/* The parser itself must be able to fail, or every test below is void. */
	static const char *const bad[] = {
	    "",
	    "Total : 1 bytes\n",
	    "TINY : 0x1000\n0x1010 - 0x1020 : 16 bytes\nTotal : 16 bytes",
	    "TINY : 0x1000\n0x1010 - 0x1020 : 15 bytes\nTotal : 15 bytes\n",
	    "TINY : 0x1000\n0x1010 - 0x1020 : 16 bytes\nTotal : 17 bytes\n",
	    "TINY : 0x1000\n0x1010 - 0x1020 : 16 bytes\n",
	    "0x1010 - 0x1020 : 16 bytes\nTotal : 16 bytes\n",
	    "TINY : 0x1000\n0x1010 - 0x1020 :  16 bytes\nTotal : 16 bytes\n",
	    "TINY : 0x1000\n0x1010 - 0x1020 : 16 Bytes\nTotal : 16 bytes\n",
	    "TINY : 0x1000\n0x1010 - 0x1020 : 16 bytes\nTotal : 16 bytes\nTINY : 0x2000\n",
	    "TINY : 0x1000\n0x1010 - 0x102A : 26 bytes\nTotal : 26 bytes\n",
	    "TINY : 0x01000\n0x1010 - 0x1020 : 16 bytes\nTotal : 16 bytes\n",
	    "HUGE : 0x1000\n0x1010 - 0x1020 : 16 bytes\nTotal : 16 bytes\n",
	    "SMALL : 0x2000\nTINY : 0x1000\n0x1010 - 0x1020 : 16 bytes\nTotal : 16 bytes\n",
	    "TINY : 0x1000\n0x1020 - 0x1030 : 16 bytes\n0x1010 - 0x1020 : 16 bytes\nTotal : 32 bytes\n",
	    "TINY : 0x1000\n0x1010 - 0x1030 : 32 bytes\n0x1020 - 0x1030 : 16 bytes\nTotal : 48 bytes\n",
	    "LARGE : 0x1000\n0x1000 - 0x1010 : 16 bytes\nTotal : 16 bytes\n",
	    "SMALL : 0x2000\n0x1ff0 - 0x2000 : 16 bytes\nTotal : 16 bytes\n",
	    "TINY : 0x1000\n0x1018 - 0x1020 : 8 bytes\nTotal : 8 bytes\n",
	    "LARGE : 0x1000\n0x1010 - 0x1020 : 16 bytes\n0x1030 - 0x1040 : 16 bytes\nTotal : 32 bytes\n",
	    "TINY : 0x1000\n0x1010 - 0x2020 : 4112 bytes\nSMALL : 0x2000\nTotal : 4112 bytes\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct dump d;
		cr_assert(parse_dump(bad[i], strlen(bad[i]), &d) == -1, "accepted bad output #%zu:\n%s",
			  i, bad[i]);
		dump_free(&d);
	}
	static const char good[] = "TINY : 0xa0000\n0xa0000 - 0xa002a : 42 bytes\n"
				   "SMALL : 0xad000\n0xad020 - 0xadead : 3725 bytes\n"
				   "LARGE : 0xb0000\n0xb0020 - 0xbbeef : 48847 bytes\n"
				   "Total : 52614 bytes\n";
	struct dump d;
	cr_assert(parse_dump(good, strlen(good), &d) == 0, "%s", d.err);
	cr_assert(d.nzones == 3 && d.nallocs == 3 && d.total == 52614);
	dump_free(&d);
}

struct mine {
	void *p;
	size_t n;
	int kind_fixed; /* the zone kind follows from n (not an aligned block) */
};

Test(show, lists_every_live_block_exactly)
{
	struct mine m[16];
	size_t k = 0;
	static const size_t plain[] = {42, 3725, 48847, 1, 16, 512, 513, 32768, 32769, 100000,
				       1 << 20};
	for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
		m[k].p = malloc(plain[i]);
		cr_assert(m[k].p);
		m[k].n = plain[i];
		m[k++].kind_fixed = 1;
	}
	m[k].p = calloc(10, 30);
	m[k].n = 300;
	m[k++].kind_fixed = 1;
	char *g = malloc(100);
	memset(g, 1, 100);
	m[k].p = realloc(g, 200); /* grown, maybe in place */
	m[k].n = 200;
	m[k++].kind_fixed = 1;
	char *s = malloc(3725);
	m[k].p = realloc(s, 1000); /* shrunk within SMALL */
	m[k].n = 1000;
	m[k++].kind_fixed = 1;
	m[k].p = memalign(4096, 100);
	m[k].n = 100;
	m[k++].kind_fixed = 0;
	cr_assert(posix_memalign(&m[k].p, 256, 1000) == 0);
	m[k].n = 1000;
	m[k++].kind_fixed = 0;

	/* Both dumps are taken before any parsing: nothing allocates between. */
	struct capture c;
	capture_start(&c);
	show_alloc_mem();
	off_t mid = capture_mark(&c);
	free(m[0].p); /* the 42-byte TINY block: probably kept in the thread cache */
	show_alloc_mem();
	off_t end = capture_mark(&c);
	capture_stop(&c);
	char *t1 = slurp(c.mfd, 0, mid), *t2 = slurp(c.mfd, mid, end);
	close(c.mfd);

	struct dump d1, d2;
	cr_assert(parse_dump(t1, strlen(t1), &d1) == 0, "%s\nfull output:\n%s", d1.err, t1);
	cr_assert(parse_dump(t2, strlen(t2), &d2) == 0, "%s\nfull output:\n%s", d2.err, t2);
	for (size_t i = 0; i < k; i++)
		assert_listed(&d1, m[i].p, m[i].n, m[i].kind_fixed);
	/* A TINY or SMALL zone line names the start of the zone's mapping (at
	 * least 64 KiB, aligned to its size; the header inside may sit a few
	 * cache lines in), and a TINY zone is exactly 64 KiB. */
	for (size_t z = 0; z < d1.nzones; z++)
		if (d1.zones[z].kind != LARGE)
			cr_assert(d1.zones[z].addr % 65536 == 0, "zone %#lx is not a mapping start",
				  (unsigned long)d1.zones[z].addr);
	for (size_t i = 0; i < d1.nallocs; i++) {
		const struct zone_rec *z = &d1.zones[d1.allocs[i].zone];
		if (z->kind == TINY)
			cr_assert(d1.allocs[i].end <= z->addr + 65536, "%#lx - %#lx outside TINY zone %#lx",
				  (unsigned long)d1.allocs[i].start, (unsigned long)d1.allocs[i].end,
				  (unsigned long)z->addr);
	}
	cr_assert(find(&d2, m[0].p) == NULL, "freed block %p still listed:\n%s", m[0].p, t2);
	for (size_t i = 1; i < k; i++)
		assert_listed(&d2, m[i].p, m[i].n, m[i].kind_fixed);
	cr_assert(d2.total == d1.total - 42, "Total went from %zu to %zu after freeing 42 bytes",
		  d1.total, d2.total);
	/* Exactly that one line went away; nothing else changed. */
	cr_assert(d2.nallocs == d1.nallocs - 1, "%zu lines then %zu", d1.nallocs, d2.nallocs);
	for (size_t i = 0, j = 0; i < d1.nallocs; i++) {
		if (d1.allocs[i].start == (uintptr_t)m[0].p)
			continue;
		cr_assert(d1.allocs[i].start == d2.allocs[j].start && d1.allocs[i].n == d2.allocs[j].n,
			  "line %#lx (%zu bytes) changed between the dumps",
			  (unsigned long)d1.allocs[i].start, d1.allocs[i].n);
		j++;
	}
	dump_free(&d1);
	dump_free(&d2);
	free(t1);
	free(t2);
	for (size_t i = 1; i < k; i++)
		free(m[i].p);

	/* After freeing everything of ours, none of it is listed. */
	struct dump d3;
	char *t3 = show_parsed(&d3);
	for (size_t i = 0; i < k; i++)
		cr_assert(find(&d3, m[i].p) == NULL, "freed block %p (%zu bytes) still listed", m[i].p,
			  m[i].n);
	dump_free(&d3);
	free(t3);
}

Test(show, exact_size_for_every_request_size)
{
	/* Every size through TINY, a sweep of SMALL, some LARGE: the printed size
	 * is the request, not the class size. */
	enum { MAXN = 4096 };
	static void *p[MAXN];
	static size_t n[MAXN];
	size_t k = 0;
	for (size_t s = 1; s <= 1100; s++, k++)
		n[k] = s;
	for (size_t s = 1101; s <= SMALL_MAX + 40; s += 23, k++)
		n[k] = s;
	for (size_t s = SMALL_MAX - 20; s <= SMALL_MAX + 20; s++, k++)
		n[k] = s;
	for (size_t s = 40000; s <= 400000; s += 40007, k++)
		n[k] = s;
	cr_assert(k <= MAXN);
	for (size_t i = 0; i < k; i++) {
		p[i] = malloc(n[i]);
		cr_assert(p[i]);
	}
	struct dump d;
	char *t = show_parsed(&d);
	for (size_t i = 0; i < k; i++)
		assert_listed(&d, p[i], n[i], 1);
	/* Our bytes alone: the Total covers at least them. */
	size_t ours = 0;
	for (size_t i = 0; i < k; i++)
		ours += n[i];
	cr_assert(d.total >= ours);
	dump_free(&d);
	free(t);
	for (size_t i = 0; i < k; i++)
		free(p[i]);
}

Test(show, malloc_zero_listed_with_zero_bytes)
{
	void *p = malloc(0);
	cr_assert(p);
	struct dump d;
	char *t = show_parsed(&d);
	const struct alloc_rec *r = find(&d, p);
	cr_assert(r != NULL, "live malloc(0) block %p not listed", p);
	cr_assert(r->n == 0 && r->end == r->start, "malloc(0) block listed with %zu bytes", r->n);
	cr_assert(d.zones[r->zone].kind == TINY);
	dump_free(&d);
	free(t);
	free(p);
}

static void *free_in_thread(void *p)
{
	free(p);
	return NULL;
}

Test(show, freed_block_of_dead_thread_not_listed)
{
	/* A block freed by a thread that then exited: its cache must not make it
	 * look live, and the thread's live blocks still show. */
	void *owned = malloc(700);
	cr_assert(owned);
	pthread_t t;
	cr_assert(pthread_create(&t, NULL, free_in_thread, owned) == 0);
	cr_assert(pthread_join(t, NULL) == 0);
	struct dump d;
	char *txt = show_parsed(&d);
	cr_assert(find(&d, owned) == NULL, "block freed by an exited thread still listed");
	dump_free(&d);
	free(txt);
}

/* ------------------------------------------------------------------------ */
/* Concurrent dumps                                                         */
/* ------------------------------------------------------------------------ */

enum { WORKERS = 8, PINNED = 4, SLOTS = 48, DUMPS = 50 };

struct worker {
	int id;
	pthread_barrier_t *bar;
	atomic_int *stop;
	void *pinned[PINNED];
	size_t pinned_n[PINNED];
	size_t bad;        /* data mismatches seen */
	atomic_size_t ops; /* malloc/free pairs done */
	int alloc_failed;
};

static unsigned char wpat(int id, size_t i, uint32_t seed)
{
	return (unsigned char)(id * 37 + seed + i * 11);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	void *slot[SLOTS] = {0};
	size_t len[SLOTS] = {0};
	uint32_t seed[SLOTS] = {0};
	for (int i = 0; i < PINNED; i++) {
		w->pinned_n[i] = (size_t)(w->id * 10 + 1 + i * 997);
		w->pinned[i] = malloc(w->pinned_n[i]);
		if (!w->pinned[i])
			w->alloc_failed = 1;
		else
			memset(w->pinned[i], w->id + i, w->pinned_n[i]);
	}
	pthread_barrier_wait(w->bar);
	uint64_t x = 0x2545f4914f6cdd1dull * (uint64_t)(w->id + 1);
	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t s = x % SLOTS;
		if (slot[s]) {
			const unsigned char *c = slot[s];
			for (size_t i = 0; i < len[s]; i++)
				if (c[i] != wpat(w->id, i, seed[s])) {
					w->bad++;
					break;
				}
			free(slot[s]);
			slot[s] = NULL;
			atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
			continue;
		}
		unsigned r = (unsigned)(x >> 20) % 100;
		len[s] = r < 70 ? 1 + (x >> 32) % TINY_MAX
			: r < 98 ? TINY_MAX + 1 + (x >> 32) % (SMALL_MAX - TINY_MAX)
				 : SMALL_MAX + 1 + (x >> 32) % 100000;
		seed[s] = (uint32_t)(x >> 40);
		slot[s] = malloc(len[s]);
		if (!slot[s]) {
			w->alloc_failed = 1;
			continue;
		}
		for (size_t i = 0; i < len[s]; i++)
			((unsigned char *)slot[s])[i] = wpat(w->id, i, seed[s]);
	}
	for (size_t s = 0; s < SLOTS; s++)
		free(slot[s]);
	for (int i = 0; i < PINNED; i++) {
		const unsigned char *c = w->pinned[i];
		for (size_t j = 0; c && j < w->pinned_n[i]; j++)
			if (c[j] != (unsigned char)(w->id + i)) {
				w->bad++;
				break;
			}
	}
	return NULL;
}

static size_t total_ops(struct worker *w)
{
	size_t n = 0;
	for (int i = 0; i < WORKERS; i++)
		n += atomic_load_explicit(&w[i].ops, memory_order_relaxed);
	return n;
}

Test(show, consistent_dumps_under_concurrency, .timeout = 120)
{
	pthread_barrier_t bar;
	atomic_int stop = 0;
	static struct worker w[WORKERS];
	pthread_t t[WORKERS];
	pthread_barrier_init(&bar, NULL, WORKERS + 1);
	for (int i = 0; i < WORKERS; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].id = i;
		w[i].bar = &bar;
		w[i].stop = &stop;
		cr_assert(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
	}
	pthread_barrier_wait(&bar);

	struct capture c;
	capture_start(&c);
	off_t mark[DUMPS + 1];
	mark[0] = capture_mark(&c);
	/* Workers get real work in between dumps: wait (yielding) until they
	 * have done another batch of malloc/free pairs since the last one. */
	size_t target = 0;
	for (int i = 0; i < DUMPS; i++) {
		target += 150;
		while (total_ops(w) < target)
			sched_yield();
		show_alloc_mem();
		mark[i + 1] = capture_mark(&c);
	}
	capture_stop(&c);
	atomic_store(&stop, 1);
	for (int i = 0; i < WORKERS; i++)
		cr_assert(pthread_join(t[i], NULL) == 0);

	size_t ops = 0;
	for (int i = 0; i < WORKERS; i++) {
		cr_assert(!w[i].alloc_failed, "worker %d: an allocation failed", i);
		cr_assert(w[i].bad == 0, "worker %d: %zu blocks changed while dumps ran", i, w[i].bad);
		ops += atomic_load(&w[i].ops);
	}
	for (int i = 0; i < DUMPS; i++) {
		char *text = slurp(c.mfd, mark[i], mark[i + 1]);
		struct dump d;
		cr_assert(parse_dump(text, strlen(text), &d) == 0, "dump %d: %s", i, d.err);
		/* The pinned blocks were live through every dump. */
		for (int k = 0; k < WORKERS; k++)
			for (int j = 0; j < PINNED; j++)
				assert_listed(&d, w[k].pinned[j], w[k].pinned_n[j], 1);
		dump_free(&d);
		free(text);
	}
	close(c.mfd);
	cr_log_info("%zu malloc/free pairs ran beside %d dumps", ops, DUMPS);
	for (int i = 0; i < WORKERS; i++)
		for (int j = 0; j < PINNED; j++)
			free(w[i].pinned[j]);
	pthread_barrier_destroy(&bar);
}

/* ------------------------------------------------------------------------ */
/* FT_MALLOC_ARENAS=4: one dump, four arenas                                */
/* ------------------------------------------------------------------------ */

enum { ARENA_THREADS = 4, PER_THREAD = 6 };
static const size_t arena_sizes[PER_THREAD] = {40, 100, 300, 2000, 9000, 40000};

struct arena_child {
	pthread_barrier_t *bar;
	int id;
	void *p[PER_THREAD];
};

static void *arena_thread(void *arg)
{
	struct arena_child *a = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		a->p[i] = malloc(arena_sizes[i] + (size_t)a->id);
		if (a->p[i])
			memset(a->p[i], a->id, arena_sizes[i] + (size_t)a->id);
	}
	pthread_barrier_wait(a->bar); /* all allocated, all alive */
	pthread_barrier_wait(a->bar); /* dump taken */
	return NULL;
}

/* Child mode: four threads allocate while all alive, the main thread dumps,
 * then prints "PTR <addr> <size>" for each block. */
__attribute__((constructor)) static void show_child(void)
{
	const char *mode = getenv(MARKER);
	if (!mode)
		return;
	if (strcmp(mode, "arenas"))
		_exit(92);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, ARENA_THREADS + 1);
	struct arena_child a[ARENA_THREADS];
	pthread_t t[ARENA_THREADS];
	for (int i = 0; i < ARENA_THREADS; i++) {
		a[i].bar = &bar;
		a[i].id = i;
		if (pthread_create(&t[i], NULL, arena_thread, &a[i]))
			_exit(93);
	}
	pthread_barrier_wait(&bar);
	show_alloc_mem();
	pthread_barrier_wait(&bar);
	for (int i = 0; i < ARENA_THREADS; i++) {
		pthread_join(t[i], NULL);
		for (int j = 0; j < PER_THREAD; j++) {
			char line[96];
			int n = snprintf(line, sizeof line, "PTR %p %zu\n", a[i].p[j],
					 arena_sizes[j] + (size_t)i);
			if (write(1, line, (size_t)n) != n)
				_exit(94);
		}
	}
	_exit(0);
}

static void run_arena_child(char *out, size_t cap, int *status)
{
	char **envp = env_without((const char *const[]){"BXFI_", "FT_MALLOC_ARENAS=", MARKER "=", NULL},
				  (const char *const[]){MARKER "=arenas", "FT_MALLOC_ARENAS=4", NULL}, NULL);
	int fds[2];
	cr_assert(pipe(fds) == 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		char *argv[] = {"api_show", NULL};
		execve("/proc/self/exe", argv, envp);
		_exit(127);
	}
	close(fds[1]);
	read_all(fds[0], out, cap);
	close(fds[0]);
	cr_assert(waitpid(pid, status, 0) == pid);
	free(envp);
}

Test(show, four_arenas_in_one_dump, .timeout = 60)
{
	static char out[1 << 20];
	int status;
	run_arena_child(out, sizeof out, &status);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x, output:\n%s",
		  status, out);
	char *ptrs = strstr(out, "PTR ");
	cr_assert(ptrs != NULL, "child printed no pointers:\n%s", out);
	struct dump d;
	cr_assert(parse_dump(out, (size_t)(ptrs - out), &d) == 0, "%s\n%.*s", d.err,
		  (int)(ptrs - out), out);
	size_t tiny_zone[ARENA_THREADS] = {0};
	int count = 0;
	for (char *line = ptrs; *line;) {
		void *p;
		size_t n;
		cr_assert(sscanf(line, "PTR %p %zu", &p, &n) == 2, "bad child line: %s", line);
		assert_listed(&d, p, n, 1);
		if (n >= 40 && n < 40 + ARENA_THREADS)
			tiny_zone[n - 40] = find(&d, p)->zone;
		count++;
		char *nl = strchr(line, '\n');
		cr_assert(nl);
		line = nl + 1;
	}
	cr_assert(count == ARENA_THREADS * PER_THREAD, "child printed %d pointers", count);
	/* Same size class in four arenas: the blocks cannot all share a zone. */
	int distinct = 0;
	for (int i = 0; i < ARENA_THREADS; i++) {
		int seen = 0;
		for (int j = 0; j < i; j++)
			seen |= tiny_zone[j] == tiny_zone[i];
		distinct += !seen;
	}
	cr_assert(distinct >= 2, "the 4 threads' 40-byte blocks share %d zone(s): arenas not used?",
		  distinct);
	cr_log_info("40-byte blocks of 4 threads lie in %d distinct zones", distinct);
	dump_free(&d);
}
