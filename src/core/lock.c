/*
 * The allocator's mutex: the arenas' locks and the LARGE registry's.
 *
 * Uncontended, taking and giving it back is one atomic instruction each;
 * pthread_mutex_lock and unlock cost about 55 instructions together
 * (callgrind, glibc 2.36), a quarter of a LARGE realloc that grows in place
 * and a good part of every tcache refill and flush. Contended, a thread
 * first spins a little, since the holder, running on another CPU, is
 * usually done within a batch's time, then sleeps on a futex (state 2 says
 * someone may be asleep, so the holder wakes one on release).
 *
 * After fork the child sets every lock its parent took back to 0
 * (core/init.c).
 */
#include "ftm/internal.h"

#define SPINS 100

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

FTM_COLD void lock_wait(struct ftm_lock *lock)
{
	for (int i = 0; i < SPINS; i++) {
		if (__atomic_load_n(&lock->state, __ATOMIC_RELAXED) == 0 && lock_try(lock))
			return;
		cpu_relax();
	}
	while (__atomic_exchange_n(&lock->state, 2, __ATOMIC_ACQUIRE) != 0)
		os_futex_wait(&lock->state, 2);
}
