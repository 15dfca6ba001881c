/*
 * API conformance of the malloc family as ft_malloc exports it.
 *
 * Pins down the contract a program relies on when it swaps libc's malloc for
 * ours: malloc(0) gives distinct freeable pointers; every pointer is 16-byte
 * aligned at every size, across the TINY / SMALL / LARGE boundaries; calloc
 * zeroes even recycled (dirty) chunks; size overflows and impossible sizes
 * fail with NULL and ENOMEM instead of returning a short block; realloc keeps
 * exact contents while moving between classes and realloc(p, 0) really frees
 * p; malloc_usable_size tells the truth (every reported byte is usable and
 * survives realloc); free() never clobbers errno; the aligned allocators
 * accept every valid alignment and reject bad ones the POSIX way; the glibc
 * aliases (__libc_*, cfree) and the ftm_* names reach the same allocator;
 * mallinfo2, malloc_trim and malloc_stats give sane answers.
 *
 * Checks that only make sense on ft_malloc (symbol origin, show_alloc_mem,
 * pvalloc's usable size being whole pages) say so; everything else also
 * holds on glibc 2.36.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ft_malloc.h"

/* The glibc compatibility entry points: not declared by any header. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void cfree(void *);

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)

/* Hide a value from the optimizer (huge constant sizes would otherwise trip
 * -Walloc-size-larger-than, and the compiler may fold calls it "knows"). */
static size_t opaque(size_t v)
{
	__asm__ volatile("" : "+r"(v));
	return v;
}

static void *opaque_ptr(void *p)
{
	__asm__ volatile("" : "+r"(p));
	return p;
}

static unsigned char pat(size_t i, unsigned seed)
{
	return (unsigned char)(seed * 131u + i * 7u + (i >> 8) * 13u + 1u);
}

static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		c[i] = pat(i, seed);
}

/* Index of the first byte that does not hold the pattern, or SIZE_MAX. */
static size_t check(const void *p, size_t n, unsigned seed)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != pat(i, seed))
			return i;
	return SIZE_MAX;
}

static size_t first_nonzero(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return i;
	return SIZE_MAX;
}

static int aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

/* Runs show_alloc_mem with fd 1 pointed at a memfd and returns its output
 * (malloc'd, NUL terminated). */
static char *capture_show(void)
{
	int mfd = memfd_create("ftm_show", 0);
	cr_assert(mfd >= 0);
	fflush(stdout);
	int saved = dup(1);
	cr_assert(saved >= 0);
	cr_assert(dup2(mfd, 1) == 1);
	show_alloc_mem();
	dup2(saved, 1);
	close(saved);
	off_t len = lseek(mfd, 0, SEEK_END);
	cr_assert(len >= 0);
	char *buf = malloc((size_t)len + 1);
	cr_assert(buf);
	cr_assert(pread(mfd, buf, (size_t)len, 0) == len);
	buf[len] = '\0';
	close(mfd);
	return buf;
}

/* Bytes in use by the mallinfo2 convention shared with glibc: zone or heap
 * chunks in uordblks, separately mapped (LARGE) blocks in hblkhd. */
static size_t in_use(const struct mallinfo2 *mi)
{
	return mi->uordblks + mi->hblkhd;
}

/* How many allocation lines of a show_alloc_mem dump start at p. */
static int show_count(const char *dump, const void *p)
{
	char key[64];
	int klen = snprintf(key, sizeof key, "%p - ", p);
	int count = 0;
	for (const char *line = dump; *line;) {
		if (strncmp(line, key, (size_t)klen) == 0)
			count++;
		const char *nl = strchr(line, '\n');
		if (!nl)
			break;
		line = nl + 1;
	}
	return count;
}

/* Sizes that straddle every class boundary: all of 0..1040, every byte
 * around 32 KiB, a coarse sweep of SMALL and of the low LARGE range. */
static size_t next_sweep_size(size_t n)
{
	if (n < 1040)
		return n + 1;
	if (n >= 32700 && n < 32840)
		return n + 1;
	if (n < 32700)
		return n + 37 > 32700 ? 32700 : n + 37;
	return n + 211;
}

