/*
 * libFuzzer harness for the allocator core (`make fuzz`, `make fuzz-ci`).
 *
 * What it tests: that no sequence of calls to the malloc family, however
 * ordered, sized and spread over two threads, can make the allocator hand out
 * overlapping or misaligned memory, lose or scribble on a live block's
 * contents, break realloc's copy, return dirty calloc memory, misreport a
 * usable size, or mishandle a bad pointer (interior, freed, foreign).
 *
 * How: the core is linked under its ftm_* names (built with
 * -DFTM_NO_OVERRIDE beside ASan's malloc). The input is a program: each
 * operation is one opcode byte (taken modulo 16, see LLVMFuzzerTestOneInput)
 * followed by the bytes it consumes, in the order the op_* function reads
 * them: which block to act on (an index modulo the live count), sizes
 * (pick_size: a selector byte, then 1 to 4 bytes; biased to 0..64,
 * 512 +- 16, 32768 +- 16, every class size +- 1, page multiples, LARGE up to
 * 2 MiB and 64 KiB multiples up to 4 MiB), alignments (pick_align: powers of
 * two from 1 B to 1 MiB, or any 16-bit value). A worker thread takes blocks
 * from a small queue and frees or reallocs them, or allocates blocks that
 * the main thread frees later, so chunks cross threads in both directions.
 *
 * The main thread keeps a shadow of every live block it owns: address,
 * requested size, usable size, and the seed of the pattern written over its
 * usable bytes (all of them up to 256 KiB; edges and stripes beyond). The
 * shadow is sorted by address and every insertion checks that
 * [p, p + usable) meets neither neighbour. Checks: after each allocation,
 * alignment (16, or the one asked for), usable >= request, calloc memory
 * zero; after each realloc, the old pattern on min(old usable, new size)
 * bytes; before every free and hand-off, the whole pattern; after every
 * step, the first and last 32 bytes of every live block; requests that must
 * fail (overflowing sizes, bad alignments) return NULL or the error code
 * with errno set and leave the old block as it was. Misuse steps run with
 * the worker idle and capture fd 2: each must print exactly one line
 * "ft_malloc: CALL(): REASON 0xADDR" and change nothing.
 *
 * A failed check prints what, where and which block, then aborts: libFuzzer
 * saves the input as a crash artifact. Each input ends with the worker
 * drained and every block verified and freed, so inputs are independent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sanitizer/common_interface_defs.h>

#include "ft_malloc.h"

#define MAX_LIVE 384                 /* blocks the main thread holds at most */
#define BYTES_CAP ((size_t)48 << 20) /* usable bytes held at most */
#define QCAP 8                       /* hand-off queue */
#define BURST_MAX 128
#define RECENT 8 /* freed addresses remembered for double frees */

/* ---- failures ------------------------------------------------------------- */

static int report_fd = 2; /* a copy of the real stderr, kept while fd 2 is captured */

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(msg) - 2)
		n = (int)sizeof(msg) - 2;
	msg[n++] = '\n';
	if (write(report_fd, "fuzz_alloc: ", 12) < 0 || write(report_fd, msg, (size_t)n) < 0)
		_exit(3);
	abort();
}

/* ---- input ---------------------------------------------------------------- */

struct input {
	const uint8_t *data;
	size_t len, pos;
};

static uint8_t r8(struct input *in)
{
	return in->pos < in->len ? in->data[in->pos++] : 0;
}

static uint16_t r16(struct input *in)
{
	return (uint16_t)(r8(in) | r8(in) << 8);
}

static uint32_t r32(struct input *in)
{
	return (uint32_t)r16(in) | (uint32_t)r16(in) << 16;
}

/* The size of class k as the allocator defines them: 16-byte steps to 128,
 * then 9/8, 10/8, 12/8, 14/8 and 16/8 of each power of two up to 32 KiB
 * (48 classes). */
static size_t class_size(unsigned k)
{
	static const unsigned char eighths[5] = {9, 10, 12, 14, 16};
	if (k < 8)
		return (k + 1) * 16;
	return (size_t)eighths[(k - 8) % 5] << ((k - 8) / 5 + 4);
}

