/*
 * Thread caches: per thread and per size class, a bounded stack of chunks
 * the thread freed or got in a batch from its arena. malloc and free touch
 * only this (no lock, no atomic read-modify-write); a bin that runs dry is
 * refilled with one batch from the thread's arena, a bin that overflows
 * gives its older half back to the owning arenas, or grows when it ran dry
 * since it last overflowed (struct ftm_bin_phase).
 *
 * The thread pointer is one initial-exec TLS word, so first access from a
 * dlopen'ed context neither allocates nor takes the loader's lock. It starts
 * at ftm_tcache_boot and ends at ftm_tcache_dead: both have cap 0 in every
 * bin, so the fast paths need no NULL test and fall to the slow path, which
 * tells the two apart.
 */
#include <string.h>

#include "ftm/internal.h"

struct ftm_tcache ftm_tcache_boot;
struct ftm_tcache ftm_tcache_dead;
__thread struct ftm_tcache *ftm_tls_tcache
    __attribute__((tls_model("initial-exec"))) = &ftm_tcache_boot;

#define POOL_MAX 64 /* caches of exited threads kept for the next ones */

static size_t tcache_bytes;    /* a cache, in whole pages */
/* Where a bin that grows moves its slots: past every bin's first stretch,
 * so that the pages of a thread whose bins never grow stay as few. */
static uint32_t grown_slots_at[FTM_CLASS_COUNT];
static pthread_key_t exit_key;                /* its destructor flushes the cache */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ftm_tcache *pool;
static uint32_t pool_count;
static struct ftm_tcache *live; /* caches of running threads */

static void tcache_thread_exit(void *arg);

void tcache_init_geometry(void)
{
	uint32_t slots = 0;
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++)
		slots += ftm_classes[cls].tcache_cap;
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++)
		if (ftm_classes[cls].tcache_grown > ftm_classes[cls].tcache_cap) {
			grown_slots_at[cls] = slots;
			slots += ftm_classes[cls].tcache_grown;
		}
	tcache_bytes = sizeof(struct ftm_tcache) + slots * sizeof(struct ftm_slot);
	tcache_bytes = (tcache_bytes + ftm_page_size - 1) & ~(ftm_page_size - 1);
	pthread_key_create(&exit_key, tcache_thread_exit);
}

/* Gives the calling thread a cache; NULL when none can be mapped, and the
 * thread then works straight on its arena until a later call succeeds. */
struct ftm_tcache *tcache_attach(void)
{
	pthread_mutex_lock(&pool_lock);
	struct ftm_tcache *tc = pool;
	if (tc) {
		pool = tc->pool_next;
		pool_count--;
	}
	pthread_mutex_unlock(&pool_lock);
	if (!tc && !(tc = os_map(tcache_bytes)))
		return NULL;
	tc->arena = arena_bind();
	struct ftm_slot *slots = tc->slots;
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
		const struct ftm_class *c = &ftm_classes[cls];
		tc->bins[cls] = (struct ftm_bin){
		    .top = slots,
		    .base = slots,
		    .end = slots + c->tcache_cap,
		    .live = FTM_META_LIVE + c->size,
		    .batch = c->batch < FTM_TCACHE_FIRST_BATCH ? c->batch : FTM_TCACHE_FIRST_BATCH,
		};
		tc->phase[cls] = (struct ftm_bin_phase){0};
		slots += c->tcache_cap;
	}
	pthread_mutex_lock(&pool_lock);
	tc->live_prev = NULL;
	tc->live_next = live;
	if (live)
		live->live_prev = tc;
	live = tc;
	pthread_mutex_unlock(&pool_lock);
	ftm_tls_tcache = tc;
	pthread_setspecific(exit_key, tc);
	return tc;
}

/* Fills an empty bin: a batch, or the whole bin while the thread freed
 * nothing of the class since the last refill (struct ftm_bin_phase); the
 * slow start caps either. */
uint32_t tcache_refill(struct ftm_tcache *tc, uint32_t cls)
{
	struct ftm_bin *bin = &tc->bins[cls];
	struct ftm_bin_phase *phase = &tc->phase[cls];
	const struct ftm_class *c = &ftm_classes[cls];
	uint32_t most = bin->frees == phase->frees_at_refill ? c->tcache_cap : c->batch;
	uint32_t want = bin->batch < most ? bin->batch : most;
	bin->batch = 2 * bin->batch < c->tcache_cap ? 2 * bin->batch : c->tcache_cap;
	phase->frees_at_refill = bin->frees;
	struct ftm_slot *in = bin->top;
	uint32_t got = arena_refill(tc->arena, cls, in, want);
	/* the arena hands chunks out in address order; reversed, the next
	 * mallocs walk up through memory instead of down */
	for (struct ftm_slot *lo = in, *hi = in + got; lo + 1 < hi; lo++) {
		struct ftm_slot swap = *lo;
		hi--;
		*lo = *hi;
		*hi = swap;
	}
	bin->top += got;
	bin->refilled += got;
	tc->refills++;
	return got;
}

