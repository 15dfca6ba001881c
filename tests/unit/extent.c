/*
 * The extent cache of freed LARGE ranges (src/large/extent.c): ranges merge
 * with free neighbours on both sides, a request takes the front of the
 * smallest range that fits and leaves the rest cached, a range right after
 * a block can be taken in place (realloc growth), the cache stays within
 * its bounds (128 ranges; FTM_EXTENT_BYTES_MIN or the live LARGE bytes,
 * whichever is more), handing back exactly what it lets go of, and a range
 * left idle for FT_MALLOC_DECAY_MS goes back; asked to, the ranges idle
 * for a given time go, oldest first. The ranges are carved from
 * one reserved mapping, so adjacency is under the test's control; nothing
 * here is unmapped by the cache itself. The clock is the test's own.
 */
#include <criterion/criterion.h>
#include <sys/mman.h>

#include "ftm/internal.h"

#define PAGE 4096
#define ARENA_BYTES ((size_t)512 << 20)
#define FLOOR FTM_EXTENT_BYTES_MIN
#define MS ((uint64_t)1000000)

static char *base;

static void setup(void)
{
	ftm_ensure_init();
	large_trim();
	base = mmap(NULL, ARENA_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert(base != MAP_FAILED);
}

/* Caches pages [page, page + pages) at time `now` while `live` bytes of
 * LARGE blocks are mapped. */
static void put_at(size_t page, size_t pages, size_t live, uint64_t now, struct extent_drop *drop)
{
	drop->count = 0;
	large_lock();
	extent_put(base + page * PAGE, pages * PAGE, live, now, drop);
	large_unlock();
}

static void put_live(size_t page, size_t pages, size_t live, struct extent_drop *drop)
{
	put_at(page, pages, live, 0, drop);
}

static void put(size_t page, size_t pages, struct extent_drop *drop)
{
	put_live(page, pages, 0, drop);
}

static void *take(size_t pages)
{
	large_lock();
	void *p = extent_take(pages * PAGE);
	large_unlock();
	return p;
}

static size_t cached(void)
{
	large_lock();
	size_t n = extent_cached_bytes();
	large_unlock();
	return n;
}

/* Empties the cache without unmapping base's pages (they are not its). */
static void forget_all(void)
{
	struct extent_drop drop;
	large_lock();
	while (extent_drain(&drop, 4))
		;
	large_unlock();
}

TestSuite(extent, .init = setup);

Test(extent, neighbours_merge_on_both_sides)
{
	struct extent_drop drop;
	put(10, 4, &drop);
	put(20, 4, &drop);
	put(14, 6, &drop); /* fills the gap: one range of 14 pages */
	cr_assert_eq(drop.count, 0);
	cr_assert_eq(cached(), 14 * PAGE);
	cr_assert_eq(take(14), base + 10 * PAGE, "the merged range serves one request");
	cr_assert_eq(cached(), 0);
	forget_all();
}

Test(extent, smallest_fit_front_taken_rest_kept)
{
	struct extent_drop drop;
	put(0, 8, &drop);
	put(100, 3, &drop);
	put(200, 5, &drop);
	cr_assert_eq(take(4), base + 200 * PAGE, "the smallest range that fits");
	cr_assert_eq(take(1), base + 204 * PAGE, "its rest stayed cached");
	cr_assert_eq(take(3), base + 100 * PAGE);
	cr_assert_eq(take(9), NULL, "nothing fits");
	cr_assert_eq(cached(), 8 * PAGE);
	forget_all();
}

Test(extent, range_right_after_a_block_taken_in_place)
{
	struct extent_drop drop;
	put(50, 10, &drop);
	large_lock();
	cr_assert_not(extent_take_at(base + 49 * PAGE, PAGE), "no range starts there");
	cr_assert_not(extent_take_at(base + 50 * PAGE, 11 * PAGE), "too short");
	cr_assert(extent_take_at(base + 50 * PAGE, 4 * PAGE));
	cr_assert(extent_take_at(base + 54 * PAGE, 6 * PAGE), "what is left starts after the part taken");
	large_unlock();
	cr_assert_eq(cached(), 0);
	forget_all();
}

Test(extent, bounded_in_ranges_and_bytes)
{
	struct extent_drop drop;
	/* 128 separate one-page ranges fill the slots; one more drops the smallest */
	for (size_t i = 0; i < 128; i++) {
		put(2 * i, 1, &drop);
		cr_assert_eq(drop.count, 0);
	}
	put(1000, 2, &drop);
	cr_assert_eq(drop.count, 1);
	cr_assert_eq(drop.range[0].len, PAGE, "the smallest range goes");
	cr_assert_eq(cached(), 129 * PAGE);
	forget_all();
	/* bytes: four ranges of a quarter of the floor fill it; a fifth of an
	 * eighth, the smallest, goes */
	size_t chunk = FLOOR / 4 / PAGE;
	for (size_t i = 0; i < 4; i++) {
		put(10000 + i * (chunk + 1), chunk, &drop);
		cr_assert_eq(drop.count, 0);
	}
	put(60000, chunk / 2, &drop);
	cr_assert_eq(drop.count, 1);
	cr_assert_eq(drop.range[0].addr, (uintptr_t)(base + 60000 * PAGE));
	cr_assert_eq(drop.range[0].len, chunk / 2 * PAGE, "exactly the excess goes back");
	cr_assert_eq(cached(), FLOOR);
	/* a range over a quarter of the bound is never cached */
	put(80000, chunk + 1, &drop);
	cr_assert_eq(drop.count, 1);
	cr_assert_eq(drop.range[0].addr, (uintptr_t)(base + 80000 * PAGE));
	forget_all();
}

/* With 1.5 times the floor in LARGE blocks live, the cache may hold as
 * much; when they are freed, the next put brings it back down to the
 * floor. */
Test(extent, byte_bound_follows_the_live_bytes)
{
	struct extent_drop drop;
	size_t chunk = FLOOR / 4 / PAGE;
	size_t live = FLOOR + FLOOR / 2;
	for (size_t i = 0; i < 6; i++) {
		put_live(10000 + i * (chunk + 1), chunk, live, &drop);
		cr_assert_eq(drop.count, 0, "range %zu fits under the live bytes", i);
	}
	cr_assert_eq(cached(), live);
	put_live(70000, 1, live, &drop);
	cr_assert_eq(drop.count, 1);
	cr_assert_eq(drop.range[0].len, PAGE, "one page over: exactly one page goes");
	cr_assert_eq(cached(), live);
	put_live(71000, 1, 0, &drop);
	cr_assert_eq(cached(), FLOOR, "nothing live: back to the floor");
	cr_assert_eq(drop.count, 3, "the new page, then two whole ranges");
	cr_assert_eq(drop.range[0].addr, (uintptr_t)(base + 71000 * PAGE), "smallest first");
	size_t dropped = 0;
	for (size_t i = 0; i < drop.count; i++)
		dropped += drop.range[i].len;
	cr_assert_eq(dropped, FLOOR / 2 + PAGE, "the excess is handed back");
	forget_all();
}

/* A range nothing went into for the decay time goes back at the next put;
 * a range that takes in a freed block starts its wait again. */
Test(extent, idle_ranges_decay)
{
	struct extent_drop drop;
	uint64_t wait = (uint64_t)ftm_options[FTM_OPT_DECAY_MS] * MS, t0 = 1000 * MS;
	cr_assert_gt(wait, 0);
	put_at(100, 4, 0, t0, &drop);
	put_at(200, 4, 0, t0 + wait / 2, &drop);
	put_at(204, 1, 0, t0 + wait - 1, &drop);
	cr_assert_eq(drop.count, 0, "nothing has been idle for the whole wait");
	put_at(300, 1, 0, t0 + wait, &drop);
	cr_assert_eq(drop.count, 1, "the first range has");
	cr_assert_eq(drop.range[0].addr, (uintptr_t)(base + 100 * PAGE));
	cr_assert_eq(drop.range[0].len, 4 * PAGE);
	cr_assert_eq(cached(), 6 * PAGE);
	put_at(400, 1, 0, t0 + 2 * wait - 1, &drop);
	cr_assert_eq(drop.count, 1, "the merged range waited from its last put");
	cr_assert_eq(drop.range[0].addr, (uintptr_t)(base + 200 * PAGE));
	cr_assert_eq(drop.range[0].len, 5 * PAGE);
	cr_assert_eq(cached(), 2 * PAGE);
	forget_all();
}

/* Asks the cache to let go of up to `pages` pages idle for `age` by `now`. */
static void drop_stale(size_t pages, uint64_t now, uint64_t age, struct extent_drop *drop)
{
	drop->count = 0;
	large_lock();
	extent_drop_stale(pages * PAGE, now, age, drop);
	large_unlock();
}

static void assert_dropped(const struct extent_drop *drop, size_t i, size_t page, size_t pages)
{
	cr_assert_eq(drop->range[i].addr, (uintptr_t)(base + page * PAGE), "range %zu", i);
	cr_assert_eq(drop->range[i].len, pages * PAGE, "range %zu", i);
}

/* extent_drop_stale: only ranges idle for min_age go, the oldest first, the
 * last one cut from its tail when that is enough; a range put after the
 * caller's clock was read is not idle. At most four ranges a call. */
Test(extent, stale_ranges_go_oldest_first)
{
	struct extent_drop drop;
	uint64_t now = 1000 * MS, age = 100 * MS;
	put_at(100, 4, 0, now - 300 * MS, &drop); /* second oldest */
	put_at(200, 4, 0, now - 400 * MS, &drop); /* oldest */
	put_at(300, 4, 0, now - 99 * MS, &drop);  /* not idle long enough */
	put_at(400, 4, 0, now + 1 * MS, &drop);   /* put after `now` */
	put_at(500, 4, 0, now - 200 * MS, &drop);
	cr_assert_eq(cached(), 20 * PAGE);
	drop_stale(6, now, age, &drop);
	cr_assert_eq(drop.count, 2);
	assert_dropped(&drop, 0, 200, 4);
	assert_dropped(&drop, 1, 102, 2); /* the tail of the next oldest */
	cr_assert_eq(cached(), 14 * PAGE);
	drop_stale(100, now, age, &drop);
	cr_assert_eq(drop.count, 2, "only the idle ranges go, however many bytes are asked for");
	assert_dropped(&drop, 0, 100, 2);
	assert_dropped(&drop, 1, 500, 4);
	cr_assert_eq(cached(), 8 * PAGE);
	for (size_t i = 0; i < 6; i++)
		put_at(600 + 10 * i, 1, 0, i, &drop);
	drop_stale(100, now, age, &drop);
	cr_assert_eq(drop.count, 4, "no more ranges than the drop holds");
	assert_dropped(&drop, 3, 630, 1);
	cr_assert_eq(cached(), 10 * PAGE);
	forget_all();
}