static size_t pick_size(struct input *in)
{
	switch (r8(in) % 10) {
	case 0:
		return r8(in) % 65;
	case 1:
		return 496 + r8(in) % 33;
	case 2:
		return 32752 + r8(in) % 33;
	case 3:
		return 1 + r16(in) % 512;
	case 4:
		return 513 + r16(in) % (32768 - 512);
	case 5: /* a class size, one below or one above */
		return class_size(r8(in) % 48) - 1 + r8(in) % 3;
	case 6: /* LARGE up to 2 MiB, smaller ones as likely as bigger ones */
		return 32769 + r32(in) % ((size_t)32768 << r8(in) % 7);
	case 7:
		return (size_t)(1 + r8(in) % 64) * 4096 - 16 + r8(in) % 33;
	case 8:
		return (size_t)(1 + r8(in) % 64) * 65536 - 16 + r8(in) % 33;
	default:
		return 1 + r8(in) % 128;
	}
}

/* A power of two from 1 B to 1 MiB, or (high bit set) any 16-bit value. */
static size_t pick_align(struct input *in)
{
	uint8_t sel = r8(in);
	if (sel & 0x80)
		return r16(in);
	return (size_t)1 << (sel % 21);
}

static bool pow2(size_t n)
{
	return n && !(n & (n - 1));
}

/* ---- patterns ------------------------------------------------------------- */

/* The helpers that touch block contents are not instrumented: the memory is
 * the allocator's own mappings, where ASan checks nothing, and per-byte
 * coverage callbacks would only slow the fuzzer down. */
#ifdef __clang__
#define HOT __attribute__((no_sanitize("address", "undefined", "coverage")))
#else
#define HOT
#endif

static inline HOT uint64_t pattern(uint64_t seed, size_t word)
{
	uint64_t x = seed + (uint64_t)word * 0xd1b54a32d192ed03ull;
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 32;
	return x;
}

static HOT void fill_range(unsigned char *p, size_t from, size_t to, uint64_t seed)
{
	size_t i = from;
	for (; i < to && i % 8; i++)
		p[i] = (unsigned char)(pattern(seed, i / 8) >> (8 * (i % 8)));
	for (; i + 8 <= to; i += 8) {
		uint64_t v = pattern(seed, i / 8);
		memcpy(p + i, &v, 8);
	}
	for (; i < to; i++)
		p[i] = (unsigned char)(pattern(seed, i / 8) >> (8 * (i % 8)));
}

/* Offset of the first byte of [from, to) that differs from the pattern, or
 * `to` when all match. */
static HOT size_t mismatch_range(const unsigned char *p, size_t from, size_t to, uint64_t seed)
{
	size_t i = from;
	for (; i < to && i % 8; i++)
		if (p[i] != (unsigned char)(pattern(seed, i / 8) >> (8 * (i % 8))))
			return i;
	for (; i + 8 <= to; i += 8) {
		uint64_t v = pattern(seed, i / 8), got;
		memcpy(&got, p + i, 8);
		if (got != v)
			break;
	}
	for (; i < to; i++)
		if (p[i] != (unsigned char)(pattern(seed, i / 8) >> (8 * (i % 8))))
			return i;
	return to;
}

/* Which bytes of a block carry the pattern: all of them up to DENSE bytes;
 * past that (LARGE blocks, each its own mapping) the first and last EDGE
 * bytes and a STRIPE every EDGE bytes between, so that a multi-MiB block
 * costs a few dozen page faults instead of a thousand. */
#define DENSE ((size_t)256 << 10)
#define EDGE ((size_t)64 << 10)
#define STRIPE 256

/* Start of the next patterned range at or after `at` in a block of n bytes
 * (n when none); *end receives its end. */
static size_t next_range(size_t n, size_t at, size_t *end)
{
	if (n <= DENSE || at < EDGE) {
		*end = n <= DENSE ? n : EDGE;
		return at < *end ? at : n;
	}
	if (at >= n - EDGE) {
		*end = n;
		return at;
	}
	size_t start = at / EDGE * EDGE;
	if (at >= start + STRIPE)
		start += EDGE;
	if (start >= n - EDGE) {
		*end = n;
		return n - EDGE;
	}
	*end = start + STRIPE;
	return at > start ? at : start;
}

/* Fills the patterned bytes of [0, n). */
static void fill(unsigned char *p, size_t n, uint64_t seed)
{
	size_t at = 0, end;
	while ((at = next_range(n, at, &end)) < n) {
		fill_range(p, at, end, seed);
		at = end;
	}
}

