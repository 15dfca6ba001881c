/*
 * Statistics from our own counters: malloc_stats (glibc's layout, on
 * stderr) and mallinfo2. "In use" counts chunks handed to threads, including
 * those waiting in thread caches, as glibc counts its tcache.
 */
#include <malloc.h>

#include "ftm/internal.h"

struct totals {
	uint64_t zone_bytes; /* bytes of zones mapped */
	uint64_t used_bytes; /* bytes of chunks handed out */
	uint64_t large_bytes; /* bytes of LARGE mappings */
	uint64_t large_count; /* LARGE mappings */
	uint64_t large_cached; /* bytes of freed LARGE ranges kept for reuse */
};

static void arena_snapshot(struct ftm_arena *arena, struct ftm_arena_stats *out)
{
	arena_lock(arena);
	*out = arena->stats;
	arena_unlock(arena);
}

static struct totals totals_collect(void)
{
	struct totals t = {0, 0, 0, 0, 0};
	for (uint32_t i = 0; i < ftm_arena_count; i++) {
		struct ftm_arena_stats s;
		arena_snapshot(&ftm_arenas[i], &s);
		t.zone_bytes += s.bytes_mapped;
		t.used_bytes += s.bytes_out;
	}
	large_lock();
	t.large_bytes = large_bytes_mapped();
	t.large_count = large_count();
	t.large_cached = extent_cached_bytes();
	large_unlock();
	return t;
}

static void stat_line(struct ftm_out *o, const char *label, uint64_t v)
{
	out_str(o, label);
	out_dec(o, v);
	out_line_end(o);
}

FTM_EXPORT void ftm_malloc_stats(void)
{
	ftm_ensure_init();
	struct ftm_out o = {.fd = 2};
	for (uint32_t i = 0; i < ftm_arena_count; i++) {
		struct ftm_arena_stats s;
		arena_snapshot(&ftm_arenas[i], &s);
		out_str(&o, "Arena ");
		out_dec(&o, i);
		out_str(&o, ":");
		out_line_end(&o);
		stat_line(&o, "system bytes     = ", s.bytes_mapped);
		stat_line(&o, "in use bytes     = ", s.bytes_out);
	}
	struct totals t = totals_collect();
	out_str(&o, "Total (incl. mmap):");
	out_line_end(&o);
	stat_line(&o, "system bytes     = ", t.zone_bytes + t.large_bytes);
	stat_line(&o, "in use bytes     = ", t.used_bytes + t.large_bytes);
	stat_line(&o, "mmap bytes       = ", t.large_bytes);
	out_flush(&o);
}

FTM_EXPORT struct mallinfo2 ftm_mallinfo2(void)
{
	ftm_ensure_init();
	struct totals t = totals_collect();
	struct mallinfo2 mi = {0};
	/* as glibc: arena/uordblks/fordblks cover the zones, LARGE mappings
	 * are counted apart in hblks/hblkhd */
	mi.arena = t.zone_bytes;
	mi.uordblks = t.used_bytes;
	mi.fordblks = t.zone_bytes - t.used_bytes;
	mi.hblks = t.large_count;
	mi.hblkhd = t.large_bytes;
	return mi;
}

/* Empty zones the arena keeps for reuse (arena lock held). */
static uint64_t idle_zones(const struct ftm_arena *arena)
{
	uint64_t n = 0;
	for (const struct ftm_zone *zone = arena->idle_oldest; zone; zone = zone->idle_next)
		n++;
	return n;
}

/* FT_MALLOC_STATS at exit: per arena, then per size class of each arena
 * (only classes that saw any use), then process-wide OS counters. Counters
 * of threads still running are read as they are. */
void stats_print(struct ftm_out *o)
{
	struct ftm_class_stats live[FTM_CLASS_COUNT] = {{0}};
	tcache_sum_live_stats(live);
	uint64_t mallocs = 0, misses = 0;
	for (uint32_t i = 0; i < ftm_arena_count; i++) {
		struct ftm_arena *arena = &ftm_arenas[i];
		arena_lock(arena);
		out_str(o, "ft_malloc: arena ");
		out_dec(o, i);
		out_str(o, ": zones mapped ");
		out_dec(o, arena->stats.zones_mapped);
		out_str(o, ", unmapped ");
		out_dec(o, arena->stats.zones_unmapped);
		out_str(o, ", idle ");
		out_dec(o, idle_zones(arena));
		out_str(o, ", bytes mapped ");
		out_dec(o, arena->stats.bytes_mapped);
		out_str(o, ", in use ");
		out_dec(o, arena->stats.bytes_out);
		out_str(o, ", lock contended ");
		out_dec(o, arena->stats.contended);
		out_line_end(o);
		for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
			struct ftm_class_stats c = arena->by_class[cls];
			if (i == 0) { /* running threads' counters, shown once */
				c.mallocs += live[cls].mallocs;
				c.frees += live[cls].frees;
				c.misses += live[cls].misses;
			}
			if (!c.mallocs && !c.frees && !c.zones_mapped)
				continue;
			mallocs += c.mallocs;
			misses += c.misses;
			out_str(o, "  class ");
			out_dec(o, class_size(cls));
			out_str(o, ": mallocs ");
			out_dec(o, c.mallocs);
			out_str(o, ", frees ");
			out_dec(o, c.frees);
			out_str(o, ", in use ");
			out_dec(o, c.chunks_out * class_size(cls));
			out_str(o, " bytes, peak ");
			out_dec(o, c.peak_out * class_size(cls));
			out_str(o, " bytes, zones +");
			out_dec(o, c.zones_mapped);
			out_str(o, " -");
			out_dec(o, c.zones_unmapped);
			out_str(o, ", cache hits ");
			out_dec(o, c.mallocs ? (c.mallocs - c.misses) * 100 / c.mallocs : 0);
			out_str(o, "%");
			out_line_end(o);
		}
		arena_unlock(arena);
	}
	struct totals t = totals_collect();
	out_str(o, "ft_malloc: total: mallocs ");
	out_dec(o, mallocs);
	out_str(o, ", thread cache hits ");
	out_dec(o, mallocs ? (mallocs - misses) * 100 / mallocs : 0);
	out_str(o, "%, LARGE blocks ");
	out_dec(o, t.large_count);
	out_str(o, " (");
	out_dec(o, t.large_bytes);
	out_str(o, " bytes mapped, ");
	out_dec(o, t.large_cached);
	out_str(o, " bytes cached), mmap calls ");
	out_dec(o, __atomic_load_n(&ftm_os_maps, __ATOMIC_RELAXED));
	out_str(o, ", munmap calls ");
	out_dec(o, __atomic_load_n(&ftm_os_unmaps, __ATOMIC_RELAXED));
	out_str(o, ", prefault calls ");
	out_dec(o, __atomic_load_n(&ftm_os_prefaults, __ATOMIC_RELAXED));
	out_line_end(o);
}

FTM_OVERRIDE(malloc_stats, ftm_malloc_stats)
FTM_OVERRIDE(mallinfo2, ftm_mallinfo2)
