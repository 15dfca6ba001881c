/*
 * show_alloc_mem_ex: show_alloc_mem for debugging. Each zone also shows its
 * arena, size class, bounds, used and free bytes and fragmentation (the
 * share of its carved bytes that is not live); each allocation a hex and
 * ASCII dump of its first 32 bytes (all of it with FT_MALLOC_SHOW_FULL);
 * then the allocation history when FT_MALLOC_HISTORY is on.
 */
#include "ft_malloc.h"
#include "ftm/internal.h"

#define DUMP_BYTES 32

struct show_ex {
	struct ftm_out out; /* stdout */
	uint64_t total;     /* bytes live */
};

static void dump_block(struct show_ex *st, uintptr_t p, size_t size)
{
	out_hex(&st->out, p);
	out_str(&st->out, " - ");
	out_hex(&st->out, p + size);
	out_str(&st->out, " : ");
	out_dec(&st->out, size);
	out_str(&st->out, " bytes");
	out_line_end(&st->out);
	size_t shown = ftm_options[FTM_OPT_SHOW_FULL] || size < DUMP_BYTES ? size : DUMP_BYTES;
	out_hexdump(&st->out, (const unsigned char *)p, shown);
	st->total += size;
}

static void show_zone_ex(const struct ftm_zone *zone, void *ctx)
{
	struct show_ex *st = ctx;
	struct ftm_out *o = &st->out;
	uint64_t live = 0, live_chunks = 0;
	for (uint32_t i = 0; i < zone->carved; i++) {
		uint16_t meta = meta_load(zone, i);
		if (meta & FTM_META_LIVE) {
			live += zone->size - (meta & FTM_META_SLACK);
			live_chunks++;
		}
	}
	uint64_t carved = (uint64_t)zone->carved * zone->size;
	out_str(o, zone->cls < FTM_TINY_CLASSES ? "TINY : " : "SMALL : ");
	out_hex(o, zone_base(zone));
	out_str(o, " - ");
	out_hex(o, zone_base(zone) + zone_bytes(zone));
	out_str(o, " arena ");
	out_dec(o, arena_index(zone->arena));
	out_str(o, ", class ");
	out_dec(o, zone->size);
	out_str(o, " B, chunks ");
	out_dec(o, live_chunks);
	out_str(o, " live / ");
	out_dec(o, zone->carved);
	out_str(o, " carved / ");
	out_dec(o, zone->capacity);
	out_str(o, ", used ");
	out_dec(o, live);
	out_str(o, " B, free ");
	out_dec(o, (uint64_t)zone->capacity * zone->size - live);
	out_str(o, " B, fragmentation ");
	out_dec(o, carved ? (carved - live) * 100 / carved : 0);
	out_str(o, "%");
	out_line_end(o);
	for (uint32_t i = 0; i < zone->carved; i++) {
		uint16_t meta = meta_load(zone, i);
		if (meta & FTM_META_LIVE)
			dump_block(st, (uintptr_t)zone_chunk(zone, i), zone->size - (meta & FTM_META_SLACK));
	}
}

static void show_large_ex(const struct ftm_large *h, void *ctx)
{
	struct show_ex *st = ctx;
	out_str(&st->out, "LARGE : ");
	out_hex(&st->out, (uintptr_t)h);
	out_str(&st->out, " - ");
	out_hex(&st->out, (uintptr_t)h + h->map_len);
	out_str(&st->out, " mapping of ");
	out_dec(&st->out, h->map_len);
	out_str(&st->out, " B");
	out_line_end(&st->out);
	dump_block(st, (uintptr_t)h->user, h->size);
}

FTM_EXPORT void show_alloc_mem_ex(void)
{
	static const struct heap_visitor visit = {show_zone_ex, show_large_ex};
	struct show_ex st = {.out = {.fd = 1}, .total = 0};
	if (heap_walk(&visit, &st, true)) {
		out_str(&st.out, "Total : ");
		out_dec(&st.out, st.total);
		out_str(&st.out, " bytes");
	} else {
		out_str(&st.out, "show_alloc_mem_ex: out of memory");
	}
	out_line_end(&st.out);
	history_print(&st.out);
	out_flush(&st.out);
}