/* First patterned byte of [from, to) (of a block of n bytes) that differs,
 * or `to`. */
static size_t mismatch(const unsigned char *p, size_t n, size_t from, size_t to, uint64_t seed)
{
	size_t at = from, end;
	while ((at = next_range(n, at, &end)) < to) {
		if (end > to)
			end = to;
		size_t bad = mismatch_range(p, at, end, seed);
		if (bad != end)
			return bad;
		at = end;
	}
	return to;
}

/* ---- blocks and the shadow ------------------------------------------------ */

struct block {
	unsigned char *p;
	size_t size;   /* requested */
	size_t usable; /* malloc_usable_size at allocation: all filled */
	uint64_t seed;
	const char *how; /* the call that produced it, for messages */
};

static void check_range(const struct block *b, size_t from, size_t to, const char *when)
{
	if (to > b->usable)
		to = b->usable;
	size_t bad = mismatch(b->p, b->usable, from, to, b->seed);
	if (bad != to)
		fail("%s: block %p (%s of %zu, usable %zu) corrupted at offset %zu: 0x%02x, "
		     "expected 0x%02x",
		     when, (void *)b->p, b->how, b->size, b->usable, bad, b->p[bad],
		     (unsigned)(unsigned char)(pattern(b->seed, bad / 8) >> (8 * (bad % 8))));
}

static void check_full(const struct block *b, const char *when)
{
	check_range(b, 0, b->usable, when);
}

static void check_ends(const struct block *b, const char *when)
{
	size_t n = b->usable;
	check_range(b, 0, n < 32 ? n : 32, when);
	if (n > 32)
		check_range(b, n - 32 > 32 ? n - 32 : 32, n, when);
}

static struct block live[MAX_LIVE + BURST_MAX];
static size_t n_live, live_bytes;
static uint64_t next_seed;
static void *recent_freed[RECENT];
static unsigned recent_pos;

static size_t span(const struct block *b)
{
	return b->usable ? b->usable : 1;
}

