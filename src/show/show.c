/*
 * show_alloc_mem: every live allocation of every arena and of the LARGE
 * registry, zone by zone in increasing address order, then the total.
 * Chunks in a thread cache are free for the program and are not listed; a
 * zone with nothing live is not listed either.
 */
#include "ft_malloc.h"
#include "ftm/internal.h"

struct show_state {
	struct ftm_out out; /* stdout, whole lines */
	uint64_t total;     /* bytes listed so far */
};

static void print_header(struct ftm_out *o, const char *kind, uintptr_t start)
{
	out_str(o, kind);
	out_str(o, " : ");
	out_hex(o, start);
	out_line_end(o);
}

static void print_block(struct ftm_out *o, uintptr_t start, size_t size)
{
	out_hex(o, start);
	out_str(o, " - ");
	out_hex(o, start + size);
	out_str(o, " : ");
	out_dec(o, size);
	out_str(o, " bytes");
	out_line_end(o);
}

static void show_zone(const struct ftm_zone *zone, void *ctx)
{
	struct show_state *st = ctx;
	bool shown = false;
	for (uint32_t i = 0; i < zone->carved; i++) {
		uint16_t meta = meta_load(zone, i);
		if (!(meta & FTM_META_LIVE))
			continue;
		if (!shown)
			print_header(&st->out, zone->cls < FTM_TINY_CLASSES ? "TINY" : "SMALL",
				     zone_base(zone));
		shown = true;
		size_t size = zone->size - (meta & FTM_META_SLACK);
		print_block(&st->out, (uintptr_t)zone_chunk(zone, i), size);
		st->total += size;
	}
}

static void show_large(const struct ftm_large *h, void *ctx)
{
	struct show_state *st = ctx;
	print_header(&st->out, "LARGE", (uintptr_t)h);
	print_block(&st->out, (uintptr_t)h->user, h->size);
	st->total += h->size;
}

FTM_EXPORT void show_alloc_mem(void)
{
	static const struct heap_visitor visit = {show_zone, show_large};
	struct show_state st = {.out = {.fd = 1}, .total = 0};
	if (heap_walk(&visit, &st, true)) {
		out_str(&st.out, "Total : ");
		out_dec(&st.out, st.total);
		out_str(&st.out, " bytes");
	} else {
		out_str(&st.out, "show_alloc_mem: out of memory");
	}
	out_line_end(&st.out);
	out_flush(&st.out);
}
