/*
 * The allocator's mutex (src/core/lock.c): the state word goes 0 -> 1 -> 0
 * when nobody waits; a held lock refuses lock_try; a thread that finds it
 * held ends up asleep with the state at 2 and is woken by the release; and
 * eight threads incrementing a plain counter under it lose no increment.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "ftm/internal.h"

Test(lock, uncontended_states)
{
	struct ftm_lock lock = {0};
	lock_take(&lock);
	cr_assert_eq(lock.state, 1);
	cr_assert_not(lock_try(&lock), "a held lock is not taken again");
	lock_give(&lock);
	cr_assert_eq(lock.state, 0);
	cr_assert(lock_try(&lock));
	lock_give(&lock);
	cr_assert_eq(lock.state, 0);
}

static struct ftm_lock shared;
static uint64_t counter;

static void *take_once(void *arg)
{
	(void)arg;
	lock_take(&shared);
	counter++;
	lock_give(&shared);
	return NULL;
}

Test(lock, waiter_sleeps_and_is_woken)
{
	shared = (struct ftm_lock){0};
	counter = 0;
	lock_take(&shared);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, take_once, NULL), 0);
	/* the waiter marks the lock as slept on before it sleeps */
	while (__atomic_load_n(&shared.state, __ATOMIC_ACQUIRE) != 2)
		sched_yield();
	cr_assert_eq(counter, 0, "the waiter did not get in while the lock was held");
	lock_give(&shared);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(counter, 1);
	cr_assert_eq(shared.state, 0, "free again once the woken waiter gave it back");
}

#define THREADS 8
#define ROUNDS 200000

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		lock_take(&shared);
		counter++;
		lock_give(&shared);
	}
	return NULL;
}

Test(lock, no_increment_lost)
{
	shared = (struct ftm_lock){0};
	counter = 0;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, hammer, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);
	cr_assert_eq(counter, (uint64_t)THREADS * ROUNDS);
	cr_assert_eq(shared.state, 0);
}
