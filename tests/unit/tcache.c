/*
 * Thread caches: a bin fills on free and drains on malloc, an overflowing
 * bin gives back its older half, a dry bin takes one batch, chunks freed by
 * another thread go home to the arena that owns their zone when the caches
 * are flushed, and a free after the thread's cache was torn down still
 * reaches the arena.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

static uint64_t chunks_out_total(void)
{
	uint64_t total = 0;
	for (uint32_t i = 0; i < ftm_arena_count; i++) {
		arena_lock(&ftm_arenas[i]);
		total += ftm_arenas[i].stats.chunks_out;
		arena_unlock(&ftm_arenas[i]);
	}
	return total;
}

Test(tcache, refill_then_push_and_pop)
{
	void *first = ftm_malloc(100);
	uint32_t cls = size_class(100);
	const struct ftm_class *c = &ftm_classes[cls];
	struct ftm_bin *bin = &ftm_tls_tcache->bins[cls];
	uint32_t start = bin_count(bin);
	cr_assert_gt(start, 0, "a batch was taken and one chunk handed out");
	void *second = ftm_malloc(100);
	cr_assert_eq((char *)second - (char *)first, (ptrdiff_t)c->size, "next malloc is the next chunk up");
	cr_assert_eq(bin_count(bin), start - 1);
	ftm_free(first);
	cr_assert_eq(bin_count(bin), start);
	cr_assert_eq(bin->top[-1].chunk, first);
	struct ftm_zone *zone = pagemap_zone(first);
	cr_assert_eq(bin->top[-1].meta, &zone->meta[zone_chunk_index(zone, first)],
		     "the chunk's state slot rides beside it");
	cr_assert_eq(ftm_malloc(99), first, "LIFO: the chunk just freed comes back first");
}

Test(tcache, overflow_flushes_older_half)
{
	uint32_t cls = size_class(48);
	const struct ftm_class *c = &ftm_classes[cls];
	void *p[256];
	uint32_t n = c->tcache_cap + c->batch + 1;
	for (uint32_t i = 0; i < n; i++)
		p[i] = ftm_malloc(48);
	struct ftm_bin *bin = &ftm_tls_tcache->bins[cls];
	uint32_t start = bin_count(bin);
	uint32_t frees = c->tcache_cap - start + 1; /* the last one overflows */
	for (uint32_t i = 0; i < frees; i++)
		ftm_free(p[i]);
	cr_assert_eq(bin_count(bin), c->tcache_cap / 2 + 1);
	cr_assert_eq(bin->top[-1].chunk, p[frees - 1], "most recent stays on top");
	for (uint32_t i = 0; i < bin_count(bin); i++) {
		struct ftm_zone *z = pagemap_zone(bin->base[i].chunk);
		cr_assert_eq(bin->base[i].meta, &z->meta[zone_chunk_index(z, bin->base[i].chunk)],
			     "chunk %u kept its state slot through the flush", i);
	}
	struct ftm_zone *zone = pagemap_zone(p[0]);
	cr_assert_leq(meta_load(zone, zone_chunk_index(zone, p[0])), FTM_META_FREE_MAX,
		      "the oldest went back to its zone");
	cr_assert_eq(meta_load(zone, zone_chunk_index(zone, p[frees - 1])), FTM_META_CACHED);
}

/* Each bin owns its class's cap of slots, back to back in class order, and
 * a full bin of the largest class leaves its neighbour's slots alone. */
Test(tcache, bins_are_sized_by_class_cap)
{
	ftm_free(ftm_malloc(16));
	struct ftm_tcache *tc = ftm_tls_tcache;
	uint32_t total = 0;
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
		struct ftm_bin *bin = &tc->bins[cls];
		cr_assert_eq(bin->base, cls ? tc->bins[cls - 1].end : tc->slots, "class %u", cls);
		cr_assert_eq(bin->end - bin->base, ftm_classes[cls].tcache_cap, "class %u", cls);
		total += ftm_classes[cls].tcache_cap;
	}
	cr_assert_lt(total, FTM_CLASS_COUNT * FTM_TCACHE_MAX / 2, "under half of uniform bins");

	uint32_t last = FTM_CLASS_COUNT - 1;
	size_t size = ftm_classes[last].size, below = ftm_classes[last - 1].size;
	void *neighbour = ftm_malloc(below);
	ftm_free(neighbour);
	struct ftm_bin *nbin = &tc->bins[last - 1];
	struct ftm_slot saved = nbin->top[-1];
	cr_assert_eq(saved.chunk, neighbour);
	void *p[FTM_TCACHE_MAX + 1];
	uint32_t n = ftm_classes[last].tcache_cap + 1;
	for (uint32_t i = 0; i < n; i++)
		p[i] = ftm_malloc(size);
	for (uint32_t i = 0; i < n; i++)
		ftm_free(p[i]);
	struct ftm_bin *bin = &tc->bins[last];
	cr_assert_leq(bin_count(bin), ftm_classes[last].tcache_cap);
	cr_assert_eq(bin->top[-1].chunk, p[n - 1]);
	cr_assert_eq(nbin->top[-1].chunk, saved.chunk);
	cr_assert_eq(nbin->top[-1].meta, saved.meta);
}

