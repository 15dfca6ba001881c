/*
 * Stress test: random size mix across all size classes, many threads.
 *
 * Workload model: 64 (and, in a second test, 128) threads start together
 * behind a barrier. Each thread owns a live set of SLOTS pointers and runs a
 * seeded pseudo-random program of malloc / calloc / realloc / free on it,
 * with request sizes drawn from TINY (1-512 bytes, most requests), SMALL
 * (513-32768 bytes) and, rarely, LARGE (32769 bytes to ~300 KiB). Every
 * block is filled with a pattern derived from (thread, slot, generation) and
 * the whole block is verified before each free or realloc, so any overlap
 * between two live blocks, any byte the allocator scribbles on, or any block
 * handed out twice shows up as corrupted bytes. Some steps run an explicit
 * realloc chain on one slot (TINY -> SMALL -> LARGE -> SMALL -> TINY and
 * random variants) that crosses class boundaries in both directions and
 * checks that the common prefix survives each move. calloc'd blocks must be
 * all zeros. Every returned pointer must be 16-byte aligned and have
 * malloc_usable_size(p) >= the size asked for.
 *
 * Why: this is the general-purpose "many threads, unpredictable sizes"
 * pressure that exercises arenas, thread caches, zone refill and LARGE
 * mappings at once. The program each thread runs depends only on its seed
 * (never on the allocator), so a dry run of the same program, without any
 * allocation, gives the exact number of each kind of operation; the real run
 * must report the same counts (no thread stops early, no step is skipped).
 * Threads never call Criterion asserts: they record counters and the first
 * error message, and the main thread asserts after joining them.
 */
#include <criterion/criterion.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

#define SLOTS 256
#define LARGE_MAX (300 * 1024)

enum { OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_FREE, OP_CHAIN_STEP, OP_KINDS };

static const char *const op_names[OP_KINDS] = {
    "malloc", "calloc", "realloc", "free", "chain realloc step"};

struct worker {
    pthread_t thread;
    pthread_barrier_t *start;
    unsigned id;
    unsigned steps; /* program length */
    int dry;        /* count the program's operations, allocate nothing */
    uint64_t rng;
    /* results */
    unsigned long ops[OP_KINDS];
    unsigned long corrupted_bytes;
    unsigned long misaligned;
    unsigned long short_usable;
    unsigned long null_returns;
    unsigned long calloc_dirty;
    char first_error[160];
};

struct slot {
    unsigned char *p;
    size_t size;
    uint64_t seed;
    unsigned gen;
};

static uint64_t mix3(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t x = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL) * 0xC2B2AE3D27D4EB4FULL
                 ^ (c + 1) * 0x165667B19E3779F9ULL;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 29;
    return x | 1;
}

static void note_error(struct worker *w, const char *what, const void *p, size_t size)
{
    if (w->first_error[0] == '\0')
        snprintf(w->first_error, sizeof(w->first_error), "thread %u: %s (ptr %p, size %zu)",
                 w->id, what, p, size);
}

/* 66% TINY, 32% SMALL, 2% LARGE up to LARGE_MAX. */
static size_t pick_size(uint64_t *rng)
{
    return pick_class_size(rng, 66, 98, LARGE_MAX);
}

static void check_new_block(struct worker *w, void *p, size_t size)
{
    if (p == NULL) {
        w->null_returns++;
        note_error(w, "allocator returned NULL", p, size);
        return;
    }
    if ((uintptr_t)p % 16 != 0) {
        w->misaligned++;
        note_error(w, "pointer not 16-byte aligned", p, size);
    }
    if (malloc_usable_size(p) < size) {
        w->short_usable++;
        note_error(w, "malloc_usable_size smaller than the request", p, size);
    }
}

static void verify_slot(struct worker *w, struct slot *s, size_t n)
{
    size_t bad = pattern_count_bad(s->p, s->seed, n);
    if (bad) {
        w->corrupted_bytes += bad;
        note_error(w, "block content corrupted", s->p, s->size);
    }
}

/* Allocates a fresh block for an empty slot (malloc or calloc). */
static void slot_new(struct worker *w, struct slot *s, unsigned slot_idx, size_t size, int use_calloc)
{
    s->gen++;
    s->seed = mix3(w->id, slot_idx, s->gen);
    s->size = size;
    w->ops[use_calloc ? OP_CALLOC : OP_MALLOC]++;
    if (w->dry) {
        s->p = (unsigned char *)1;
        return;
    }
    if (use_calloc) {
        /* count x elem == size, split to exercise the multiplication */
        size_t elem = (size % 8 == 0) ? 8 : 1;
        s->p = calloc(size / elem, elem);
    } else {
        s->p = malloc(size);
    }
    check_new_block(w, s->p, size);
    if (s->p == NULL)
        return;
    if (use_calloc) {
        for (size_t i = 0; i < size; i++) {
            if (s->p[i] != 0) {
                w->calloc_dirty++;
                note_error(w, "calloc block not zeroed", s->p, size);
                break;
            }
        }
    }
    pattern_fill(s->p, s->seed, size);
}

static void slot_free(struct worker *w, struct slot *s)
{
    w->ops[OP_FREE]++;
    if (!w->dry) {
        verify_slot(w, s, s->size);
        free(s->p);
    }
    s->p = NULL;
    s->size = 0;
}

