/*
 * Stress test: threads whose heaps move from one size class to another
 * every round, so that zones empty, go idle, are taken over by other
 * classes (zone recycling) or given back, while other threads are still
 * freeing into them.
 *
 * Workload: THREADS threads in a ring run ROUNDS rounds in lockstep (a
 * barrier between rounds). In round r, thread t allocates BLOCKS blocks of
 * one size, picked among eight classes whose zones are all 64 KiB (so an
 * emptied zone of one is a candidate for the next), and fills each with a
 * pattern of its own. It keeps the even blocks and hands the odd ones (and
 * the array that lists them) to its successor, then frees its even blocks,
 * and verifies and frees the batch its predecessor handed it. Next round,
 * every thread is on another class, and the zones of the last one are idle.
 *
 * Asserts: every block handed on was received and verified (counts and
 * checksums of producers and consumers match), no byte of a live block
 * changed, and a second run of the whole workload ends with exactly as many
 * bytes in use as the first (mallinfo2): no chunk is lost or kept twice
 * when zones change hands. Worker threads never call Criterion asserts; the
 * main thread checks their counters after joining them.
 */
#include <criterion/criterion.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

#define THREADS 4
#define ROUNDS 24
#define BLOCKS 2000

/* one size in each of eight classes with 64 KiB zones */
static const size_t phase_sizes[] = {40, 90, 150, 220, 300, 420, 500, 640};
#define PHASES (sizeof(phase_sizes) / sizeof(phase_sizes[0]))

struct batch {
    unsigned char **blocks; /* malloc'd by the producer, freed by the consumer */
    size_t count, size;
    uint64_t seed;          /* block i carries seed + i */
};

struct mailbox {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct batch batch;
    int full;
};

struct worker {
    unsigned index;
    uint64_t sent_sum, received_sum; /* checksums of handed-on blocks */
    size_t sent, received, corrupt, failed;
};

static struct mailbox boxes[THREADS];
static struct worker workers[THREADS];
static pthread_barrier_t round_end;

static uint64_t block_sum(const unsigned char *p, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = sum * 31 + p[i];
    return sum;
}

static void post(struct mailbox *box, struct batch b)
{
    pthread_mutex_lock(&box->lock);
    while (box->full)
        pthread_cond_wait(&box->changed, &box->lock);
    box->batch = b;
    box->full = 1;
    pthread_cond_broadcast(&box->changed);
    pthread_mutex_unlock(&box->lock);
}

static struct batch collect(struct mailbox *box)
{
    pthread_mutex_lock(&box->lock);
    while (!box->full)
        pthread_cond_wait(&box->changed, &box->lock);
    struct batch b = box->batch;
    box->full = 0;
    pthread_cond_broadcast(&box->changed);
    pthread_mutex_unlock(&box->lock);
    return b;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned char **mine = malloc(BLOCKS * sizeof(*mine));
    if (!mine) {
        w->failed++;
        return NULL;
    }
    for (unsigned r = 0; r < ROUNDS; r++) {
        size_t size = phase_sizes[(r + w->index) % PHASES];
        uint64_t seed = ((uint64_t)w->index << 40) ^ ((uint64_t)r << 20);
        struct batch out = {malloc(BLOCKS / 2 * sizeof(unsigned char *)), 0, size, seed};
        for (size_t i = 0; i < BLOCKS; i++) {
            mine[i] = malloc(size);
            if (!mine[i] || !out.blocks) {
                w->failed++;
                continue;
            }
            pattern_fill(mine[i], seed + i, size);
        }
        for (size_t i = 1; i < BLOCKS && out.blocks; i += 2) {
            if (!mine[i])
                continue;
            out.blocks[out.count++] = mine[i];
            w->sent_sum += block_sum(mine[i], size);
            mine[i] = NULL;
        }
        w->sent += out.count;
        post(&boxes[(w->index + 1) % THREADS], out);
        for (size_t i = 0; i < BLOCKS; i++) {
            if (!mine[i])
                continue;
            if (!pattern_intact(mine[i], seed + i, size))
                w->corrupt++;
            free(mine[i]);
        }
        struct batch in = collect(&boxes[w->index]);
        for (size_t k = 0; k < in.count; k++) {
            /* the producer handed on block 2k + 1 */
            if (!pattern_intact(in.blocks[k], in.seed + 2 * k + 1, in.size))
                w->corrupt++;
            w->received_sum += block_sum(in.blocks[k], in.size);
            free(in.blocks[k]);
        }
        w->received += in.count;
        free(in.blocks);
        pthread_barrier_wait(&round_end);
    }
    free(mine);
    return NULL;
}

/* One run of the workload; returns the bytes in use once it is over. */
static size_t run_once(void)
{
    pthread_t th[THREADS];
    cr_assert_eq(pthread_barrier_init(&round_end, NULL, THREADS), 0);
    /* every mailbox is ready before any thread can post to it */
    for (unsigned t = 0; t < THREADS; t++) {
        pthread_mutex_init(&boxes[t].lock, NULL);
        pthread_cond_init(&boxes[t].changed, NULL);
        boxes[t].full = 0;
        workers[t] = (struct worker){.index = t};
    }
    for (unsigned t = 0; t < THREADS; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, worker_main, &workers[t]), 0);
    for (unsigned t = 0; t < THREADS; t++)
        cr_assert_eq(pthread_join(th[t], NULL), 0);
    pthread_barrier_destroy(&round_end);
    for (unsigned t = 0; t < THREADS; t++) {
        const struct worker *w = &workers[t], *prev = &workers[(t + THREADS - 1) % THREADS];
        cr_assert_eq(w->failed, 0, "thread %u: %zu allocations failed", t, w->failed);
        cr_assert_eq(w->corrupt, 0, "thread %u: %zu blocks changed while live", t, w->corrupt);
        cr_assert_eq(w->sent, (size_t)ROUNDS * BLOCKS / 2, "thread %u handed on %zu blocks", t, w->sent);
        cr_assert_eq(w->received, prev->sent, "thread %u received %zu of %zu", t, w->received, prev->sent);
        cr_assert_eq(w->received_sum, prev->sent_sum, "thread %u: checksums of handed blocks differ", t);
    }
    malloc_trim(0);
    return mallinfo2().uordblks;
}

Test(phase_shift, zones_change_hands_without_losing_a_block, .timeout = 240)
{
    size_t first = run_once();
    size_t second = run_once();
    cr_assert_eq(second, first, "bytes in use after a second run: %zu, after the first: %zu", second,
                 first);
}