Test(conformance, malloc_zero_distinct_and_freeable)
{
	enum { N = 256 };
	void *p[N];
	for (int i = 0; i < N; i++) {
		errno = 0;
		p[i] = malloc(0);
		cr_assert(p[i] != NULL, "malloc(0) #%d returned NULL (errno %d)", i, errno);
		cr_assert(aligned(p[i], 16), "malloc(0) = %p not 16-byte aligned", p[i]);
		for (int j = 0; j < i; j++)
			cr_assert(p[i] != p[j], "malloc(0) returned %p twice (#%d and #%d)", p[i], j, i);
	}
	/* The usable bytes of each malloc(0) block (if any) belong to it alone. */
	for (int i = 0; i < N; i++)
		fill(p[i], malloc_usable_size(p[i]), (unsigned)i);
	for (int i = 0; i < N; i++)
		cr_assert(check(p[i], malloc_usable_size(p[i]), (unsigned)i) == SIZE_MAX,
			  "usable bytes of malloc(0) block %d overlap another block", i);
	for (int i = 0; i < N; i += 2)
		free(p[i]);
	for (int i = 0; i < N; i += 2) {
		p[i] = malloc(0);
		cr_assert(p[i] != NULL);
	}
	for (int i = 0; i < N; i++)
		for (int j = 0; j < i; j++)
			cr_assert(p[i] != p[j]);
	for (int i = 0; i < N; i++)
		free(p[i]);
}

Test(conformance, alignment_every_class_boundary)
{
	enum { WINDOW = 64 };
	struct { unsigned char *p; size_t n; unsigned seed; } live[WINDOW];
	memset(live, 0, sizeof live);
	unsigned k = 0;
	size_t count = 0;
	for (size_t n = 0; n <= 70000; n = next_sweep_size(n), k++) {
		unsigned slot = k % WINDOW;
		if (live[slot].p) {
			cr_assert(check(live[slot].p, live[slot].n, live[slot].seed) == SIZE_MAX,
				  "block of %zu bytes was overwritten while live", live[slot].n);
			free(live[slot].p);
		}
		unsigned char *p = malloc(n);
		cr_assert(p != NULL, "malloc(%zu) failed", n);
		cr_assert(aligned(p, 16), "malloc(%zu) = %p not 16-byte aligned", n, (void *)p);
		cr_assert(malloc_usable_size(p) >= n, "malloc_usable_size(malloc(%zu)) = %zu", n,
			  malloc_usable_size(p));
		fill(p, n, k);
		live[slot].p = p;
		live[slot].n = n;
		live[slot].seed = k;
		count++;
	}
	cr_assert(count > 2000, "the sweep covered only %zu sizes", count);
	/* A sample of LARGE sizes, including odd ones and several pages. */
	static const size_t large[] = {32769, 65535, 65536, 100001, 131072, 262143,
				       1 * MiB, 1 * MiB + 1, 4 * MiB - 17, 16 * MiB + 3};
	for (size_t i = 0; i < sizeof large / sizeof *large; i++) {
		unsigned char *p = malloc(large[i]);
		cr_assert(p != NULL, "malloc(%zu) failed", large[i]);
		cr_assert(aligned(p, 16), "malloc(%zu) = %p not 16-byte aligned", large[i], (void *)p);
		cr_assert(malloc_usable_size(p) >= large[i]);
		p[0] = 1;
		p[large[i] - 1] = 2;
		cr_assert(p[0] == 1 && p[large[i] - 1] == 2);
		free(p);
	}
	for (unsigned s = 0; s < WINDOW; s++) {
		if (!live[s].p)
			continue;
		cr_assert(check(live[s].p, live[s].n, live[s].seed) == SIZE_MAX);
		free(live[s].p);
	}
}

static const size_t class_sizes[] = {1,    8,     16,    24,    100,   256,    500,
				     512,  513,   1000,  4000,  10000, 32767,  32768,
				     32769, 40000, 100000, 1 * MiB};
#define NCLASS_SIZES (sizeof class_sizes / sizeof *class_sizes)

Test(conformance, calloc_zeroes_recycled_chunks)
{
	for (size_t c = 0; c < NCLASS_SIZES; c++) {
		size_t n = class_sizes[c];
		/* One at a time: the dirty chunk is the one most likely reused. */
		for (int round = 0; round < 12; round++) {
			unsigned char *p = malloc(n);
			cr_assert(p);
			memset(p, 0xff, malloc_usable_size(p));
			free(p);
			unsigned char *q;
			switch (round % 3) {
			case 0: q = calloc(1, n); break;
			case 1: q = calloc(n, 1); break;
			default: q = calloc((n + 7) / 8, 8); break;
			}
			size_t len = round % 3 == 2 ? (n + 7) / 8 * 8 : n;
			cr_assert(q, "calloc for %zu bytes failed", len);
			size_t bad = first_nonzero(q, len);
			cr_assert(bad == SIZE_MAX, "calloc(%zu bytes) round %d: byte %zu is 0x%02x",
				  len, round, bad, bad == SIZE_MAX ? 0 : q[bad]);
			memset(q, 0xee, len);
			free(q);
		}
		/* In batches: chunks recycled through the zone, not just the cache. */
		enum { B = 40 };
		unsigned char *v[B];
		int batch = n >= 1 * MiB ? 4 : B;
		for (int i = 0; i < batch; i++) {
			v[i] = malloc(n);
			cr_assert(v[i]);
			memset(v[i], 0xa5, n);
		}
		for (int i = 0; i < batch; i++)
			free(v[i]);
		for (int i = 0; i < batch; i++) {
			v[i] = calloc(n, 1);
			cr_assert(v[i]);
			size_t bad = first_nonzero(v[i], n);
			cr_assert(bad == SIZE_MAX, "batch calloc(%zu) #%d: byte %zu not zero", n, i, bad);
		}
		for (int i = 0; i < batch; i++)
			free(v[i]);
	}
}

