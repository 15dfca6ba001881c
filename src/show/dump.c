/*
 * show_alloc_mem_json: the heap as JSON lines, for tools (scripts/heapmap
 * draws it). One object per line, in this order:
 *
 *   {"type":"heap","pid":P,"page_size":N,"arenas":N,"classes":N}
 *   {"type":"zone","addr":"0x..","kind":"TINY","arena":A,"class":C,
 *    "chunk_size":N,"size":N,"first":"0x..","capacity":N,"carved":N,
 *    "states":"LLCF.."}            size: bytes of the zone's mapping;
 *                                  one letter per carved chunk: L live,
 *                                  C cached in a thread cache, F free
 *   {"type":"chunk","addr":"0x..","size":N,"zone":"0x.."}   each live chunk
 *   {"type":"large","addr":"0x..","user":"0x..","size":N,"map_len":N}
 *   {"type":"end","zones":N,"large":N,"live_bytes":N,"live_blocks":N,
 *    "cached_chunks":N,"free_chunks":N}   the C and F letters of all zones
 *
 * Zones and LARGE mappings come in increasing address order; chunks never
 * carved are neither listed nor counted.
 */
#include <unistd.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

struct dump_state {
	struct ftm_out out;   /* the caller's fd */
	uint64_t zones;       /* zone lines written */
	uint64_t larges;      /* large lines written */
	uint64_t live_bytes;  /* bytes the program asked for, live */
	uint64_t live_blocks; /* live allocations */
	uint64_t cached;      /* chunks in thread caches */
	uint64_t free;        /* carved chunks back in their zone */
};

static void field_str(struct ftm_out *o, const char *key, const char *value)
{
	out_str(o, ",\"");
	out_str(o, key);
	out_str(o, "\":\"");
	out_str(o, value);
	out_str(o, "\"");
}

static void field_hex(struct ftm_out *o, const char *key, uintptr_t value)
{
	out_str(o, ",\"");
	out_str(o, key);
	out_str(o, "\":\"");
	out_hex(o, value);
	out_str(o, "\"");
}

static void field_dec(struct ftm_out *o, const char *key, uint64_t value)
{
	out_str(o, ",\"");
	out_str(o, key);
	out_str(o, "\":");
	out_dec(o, value);
}

static void dump_zone(const struct ftm_zone *zone, void *ctx)
{
	struct dump_state *st = ctx;
	struct ftm_out *o = &st->out;
	uint32_t carved = zone->carved;
	out_str(o, "{\"type\":\"zone\"");
	field_hex(o, "addr", zone_base(zone));
	field_str(o, "kind", zone->cls < FTM_TINY_CLASSES ? "TINY" : "SMALL");
	field_dec(o, "arena", arena_index(zone->arena));
	field_dec(o, "class", zone->cls);
	field_dec(o, "chunk_size", zone->size);
	field_dec(o, "size", (uint64_t)1 << ftm_classes[zone->cls].zone_shift);
	field_hex(o, "first", zone->first);
	field_dec(o, "capacity", zone->capacity);
	field_dec(o, "carved", carved);
	out_str(o, ",\"states\":\"");
	for (uint32_t i = 0; i < carved; i++) {
		uint16_t meta = meta_load(zone, i);
		bool cached = meta == FTM_META_CACHED, live = meta & FTM_META_LIVE;
		out_str(o, live ? "L" : cached ? "C" : "F");
		st->cached += cached;
		st->free += !live && !cached;
	}
	out_str(o, "\"}");
	out_line_end(o);
	st->zones++;
	for (uint32_t i = 0; i < carved; i++) {
		uint16_t meta = meta_load(zone, i);
		if (!(meta & FTM_META_LIVE))
			continue;
		size_t size = zone->size - (meta & FTM_META_SLACK);
		out_str(o, "{\"type\":\"chunk\"");
		field_hex(o, "addr", (uintptr_t)zone_chunk(zone, i));
		field_dec(o, "size", size);
		field_hex(o, "zone", zone_base(zone));
		out_str(o, "}");
		out_line_end(o);
		st->live_bytes += size;
		st->live_blocks++;
	}
}

static void dump_large(const struct ftm_large *h, void *ctx)
{
	struct dump_state *st = ctx;
	struct ftm_out *o = &st->out;
	out_str(o, "{\"type\":\"large\"");
	field_hex(o, "addr", (uintptr_t)h);
	field_hex(o, "user", (uintptr_t)h->user);
	field_dec(o, "size", h->size);
	field_dec(o, "map_len", h->map_len);
	out_str(o, "}");
	out_line_end(o);
	st->larges++;
	st->live_bytes += h->size;
	st->live_blocks++;
}

void heap_dump_json(int fd, bool wait)
{
	static const struct heap_visitor visit = {dump_zone, dump_large};
	ftm_ensure_init();
	struct dump_state st = {.out = {.fd = fd}};
	out_str(&st.out, "{\"type\":\"heap\"");
	field_dec(&st.out, "pid", (uint64_t)getpid());
	field_dec(&st.out, "page_size", ftm_page_size);
	field_dec(&st.out, "arenas", ftm_arena_count);
	field_dec(&st.out, "classes", FTM_CLASS_COUNT);
	out_str(&st.out, "}");
	out_line_end(&st.out);
	if (heap_walk(&visit, &st, wait)) {
		out_str(&st.out, "{\"type\":\"end\"");
		field_dec(&st.out, "zones", st.zones);
		field_dec(&st.out, "large", st.larges);
		field_dec(&st.out, "live_bytes", st.live_bytes);
		field_dec(&st.out, "live_blocks", st.live_blocks);
		field_dec(&st.out, "cached_chunks", st.cached);
		field_dec(&st.out, "free_chunks", st.free);
		out_str(&st.out, "}");
	} else {
		out_str(&st.out, "{\"type\":\"error\",\"reason\":\"heap busy or out of memory\"}");
	}
	out_line_end(&st.out);
	out_flush(&st.out);
}

FTM_EXPORT void show_alloc_mem_json(int fd)
{
	heap_dump_json(fd, true);
}
