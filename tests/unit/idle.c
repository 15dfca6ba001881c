/*
 * Idle zones (src/arena/arena.c): a zone whose last chunk comes back stays
 * mapped, pages and all, and serves its class again before any new zone is
 * made; a new zone of another class takes over the pages of idle zones of
 * its size, of smaller ones that fill its range, or of a bigger one that is
 * cut up (a stale pointer into them is refused), looking at no more than
 * FTM_TAKEOVER_LOOKS idle zones; idle zones
 * give way, oldest first, when another class carves past the process's
 * busy peak and its slack (the newest idle zone of each class excepted);
 * they go after FT_MALLOC_DECAY_MS (looked at when a zone empties or a
 * cache is refilled, which also ages out cached LARGE ranges), and
 * malloc_trim gives them all back.
 * The page counts (ftm_zone_pages) match the zones after every step.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

#define BATCH 64

static struct ftm_arena *arena;
static struct ftm_slot *slots;

/* One open arena, all zeros, used by nothing but the test. */
static void init(void)
{
	arena_init_all(1);
	arena = arena_for_thread();
	cr_assert_eq(arena, &ftm_arenas[0]);
	cr_assert_eq(arena->zones, NULL, "the test process made no zone before");
	slots = malloc(8 * 4096 * sizeof(*slots));
	cr_assert_not_null(slots);
}

TestSuite(idle, .init = init);

static uint32_t capacity(uint32_t cls)
{
	return ftm_classes[cls].capacity;
}

static uint64_t page_round(uint64_t n)
{
	return (n + ftm_page_size - 1) & ~((uint64_t)ftm_page_size - 1);
}

/* Takes n chunks of class cls from the arena into slots[at..]. */
static void take(uint32_t cls, uint32_t at, uint32_t n)
{
	for (uint32_t got = 0; got < n;) {
		uint32_t want = n - got < BATCH ? n - got : BATCH;
		uint32_t one = arena_refill(arena, cls, slots + at + got, want);
		cr_assert_eq(one, want, "class %u: refill of %u", cls, want);
		got += one;
	}
}

/* Gives slots [at, at + n) back, BATCH at a time, as a flush would: one
 * class per call. */
static void give(uint32_t at, uint32_t n)
{
	for (uint32_t done = 0; done < n; done += BATCH) {
		const struct ftm_slot *batch = slots + at + done;
		arena_return(pagemap_zone(batch[0].chunk)->cls, batch, n - done < BATCH ? n - done : BATCH);
	}
}

static uint32_t idle_count(uint32_t cls)
{
	uint32_t n = 0;
	for (const struct ftm_zone *z = arena->idle[cls]; z; z = z->avail_next) {
		cr_assert_eq(z->used, 0, "an idle zone has nothing handed out");
		cr_assert_neq(z->idle_since, 0);
		n++;
	}
	return n;
}

/* The process-wide page counts are what the zones say they are (only this
 * arena has any). */
static void check_counts(void)
{
	uint64_t carved = 0, idle = 0;
	for (const struct ftm_zone *z = arena->zones; z; z = z->all_next) {
		uint64_t bytes = page_round((uint64_t)z->carved * z->size);
		if (bytes < z->warm_bytes)
			bytes = z->warm_bytes; /* what a recycled range came with */
		carved += bytes;
		if (z->idle_since)
			idle += bytes;
	}
	cr_assert_eq(ftm_zone_pages.carved, carved, "carved bytes: %lu, zones say %lu",
		     (unsigned long)ftm_zone_pages.carved, (unsigned long)carved);
	cr_assert_eq(ftm_zone_pages.idle, idle, "idle bytes: %lu, zones say %lu",
		     (unsigned long)ftm_zone_pages.idle, (unsigned long)idle);
}

Test(idle, emptied_zones_stay_and_serve_their_class_again)
{
	uint32_t cls = 2, n = 3 * capacity(cls);
	take(cls, 0, n);
	cr_assert_eq(arena->by_class[cls].zones_mapped, 3);
	check_counts();
	give(0, n);
	cr_assert_eq(idle_count(cls), 3, "all three zones are idle");
	cr_assert_eq(arena->by_class[cls].zones_unmapped, 0);
	cr_assert_eq(ftm_zone_pages.idle, ftm_zone_pages.carved, "every carved page is idle");
	check_counts();
	take(cls, 0, n);
	cr_assert_eq(arena->by_class[cls].zones_mapped, 3, "no new zone: the idle ones served");
	cr_assert_eq(idle_count(cls), 0);
	cr_assert_eq(ftm_zone_pages.idle, 0);
	check_counts();
}