/* Index of the first live block at an address >= p. */
static size_t lower_bound(const void *p)
{
	size_t lo = 0, hi = n_live;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if ((uintptr_t)live[mid].p < (uintptr_t)p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool is_live(const void *p)
{
	size_t i = lower_bound(p);
	return i < n_live && live[i].p == p;
}

static void shadow_insert(const struct block *b)
{
	size_t i = lower_bound(b->p);
	if (i > 0) {
		const struct block *prev = &live[i - 1];
		if ((uintptr_t)prev->p + span(prev) > (uintptr_t)b->p)
			fail("%s returned %p (size %zu, usable %zu) inside live block %p (%s of %zu, "
			     "usable %zu)",
			     b->how, (void *)b->p, b->size, b->usable, (void *)prev->p, prev->how,
			     prev->size, prev->usable);
	}
	if (i < n_live) {
		const struct block *next = &live[i];
		if ((uintptr_t)b->p + span(b) > (uintptr_t)next->p)
			fail("%s returned %p (size %zu, usable %zu) overlapping live block %p (%s of "
			     "%zu, usable %zu)",
			     b->how, (void *)b->p, b->size, b->usable, (void *)next->p, next->how,
			     next->size, next->usable);
	}
	memmove(&live[i + 1], &live[i], (n_live - i) * sizeof(*live));
	live[i] = *b;
	n_live++;
	live_bytes += b->usable;
}

static struct block shadow_remove(size_t i)
{
	struct block b = live[i];
	memmove(&live[i], &live[i + 1], (n_live - i - 1) * sizeof(*live));
	n_live--;
	live_bytes -= b.usable;
	return b;
}

static void remember_freed(void *p)
{
	recent_freed[recent_pos++ % RECENT] = p;
}

/* Checks a fresh block, fills it and makes it live. */
static void adopt(void *p, size_t size, size_t align, const char *how)
{
	if (!p)
		fail("%s(%zu) returned NULL (errno %d)", how, size, errno);
	if ((uintptr_t)p % 16)
		fail("%s(%zu) returned %p: not 16-byte aligned", how, size, p);
	if (align > 1 && (uintptr_t)p % align)
		fail("%s(%zu) returned %p: not aligned to %zu", how, size, p, align);
	struct block b = {p, size, ftm_malloc_usable_size(p), next_seed++, how};
	if (b.usable < size)
		fail("%s(%zu) returned %p with usable size %zu", how, size, p, b.usable);
	fill(b.p, b.usable, b.seed);
	shadow_insert(&b);
}

/* ---- the worker thread ---------------------------------------------------- */

enum job_kind { JOB_FREE, JOB_REALLOC, JOB_MALLOC };

struct job {
	enum job_kind kind;
	struct block b;  /* the block handed over (JOB_FREE, JOB_REALLOC) */
	size_t size;     /* new size (JOB_REALLOC, JOB_MALLOC) */
	uint64_t seed;   /* pattern of the resulting block */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work, idle;
	struct job q[QCAP];
	unsigned head, count;
	bool busy;
	struct block back[MAX_LIVE]; /* blocks coming back to the main thread */
	size_t n_back;
} wk = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};

static size_t away, away_bytes; /* blocks (and bytes) the worker will give back */

static void worker_do(struct job *j)
{
	if (j->kind == JOB_MALLOC) {
		void *p = ftm_malloc(j->size);
		if (!p || (uintptr_t)p % 16)
			fail("worker: malloc(%zu) returned %p", j->size, p);
		struct block b = {p, j->size, ftm_malloc_usable_size(p), j->seed, "worker malloc"};
		if (b.usable < b.size)
			fail("worker: malloc(%zu) usable size %zu", b.size, b.usable);
		fill(b.p, b.usable, b.seed);
		pthread_mutex_lock(&wk.lock);
		wk.back[wk.n_back++] = b;
		pthread_mutex_unlock(&wk.lock);
		return;
	}
	check_full(&j->b, "worker, before free/realloc");
	if (j->kind == JOB_FREE) {
		ftm_free(j->b.p);
		return;
	}
	void *q = ftm_realloc(j->b.p, j->size);
	if (j->size == 0) {
		if (q)
			fail("worker: realloc(%p, 0) returned %p, not NULL", (void *)j->b.p, q);
		return;
	}
	if (!q || (uintptr_t)q % 16)
		fail("worker: realloc(%p, %zu) returned %p", (void *)j->b.p, j->size, q);
	struct block b = {q, j->size, ftm_malloc_usable_size(q), j->seed, "worker realloc"};
	if (b.usable < b.size)
		fail("worker: realloc(.., %zu) usable size %zu", b.size, b.usable);
	size_t keep = j->b.usable < j->size ? j->b.usable : j->size;
	size_t bad = mismatch(q, j->b.usable, 0, keep, j->b.seed);
	if (bad != keep)
		fail("worker: realloc(%p (usable %zu), %zu) -> %p lost byte %zu of the old contents",
		     (void *)j->b.p, j->b.usable, j->size, q, bad);
	fill(b.p, b.usable, b.seed);
	pthread_mutex_lock(&wk.lock);
	wk.back[wk.n_back++] = b;
	pthread_mutex_unlock(&wk.lock);
}

static void *worker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&wk.lock);
	for (;;) {
		while (!wk.count)
			pthread_cond_wait(&wk.work, &wk.lock);
		struct job j = wk.q[wk.head];
		wk.head = (wk.head + 1) % QCAP;
		wk.count--;
		wk.busy = true;
		pthread_cond_broadcast(&wk.idle); /* room in the queue */
		pthread_mutex_unlock(&wk.lock);
		worker_do(&j);
		pthread_mutex_lock(&wk.lock);
		wk.busy = false;
		pthread_cond_broadcast(&wk.idle);
	}
	return NULL;
}

static void submit(const struct job *j)
{
	pthread_mutex_lock(&wk.lock);
	while (wk.count == QCAP)
		pthread_cond_wait(&wk.idle, &wk.lock);
	wk.q[(wk.head + wk.count) % QCAP] = *j;
	wk.count++;
	pthread_cond_signal(&wk.work);
	pthread_mutex_unlock(&wk.lock);
}

/* Waits until the worker is idle and takes back the blocks it returns. */
static void sync_worker(void)
{
	pthread_mutex_lock(&wk.lock);
	while (wk.count || wk.busy)
		pthread_cond_wait(&wk.idle, &wk.lock);
	size_t n = wk.n_back;
	wk.n_back = 0;
	pthread_mutex_unlock(&wk.lock);
	/* the worker is idle: its array is ours until the next submit */
	for (size_t i = 0; i < n; i++) {
		check_full(&wk.back[i], "back from the worker");
		shadow_insert(&wk.back[i]);
	}
	away = 0;
	away_bytes = 0;
}

