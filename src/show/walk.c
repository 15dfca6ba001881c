/*
 * A consistent walk of the whole heap in increasing address order: every
 * zone of every arena and every LARGE mapping. It holds the registry lock
 * and every arena lock (the fork order) throughout, so zones cannot come or
 * go under it; threads keep allocating from their caches meanwhile, so a
 * visitor reads each chunk's state once. Sorting uses a scratch mapping and
 * a heapsort: nothing here calls malloc.
 */
#include <sched.h>

#include "ftm/internal.h"

struct walk_entry {
	uintptr_t start;               /* zone or LARGE mapping address */
	const struct ftm_zone *zone;   /* NULL for a LARGE mapping */
	const struct ftm_large *large; /* NULL for a zone */
};

struct walk_list {
	struct walk_entry *items; /* NULL while counting */
	size_t count;
};

static void collect_large(const struct ftm_large *h, void *ctx)
{
	struct walk_list *list = ctx;
	if (list->items)
		list->items[list->count] = (struct walk_entry){(uintptr_t)h, NULL, h};
	list->count++;
}

/* Counts the entries, or fills list->items when it is set. */
static void collect(struct walk_list *list)
{
	list->count = 0;
	for (uint32_t i = 0; i < ftm_arena_count; i++)
		for (struct ftm_zone *z = ftm_arenas[i].zones; z; z = z->all_next) {
			if (list->items)
				list->items[list->count] = (struct walk_entry){zone_base(z), z, NULL};
			list->count++;
		}
	large_for_each(collect_large, list);
}

static void sift_down(struct walk_entry *a, size_t root, size_t n)
{
	for (size_t child; (child = 2 * root + 1) < n; root = child) {
		if (child + 1 < n && a[child + 1].start > a[child].start)
			child++;
		if (a[root].start >= a[child].start)
			return;
		struct walk_entry t = a[root];
		a[root] = a[child];
		a[child] = t;
	}
}

static void sort_by_address(struct walk_entry *a, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift_down(a, i, n);
	for (size_t end = n; end-- > 1;) {
		struct walk_entry t = a[0];
		a[0] = a[end];
		a[end] = t;
		sift_down(a, 0, end);
	}
}

/* Takes the registry lock then every arena lock. Without `wait` (from a
 * signal handler, which may have interrupted a thread holding one of them)
 * each lock is only tried, a bounded number of times. */
static bool lock_heap(bool wait)
{
	if (wait) {
		large_lock();
		arena_lock_all();
		return true;
	}
	for (int attempt = 0; attempt < 1000; attempt++) {
		if (large_trylock()) {
			if (arena_trylock_all())
				return true;
			large_unlock();
		}
		sched_yield();
	}
	return false;
}

bool heap_walk(const struct heap_visitor *visit, void *ctx, bool wait)
{
	ftm_ensure_init();
	struct walk_list list = {NULL, 0};
	if (!lock_heap(wait))
		return false;
	collect(&list);
	size_t bytes = (list.count * sizeof(*list.items) + ftm_page_size - 1) & ~(ftm_page_size - 1);
	bool ok = !bytes || (list.items = os_map(bytes));
	if (ok && bytes) {
		collect(&list);
		sort_by_address(list.items, list.count);
		for (size_t i = 0; i < list.count; i++) {
			if (list.items[i].zone)
				visit->zone(list.items[i].zone, ctx);
			else
				visit->large(list.items[i].large, ctx);
		}
	}
	arena_unlock_all();
	large_unlock();
	if (list.items)
		os_unmap(list.items, bytes);
	return ok;
}