/* 96-byte chunks have zones of 64 KiB, 32 KiB ones of 4 MiB: a zone of b
 * could only take over a's idle pages as a whole segment, and a busy zone
 * of a third class, made first, holds the segment's first 64 KiB. */
#define SMALL_ZONES size_class(96)
#define BIG_ZONES size_class(32768)
#define BLOCKER size_class(16)
#define LAST_SLOT (8 * 4096 - 1)

static void take_blocker(void)
{
	take(BLOCKER, LAST_SLOT, 1);
	cr_assert_eq(ftm_classes[BIG_ZONES].zone_shift, FTM_SEGMENT_SHIFT);
	cr_assert_eq(ftm_classes[BLOCKER].zone_shift, ftm_classes[SMALL_ZONES].zone_shift);
}

Test(idle, another_class_carving_past_the_peak_takes_their_place)
{
	uint32_t a = SMALL_ZONES, b = BIG_ZONES, na = 4 * capacity(a);
	take_blocker();
	take(a, 0, na);
	give(0, na);
	cr_assert_eq(idle_count(a), 4);
	uint64_t a_bytes = ftm_zone_pages.idle;
	/* b carves twice what a had: the busy peak moves up to b's pages, and
	 * a's idle pages no longer fit beside them, slack or not */
	uint32_t nb = (uint32_t)(2 * a_bytes / ftm_classes[b].size);
	take(b, 0, nb);
	cr_assert_eq(arena->by_class[a].zones_unmapped, 3, "a's older idle zones went");
	cr_assert_eq(idle_count(a), 1, "a's newest idle zone stays");
	cr_assert_eq(arena->by_class[b].zones_unmapped, 0);
	uint64_t busy = ftm_zone_pages.carved - ftm_zone_pages.idle;
	cr_assert_eq(ftm_zone_pages.busy_peak, busy);
	check_counts();
	give(0, nb);
	check_counts();
}

Test(idle, carving_within_the_slack_keeps_them)
{
	uint32_t a = SMALL_ZONES, b = BIG_ZONES, na = 32 * capacity(a);
	take_blocker();
	take(a, 0, na);
	give(0, na);
	uint64_t peak = ftm_zone_pages.busy_peak;
	/* b carves half the slack: busy and idle together stay within it */
	uint32_t nb = (uint32_t)(peak / FTM_IDLE_SLACK / 2 / ftm_classes[b].size);
	cr_assert_gt(nb, 0);
	take(b, 0, nb);
	cr_assert_eq(idle_count(a), 32);
	cr_assert_eq(arena->by_class[a].zones_unmapped, 0);
	cr_assert_eq(ftm_zone_pages.busy_peak, peak, "b's pages are under a's old peak");
	check_counts();
}

Test(idle, a_new_zone_takes_over_an_idle_zone_of_the_same_size)
{
	uint32_t a = 5, b = 9, na = 2 * capacity(a);
	cr_assert_eq(ftm_classes[a].zone_shift, ftm_classes[b].zone_shift);
	take(a, 0, na);
	struct ftm_zone *oldest = pagemap_zone(slots[0].chunk);
	uintptr_t base = zone_base(oldest);
	memset(slots[0].chunk, 0x5a, ftm_classes[a].size);
	give(0, na); /* the zone of slots[0] empties first: the oldest idle */
	uint64_t carved = ftm_zone_pages.carved;
	take(b, 0, 1);
	struct ftm_zone *zone = pagemap_zone(slots[0].chunk);
	cr_assert_eq(zone->cls, b);
	cr_assert_eq(zone_base(zone), base, "b's new zone is on the oldest idle zone's range");
	cr_assert_eq((uintptr_t)slots[0].chunk, base);
	cr_assert_eq(*(unsigned char *)slots[0].chunk, 0x5a, "its pages were kept, not discarded");
	cr_assert_eq(zone->warm_bytes, (uint32_t)((size_t)1 << ftm_classes[a].zone_shift));
	cr_assert_eq(ftm_zone_pages.carved, carved, "the pages changed hands, none were added");
	cr_assert_eq(idle_count(a), 1);
	cr_assert_eq(arena->by_class[a].zones_unmapped, 1);
	cr_assert_eq(arena->by_class[b].zones_mapped, 1);
	check_counts();
}

