/*
 * show_alloc_mem: every live allocation of every arena and of the LARGE
 * registry, zone by zone in increasing address order, then the total.
 *
 * It holds the registry lock and every arena lock (the fork order) while it
 * collects and prints, so zones cannot come or go under it. Threads keep
 * allocating from their caches meanwhile; each chunk's state is read once,
 * so a line is always whole and true at the moment it was read. Chunks in a
 * thread cache are free for the program and are not listed. Sorting uses a
 * scratch mapping and a heapsort: nothing here calls malloc.
 */
#include "ft_malloc.h"
#include "ftm/internal.h"

struct show_entry {
	uintptr_t start;          /* zone or LARGE mapping address */
	const struct ftm_zone *zone;   /* NULL for a LARGE mapping */
	const struct ftm_large *large; /* NULL for a zone */
};

struct show_list {
	struct show_entry *items;
	size_t count;
};

static void collect_large(const struct ftm_large *h, void *ctx)
{
	struct show_list *list = ctx;
	if (list->items)
		list->items[list->count] = (struct show_entry){(uintptr_t)h, NULL, h};
	list->count++;
}

/* Counts the entries, or fills list->items when it is set. */
static void collect(struct show_list *list)
{
	list->count = 0;
	for (uint32_t i = 0; i < ftm_arena_count; i++)
		for (struct ftm_zone *z = ftm_arenas[i].zones; z; z = z->all_next) {
			if (list->items)
				list->items[list->count] = (struct show_entry){(uintptr_t)z, z, NULL};
			list->count++;
		}
	large_for_each(collect_large, list);
}

static void sift_down(struct show_entry *a, size_t root, size_t n)
{
	for (size_t child; (child = 2 * root + 1) < n; root = child) {
		if (child + 1 < n && a[child + 1].start > a[child].start)
			child++;
		if (a[root].start >= a[child].start)
			return;
		struct show_entry t = a[root];
		a[root] = a[child];
		a[child] = t;
	}
}

static void sort_by_address(struct show_entry *a, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift_down(a, i, n);
	for (size_t end = n; end-- > 1;) {
		struct show_entry t = a[0];
		a[0] = a[end];
		a[end] = t;
		sift_down(a, 0, end);
	}
}

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

/* Prints a zone's live chunks, after its header if it has any. */
static uint64_t print_zone(struct ftm_out *o, const struct ftm_zone *zone)
{
	const struct ftm_class *c = &ftm_classes[zone->cls];
	uint64_t total = 0;
	bool shown = false;
	for (uint32_t i = 0; i < zone->carved; i++) {
		uint16_t meta = meta_load(zone, i);
		if (!(meta & FTM_META_LIVE))
			continue;
		if (!shown)
			print_header(o, zone->cls < FTM_TINY_CLASSES ? "TINY" : "SMALL", (uintptr_t)zone);
		shown = true;
		size_t size = c->size - (meta & FTM_META_SLACK);
		print_block(o, (uintptr_t)zone_chunk(zone, i), size);
		total += size;
	}
	return total;
}

static uint64_t print_large(struct ftm_out *o, const struct ftm_large *h)
{
	print_header(o, "LARGE", (uintptr_t)h);
	print_block(o, (uintptr_t)h->user, h->size);
	return h->size;
}

FTM_EXPORT void show_alloc_mem(void)
{
	ftm_ensure_init();
	struct ftm_out o = {.fd = 1};
	struct show_list list = {NULL, 0};
	uint64_t total = 0;
	large_lock();
	arena_lock_all();
	collect(&list);
	size_t bytes = (list.count * sizeof(*list.items) + ftm_page_size - 1) & ~(ftm_page_size - 1);
	if (bytes && !(list.items = os_map(bytes))) {
		out_str(&o, "show_alloc_mem: out of memory");
		out_line_end(&o);
	} else {
		collect(&list);
		sort_by_address(list.items, list.count);
		for (size_t i = 0; i < list.count; i++)
			total += list.items[i].zone ? print_zone(&o, list.items[i].zone)
						    : print_large(&o, list.items[i].large);
		out_str(&o, "Total : ");
		out_dec(&o, total);
		out_str(&o, " bytes");
		out_line_end(&o);
	}
	out_flush(&o);
	arena_unlock_all();
	large_unlock();
	if (list.items)
		os_unmap(list.items, bytes);
}
