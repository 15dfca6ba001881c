/*
 * The allocator's mutex (src/core/lock.c): the state word goes 0 -> 1 -> 0
 * when nobody waits; a held lock refuses lock_try; a thread that finds it
 * held ends up asleep with the state at 2 and is woken by the release; and
 * eight threads incrementing a plain counter under it lose no increment.
 * A process with one thread takes it with plain stores, and stops doing so
 * for good once it has had a second thread.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* One thread: the lock is taken and given back with plain stores (see
 * lock_take_alone); a held lock still refuses, as it must for a signal
 * handler that interrupts its holder. Criterion's own threads make every
 * test process multithreaded, so this runs in a child of its own, from a
 * constructor, before anything could start a thread; its exit status names
 * the first check that failed. */
static int alone_checks(void)
{
	struct ftm_lock lock = {0};
	if (!__libc_single_threaded)
		return 1;
	if (!lock_take_alone(&lock) || lock.state != 1)
		return 2;
	if (lock_take_alone(&lock) || lock_try(&lock))
		return 3;
	lock_give(&lock);
	return lock.state == 0 ? 0 : 4;
}

__attribute__((constructor)) static void alone_child(void)
{
	if (getenv("FTM_TEST_LOCK_ALONE"))
		_exit(alone_checks());
}

Test(lock, one_thread_takes_without_atomics)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char *argv[] = {"unit_lock", NULL};
		char *envp[] = {"FTM_TEST_LOCK_ALONE=1", NULL};
		execve("/proc/self/exe", argv, envp);
		_exit(127);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "check %d failed (1: not single-threaded, "
		     "2: free lock not taken, 3: held lock taken, 4: not given back)",
		     WEXITSTATUS(status));
}

static void *nothing(void *arg)
{
	return arg;
}

/* Once a second thread has existed, every take is atomic again, for good. */
Test(lock, no_plain_take_after_a_thread)
{
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, nothing, NULL), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	struct ftm_lock lock = {0};
	cr_assert_not(lock_take_alone(&lock));
	cr_assert_eq(lock.state, 0, "refused without touching the lock");
	lock_take(&lock);
	cr_assert_eq(lock.state, 1);
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