Test(idle, no_decay_time_gives_them_back_at_once)
{
	ftm_options[FTM_OPT_DECAY_MS] = 0;
	uint32_t cls = 2, n = 2 * capacity(cls);
	take(cls, 0, n);
	give(0, n);
	cr_assert_eq(idle_count(cls), 0);
	cr_assert_eq(arena->by_class[cls].zones_unmapped, 2);
	cr_assert_eq(ftm_zone_pages.carved, 0);
	check_counts();
}

/* A program whose heap shrank and then only touches its other classes
 * empties no more zones; its refills are what look at the idle zones'
 * age. */
Test(idle, a_refill_gives_back_the_zones_past_their_time)
{
	uint32_t cls = 2, other = 5, n = 2 * capacity(cls);
	take(other, n, 1);
	take(cls, 0, n);
	give(0, n);
	cr_assert_eq(idle_count(cls), 2);
	take(other, n + 1, 1);
	cr_assert_eq(idle_count(cls), 2, "younger than FT_MALLOC_DECAY_MS: kept");
	uint64_t decay = (uint64_t)ftm_options[FTM_OPT_DECAY_MS] * 1000000u;
	for (struct ftm_zone *z = arena->idle_oldest; z; z = z->idle_next)
		z->idle_since -= decay;
	take(other, n + 2, 1);
	cr_assert_eq(idle_count(cls), 0, "past it: given back by the next refill");
	cr_assert_eq(arena->by_class[cls].zones_unmapped, 2);
	cr_assert_eq(arena->by_class[other].zones_unmapped, 0);
	check_counts();
	give(n, 3);
}

/* The refill that finds zones past their time gives back the cached LARGE
 * ranges past theirs too: the process may free no LARGE block again. */
Test(idle, aged_zones_take_the_aged_large_ranges_with_them)
{
	ftm_options[FTM_OPT_DECAY_MS] = 50;
	uint32_t cls = 2, other = 5, n = capacity(cls);
	take(other, n, 1);
	take(cls, 0, n);
	char *big = large_alloc((size_t)1 << 20, FTM_ALIGN, false);
	memset(big, 1, (size_t)1 << 20);
	cr_assert(large_free(big));
	size_t cached = extent_cached_bytes();
	cr_assert_geq(cached, (size_t)1 << 20);
	give(0, n);
	cr_assert_eq(idle_count(cls), 1);
	/* past the decay time, short of FTM_STALE_MS (the kept-memory bound) */
	uint64_t start = os_now_ns();
	while (os_now_ns() - start < 60 * 1000000ull)
		;
	cr_assert_eq(extent_cached_bytes(), cached, "nothing looked at them yet");
	take(other, n + 1, 1);
	cr_assert_eq(idle_count(cls), 0);
	cr_assert_eq(extent_cached_bytes(), 0);
	check_counts();
	give(n, 2);
}

Test(idle, trim_gives_them_all_back)
{
	uint32_t cls = 2, n = 3 * capacity(cls);
	take(cls, 0, n);
	give(0, n / 3); /* the first zone empties: idle */
	size_t zone = (size_t)1 << ftm_classes[cls].zone_shift;
	cr_assert_eq(idle_count(cls), 1);
	cr_assert_eq(arena_trim(), zone, "one idle zone released");
	cr_assert_eq(arena->by_class[cls].zones_unmapped, 1);
	cr_assert_eq(arena_trim(), 0, "the busy zones stay");
	check_counts();
	give(n / 3, n - n / 3);
	cr_assert_eq(arena_trim(), 2 * zone);
	cr_assert_eq(ftm_zone_pages.carved, 0);
	check_counts();
}

/* A pointer the program kept into the recycled zone (a stale one, freed
 * twice) lands on the new class's geometry: its start is b's chunk 0,
 * handed out and not live, the rest are no chunk starts of b. Both are
 * refused, and the new zone is as it was. */