/* ---- capturing the allocator's diagnostics -------------------------------- */

static int capture_fd = -1;

static void capture_begin(void)
{
	if (ftruncate(capture_fd, 0) || lseek(capture_fd, 0, SEEK_SET) || dup2(capture_fd, 2) < 0)
		fail("cannot capture stderr: %s", strerror(errno));
}

/* Ends the capture and checks it holds exactly the line
 * "ft_malloc: CALL(): R 0xADDR" where R is one of the reasons allowed. */
static void capture_expect(const char *call, const void *addr, const char *r1, const char *r2)
{
	char got[512];
	ssize_t n = pread(capture_fd, got, sizeof(got) - 1, 0);
	if (dup2(report_fd, 2) < 0)
		_exit(3);
	got[n > 0 ? n : 0] = '\0';
	char want1[160], want2[160];
	snprintf(want1, sizeof(want1), "ft_malloc: %s(): %s %p\n", call, r1, addr);
	snprintf(want2, sizeof(want2), "ft_malloc: %s(): %s %p\n", call, r2 ? r2 : r1, addr);
	if (strcmp(got, want1) && strcmp(got, want2))
		fail("%s(%p): expected the diagnostic \"%.*s\"%s%s, got \"%s\"", call, addr,
		     (int)strlen(want1) - 1, want1, r2 ? " or reason " : "", r2 ? r2 : "", got);
}

/* ---- operations ----------------------------------------------------------- */

static bool room_for(size_t size)
{
	return n_live + away < MAX_LIVE && live_bytes + away_bytes + size <= BYTES_CAP;
}

/* A size the byte budget allows (LARGE requests shrink to SMALL when not). */
static size_t budget_size(struct input *in)
{
	size_t size = pick_size(in);
	if (live_bytes + away_bytes + size + size / 4 + 8192 > BYTES_CAP)
		size %= 32768;
	return size;
}

static void free_index(size_t i)
{
	struct block b = shadow_remove(i);
	check_full(&b, "before free");
	ftm_free(b.p);
	remember_freed(b.p);
}

static void op_malloc(struct input *in)
{
	size_t size = budget_size(in);
	if (!room_for(size))
		return;
	adopt(ftm_malloc(size), size, 1, "malloc");
}

static void op_calloc(struct input *in)
{
	size_t count = r8(in) % 17;
	size_t size = budget_size(in);
	size_t each = count ? size / count : size;
	size_t total = count * each;
	if (!room_for(total))
		return;
	unsigned char *p = ftm_calloc(count, each);
	if (!p)
		fail("calloc(%zu, %zu) returned NULL", count, each);
	for (size_t i = 0; i < total; i++)
		if (p[i])
			fail("calloc(%zu, %zu) = %p: byte %zu is 0x%02x, not zero", count, each,
			     (void *)p, i, p[i]);
	adopt(p, total, 1, "calloc");
}

static void op_free(struct input *in)
{
	if (n_live)
		free_index(r8(in) % n_live);
}

static void op_realloc(struct input *in)
{
	uint8_t how = r8(in);
	size_t size = budget_size(in);
	if (how % 8 == 0) { /* realloc(NULL, n) is malloc */
		if (room_for(size))
			adopt(ftm_realloc(NULL, size), size, 1, "realloc(NULL)");
		return;
	}
	if (!n_live)
		return;
	size_t i = r8(in) % n_live;
	if (how % 8 == 1) { /* realloc(p, 0) frees p and returns NULL */
		struct block b = shadow_remove(i);
		check_full(&b, "before realloc(p, 0)");
		void *q = ftm_realloc(b.p, 0);
		if (q)
			fail("realloc(%p, 0) returned %p, not NULL", (void *)b.p, q);
		remember_freed(b.p);
		return;
	}
	if (live_bytes + away_bytes - live[i].usable + size + size / 4 + 8192 > BYTES_CAP)
		return;
	struct block old = shadow_remove(i);
	check_full(&old, "before realloc");
	void *q;
	const char *what = "realloc";
	if (how % 8 == 2) { /* reallocarray with a split of the size */
		size_t count = 1 + r8(in) % 8;
		size -= size % count;
		q = ftm_reallocarray(old.p, count, size / count);
		what = "reallocarray";
	} else {
		q = ftm_realloc(old.p, size);
	}
	if (size == 0) { /* as realloc(p, 0): p is freed */
		if (q)
			fail("%s(%p, 0) returned %p, not NULL", what, (void *)old.p, q);
		remember_freed(old.p);
		return;
	}
	if (!q)
		fail("%s(%p, %zu) returned NULL (errno %d)", what, (void *)old.p, size, errno);
	size_t keep = old.usable < size ? old.usable : size;
	size_t bad = mismatch(q, old.usable, 0, keep, old.seed);
	if (bad != keep)
		fail("%s(%p (%s of %zu, usable %zu), %zu) -> %p: byte %zu of the old contents lost",
		     what, (void *)old.p, old.how, old.size, old.usable, size, q, bad);
	if (q != old.p)
		remember_freed(old.p);
	adopt(q, size, 1, what);
}