Test(conformance, calloc_zeroes_after_realloc_shrink)
{
	/* A chunk whose tail was dirtied, shrunk by realloc, then freed. */
	for (int round = 0; round < 20; round++) {
		unsigned char *p = malloc(4000);
		cr_assert(p);
		memset(p, 0xff, 4000);
		p = realloc(p, 100);
		cr_assert(p);
		free(p);
		unsigned char *q = calloc(4000, 1);
		cr_assert(q);
		cr_assert(first_nonzero(q, 4000) == SIZE_MAX);
		free(q);
	}
}

Test(conformance, calloc_reallocarray_overflow_enomem)
{
	static const size_t pairs[][2] = {
	    {SIZE_MAX / 2 + 1, 2},
	    {2, SIZE_MAX / 2 + 1},
	    {SIZE_MAX, SIZE_MAX},
	    {(size_t)1 << 32, (size_t)1 << 32}, /* wraps to exactly 0 */
	    {3, SIZE_MAX / 3 + 1},              /* wraps to 2 */
	    {SIZE_MAX / 16 + 1, 16},            /* wraps to 0 */
	    {65537, SIZE_MAX / 65536},
	};
	for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
		size_t a = opaque(pairs[i][0]), b = opaque(pairs[i][1]);
		errno = 0;
		void *p = calloc(a, b);
		cr_assert(p == NULL, "calloc(%zu, %zu) returned %p", a, b, p);
		cr_assert(errno == ENOMEM, "calloc(%zu, %zu): errno %d", a, b, errno);
		errno = 0;
		p = reallocarray(NULL, a, b);
		cr_assert(p == NULL, "reallocarray(NULL, %zu, %zu) returned %p", a, b, p);
		cr_assert(errno == ENOMEM, "reallocarray(NULL, %zu, %zu): errno %d", a, b, errno);

		unsigned char *q = malloc(300);
		cr_assert(q);
		fill(q, 300, 5);
		errno = 0;
		p = reallocarray(opaque_ptr(q), a, b);
		cr_assert(p == NULL && errno == ENOMEM,
			  "reallocarray(p, %zu, %zu) returned %p errno %d", a, b, p, errno);
		cr_assert(check(q, 300, 5) == SIZE_MAX, "failed reallocarray damaged the block");
		q = reallocarray(q, 25, 40);
		cr_assert(q && malloc_usable_size(q) >= 1000);
		cr_assert(check(q, 300, 5) == SIZE_MAX, "reallocarray lost the contents");
		free(q);
	}
}

Test(conformance, impossible_sizes_enomem)
{
	static const size_t sizes[] = {
	    SIZE_MAX,           (size_t)PTRDIFF_MAX + 1, SIZE_MAX - 4096,
	    SIZE_MAX - 15,      SIZE_MAX - 16,           SIZE_MAX - 4096 * 2 + 1,
	    (size_t)PTRDIFF_MAX, (size_t)1 << 62,
	};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		size_t n = opaque(sizes[i]);
		errno = 0;
		void *p = malloc(n);
		cr_assert(p == NULL, "malloc(%#zx) returned %p", n, p);
		cr_assert(errno == ENOMEM, "malloc(%#zx): errno %d", n, errno);

		errno = 0;
		p = calloc(1, n);
		cr_assert(p == NULL && errno == ENOMEM, "calloc(1, %#zx): %p errno %d", n, p, errno);

		errno = 0;
		p = realloc(NULL, n);
		cr_assert(p == NULL && errno == ENOMEM, "realloc(NULL, %#zx): %p errno %d", n, p,
			  errno);

		static const size_t olds[] = {24, 2000, 50000};
		for (int k = 0; k < 3; k++) {
			unsigned char *q = malloc(olds[k]);
			cr_assert(q);
			fill(q, olds[k], 9);
			errno = 0;
			p = realloc(opaque_ptr(q), n);
			cr_assert(p == NULL && errno == ENOMEM, "realloc(%zu-byte block, %#zx): %p errno %d",
				  olds[k], n, p, errno);
			cr_assert(check(q, olds[k], 9) == SIZE_MAX, "failed realloc damaged the block");
			free(q);
		}

		void *sentinel = (void *)0x5eed;
		void *out = sentinel;
		int rc = posix_memalign(&out, 64, n);
		cr_assert(rc == ENOMEM, "posix_memalign(64, %#zx) = %d", n, rc);
		cr_assert(out == sentinel || out == NULL, "posix_memalign failure wrote %p", out);

		errno = 0;
		p = aligned_alloc(4096, n);
		cr_assert(p == NULL && errno == ENOMEM, "aligned_alloc(4096, %#zx): %p errno %d", n, p,
			  errno);
		errno = 0;
		p = memalign(256, n);
		cr_assert(p == NULL && errno == ENOMEM, "memalign(256, %#zx): %p errno %d", n, p, errno);
		errno = 0;
		p = valloc(n);
		cr_assert(p == NULL && errno == ENOMEM, "valloc(%#zx): %p errno %d", n, p, errno);
		errno = 0;
		p = pvalloc(n);
		cr_assert(p == NULL && errno == ENOMEM, "pvalloc(%#zx): %p errno %d", n, p, errno);
	}
}

