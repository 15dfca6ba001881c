/*
 * Process start-up and fork. The allocator initializes itself on the first
 * call that needs it (which may come before any constructor runs) and from
 * its own constructor, whichever is first. Nothing before `ftm_ready` is set
 * may allocate; what may (pthread_atfork) runs after it, so a recursive call
 * finds a working allocator instead of a half-built one.
 */
#include "ftm/internal.h"

volatile int ftm_ready;
uint64_t ftm_secret;
size_t ftm_page_size = 4096;

extern char **environ;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/* fork: every lock is taken in one fixed order (registry, the open arenas
 * by index, cache pool, call sites) so the child starts with consistent
 * structures; the child re-initializes the locks rather than unlocking what
 * its parent's threads held. */
static void fork_prepare(void)
{
	large_lock();
	arena_lock_all();
	tcache_lock_pool();
	callsite_lock();
}

static void fork_parent(void)
{
	callsite_unlock();
	tcache_unlock_pool();
	arena_unlock_all();
	large_unlock();
}

static void fork_child(void)
{
	callsite_reinit_lock();
	tcache_reinit_pool_lock();
	struct ftm_tcache *tc = ftm_tls_tcache;
	bool cached = tc != &ftm_tcache_boot && tc != &ftm_tcache_dead;
	arena_reinit_after_fork(cached ? tc->arena : NULL);
	large_reinit_lock();
}

/* Two arenas per CPU unless FT_MALLOC_ARENAS says otherwise. Threads go to
 * the least busy arena, so up to one thread per CPU each has an arena of
 * its own either way; the second arena per CPU only fills when there are
 * more threads than CPUs. Those threads then run on a CPU by turns, and two
 * of them sharing an arena's zones write the same cache lines (chunk
 * states, neighbouring chunks) from different CPUs. On 2 CPUs, 8 threads,
 * 7 interleaved runs, 2 -> 4 arenas: w_threads -19% wall time (peak RSS
 * +13%), w_thread_churn -17% (+15%), w_larson -6% (+29%), w_prodcons and
 * w_mixed unchanged (+24%, +6%); 8 arenas gained a little more on threads
 * and larson for +35-69% RSS. */
static uint32_t arena_count(void)
{
	long wanted = ftm_options[FTM_OPT_ARENAS];
	uint32_t n = wanted > 0 && wanted < FTM_MAX_ARENAS ? (uint32_t)wanted : 2 * os_cpu_count();
	if (wanted >= FTM_MAX_ARENAS)
		n = FTM_MAX_ARENAS;
	return n > FTM_MAX_ARENAS ? FTM_MAX_ARENAS : n;
}

void ftm_init_slow(void)
{
	pthread_mutex_lock(&init_lock);
	if (!ftm_ready) {
		ftm_page_size = os_page_size();
		ftm_secret = os_random();
		zone_init_key();
		options_load(environ);
		sizeclass_init();
		arena_init_all(arena_count());
		tcache_init_geometry();
		debug_init();
		__atomic_store_n(&ftm_ready, 1, __ATOMIC_RELEASE);
		pthread_atfork(fork_prepare, fork_parent, fork_child);
	}
	pthread_mutex_unlock(&init_lock);
}

__attribute__((constructor)) static void ftm_constructor(void)
{
	ftm_ensure_init();
}