/* In a new thread, a class's refills take 4, 8, then the class's batch. */
static void *count_refills(void *arg)
{
	uint32_t *sizes = arg;
	uint32_t cls = size_class(100);
	struct ftm_bin *bin;
	void *held[64];
	uint32_t n = 0;
	for (int r = 0; r < 4; r++) {
		held[n++] = ftm_malloc(100); /* the bin is empty: this refills */
		bin = &ftm_tls_tcache->bins[cls];
		sizes[r] = bin_count(bin) + 1;
		while (bin_count(bin))
			held[n++] = ftm_malloc(100);
	}
	for (uint32_t i = 0; i < n; i++)
		ftm_free(held[i]);
	return NULL;
}

Test(tcache, refills_start_small_and_double)
{
	const struct ftm_class *c = &ftm_classes[size_class(100)];
	cr_assert_geq(c->batch, 16, "the class's batch is past the slow start");
	uint32_t sizes[4];
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, count_refills, sizes), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(sizes[0], FTM_TCACHE_FIRST_BATCH);
	cr_assert_eq(sizes[1], 2 * FTM_TCACHE_FIRST_BATCH);
	cr_assert_eq(sizes[2], c->batch < 16 ? c->batch : 16);
	cr_assert_eq(sizes[3], c->batch);
}

struct handoff {
	void *chunks[200];
	int count;
};

static void *producer(void *arg)
{
	struct handoff *h = arg;
	for (int i = 0; i < h->count; i++)
		h->chunks[i] = ftm_malloc((size_t)(16 + i * 8));
	return NULL;
}

static void *consumer(void *arg)
{
	struct handoff *h = arg;
	for (int i = 0; i < h->count; i++)
		ftm_free(h->chunks[i]);
	return NULL;
}

Test(tcache, cross_thread_frees_go_home_at_exit)
{
	ftm_ensure_init();
	uint64_t before = chunks_out_total();
	struct handoff h = {.count = 200};
	pthread_t t;
	pthread_create(&t, NULL, producer, &h);
	pthread_join(t, NULL);
	for (int i = 0; i < h.count; i++) {
		struct ftm_zone *zone = pagemap_zone(h.chunks[i]);
		cr_assert_not_null(zone);
		cr_assert(meta_load(zone, zone_chunk_index(zone, h.chunks[i])) & FTM_META_LIVE);
	}
	pthread_create(&t, NULL, consumer, &h);
	pthread_join(t, NULL);
	cr_assert_eq(chunks_out_total(), before,
		     "both threads exited: every chunk they held is back in its zone");
}

static pthread_key_t late_key;
static void *late_chunk;
static uint32_t late_state;
static int late_dead;

static void late_free(void *arg)
{
	late_dead = ftm_tls_tcache == &ftm_tcache_dead;
	struct ftm_zone *zone = pagemap_zone(arg);
	ftm_free(arg);
	late_state = meta_load(zone, zone_chunk_index(zone, arg));
}

static void *late_thread(void *arg)
{
	(void)arg;
	late_chunk = ftm_malloc(64);
	/* created after the allocator's key, so its destructor runs after ours */
	pthread_setspecific(late_key, late_chunk);
	return NULL;
}

Test(tcache, free_after_thread_cache_teardown)
{
	ftm_ensure_init();
	pthread_key_create(&late_key, late_free);
	pthread_t t;
	pthread_create(&t, NULL, late_thread, NULL);
	pthread_join(t, NULL);
	cr_assert_eq(late_dead, 1, "the cache was already torn down");
	cr_assert_leq(late_state, FTM_META_FREE_MAX, "the late free went straight to the zone");
}