/* Returns all but the `keep` most recently cached chunks of a bin. */
void tcache_flush(struct ftm_tcache *tc, uint32_t cls, uint32_t keep)
{
	struct ftm_bin *bin = &tc->bins[cls];
	uint32_t count = bin_count(bin);
	if (count <= keep)
		return;
	uint32_t out = count - keep;
	arena_return(cls, bin->base, out);
	memmove(bin->base, bin->base + out, keep * sizeof(*bin->base));
	bin->top = bin->base + keep;
	bin->flushed += out;
	tc->flushes++;
}

/* A full bin that swings between bursts of mallocs and frees takes its
 * first cap more slots, up to the class's grown cap; on its first growth it
 * moves to its stretch of the grown slots. */
static void bin_grow(struct ftm_tcache *tc, uint32_t cls)
{
	struct ftm_bin *bin = &tc->bins[cls];
	const struct ftm_class *c = &ftm_classes[cls];
	uint32_t cap = (uint32_t)(bin->end - bin->base);
	struct ftm_slot *grown = tc->slots + grown_slots_at[cls];
	if (bin->base != grown) {
		uint32_t count = bin_count(bin);
		memcpy(grown, bin->base, count * sizeof(*grown));
		bin->base = grown;
		bin->top = grown + count;
	}
	cap += c->tcache_cap;
	bin->end = bin->base + (cap < c->tcache_grown ? cap : c->tcache_grown);
}

/* Makes room in a full bin for a free: it grows while it ran dry since its
 * last overflow and can grow; else it gives back its older half, or all of
 * it while the thread allocated nothing of the class since the last flush
 * (struct ftm_bin_phase). A bin emptied so is back to its first cap: the
 * thread is tearing something down, and what it keeps cached when it stops
 * holds pages of as many zones that could go back to the OS (redis after
 * FLUSHALL SYNC and a trickle of SETs, bench/x_redis_frag.sh: 35.4 MB
 * resident with grown bins kept, 30.2-31.0 with them shrunk, 29.5 before
 * bins grew). */
void tcache_make_room(struct ftm_tcache *tc, uint32_t cls)
{
	struct ftm_bin *bin = &tc->bins[cls];
	struct ftm_bin_phase *phase = &tc->phase[cls];
	bool swung = bin->refilled != phase->refilled_at_room;
	phase->refilled_at_room = bin->refilled;
	if (swung && bin->end - bin->base < ftm_classes[cls].tcache_grown) {
		bin_grow(tc, cls);
		return;
	}
	uint64_t mallocs = bin_mallocs(bin);
	bool frees_only = mallocs == phase->mallocs_at_flush;
	tcache_flush(tc, cls, frees_only ? 0 : bin_count(bin) / 2);
	phase->mallocs_at_flush = mallocs;
	if (frees_only)
		bin->end = bin->base + ftm_classes[cls].tcache_cap;
}

void tcache_flush_all(struct ftm_tcache *tc)
{
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++)
		tcache_flush(tc, cls, 0);
}

/* Adds a cache's counters to its arena's (arena lock held). */
static void tcache_merge_stats(const struct ftm_tcache *tc, struct ftm_class_stats *by_class)
{
	for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
		by_class[cls].mallocs += bin_mallocs(&tc->bins[cls]);
		by_class[cls].frees += tc->bins[cls].frees;
		by_class[cls].misses += tc->bins[cls].misses;
	}
}

/* Adds every running thread's counters to by_class (a snapshot: the
 * threads keep counting while it is read). */
void tcache_sum_live_stats(struct ftm_class_stats *by_class)
{
	pthread_mutex_lock(&pool_lock);
	for (const struct ftm_tcache *tc = live; tc; tc = tc->live_next)
		for (uint32_t cls = 0; cls < FTM_CLASS_COUNT; cls++) {
			by_class[cls].mallocs += bin_mallocs(&tc->bins[cls]);
			by_class[cls].frees += __atomic_load_n(&tc->bins[cls].frees, __ATOMIC_RELAXED);
			by_class[cls].misses += __atomic_load_n(&tc->bins[cls].misses, __ATOMIC_RELAXED);
		}
	pthread_mutex_unlock(&pool_lock);
}

/* Thread exit: everything cached goes home; a free or malloc from a later
 * destructor then works directly on an arena (ftm_tcache_dead). */
static void tcache_thread_exit(void *arg)
{
	struct ftm_tcache *tc = arg;
	tcache_flush_all(tc);
	arena_lock(tc->arena);
	tcache_merge_stats(tc, tc->arena->by_class);
	arena_unlock(tc->arena);
	arena_unbind(tc->arena);
	ftm_tls_tcache = &ftm_tcache_dead;
	pthread_mutex_lock(&pool_lock);
	if (tc->live_prev)
		tc->live_prev->live_next = tc->live_next;
	else
		live = tc->live_next;
	if (tc->live_next)
		tc->live_next->live_prev = tc->live_prev;
	if (pool_count < POOL_MAX) {
		tc->pool_next = pool;
		pool = tc;
		pool_count++;
		tc = NULL;
	}
	pthread_mutex_unlock(&pool_lock);
	if (tc)
		os_unmap(tc, tcache_bytes);
}

void tcache_lock_pool(void)
{
	pthread_mutex_lock(&pool_lock);
}

void tcache_unlock_pool(void)
{
	pthread_mutex_unlock(&pool_lock);
}

void tcache_reinit_pool_lock(void)
{
	pthread_mutex_init(&pool_lock, NULL);
}
