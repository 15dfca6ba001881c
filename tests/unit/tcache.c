/*
 * Thread caches: a bin fills on free and drains on malloc, an overflowing
 * bin gives back its older half (all of it while the thread only frees the
 * class) or grows when it ran dry since its last overflow, a dry bin takes
 * one batch (a whole bin while the thread only allocates the class),
 * chunks freed by another thread go home to the arena that owns their zone
 * when the caches are flushed, and a free after the thread's cache was torn
 * down still reaches the arena.
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

/* 256-byte chunks: 32 are the 8 KiB bound, so the bin never grows. */
Test(tcache, overflow_flushes_older_half)
{
	uint32_t cls = size_class(256);
	const struct ftm_class *c = &ftm_classes[cls];
	cr_assert_eq(c->tcache_grown, c->tcache_cap);
	void *p[256];
	uint32_t n = c->tcache_cap + c->batch + 1;
	for (uint32_t i = 0; i < n; i++)
		p[i] = ftm_malloc(256);
	struct ftm_bin *bin = &ftm_tls_tcache->bins[cls];
	uint32_t start = bin_count(bin);
	uint32_t frees = c->tcache_cap - start + 1; /* the last one overflows */
	for (uint32_t i = 0; i < frees; i++)
		ftm_free(p[i]);
	cr_assert_eq(bin->end - bin->base, c->tcache_cap);
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

/* In a new thread, a class's refills take 4, 8, then the class's batch
 * and, while the thread has freed nothing of the class, a whole bin; a free
 * brings the next refill back to the batch. */
static void *count_refills(void *arg)
{
	uint32_t *sizes = arg;
	uint32_t cls = size_class(100);
	struct ftm_bin *bin;
	void *held[128];
	uint32_t n = 0;
	for (int r = 0; r < 5; r++) {
		if (r == 4)
			ftm_free(ftm_malloc(2000)); /* another class: no effect */
		held[n++] = ftm_malloc(100); /* the bin is empty: this refills */
		bin = &ftm_tls_tcache->bins[cls];
		sizes[r] = bin_count(bin) + 1;
		while (bin_count(bin))
			held[n++] = ftm_malloc(100);
	}
	ftm_free(held[--n]);
	held[n++] = ftm_malloc(100); /* from the bin: the free stays counted */
	held[n++] = ftm_malloc(100); /* empty again: refills */
	sizes[5] = bin_count(bin) + 1;
	for (uint32_t i = 0; i < n; i++)
		ftm_free(held[i]);
	return NULL;
}

Test(tcache, refills_start_small_and_double)
{
	const struct ftm_class *c = &ftm_classes[size_class(100)];
	cr_assert_eq(c->batch, 16);
	cr_assert_eq(c->tcache_cap, 32);
	uint32_t sizes[6];
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, count_refills, sizes), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(sizes[0], FTM_TCACHE_FIRST_BATCH);
	cr_assert_eq(sizes[1], 2 * FTM_TCACHE_FIRST_BATCH);
	cr_assert_eq(sizes[2], 16);
	cr_assert_eq(sizes[3], 32, "only mallocs since the last refill: a whole bin");
	cr_assert_eq(sizes[4], 32);
	cr_assert_eq(sizes[5], 16, "a free since: the class's batch");
}

/* A thread that only frees a class (a consumer) gives back whole bins; one
 * that also allocated it since the last flush gives back the older half. */
struct frees_only {
	void *chunks[200];
	uint32_t after[3]; /* the bin's count after each overflowing free */
	uint32_t freed;    /* chunks[0, freed) were freed */
};