static void op_aligned(struct input *in)
{
	uint8_t kind = r8(in) % 5;
	size_t align = pick_align(in);
	size_t size = budget_size(in);
	if (!room_for(size + align))
		return;
	if (kind == 0) { /* memalign rounds a bad alignment up to a power of two */
		size_t eff = align;
		if (!pow2(eff))
			eff = eff ? (size_t)1 << (64 - __builtin_clzl(eff)) : 1;
		adopt(ftm_memalign(align, size), size, eff, "memalign");
	} else if (kind == 1) {
		void *sentinel = (void *)&kind, *p = sentinel;
		int rc = ftm_posix_memalign(&p, align, size);
		if (!pow2(align) || align % sizeof(void *)) {
			if (rc != EINVAL || p != sentinel)
				fail("posix_memalign(align %zu): returned %d and set %p, expected "
				     "EINVAL and the pointer untouched",
				     align, rc, p);
			return;
		}
		if (rc)
			fail("posix_memalign(align %zu, %zu) returned %d", align, size, rc);
		adopt(p, size, align, "posix_memalign");
	} else if (kind == 2) {
		errno = 0;
		void *p = ftm_aligned_alloc(align, size);
		if (!pow2(align)) {
			if (p || errno != EINVAL)
				fail("aligned_alloc(%zu, %zu) returned %p errno %d, expected NULL "
				     "EINVAL",
				     align, size, p, errno);
			return;
		}
		adopt(p, size, align, "aligned_alloc");
	} else if (kind == 3) {
		adopt(ftm_valloc(size), size, (size_t)sysconf(_SC_PAGESIZE), "valloc");
	} else {
		size_t page = (size_t)sysconf(_SC_PAGESIZE);
		size_t rounded = size ? (size + page - 1) & ~(page - 1) : page;
		adopt(ftm_pvalloc(size), rounded, page, "pvalloc");
	}
}

static void op_usable(struct input *in)
{
	if (!n_live)
		return;
	const struct block *b = &live[r8(in) % n_live];
	size_t u = ftm_malloc_usable_size(b->p);
	if (u != b->usable)
		fail("malloc_usable_size(%p) changed from %zu to %zu (%s of %zu)", (void *)b->p,
		     b->usable, u, b->how, b->size);
	check_full(b, "after malloc_usable_size");
}

static void op_handoff(struct input *in)
{
	uint8_t kind = r8(in) % 3;
	struct job j = {.seed = next_seed++};
	if (kind == 2) {
		j.kind = JOB_MALLOC;
		j.size = budget_size(in);
		if (!room_for(j.size))
			return;
		away_bytes += j.size + j.size / 4 + 4096; /* at most its usable size */
		away++;
		submit(&j);
		return;
	}
	if (!n_live)
		return;
	j.b = shadow_remove(r8(in) % n_live);
	j.kind = kind ? JOB_REALLOC : JOB_FREE;
	if (kind) {
		j.size = budget_size(in);
		if (j.size) {
			away_bytes += j.size + j.size / 4 + 4096;
			away++;
		}
	}
	submit(&j);
}

