/*
 * Freed LARGE memory kept for reuse: address ranges whose pages are still
 * mapped and faulted in, so the next LARGE block or a growing realloc gets
 * them without a mmap, without page faults and without the TLB shootdown of
 * a munmap. Page faults are what LARGE blocks cost (a fault is about as
 * expensive as a 4 KiB memset on the machines we measured).
 *
 * The ranges are kept sorted by address, so a freed range merges with its
 * free neighbours (mappings made one after the other are usually adjacent),
 * and a request takes the front of the smallest range that fits, the rest
 * staying cached: a range is never too big to serve a small request.
 * Bounded by EXTENT_SLOTS ranges, and in bytes by the larger of
 * FTM_EXTENT_BYTES_MIN and the bytes of the LARGE blocks now live (so a
 * program that frees its LARGE blocks lowers the bound with them); past
 * either, the smallest ranges go back to the OS first. A small range is the
 * least useful one: a range under 32 KiB serves no LARGE request until it
 * merges. A range nothing went into for FT_MALLOC_DECAY_MS (5 s) goes back
 * too, at the next put or when a thread cache's refill finds idle zones
 * past that age (large_decay): a server past a burst gives it back at its
 * first calls after that time (or at malloc_trim). One idle for
 * FTM_STALE_MS goes sooner when the process grows while it keeps more than
 * its busy peak leaves room for (large.c, kept memory).
 *
 * The floor was 32 MiB: w_mixed on 2 and 8 threads then unmapped 207 ranges
 * a run and faulted them back in; with 64 MiB, 74 ranges, -17% and -13%
 * wall time (5 interleaved runs), peak RSS within 2%, w_realloc and
 * w_mixed on 1 thread unchanged.
 *
 * w_mixed on 8 threads (about 40 MiB of LARGE blocks live, replaced at
 * random), 6 to 8 runs each: a fixed 32 MiB bound that cut the largest
 * range's tail went bimodal, one run in three evicting ranges it needed a
 * moment later (up to 113k page faults and 1.1 s, against 24k and 0.26 s);
 * the bound following the live bytes still had one such run in six; with
 * the smallest ranges going first as well, every run took 0.24-0.29 s and
 * 22k-27k faults (tcmalloc 22k-28k), peak RSS unchanged.
 *
 * Measured against the cache of whole mappings it replaced (reused only
 * for requests of half their length or more): w_mixed, 1 thread, 1.07 s ->
 * 0.63 s and 48.8k -> 28.7k page faults; w_realloc 0.40 s -> 0.27 s, peak
 * RSS 44.6 -> 35.5 MB (one run each, 2-core VM).
 *
 * Every function runs under the registry lock (large.c) and never unmaps:
 * what must go back to the OS is handed to the caller in a struct
 * extent_drop, to unmap once the lock is released.
 */
#include <string.h>

#include "ftm/internal.h"

#define EXTENT_SLOTS 128

static struct ftm_extent free_ranges[EXTENT_SLOTS]; /* by increasing address */
static size_t range_count;
static size_t range_bytes; /* total length of free_ranges; written atomically, read lock-free */

static void range_bytes_add(size_t len)
{
	__atomic_store_n(&range_bytes, range_bytes + len, __ATOMIC_RELAXED);
}

static void range_bytes_sub(size_t len)
{
	__atomic_store_n(&range_bytes, range_bytes - len, __ATOMIC_RELAXED);
}

void extent_drop_add(struct extent_drop *drop, uintptr_t addr, size_t len)
{
	drop->range[drop->count++] = (struct ftm_extent){addr, len, 0};
}

static void remove_at(size_t i)
{
	range_bytes_sub(free_ranges[i].len);
	memmove(&free_ranges[i], &free_ranges[i + 1], (range_count - i - 1) * sizeof(free_ranges[0]));
	range_count--;
}

/* Takes len bytes from the front of range i. */
static uintptr_t take_front(size_t i, size_t len)
{
	uintptr_t addr = free_ranges[i].addr;
	if (free_ranges[i].len == len) {
		remove_at(i);
	} else {
		free_ranges[i].addr += len;
		free_ranges[i].len -= len;
		range_bytes_sub(len);
	}
	return addr;
}

void *extent_take(size_t len)
{
	size_t best = range_count;
	for (size_t i = 0; i < range_count; i++)
		if (free_ranges[i].len >= len && (best == range_count || free_ranges[i].len < free_ranges[best].len))
			best = i;
	return best == range_count ? NULL : (void *)take_front(best, len);
}

bool extent_take_at(const void *addr, size_t len)
{
	for (size_t i = 0; i < range_count && free_ranges[i].addr <= (uintptr_t)addr; i++)
		if (free_ranges[i].addr == (uintptr_t)addr && free_ranges[i].len >= len) {
			take_front(i, len);
			return true;
		}
	return false;
}

static size_t smallest_range(void)
{
	size_t smallest = 0;
	for (size_t i = 1; i < range_count; i++)
		if (free_ranges[i].len < free_ranges[smallest].len)
			smallest = i;
	return smallest;
}