Test(idle, stale_pointers_into_a_recycled_zone_are_refused, .init = cr_redirect_stderr)
{
	uint32_t a = 5, b = 9, na = 2 * capacity(a);
	take(a, 0, na);
	char *chunk0 = slots[0].chunk, *chunk1 = slots[1].chunk;
	give(0, na);
	take(b, 0, 1);
	struct ftm_zone *zone = pagemap_zone(chunk0);
	cr_assert_eq(zone->cls, b, "recycled");
	cr_assert_eq((char *)slots[0].chunk, chunk0);
	cr_assert_not(free_checked(chunk0, "free"));
	cr_assert_not(free_checked(chunk1, "free"));
	cr_assert_eq(meta_load(zone, 0), FTM_META_CACHED, "b's chunk stays handed out");
	cr_assert_eq(zone->used, 1);
	fflush(stderr);
	char want[256];
	snprintf(want, sizeof(want),
		 "ft_malloc: free(): double free %p\nft_malloc: free(): invalid pointer %p\n",
		 (void *)chunk0, (void *)chunk1);
	cr_assert_stderr_eq_str(want);
}

/* Writes a mark at the start of each of n zones of a's, from slots[0..). */
static void mark_zones(uint32_t a, uint32_t n, uintptr_t *bases)
{
	for (uint32_t i = 0; i < n; i++) {
		char *chunk = slots[i * capacity(a)].chunk;
		bases[i] = zone_base(pagemap_zone(chunk));
		cr_assert_eq((uintptr_t)chunk, bases[i]);
		*chunk = (char)(0x40 + i);
	}
}

/* Two idle 64 KiB zones side by side make one 128 KiB zone for another
 * class, pages and contents kept; the newest idle zone of a stays a's. */
Test(idle, smaller_idle_zones_merge_into_a_new_zone)
{
	uint32_t a = SMALL_ZONES, b = size_class(768), na = 3 * capacity(a);
	cr_assert_eq(ftm_classes[b].zone_shift, ftm_classes[a].zone_shift + 1);
	take(a, 0, na);
	uintptr_t bases[3];
	mark_zones(a, 3, bases);
	cr_assert_eq(bases[1], bases[0] + 65536, "a's zones come in address order from the segment");
	cr_assert_eq(bases[0] % 131072, 0);
	give(0, na);
	uint64_t carved = ftm_zone_pages.carved;
	take(b, 0, 1);
	struct ftm_zone *zone = pagemap_zone(slots[0].chunk);
	cr_assert_eq(zone->cls, b);
	cr_assert_eq(zone_base(zone), bases[0], "b's zone is on a's two oldest zones");
	cr_assert_eq(pagemap_zone((void *)bases[1]), zone);
	cr_assert_eq(*(char *)bases[0], 0x40, "their pages were kept");
	cr_assert_eq(*(char *)bases[1], 0x41);
	cr_assert_eq(zone->warm_bytes, 131072);
	cr_assert_eq(ftm_zone_pages.carved, carved, "the pages changed hands, none were added");
	cr_assert_eq(idle_count(a), 1, "a's newest idle zone stays");
	cr_assert_eq(pagemap_zone((void *)bases[2])->cls, a);
	cr_assert_eq(arena->by_class[a].zones_unmapped, 2);
	check_counts();
}

/* A busy zone in the range stops the merge: b gets fresh pages. */
Test(idle, a_busy_neighbour_stops_the_merge)
{
	uint32_t a = SMALL_ZONES, b = size_class(768), na = 3 * capacity(a);
	take(a, 0, na);
	uintptr_t bases[3];
	mark_zones(a, 3, bases);
	give(0, capacity(a));
	give(2 * capacity(a), capacity(a)); /* zone 1 stays busy */
	take(b, 0, 1);
	struct ftm_zone *zone = pagemap_zone(slots[0].chunk);
	cr_assert_eq(zone->cls, b);
	cr_assert(zone_base(zone) != bases[0] && zone->warm_bytes == 0, "a fresh range");
	cr_assert_eq(arena->by_class[a].zones_unmapped, 0);
	check_counts();
}