static void *free_in_phases(void *arg)
{
	struct frees_only *f = arg;
	uint32_t cls = size_class(48);
	uint32_t cap = ftm_classes[cls].tcache_cap;
	struct ftm_bin *bin = NULL;
	uint32_t at = 0;
	/* frees only: the first overflow flushes the whole bin */
	for (uint32_t i = 0; i <= cap; i++) {
		ftm_free(f->chunks[at++]);
		bin = &ftm_tls_tcache->bins[cls];
	}
	f->after[0] = bin_count(bin);
	/* a malloc since that flush: the next overflow keeps half */
	void *mine = ftm_malloc(48);
	while (bin_count(bin) < cap)
		ftm_free(f->chunks[at++]);
	ftm_free(f->chunks[at++]);
	f->after[1] = bin_count(bin);
	/* frees only again: the whole bin */
	while (bin_count(bin) < cap)
		ftm_free(f->chunks[at++]);
	ftm_free(f->chunks[at++]);
	f->after[2] = bin_count(bin);
	ftm_free(mine);
	f->freed = at;
	return NULL;
}

Test(tcache, a_thread_that_only_frees_gives_back_whole_bins)
{
	uint32_t cls = size_class(48);
	uint32_t cap = ftm_classes[cls].tcache_cap;
	cr_assert_eq(cap, 32);
	struct frees_only f;
	for (uint32_t i = 0; i < 200; i++)
		f.chunks[i] = ftm_malloc(48);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, free_in_phases, &f), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(f.after[0], 1, "the overflowing free lands in an emptied bin");
	cr_assert_eq(f.after[1], cap / 2 + 1);
	cr_assert_eq(f.after[2], 1);
	cr_assert_eq(f.freed, (cap + 1) + (cap + 1) + (cap / 2 - 1 + 1));
	for (uint32_t i = 0; i < 200; i++) {
		struct ftm_zone *zone = pagemap_zone(f.chunks[i]);
		uint16_t state = meta_load(zone, zone_chunk_index(zone, f.chunks[i]));
		if (i < f.freed)
			cr_assert(!(state & FTM_META_LIVE), "chunk %u was freed", i);
		else
			ftm_free(f.chunks[i]);
	}
}

/* A thread that swings: a burst of mallocs that runs its bin dry, then
 * frees up to the bin's first overflow, round after round. The bin grows by
 * its first cap at each such overflow instead of flushing, to the class's
 * grown cap, moving past every bin's first stretch; a last burst of frees
 * only, long enough to empty the bin whole, shrinks it back. */
struct swings {
	uint32_t cap[5]; /* the bin's cap after each round */
	uint32_t count;  /* chunks in it right after the first growth */
	bool moved;      /* it then lay past the first stretches */
};

static void *swing(void *arg)
{
	struct swings *s = arg;
	uint32_t cls = size_class(48);
	void *held[1500];
	uint32_t n = 0;
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 140; i++)
			held[n++] = ftm_malloc(48);
		struct ftm_tcache *tc = ftm_tls_tcache;
		struct ftm_bin *bin = &tc->bins[cls];
		while (bin_count(bin))
			held[n++] = ftm_malloc(48);
		if (round == 4) {
			while (n)
				ftm_free(held[--n]);
		} else {
			bool full;
			do {
				full = bin->top == bin->end;
				ftm_free(held[--n]);
			} while (!full);
		}
		s->cap[round] = (uint32_t)(bin->end - bin->base);
		if (round == 0) {
			s->count = bin_count(bin);
			s->moved = bin->base >= tc->bins[FTM_CLASS_COUNT - 1].end;
		}
	}
	return NULL;
}

Test(tcache, a_swinging_bin_grows_instead_of_flushing)
{
	const struct ftm_class *c = &ftm_classes[size_class(48)];
	cr_assert_eq(c->tcache_cap, 32);
	cr_assert_eq(c->tcache_grown, FTM_TCACHE_GROWN);
	struct swings s = {0};
	uint64_t out = chunks_out_total();
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, swing, &s), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(chunks_out_total(), out, "every chunk went home at the thread's exit, moved ones too");
	cr_assert_eq(s.count, 33, "the overflowing free joined the 32, none flushed");
	cr_assert(s.moved);
	cr_assert_eq(s.cap[0], 64);
	cr_assert_eq(s.cap[1], 96);
	cr_assert_eq(s.cap[2], 128);
	cr_assert_eq(s.cap[3], 128, "no further than the grown cap");
	cr_assert_eq(s.cap[4], 32, "frees only: emptied and shrunk back");
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