/* Bad pointers, with the worker idle so that no other call runs meanwhile. */
static void op_misuse(struct input *in)
{
	static char global_byte;
	char stack_byte;
	uint8_t kind = r8(in) % 9;
	sync_worker();
	if (kind <= 2 && n_live) { /* an interior pointer of a live block */
		const struct block *b = &live[r8(in) % n_live];
		if (b->usable < 2)
			return;
		size_t off = 1 + r16(in) % (b->usable - 1);
		if (r8(in) & 1)
			off = (off + 15) & ~(size_t)15;
		if (off >= b->usable)
			return;
		void *p = b->p + off;
		capture_begin();
		if (kind == 0) {
			ftm_free(p);
			capture_expect("free", p, "invalid pointer", NULL);
		} else if (kind == 1) {
			errno = 0;
			void *q = ftm_realloc(p, 64);
			int e = errno;
			capture_expect("realloc", p, "invalid pointer", NULL);
			if (q || e != EINVAL)
				fail("realloc(interior %p) returned %p errno %d", p, q, e);
		} else {
			size_t u = ftm_malloc_usable_size(p);
			capture_expect("malloc_usable_size", p, "invalid pointer", NULL);
			if (u)
				fail("malloc_usable_size(interior %p) returned %zu", p, u);
		}
		check_full(b, "after a bad pointer inside it");
	} else if (kind <= 4) { /* a pointer freed earlier and not handed out again */
		void *p = recent_freed[r8(in) % RECENT];
		if (!p || is_live(p))
			return;
		capture_begin();
		if (kind == 3) {
			ftm_free(p);
			capture_expect("free", p, "double free", "invalid pointer");
		} else {
			errno = 0;
			void *q = ftm_realloc(p, 100);
			int e = errno;
			capture_expect("realloc", p, "double free", "invalid pointer");
			if (q || e != EINVAL)
				fail("realloc(freed %p) returned %p errno %d", p, q, e);
		}
	} else if (kind == 8 && n_live) {
		/* near the start of the 64 KiB granule holding a live block: for a
		 * TINY chunk that is its zone's header, where no chunk starts */
		const struct block *b = &live[r8(in) % n_live];
		void *p = (void *)(((uintptr_t)b->p & ~(uintptr_t)0xffff) + 16 * (r8(in) % 64));
		if (is_live(p))
			return;
		capture_begin();
		ftm_free(p);
		capture_expect("free", p, "invalid pointer", "double free");
		check_full(b, "after a bad pointer near it");
	} else if (kind != 8) { /* memory that was never ours */
		void *foreign = malloc(32); /* the sanitizer's heap */
		void *cands[] = {&stack_byte, &global_byte, foreign, (void *)1, (void *)16,
				 (char *)foreign + 8};
		void *p = cands[r8(in) % 6];
		capture_begin();
		ftm_free(p);
		capture_expect("free", p, "invalid pointer", NULL);
		free(foreign);
	}
}

/* Many blocks of one size at once, then all freed in some order: tcache
 * overflow and refill, zones filled and emptied. */
static void op_burst(struct input *in)
{
	size_t size = pick_size(in) % 32769;
	unsigned n = 1 + r8(in) % BURST_MAX;
	uint8_t order = r8(in) % 4;
	void *ptrs[BURST_MAX];
	if (n_live + away + n > MAX_LIVE + BURST_MAX ||
	    live_bytes + away_bytes + (size_t)n * (size + size / 4 + 16) > BYTES_CAP)
		return;
	for (unsigned k = 0; k < n; k++) {
		ptrs[k] = ftm_malloc(size);
		adopt(ptrs[k], size, 1, "malloc (burst)");
	}
	for (unsigned k = 0; k < n; k++) {
		unsigned idx = order == 0 ? k : order == 1 ? n - 1 - k : order == 2 ? (k * 2) % n + (k * 2) / n : k;
		if (idx >= n)
			idx = k;
		if (!ptrs[idx])
			continue;
		size_t i = lower_bound(ptrs[idx]);
		ptrs[idx] = NULL;
		if (order == 3 && k % 2) { /* every other one goes to the worker */
			struct job j = {.kind = JOB_FREE, .b = shadow_remove(i)};
			submit(&j);
		} else {
			free_index(i);
		}
	}
	for (unsigned k = 0; k < n; k++) /* what a bad permutation skipped */
		if (ptrs[k])
			free_index(lower_bound(ptrs[k]));
}