static void realloc_walk(const size_t *steps, size_t nsteps)
{
	unsigned seed = 1;
	size_t cur = steps[0];
	unsigned char *p = malloc(cur);
	cr_assert(p);
	fill(p, cur, seed);
	for (size_t i = 1; i < nsteps; i++) {
		size_t n = steps[i];
		unsigned char *q = realloc(p, n);
		cr_assert(q != NULL, "realloc(%zu -> %zu) failed", cur, n);
		cr_assert(aligned(q, 16));
		cr_assert(malloc_usable_size(q) >= n);
		size_t keep = cur < n ? cur : n;
		size_t bad = check(q, keep, seed);
		cr_assert(bad == SIZE_MAX, "realloc %zu -> %zu: byte %zu of %zu kept bytes differs", cur,
			  n, bad, keep);
		p = q;
		cur = n;
		seed++;
		fill(p, cur, seed);
	}
	free(p);
}

Test(conformance, realloc_keeps_contents_across_classes)
{
	static const size_t up_down[] = {
	    1,     16,    17,    100,    512,   513,   4000,  32767, 32768, 32769,
	    70000, 1 * MiB, 3 * MiB + 5, 70000, 32769, 32768, 32767, 4000, 513,
	    512,   100,   17,    16,    1,     513,   3 * MiB, 1,     32769, 7,
	};
	realloc_walk(up_down, sizeof up_down / sizeof *up_down);

	/* Byte-by-byte growth through the TINY range, then back. */
	size_t steps[1300];
	size_t k = 0;
	for (size_t n = 1; n <= 640; n++)
		steps[k++] = n;
	for (size_t n = 640; n >= 1; n--)
		steps[k++] = n;
	realloc_walk(steps, k);

	/* A deterministic pseudo-random walk over all classes (never size 0,
	 * which would free). */
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (k = 0; k < 600; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		switch (x % 4) {
		case 0: steps[k] = 1 + (size_t)(x >> 8) % 512; break;
		case 1: steps[k] = 513 + (size_t)(x >> 8) % 32256; break;
		case 2: steps[k] = 32769 + (size_t)(x >> 8) % 200000; break;
		default: steps[k] = 1 + (size_t)(x >> 8) % 64; break;
		}
	}
	realloc_walk(steps, k);
}

Test(conformance, realloc_null_is_malloc)
{
	static const size_t sizes[] = {0, 1, 100, 512, 513, 3725, 32768, 32769, 48847, 2 * MiB};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		size_t n = sizes[i];
		unsigned char *p = realloc(NULL, n);
		cr_assert(p != NULL, "realloc(NULL, %zu) returned NULL", n);
		cr_assert(aligned(p, 16));
		cr_assert(malloc_usable_size(p) >= n);
		fill(p, n, 3);
		unsigned char *q = realloc(p, n + 10);
		cr_assert(q);
		cr_assert(check(q, n, 3) == SIZE_MAX);
		free(q);
	}
}

Test(conformance, realloc_zero_frees)
{
	static const size_t sizes[] = {100, 3000, 100000};
	for (size_t i = 0; i < 3; i++) {
		size_t n = sizes[i];
		unsigned char *p = malloc(n);
		cr_assert(p);
		fill(p, n, 1);
		char *before = capture_show();
		cr_assert(show_count(before, p) == 1, "live %zu-byte block %p not listed once:\n%s",
			  n, (void *)p, before);
		free(before);
		struct mallinfo2 mi = mallinfo2();
		size_t used_before = in_use(&mi);
		errno = 0;
		void *r = realloc(opaque_ptr(p), 0);
		cr_assert(r == NULL, "realloc(p, 0) returned %p", r);
		char *after = capture_show();
		cr_assert(show_count(after, p) == 0, "block %p still listed after realloc(p, 0):\n%s",
			  (void *)p, after);
		free(after);
		if (n == 100000) {
			/* LARGE (and glibc's heap at this size) gives the bytes back at once. */
			mi = mallinfo2();
			size_t used_after = in_use(&mi);
			cr_assert(used_after + n <= used_before,
				  "in use %zu -> %zu after realloc(%zu-byte block, 0)", used_before,
				  used_after, n);
		}
	}
}

