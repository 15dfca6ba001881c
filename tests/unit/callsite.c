/*
 * The call-site table of FT_MALLOC_CALLERS (src/debug/callsite.c): every
 * recorded block is found with its caller through several rebuilds,
 * forgotten blocks are gone, the per-caller walk sees exactly the live
 * records, and a program that records and forgets for a long time keeps a
 * table sized to its live blocks (the used slots stay bounded).
 */
#include <criterion/criterion.h>

#include "ftm/internal.h"

#define BLOCKS 20000

static const void *block(size_t i)
{
	return (const void *)(0x10000000ul + i * 16);
}

static const void *caller_of(size_t i)
{
	return (const void *)(0x400000ul + i % 7);
}

struct tally {
	size_t records, bytes;
	size_t per_caller[7];
};

static void count(uintptr_t caller, size_t size, void *ctx)
{
	struct tally *t = ctx;
	t->records++;
	t->bytes += size;
	t->per_caller[caller - 0x400000ul]++;
}

Test(callsite, records_survive_rebuilds_and_forgets)
{
	ftm_ensure_init();
	for (size_t i = 0; i < BLOCKS; i++)
		callsite_record(block(i), caller_of(i), i % 100);
	for (size_t i = 0; i < BLOCKS; i += 2)
		callsite_forget(block(i));
	for (size_t i = 0; i < BLOCKS; i++)
		cr_assert_eq(callsite_of(block(i)), i % 2 ? (uintptr_t)caller_of(i) : 0, "block %zu", i);
	struct tally t = {0};
	callsite_for_each(count, &t);
	cr_assert_eq(t.records, BLOCKS / 2);
	size_t bytes = 0, per_caller[7] = {0};
	for (size_t i = 1; i < BLOCKS; i += 2) {
		bytes += i % 100;
		per_caller[i % 7]++;
	}
	cr_assert_eq(t.bytes, bytes);
	for (size_t c = 0; c < 7; c++)
		cr_assert_eq(t.per_caller[c], per_caller[c], "caller %zu", c);
}

Test(callsite, long_churn_sweeps_tombstones)
{
	ftm_ensure_init();
	/* 100 live blocks at a time, a million records in all */
	for (size_t i = 0; i < 1000000; i++) {
		callsite_record(block(i), caller_of(i), 1);
		if (i >= 100)
			callsite_forget(block(i - 100));
	}
	cr_assert_leq(callsite_count(), 4096, "used slots: %zu for 100 live blocks", callsite_count());
	struct tally t = {0};
	callsite_for_each(count, &t);
	cr_assert_eq(t.records, 100);
}