/* Requests that must fail cleanly, leaving errno set and blocks untouched. */
static void op_huge(struct input *in)
{
	uint8_t kind = r8(in) % 7;
	size_t huge = SIZE_MAX - r16(in);
	errno = 0;
	if (kind == 0) {
		void *p = ftm_malloc(huge);
		if (p || errno != ENOMEM)
			fail("malloc(%zu) returned %p errno %d", huge, p, errno);
	} else if (kind == 1) {
		size_t a = ((size_t)1 << 33) + r8(in), b = ((size_t)1 << 31) + r8(in);
		void *p = ftm_calloc(a, b);
		if (p || errno != ENOMEM)
			fail("calloc(%zu, %zu) (overflows) returned %p errno %d", a, b, p, errno);
	} else if (kind == 2 && n_live) {
		const struct block *b = &live[r8(in) % n_live];
		void *q = ftm_realloc(b->p, huge);
		if (q || errno != ENOMEM)
			fail("realloc(%p, %zu) returned %p errno %d", (void *)b->p, huge, q, errno);
		check_full(b, "after a failed realloc");
	} else if (kind == 3 && n_live) {
		const struct block *b = &live[r8(in) % n_live];
		void *q = ftm_reallocarray(b->p, SIZE_MAX / 2 + 2, 2);
		if (q || errno != ENOMEM)
			fail("reallocarray(%p) overflowing returned %p errno %d", (void *)b->p, q,
			     errno);
		check_full(b, "after a failed reallocarray");
	} else if (kind == 4) {
		void *sentinel = &kind, *p = sentinel;
		int rc = ftm_posix_memalign(&p, 4096, huge);
		if (rc != ENOMEM || p != sentinel)
			fail("posix_memalign(4096, %zu) returned %d and set %p", huge, rc, p);
	} else if (kind == 5) {
		void *p = ftm_aligned_alloc(64, huge);
		if (p || errno != ENOMEM)
			fail("aligned_alloc(64, %zu) returned %p errno %d", huge, p, errno);
	} else if (kind == 6) { /* a power of two no mapping can meet */
		size_t align = (size_t)1 << (47 + r8(in) % 17);
		void *sentinel = &kind, *p = sentinel;
		int rc = ftm_posix_memalign(&p, align, r16(in));
		if (rc != ENOMEM || p != sentinel)
			fail("posix_memalign(%zu, small) returned %d and set %p", align, rc, p);
	}
}

/* Trim gives empty zones and cached mappings back: never a live block (the
 * check after every step touches both ends of each; one is checked whole). */
static void op_trim(struct input *in)
{
	ftm_malloc_trim(0);
	if (n_live)
		check_full(&live[r8(in) % n_live], "after malloc_trim");
}

/* ---- driver --------------------------------------------------------------- */

static void setup(void)
{
	pthread_t t;
	report_fd = dup(2);
	if (report_fd < 0)
		report_fd = 2;
	/* sanitizer reports keep going to the real stderr while fd 2 is captured */
	__sanitizer_set_report_fd((void *)(intptr_t)report_fd);
	capture_fd = memfd_create("fuzz_alloc_stderr", 0);
	if (capture_fd < 0)
		fail("memfd_create: %s", strerror(errno));
	if (pthread_create(&t, NULL, worker_main, NULL))
		fail("cannot start the worker thread");
	pthread_detach(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, setup);
	struct input in = {data, len, 0};
	next_seed = 0x5eed0000u + len;
	memset(recent_freed, 0, sizeof(recent_freed));
	while (in.pos < in.len) {
		uint8_t op = r8(&in);
		switch (op % 16) {
		case 0:
		case 1:
			op_malloc(&in);
			break;
		case 2:
			op_calloc(&in);
			break;
		case 3:
		case 4:
			op_free(&in);
			break;
		case 5:
		case 6:
			op_realloc(&in);
			break;
		case 7:
			op_aligned(&in);
			break;
		case 8:
			op_usable(&in);
			break;
		case 9:
		case 10:
			op_handoff(&in);
			break;
		case 11:
			sync_worker();
			break;
		case 12:
			op_misuse(&in);
			break;
		case 13:
			op_burst(&in);
			break;
		case 14:
			op_huge(&in);
			break;
		default:
			op_trim(&in);
			break;
		}
		for (size_t i = 0; i < n_live; i++)
			check_ends(&live[i], "after a step");
	}
	sync_worker();
	while (n_live)
		free_index(n_live - 1);
	live_bytes = 0;
	/* empty zones and cached mappings go back, so the next input starts
	 * from a heap much like this one did: crashes replay more reliably */
	ftm_malloc_trim(0);
	return 0;
}