Test(conformance, usable_size_truthful)
{
	cr_assert(malloc_usable_size(NULL) == 0);
	for (size_t c = 0; c < NCLASS_SIZES; c++) {
		size_t n = class_sizes[c];
		/* Two neighbours: writing all usable bytes of one must not touch the other. */
		unsigned char *a = malloc(n), *b = malloc(n);
		cr_assert(a && b);
		size_t ua = malloc_usable_size(a), ub = malloc_usable_size(b);
		cr_assert(ua >= n && ub >= n, "usable %zu / %zu < %zu", ua, ub, n);
		fill(a, ua, 11);
		fill(b, ub, 12);
		cr_assert(check(a, ua, 11) == SIZE_MAX, "usable bytes of a overlap b (n=%zu)", n);
		cr_assert(check(b, ub, 12) == SIZE_MAX, "usable bytes of b overlap a (n=%zu)", n);
		unsigned char *a2 = realloc(a, ua + 1);
		cr_assert(a2);
		size_t bad = check(a2, ua, 11);
		cr_assert(bad == SIZE_MAX, "realloc(%zu -> usable %zu + 1) lost byte %zu", n, ua, bad);
		unsigned char *b2 = realloc(b, 2 * ub + 100);
		cr_assert(b2);
		bad = check(b2, ub, 12);
		cr_assert(bad == SIZE_MAX, "realloc(%zu -> 2*usable+100) lost byte %zu", n, bad);
		free(a2);
		free(b2);
	}
	/* Aligned allocations report a truthful usable size too. */
	void *p = NULL;
	cr_assert(posix_memalign(&p, 4096, 100) == 0);
	size_t u = malloc_usable_size(p);
	cr_assert(u >= 100);
	fill(p, u, 4);
	p = realloc(p, u + 4096);
	cr_assert(p && check(p, u, 4) == SIZE_MAX);
	free(p);
}

Test(conformance, free_null_and_errno_preserved)
{
	errno = 4242;
	free(NULL);
	cr_assert(errno == 4242, "free(NULL) changed errno to %d", errno);

	static const size_t sizes[] = {0, 16, 300, 512, 513, 3725, 32768, 32769, 48847, 4 * MiB};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		void *p = malloc(sizes[i]);
		cr_assert(p);
		errno = 4242;
		free(p);
		cr_assert(errno == 4242, "free of a %zu-byte block changed errno to %d", sizes[i],
			  errno);
	}
	void *p = memalign(65536, 1000);
	cr_assert(p);
	errno = 4242;
	free(p);
	cr_assert(errno == 4242, "free of a memalign block changed errno to %d", errno);
	/* Freeing many at once (cache flushes, zone release) keeps errno too. */
	void *v[500];
	for (int i = 0; i < 500; i++)
		v[i] = malloc(64);
	errno = 4242;
	for (int i = 0; i < 500; i++)
		free(v[i]);
	cr_assert(errno == 4242, "bulk free changed errno to %d", errno);
}

/* Every valid alignment for posix_memalign: powers of two, multiples of
 * sizeof(void *), here 8 .. 2 MiB. */
static void check_aligned_block(const char *fn, void *p, size_t align, size_t n)
{
	cr_assert(p != NULL, "%s(%zu, %zu) failed", fn, align, n);
	cr_assert(aligned(p, align), "%s(%zu, %zu) = %p misaligned", fn, align, n, p);
	cr_assert(aligned(p, 16), "%s(%zu, %zu) = %p not 16-byte aligned", fn, align, n, p);
	cr_assert(malloc_usable_size(p) >= n, "%s(%zu, %zu): usable %zu", fn, align, n,
		  malloc_usable_size(p));
}

static size_t aligned_sizes(size_t align, size_t *out)
{
	size_t k = 0;
	out[k++] = 1;
	out[k++] = 7;
	out[k++] = 100;
	out[k++] = align;
	out[k++] = align + 1;
	out[k++] = align * 3 / 2 + 5;
	out[k++] = 5000;
	out[k++] = 40000;
	if (align > 1)
		out[k++] = align - 1;
	return k;
}

typedef void *(*alloc_fn)(size_t, size_t);

static void *via_posix_memalign(size_t a, size_t n)
{
	void *p = (void *)0x5eed;
	int rc = posix_memalign(&p, a, n);
	cr_assert(rc == 0, "posix_memalign(%zu, %zu) = %d", a, n, rc);
	return p;
}