/* fenced idle zones of a's that cannot serve b (each beside a busy one),
 * older than a pair of idle neighbours that can: whether b's new zone is
 * on the pair. */
static bool pair_found_after(uint32_t fenced)
{
	uint32_t a = size_class(640), b = size_class(768), zones = 2 * fenced + 3;
	cr_assert_eq(ftm_classes[b].zone_shift, ftm_classes[a].zone_shift + 1);
	cr_assert_leq(zones * capacity(a), LAST_SLOT);
	take(a, 0, zones * capacity(a));
	uintptr_t pair = zone_base(pagemap_zone(slots[2 * fenced * capacity(a)].chunk));
	cr_assert_eq(pair % 131072, 0);
	for (uint32_t i = 0; i < fenced; i++)
		give(2 * i * capacity(a), capacity(a));
	give(2 * fenced * capacity(a), 3 * capacity(a)); /* the pair, then a's newest */
	take(b, 0, 1);
	check_counts();
	return zone_base(pagemap_zone(slots[0].chunk)) == pair;
}

/* The search for idle pages looks at FTM_TAKEOVER_LOOKS idle zones at
 * most, oldest first. */
Test(idle, the_search_for_idle_pages_reaches_its_bound)
{
	cr_assert(pair_found_after(FTM_TAKEOVER_LOOKS - 1), "the pair is the last zone looked at");
}

Test(idle, the_search_for_idle_pages_stops_at_its_bound)
{
	cr_assert_not(pair_found_after(FTM_TAKEOVER_LOOKS), "the pair is one past the bound");
	cr_assert_eq(arena->by_class[size_class(640)].zones_unmapped, 0);
}

/* A bigger idle zone is cut into zones of the new class, as many as its
 * resident pages cover: the first serves, the others wait idle. */
Test(idle, a_bigger_idle_zone_is_cut_up)
{
	uint32_t a = size_class(768), b = SMALL_ZONES, na = 2 * capacity(a);
	take(a, 0, na);
	uintptr_t bases[2];
	mark_zones(a, 2, bases);
	*(char *)(bases[0] + 65536) = 0x33;
	give(0, na);
	uint64_t carved = ftm_zone_pages.carved;
	take(b, 0, 1);
	struct ftm_zone *zone = pagemap_zone(slots[0].chunk);
	cr_assert_eq(zone->cls, b);
	cr_assert_eq(zone_base(zone), bases[0]);
	struct ftm_zone *second = pagemap_zone((void *)(bases[0] + 65536));
	cr_assert_neq(second, zone);
	cr_assert_eq(second->cls, b);
	cr_assert_eq(idle_count(b), 1, "the second half waits idle");
	cr_assert_eq(arena->idle[b], second);
	cr_assert_eq(*(char *)bases[0], 0x40, "the pages were kept");
	cr_assert_eq(*(char *)(bases[0] + 65536), 0x33);
	cr_assert_eq(zone->warm_bytes, 65536);
	cr_assert_eq(second->warm_bytes, 65536);
	cr_assert_eq(ftm_zone_pages.carved, carved);
	check_counts();
}

/* Only the resident part of a bigger zone becomes zones: one chunk of 4608
 * bytes left two pages (of 4 KiB), so one 64 KiB zone, and the rest of the range is
 * free again. */
Test(idle, only_the_resident_part_is_cut_up)
{
	uint32_t a = size_class(4608), b = SMALL_ZONES, na = capacity(a) + 1;
	take(a, 0, na);
	uintptr_t second = zone_base(pagemap_zone(slots[na - 1].chunk));
	give(na - 1, 1); /* the second zone empties first: the oldest idle */
	give(0, na - 1);
	take(b, 0, 1);
	struct ftm_zone *zone = pagemap_zone(slots[0].chunk);
	cr_assert_eq(zone_base(zone), second);
	cr_assert_eq(zone->warm_bytes, page_round(ftm_classes[a].size), "the pages it came with");
	cr_assert_eq(idle_count(b), 0);
	cr_assert_null(pagemap_zone((void *)(second + 65536)));
	cr_assert(span_is_free(arena, second + 65536, 16));
	cr_assert(span_is_free(arena, second + 262144, 18));
	check_counts();
}
