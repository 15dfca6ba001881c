/*
 * Binding threads to arenas (src/arena/arena.c): a new thread takes the
 * arena with the fewest threads bound, the lowest index on a tie; a thread
 * that exits gives its place back; a real thread's cache is bound on its
 * first malloc and unbound when the thread ends; the child of a fork keeps
 * only its own binding.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ft_malloc.h"
#include "ftm/internal.h"

/* The library is initialized (its constructor ran), so the arenas exist;
 * the counts are set here to what each test needs. */
static void counts(uint32_t a0, uint32_t a1, uint32_t a2)
{
	cr_assert_geq(ftm_arena_count, 1);
	arena_init_all(3);
	ftm_arena_threads[0] = a0;
	ftm_arena_threads[1] = a1;
	ftm_arena_threads[2] = a2;
}

Test(arena, bind_takes_the_least_busy_lowest_first)
{
	counts(0, 0, 0);
	cr_assert_eq(arena_bind(), &ftm_arenas[0]);
	cr_assert_eq(arena_bind(), &ftm_arenas[1]);
	cr_assert_eq(arena_bind(), &ftm_arenas[2]);
	cr_assert_eq(arena_bind(), &ftm_arenas[0], "all tied at one: the lowest index");
	cr_assert_eq(ftm_arena_threads[0], 2);
	arena_unbind(&ftm_arenas[1]);
	cr_assert_eq(ftm_arena_threads[1], 0);
	cr_assert_eq(arena_bind(), &ftm_arenas[1], "the place given back is taken again");
}

Test(arena, threads_one_after_the_other_reuse_one_arena)
{
	counts(1, 0, 0); /* the main thread */
	for (int i = 0; i < 5; i++) {
		struct ftm_arena *a = arena_bind();
		cr_assert_eq(a, &ftm_arenas[1], "worker %d", i);
		arena_unbind(a);
	}
	cr_assert_eq(ftm_arena_threads[1], 0);
}

Test(arena, fork_child_keeps_only_its_own_binding)
{
	counts(4, 3, 5);
	arena_reinit_after_fork(&ftm_arenas[2]);
	cr_assert_eq(ftm_arena_threads[0], 0);
	cr_assert_eq(ftm_arena_threads[1], 0);
	cr_assert_eq(ftm_arena_threads[2], 1);
	cr_assert_eq(ftm_arenas[2].lock.state, 0);
	arena_reinit_after_fork(NULL);
	cr_assert_eq(ftm_arena_threads[2], 0);
}

static void *malloc_once(void *arg)
{
	void *p = ftm_malloc(64);
	*(struct ftm_arena **)arg = ftm_tls_tcache->arena;
	ftm_free(p);
	return NULL;
}

/* A real thread: bound at its first malloc, unbound by its exit. */
Test(arena, thread_is_bound_until_it_exits)
{
	ftm_free(ftm_malloc(64)); /* this thread's cache, bound first */
	struct ftm_arena *mine = ftm_tls_tcache->arena;
	uint32_t before[FTM_MAX_ARENAS];
	for (uint32_t i = 0; i < ftm_arena_count; i++)
		before[i] = ftm_arena_threads[i];
	struct ftm_arena *theirs = NULL;
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, malloc_once, &theirs), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_not_null(theirs);
	if (ftm_arena_count > 1)
		cr_assert_neq(theirs, mine, "the other thread went to a less busy arena");
	for (uint32_t i = 0; i < ftm_arena_count; i++)
		cr_assert_eq(ftm_arena_threads[i], before[i], "arena %u: the exit gave its place back", i);
}

/* Starting up touches no arena: a process faults in the pages of the
 * arenas its threads use, not those of all 2 x CPUs of them. Past the
 * first two (whose pages this test's own allocations may share), no page
 * of the array is resident. */
Test(arena, start_up_leaves_unused_arenas_untouched)
{
	ftm_free(ftm_malloc(64));
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t from = ((uintptr_t)&ftm_arenas[2] + page - 1) & ~(page - 1);
	uintptr_t to = (uintptr_t)&ftm_arenas[FTM_MAX_ARENAS] & ~(page - 1);
	cr_assert_gt(to, from);
	static unsigned char vec[FTM_MAX_ARENAS * sizeof(struct ftm_arena) / 4096 + 1];
	cr_assert_eq(mincore((void *)from, to - from, vec), 0);
	for (uintptr_t i = 0; i < (to - from) / page; i++)
		cr_assert_eq(vec[i] & 1, 0, "page %lu of the unused arenas is resident", (unsigned long)i);
}

/* fork and show_alloc_mem lock the arenas a thread was handed, not every
 * arena (unlocking them in a fork child would copy each one's page); the
 * set cannot change while they are held. */
Test(arena, lock_all_takes_the_open_arenas_only)
{
	arena_init_all(8);
	for (uint32_t i = 0; i < 8; i++)
		ftm_arena_threads[i] = 0;
	struct ftm_arena *first = arena_bind();
	ftm_arena_threads[1] = ftm_arena_threads[2] = 5;
	struct ftm_arena *second = arena_bind();
	cr_assert_eq(first, &ftm_arenas[0]);
	cr_assert_eq(second, &ftm_arenas[3]);
	arena_lock_all();
	for (uint32_t i = 0; i < 8; i++)
		cr_assert_eq(ftm_arenas[i].lock.state != 0, i == 0 || i == 3, "arena %u", i);
	cr_assert_not(arena_trylock_all(), "held: a second taker fails");
	arena_unlock_all();
	for (uint32_t i = 0; i < 8; i++)
		cr_assert_eq(ftm_arenas[i].lock.state, 0, "arena %u", i);
	cr_assert(arena_trylock_all());
	cr_assert_neq(ftm_arenas[3].lock.state, 0);
	cr_assert_eq(ftm_arenas[4].lock.state, 0);
	arena_unlock_all();
	arena_reinit_after_fork(second);
	cr_assert_eq(ftm_arena_threads[3], 1);
	cr_assert_eq(ftm_arena_threads[0], 0);
}