/* Pattern on the first and last 4 KiB only: enough to catch overlapping
 * blocks without writing megabytes per alignment. */
static void fill_edges(unsigned char *p, size_t n, unsigned seed)
{
	size_t head = n < 8192 ? n : 4096;
	fill(p, head, seed);
	if (head < n)
		fill(p + n - 4096, 4096, seed + 1);
}

static int edges_ok(const unsigned char *p, size_t n, unsigned seed)
{
	size_t head = n < 8192 ? n : 4096;
	return check(p, head, seed) == SIZE_MAX &&
	       (head == n || check(p + n - 4096, 4096, seed + 1) == SIZE_MAX);
}

static void cover_alignments(const char *fn, alloc_fn alloc, size_t min_align)
{
	for (size_t a = min_align; a <= 2 * MiB; a *= 2) {
		size_t sizes[16];
		size_t k = aligned_sizes(a, sizes);
		for (size_t i = 0; i < k; i++) {
			unsigned char *p = alloc(a, sizes[i]);
			unsigned char *q = alloc(a, sizes[i]);
			check_aligned_block(fn, p, a, sizes[i]);
			check_aligned_block(fn, q, a, sizes[i]);
			cr_assert(p != q);
			fill_edges(p, sizes[i], 1);
			fill_edges(q, sizes[i], 3);
			cr_assert(edges_ok(p, sizes[i], 1), "%s blocks overlap", fn);
			free(p);
			cr_assert(edges_ok(q, sizes[i], 3));
			errno = 4242;
			free(q);
			cr_assert(errno == 4242);
		}
	}
}

Test(conformance, posix_memalign_all_alignments)
{
	cover_alignments("posix_memalign", via_posix_memalign, sizeof(void *));
}

Test(conformance, posix_memalign_bad_alignment)
{
	static const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 48, 100, 4097, SIZE_MAX,
				     ((size_t)1 << 63) + 8};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		void *sentinel = (void *)0xdeadbeef0;
		void *out = sentinel;
		errno = 1234;
		int rc = posix_memalign(&out, opaque(bad[i]), 64);
		cr_assert(rc == EINVAL, "posix_memalign(align %zu) = %d, want EINVAL", bad[i], rc);
		cr_assert(out == sentinel, "posix_memalign(align %zu) wrote *memptr = %p", bad[i], out);
	}
}

/* Alignments no mapping can meet, valid powers of two all the same: a
 * clean ENOMEM, not a pointer computed from a wrapped length. */
Test(conformance, aligned_alloc_impossible_alignments)
{
	for (size_t align = (size_t)1 << 47; align; align <<= 1) {
		void *sentinel = (void *)0x5eed;
		void *out = sentinel;
		int rc = posix_memalign(&out, opaque(align), 1);
		cr_assert(rc == ENOMEM, "posix_memalign(%#zx, 1) = %d, %p", align, rc, out);
		cr_assert(out == sentinel, "posix_memalign(%#zx) wrote *memptr = %p", align, out);
		errno = 0;
		void *p = aligned_alloc(opaque(align), 100);
		cr_assert(p == NULL && errno == ENOMEM, "aligned_alloc(%#zx, 100): %p errno %d", align,
			  p, errno);
		errno = 0;
		p = memalign(opaque(align), 5000);
		/* past 2^62 memalign says EINVAL, as glibc's does */
		int want = align > ((size_t)1 << 62) ? EINVAL : ENOMEM;
		cr_assert(p == NULL && errno == want, "memalign(%#zx, 5000): %p errno %d", align, p,
			  errno);
	}
}

static void *via_aligned_alloc(size_t a, size_t n) { return aligned_alloc(a, n); }
static void *via_memalign(size_t a, size_t n) { return memalign(a, n); }
static void *via_libc_memalign(size_t a, size_t n) { return __libc_memalign(a, n); }

Test(conformance, aligned_alloc_all_alignments)
{
	cover_alignments("aligned_alloc", via_aligned_alloc, 1);
}

Test(conformance, memalign_all_alignments)
{
	cover_alignments("memalign", via_memalign, 1);
}

static size_t next_pow2(size_t a)
{
	size_t p = 1;
	while (p < a)
		p *= 2;
	return p;
}

/* A non-power-of-two alignment: NULL + EINVAL (C17 / glibc >= 2.38) or a
 * block aligned to the next power of two (glibc < 2.38 rounds it up). */