/* Over the bounds: the smallest range goes when the slots are full; while
 * the bytes are over `bound` and *drop has room, the smallest range goes,
 * or only its tail when that is enough (a bound that fell a long way is
 * reached over the next few puts). */
static void shrink_to_bounds(size_t bound, struct extent_drop *drop)
{
	if (range_count == EXTENT_SLOTS) {
		size_t i = smallest_range();
		extent_drop_add(drop, free_ranges[i].addr, free_ranges[i].len);
		remove_at(i);
	}
	while (range_bytes > bound && drop->count < sizeof(drop->range) / sizeof(drop->range[0])) {
		struct ftm_extent *r = &free_ranges[smallest_range()];
		size_t cut = range_bytes - bound;
		if (cut >= r->len) {
			extent_drop_add(drop, r->addr, r->len);
			remove_at((size_t)(r - free_ranges));
		} else {
			extent_drop_add(drop, r->addr + r->len - cut, cut);
			r->len -= cut;
			range_bytes_sub(cut);
		}
	}
}

/* Index of the first range at or above a. */
static size_t position(uintptr_t a)
{
	size_t i = 0;
	while (i < range_count && free_ranges[i].addr < a)
		i++;
	return i;
}

/* Whether nothing went into the range for `age` ns by `now`; a clock read
 * before its last put (a caller's own clock, in the tests) says no. */
static bool idle_for(const struct ftm_extent *r, uint64_t now, uint64_t age)
{
	return now >= r->freed_at && now - r->freed_at >= age;
}

void extent_decay(uint64_t now, struct extent_drop *drop)
{
	uint64_t ms = (uint64_t)ftm_options[FTM_OPT_DECAY_MS];
	uint64_t idle = ms > UINT64_MAX / 1000000u ? UINT64_MAX : ms * 1000000u;
	for (size_t i = 0; i < range_count && drop->count < sizeof(drop->range) / sizeof(drop->range[0]);)
		if (idle_for(&free_ranges[i], now, idle)) {
			extent_drop_add(drop, free_ranges[i].addr, free_ranges[i].len);
			remove_at(i);
		} else {
			i++;
		}
}

void extent_put(void *addr, size_t len, size_t live, uint64_t now, struct extent_drop *drop)
{
	uintptr_t a = (uintptr_t)addr;
	size_t bound = live > FTM_EXTENT_BYTES_MIN ? live : FTM_EXTENT_BYTES_MIN;
	if (len > FTM_EXTENT_BYTES_MIN / 4) {
		extent_drop_add(drop, a, len);
		return;
	}
	size_t i = position(a);
	bool joins_prev = i > 0 && free_ranges[i - 1].addr + free_ranges[i - 1].len == a;
	bool joins_next = i < range_count && a + len == free_ranges[i].addr;
	range_bytes_add(len);
	if (joins_prev && joins_next) {
		free_ranges[i - 1].len += len + free_ranges[i].len;
		free_ranges[i - 1].freed_at = now;
		range_bytes_add(free_ranges[i].len); /* remove_at takes it off again */
		remove_at(i);
	} else if (joins_prev) {
		free_ranges[i - 1].len += len;
		free_ranges[i - 1].freed_at = now;
	} else if (joins_next) {
		free_ranges[i].addr = a;
		free_ranges[i].len += len;
		free_ranges[i].freed_at = now;
	} else {
		if (range_count == EXTENT_SLOTS) {
			range_bytes_sub(len);
			shrink_to_bounds(bound, drop);
			range_bytes_add(len);
			i = position(a);
		}
		memmove(&free_ranges[i + 1], &free_ranges[i], (range_count - i) * sizeof(free_ranges[0]));
		free_ranges[i] = (struct ftm_extent){a, len, now};
		range_count++;
	}
	if (range_bytes > bound)
		shrink_to_bounds(bound, drop);
	extent_decay(now, drop);
}

void extent_drop_stale(size_t bytes, uint64_t now, uint64_t min_age, struct extent_drop *drop)
{
	while (bytes && drop->count < sizeof(drop->range) / sizeof(drop->range[0])) {
		size_t oldest = range_count;
		for (size_t i = 0; i < range_count; i++)
			if (idle_for(&free_ranges[i], now, min_age) &&
			    (oldest == range_count || free_ranges[i].freed_at < free_ranges[oldest].freed_at))
				oldest = i;
		if (oldest == range_count)
			return;
		struct ftm_extent *r = &free_ranges[oldest];
		size_t cut = r->len < bytes ? r->len : bytes;
		extent_drop_add(drop, r->addr + r->len - cut, cut);
		bytes -= cut;
		if (cut == r->len) {
			remove_at(oldest);
		} else {
			r->len -= cut;
			range_bytes_sub(cut);
		}
	}
}

size_t extent_drain(struct extent_drop *drop, size_t max)
{
	size_t bytes = 0;
	drop->count = 0;
	while (range_count && drop->count < max) {
		bytes += free_ranges[range_count - 1].len;
		extent_drop_add(drop, free_ranges[range_count - 1].addr, free_ranges[range_count - 1].len);
		remove_at(range_count - 1);
	}
	return bytes;
}

size_t extent_cached_bytes(void)
{
	return __atomic_load_n(&range_bytes, __ATOMIC_RELAXED);
}
