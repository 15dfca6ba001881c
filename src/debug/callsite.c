/*
 * Call sites (FT_MALLOC_CALLERS): for every live block, the return address
 * of the malloc-family call that made it, so the leak report can say which
 * line of the program leaks. Every entry point passes its own return
 * address down (a debug-mode path only: the fast paths never see it).
 *
 * A table of (block, caller, size) keyed by the block's address, open
 * addressing with linear probing, in its own mapping behind its own lock;
 * when half its slots are used it is rebuilt without tombstones.
 */
#include "ftm/internal.h"

#define TOMBSTONE ((uintptr_t)1) /* a removed entry: probing goes on past it */
#define INITIAL_SLOTS 4096

struct callsite_entry {
	uintptr_t block;    /* 0: never used; TOMBSTONE: removed */
	uintptr_t caller;   /* return address of the allocating call */
	size_t size;        /* bytes asked for */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct callsite_entry *table;
static size_t slots; /* a power of two */
static size_t filled; /* slots used: live entries and tombstones */

static size_t slot_of(uintptr_t block, size_t mask)
{
	/* blocks are 16-byte aligned: fold the high bits into the low ones */
	uint64_t h = (uint64_t)block * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 32) & mask;
}

/* Puts e in the first free or removed slot of its probe sequence; true
 * when that slot had never been used (one more slot taken). */
static bool place(struct callsite_entry *t, size_t mask, struct callsite_entry e)
{
	size_t i = slot_of(e.block, mask);
	while (t[i].block > TOMBSTONE)
		i = (i + 1) & mask;
	bool fresh = !t[i].block;
	t[i] = e;
	return fresh;
}

/* Rebuilds the table without its tombstones, twice as big unless most of
 * it was tombstones (so a program that allocates and frees for hours keeps
 * a table sized to its live blocks). False when no memory: the caller then
 * goes without recording rather than failing the allocation. */
static bool rebuild(void)
{
	size_t live = 0;
	for (size_t i = 0; i < slots; i++)
		live += table[i].block > TOMBSTONE;
	size_t size = !slots ? INITIAL_SLOTS : live * 4 < slots ? slots : slots * 2;
	struct callsite_entry *t = os_map(size * sizeof(*t));
	if (!t)
		return false;
	for (size_t i = 0; i < slots; i++)
		if (table[i].block > TOMBSTONE)
			place(t, size - 1, table[i]);
	if (table)
		os_unmap(table, slots * sizeof(*table));
	table = t;
	slots = size;
	filled = live;
	return true;
}

void callsite_record(const void *block, const void *caller, size_t size)
{
	pthread_mutex_lock(&table_lock);
	if ((filled + 1) * 2 <= slots || rebuild())
		filled += place(table, slots - 1,
				(struct callsite_entry){(uintptr_t)block, (uintptr_t)caller, size});
	pthread_mutex_unlock(&table_lock);
}

/* The entry of a recorded block, NULL when there is none (lock held). */
static struct callsite_entry *find(uintptr_t block)
{
	if (!table)
		return NULL;
	size_t mask = slots - 1;
	for (size_t i = slot_of(block, mask); table[i].block; i = (i + 1) & mask)
		if (table[i].block == block)
			return &table[i];
	return NULL;
}

void callsite_forget(const void *block)
{
	pthread_mutex_lock(&table_lock);
	struct callsite_entry *e = find((uintptr_t)block);
	if (e)
		e->block = TOMBSTONE;
	pthread_mutex_unlock(&table_lock);
}

/* Calls visit(caller, size) for every recorded live block, under the lock
 * (visit must not allocate or take other allocator locks). */
void callsite_for_each(void (*visit)(uintptr_t caller, size_t size, void *ctx), void *ctx)
{
	pthread_mutex_lock(&table_lock);
	for (size_t i = 0; i < slots; i++)
		if (table[i].block > TOMBSTONE)
			visit(table[i].caller, table[i].size, ctx);
	pthread_mutex_unlock(&table_lock);
}

/* The caller recorded for block, 0 when none. */
uintptr_t callsite_of(const void *block)
{
	pthread_mutex_lock(&table_lock);
	struct callsite_entry *e = find((uintptr_t)block);
	uintptr_t caller = e ? e->caller : 0;
	pthread_mutex_unlock(&table_lock);
	return caller;
}

/* An upper bound on the number of recorded blocks (used slots). */
size_t callsite_count(void)
{
	pthread_mutex_lock(&table_lock);
	size_t n = filled;
	pthread_mutex_unlock(&table_lock);
	return n;
}

void callsite_lock(void)
{
	pthread_mutex_lock(&table_lock);
}

void callsite_unlock(void)
{
	pthread_mutex_unlock(&table_lock);
}

void callsite_reinit_lock(void)
{
	pthread_mutex_init(&table_lock, NULL);
}