static void check_odd_alignment(const char *fn, alloc_fn alloc)
{
	static const size_t odd[] = {3, 24, 48, 100, 4097, 65535};
	for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
		errno = 0;
		unsigned char *p = alloc(odd[i], 200);
		if (p == NULL) {
			cr_assert(errno == EINVAL, "%s(%zu, 200) = NULL with errno %d", fn, odd[i],
				  errno);
			continue;
		}
		cr_assert(aligned(p, next_pow2(odd[i])), "%s(%zu, 200) = %p not aligned to %zu", fn,
			  odd[i], (void *)p, next_pow2(odd[i]));
		cr_assert(malloc_usable_size(p) >= 200);
		fill(p, 200, 1);
		free(p);
	}
	/* Alignment 0: an error or an ordinary block, never a crash. */
	errno = 0;
	unsigned char *p = alloc(opaque(0), 200);
	if (p) {
		cr_assert(aligned(p, 16));
		fill(p, 200, 1);
		free(p);
	} else {
		cr_assert(errno == EINVAL, "%s(0, 200) = NULL with errno %d", fn, errno);
	}
	/* An alignment above half the address space can never be met. */
	errno = 0;
	p = alloc(opaque(((size_t)1 << 63) + 1), 200);
	cr_assert(p == NULL && (errno == EINVAL || errno == ENOMEM),
		  "%s(2^63+1, 200) = %p errno %d", fn, (void *)p, errno);
}

Test(conformance, aligned_alloc_odd_alignment)
{
	check_odd_alignment("aligned_alloc", via_aligned_alloc);
}

Test(conformance, memalign_odd_alignment)
{
	check_odd_alignment("memalign", via_memalign);
}

Test(conformance, valloc_pvalloc_page_aligned)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	static const size_t sizes[] = {1, 100, 4095, 4096, 4097, 5000, 40000, 100000};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		size_t n = sizes[i];
		unsigned char *p = valloc(n);
		check_aligned_block("valloc", p, page, n);
		fill(p, n, 2);
		cr_assert(check(p, n, 2) == SIZE_MAX);
		free(p);

		unsigned char *q = pvalloc(n);
		size_t rounded = (n + page - 1) / page * page;
		check_aligned_block("pvalloc", q, page, rounded);
		size_t u = malloc_usable_size(q);
		cr_assert(u >= rounded, "pvalloc(%zu): usable %zu < %zu", n, u, rounded);
		/* ft_malloc hands out whole pages here (glibc reports 8 bytes more). */
		cr_assert(u % page == 0, "pvalloc(%zu): usable %zu not a multiple of the page", n, u);
		fill(q, u, 3);
		cr_assert(check(q, u, 3) == SIZE_MAX);
		free(q);
	}
}

/* The symbol `name` as the dynamic linker resolves it for this program must
 * come from libft_malloc (ft_malloc only). */
static void *from_ft_malloc(const char *name)
{
	void *sym = dlsym(RTLD_DEFAULT, name);
	cr_assert(sym != NULL, "dlsym(%s) failed: %s", name, dlerror());
	Dl_info info;
	cr_assert(dladdr(sym, &info) != 0, "dladdr(%s) failed", name);
	cr_assert(info.dli_fname && strstr(info.dli_fname, "libft_malloc"),
		  "%s resolves to %s, not libft_malloc", name, info.dli_fname);
	return sym;
}

Test(conformance, symbols_come_from_ft_malloc)
{
	static const char *const names[] = {
	    "malloc",         "free",          "calloc",         "realloc",
	    "reallocarray",   "posix_memalign", "aligned_alloc",  "memalign",
	    "valloc",         "pvalloc",       "malloc_usable_size", "malloc_trim",
	    "malloc_stats",   "mallinfo2",     "cfree",          "__libc_malloc",
	    "__libc_free",    "__libc_calloc", "__libc_realloc", "__libc_memalign",
	    "show_alloc_mem", "ftm_malloc",    "ftm_free",       "ftm_realloc",
	};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		from_ft_malloc(names[i]);
	Dl_info info;
	cr_assert(dladdr((void *)&malloc, &info) != 0);
	cr_assert(info.dli_fname && strstr(info.dli_fname, "libft_malloc"),
		  "&malloc lies in %s", info.dli_fname);
}

Test(conformance, glibc_aliases_share_the_allocator)
{
	/* Pointers cross between the entry points in every direction: one heap. */
	unsigned char *a = __libc_malloc(100);
	cr_assert(a && aligned(a, 16) && malloc_usable_size(a) >= 100);
	fill(a, 100, 1);
	unsigned char *b = __libc_realloc(a, 5000);
	cr_assert(b && check(b, 100, 1) == SIZE_MAX);
	fill(b, 5000, 2);
	unsigned char *c = realloc(b, 60000);
	cr_assert(c && check(c, 5000, 2) == SIZE_MAX);
	unsigned char *d = ftm_realloc(c, 200);
	cr_assert(d && check(d, 200, 2) == SIZE_MAX);
	char *dump = capture_show();
	cr_assert(show_count(dump, d) == 1, "block %p from the alias chain not listed", (void *)d);
	free(dump);
	__libc_free(d);

	unsigned char *z = __libc_calloc(300, 3);
	cr_assert(z && first_nonzero(z, 900) == SIZE_MAX);
	ftm_free(z);

	void *m = __libc_memalign(4096, 10);
	cr_assert(m && aligned(m, 4096));
	cfree(m);

	void *f = ftm_malloc(70000);
	cr_assert(f && malloc_usable_size(f) >= 70000);
	free(f);
	void *g = malloc(33);
	cr_assert(ftm_malloc_usable_size(g) >= 33);
	cfree(g);

	cover_alignments("__libc_memalign", via_libc_memalign, 1024);
}