/* Moves an occupied slot to new_size; the prefix must survive. */
static void slot_realloc(struct worker *w, struct slot *s, size_t new_size, int op)
{
    w->ops[op]++;
    if (w->dry) {
        s->size = new_size;
        return;
    }
    verify_slot(w, s, s->size);
    unsigned char *q = realloc(s->p, new_size);
    check_new_block(w, q, new_size);
    if (q == NULL) {
        /* the old block is still ours: free it so the slot stays consistent */
        free(s->p);
        s->p = NULL;
        s->size = 0;
        return;
    }
    s->p = q;
    size_t keep = s->size < new_size ? s->size : new_size;
    verify_slot(w, s, keep);
    if (new_size > keep)
        pattern_fill_range(s->p, s->seed, keep, new_size);
    s->size = new_size;
}

static const size_t chain_fixed[] = {
    24, 500, 513, 4000, 32768, 32769, 200000, 40000, 32768, 600, 512, 16, 1, 300000, 7,
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct slot slots[SLOTS];
    memset(slots, 0, sizeof(slots));

    if (!w->dry)
        pthread_barrier_wait(w->start);
    for (unsigned step = 0; step < w->steps; step++) {
        unsigned idx = (unsigned)(rng_next(&w->rng) % SLOTS);
        struct slot *s = &slots[idx];
        unsigned r = (unsigned)(rng_next(&w->rng) % 100);
        if (s->p == NULL) {
            size_t size = pick_size(&w->rng);
            slot_new(w, s, idx, size, r < 20);
        } else if (r < 45) {
            slot_free(w, s);
        } else if (r < 97) {
            slot_realloc(w, s, pick_size(&w->rng), OP_REALLOC);
        } else {
            /* A realloc chain across class boundaries on this slot. */
            int fixed = r == 99;
            unsigned len = fixed ? (unsigned)(sizeof(chain_fixed) / sizeof(chain_fixed[0]))
                                 : (unsigned)rng_range(&w->rng, 3, 10);
            for (unsigned k = 0; k < len && s->p != NULL; k++) {
                size_t sz = fixed ? chain_fixed[k] : pick_size(&w->rng);
                slot_realloc(w, s, sz, OP_CHAIN_STEP);
            }
        }
    }
    for (unsigned i = 0; i < SLOTS; i++)
        if (slots[i].p != NULL)
            slot_free(w, &slots[i]);
    return NULL;
}

static void run_workload(unsigned nthreads, unsigned steps, uint64_t base_seed)
{
    struct worker *ws = calloc(nthreads, sizeof(*ws));
    struct worker *plan = calloc(nthreads, sizeof(*plan));
    cr_assert_not_null(ws);
    cr_assert_not_null(plan);
    pthread_barrier_t start;
    cr_assert_eq(pthread_barrier_init(&start, NULL, nthreads), 0);

    for (unsigned i = 0; i < nthreads; i++) {
        uint64_t seed = mix3(base_seed, i, 0x5eed);
        ws[i] = (struct worker){.start = &start, .id = i, .steps = steps, .rng = seed};
        plan[i] = (struct worker){.id = i, .steps = steps, .dry = 1, .rng = seed};
        worker_main(&plan[i]); /* dry run: the planned operation counts */
    }
    for (unsigned i = 0; i < nthreads; i++)
        cr_assert_eq(pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]), 0,
                     "pthread_create failed for worker %u", i);
    for (unsigned i = 0; i < nthreads; i++)
        cr_assert_eq(pthread_join(ws[i].thread, NULL), 0);
    pthread_barrier_destroy(&start);

    unsigned long total_ops = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        struct worker *w = &ws[i];
        const char *err = w->first_error[0] ? w->first_error : "none";
        cr_assert_eq(w->null_returns, 0, "thread %u: %lu NULL returns; first error: %s", i,
                     w->null_returns, err);
        cr_assert_eq(w->corrupted_bytes, 0, "thread %u: %lu corrupted bytes; first error: %s", i,
                     w->corrupted_bytes, err);
        cr_assert_eq(w->calloc_dirty, 0, "thread %u: %lu calloc blocks not zeroed; first error: %s",
                     i, w->calloc_dirty, err);
        cr_assert_eq(w->misaligned, 0, "thread %u: %lu misaligned pointers; first error: %s", i,
                     w->misaligned, err);
        cr_assert_eq(w->short_usable, 0,
                     "thread %u: %lu blocks with malloc_usable_size < request; first error: %s", i,
                     w->short_usable, err);
        for (int k = 0; k < OP_KINDS; k++) {
            cr_assert_eq(w->ops[k], plan[i].ops[k], "thread %u: %lu %s operations done, %lu planned",
                         i, w->ops[k], op_names[k], plan[i].ops[k]);
            total_ops += w->ops[k];
        }
        /* every block allocated was freed exactly once */
        cr_assert_eq(w->ops[OP_MALLOC] + w->ops[OP_CALLOC], w->ops[OP_FREE],
                     "thread %u: %lu blocks allocated but %lu freed", i,
                     w->ops[OP_MALLOC] + w->ops[OP_CALLOC], w->ops[OP_FREE]);
        cr_assert_gt(w->ops[OP_CHAIN_STEP], 0, "thread %u never ran a realloc chain", i);
    }
    cr_assert_geq(total_ops, (unsigned long)nthreads * steps,
                  "only %lu operations for %u threads x %u steps", total_ops, nthreads, steps);
    free(ws);
    free(plan);
}

Test(random_sizes, threads_64, .timeout = 120)
{
    run_workload(64, 4000, 0x64);
}

Test(random_sizes, threads_128, .timeout = 120)
{
    run_workload(128, 2000, 0x128);
}