Test(conformance, mallinfo2_tracks_usage)
{
	enum { NT = 256, NS = 64, NL = 4 };
	void *t[NT], *s[NS], *l[NL];
	size_t k = (size_t)NT * 200 + (size_t)NS * 5000 + (size_t)NL * 60000;
	struct mallinfo2 before = mallinfo2();
	for (int i = 0; i < NT; i++)
		cr_assert((t[i] = malloc(200)));
	for (int i = 0; i < NS; i++)
		cr_assert((s[i] = malloc(5000)));
	for (int i = 0; i < NL; i++)
		cr_assert((l[i] = malloc(60000)));
	struct mallinfo2 during = mallinfo2();
	cr_assert(in_use(&during) >= in_use(&before) + k,
		  "uordblks+hblkhd grew by %zd after allocating %zu bytes",
		  (ssize_t)(in_use(&during) - in_use(&before)), k);
	cr_assert(during.hblkhd >= before.hblkhd, "hblkhd shrank while allocating");
	cr_assert(during.uordblks <= during.arena, "in use %zu > mapped %zu", during.uordblks,
		  during.arena);
	cr_assert(during.uordblks + during.fordblks == during.arena,
		  "uordblks %zu + fordblks %zu != arena %zu", during.uordblks, during.fordblks,
		  during.arena);
	for (int i = 0; i < NT; i++)
		free(t[i]);
	for (int i = 0; i < NS; i++)
		free(s[i]);
	for (int i = 0; i < NL; i++)
		free(l[i]);
	struct mallinfo2 after = mallinfo2();
	/* Thread caches may keep a few chunks counted; most must come back. */
	cr_assert(in_use(&after) < in_use(&before) + k / 4,
		  "in use %zu -> %zu -> %zu: freeing %zu bytes did not bring it down",
		  in_use(&before), in_use(&during), in_use(&after), k);
}

Test(conformance, malloc_trim_keeps_live_memory)
{
	enum { N = 3000 };
	static unsigned char *v[N];
	static size_t len[N];
	for (int i = 0; i < N; i++) {
		len[i] = i % 10 == 9 ? 9000 : (size_t)(i % 500) + 1;
		v[i] = malloc(len[i]);
		cr_assert(v[i]);
		fill(v[i], len[i], (unsigned)i);
	}
	for (int i = 0; i < N; i++)
		if (i % 7) {
			free(v[i]);
			v[i] = NULL;
		}
	int rc = malloc_trim(0);
	cr_assert(rc == 0 || rc == 1, "malloc_trim(0) = %d", rc);
	rc = malloc_trim(1 * MiB);
	cr_assert(rc == 0 || rc == 1, "malloc_trim(1 MiB) = %d", rc);
	for (int i = 0; i < N; i++)
		if (v[i])
			cr_assert(check(v[i], len[i], (unsigned)i) == SIZE_MAX,
				  "block %d (%zu bytes) changed by malloc_trim", i, len[i]);
	/* The allocator still works after the trim, in every class. */
	for (int i = 0; i < N; i++)
		if (!v[i]) {
			v[i] = malloc(len[i]);
			cr_assert(v[i]);
			fill(v[i], len[i], (unsigned)i);
		}
	for (int i = 0; i < N; i++) {
		cr_assert(check(v[i], len[i], (unsigned)i) == SIZE_MAX);
		free(v[i]);
	}
	rc = malloc_trim(0);
	cr_assert(rc == 0 || rc == 1);
}

Test(conformance, malloc_stats_reports_in_use)
{
	void *keep = malloc(12345);
	cr_assert(keep);
	int mfd = memfd_create("ftm_stats", 0);
	cr_assert(mfd >= 0);
	fflush(stderr);
	int saved = dup(2);
	cr_assert(dup2(mfd, 2) == 2);
	malloc_stats();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char buf[65536];
	ssize_t n = pread(mfd, buf, sizeof buf - 1, 0);
	close(mfd);
	cr_assert(n > 0, "malloc_stats wrote nothing to stderr");
	buf[n] = '\0';
	cr_assert(strstr(buf, "in use") != NULL, "malloc_stats output lacks 'in use':\n%s", buf);
	free(keep);
}
