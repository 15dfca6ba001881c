/*
 * Stress test: memory freed by a thread other than the one that allocated it.
 *
 * Workload model 1 (producer/consumer): P producer threads allocate objects
 * of random sizes across TINY, SMALL and LARGE, fill them with a pattern
 * derived from (producer, sequence number) and push them through bounded
 * FIFO queues (mutex + two condition variables, one queue per consumer) to
 * C consumer threads. A consumer verifies every byte, reallocs about one
 * object in eight to another size (a cross-thread realloc, the prefix must
 * survive) and frees it: nearly every free in this test returns a chunk to
 * an arena or thread cache that is not the calling thread's own. Each
 * producer ends by pushing one end marker to every queue.
 * Asserts: objects produced == objects consumed, the sum of per-object
 * checksums computed by producers equals the one computed by consumers,
 * no corrupted byte, and per (producer, queue) sequence numbers arrive in
 * increasing order (the FIFO and the object identity are intact).
 *
 * Workload model 2 (ring): K threads in a ring; in each round every thread
 * allocates a batch of objects (the batch array itself is malloc'd too),
 * hands it to its successor's mailbox, then takes its predecessor's batch
 * from its own mailbox, verifies and frees every object and the array. So
 * each thread only ever frees what its predecessor allocated.
 * Asserts: every thread freed exactly rounds x batch objects, checksums of
 * what each thread produced equal those its successor consumed, no
 * corrupted byte.
 *
 * Why: remote frees are where multi-arena allocators lose chunks, corrupt
 * free lists or race on zone metadata; both models keep many such frees in
 * flight at once. Worker threads never call Criterion asserts: the main
 * thread checks their counters after joining them.
 */
#include <criterion/criterion.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

#define LARGE_MAX (256 * 1024)

/* ---- helpers ---- */

/* 60% TINY, 37% SMALL, 3% LARGE up to LARGE_MAX. */
static size_t pick_size(uint64_t *rng)
{
    return pick_class_size(rng, 60, 97, LARGE_MAX);
}

static uint64_t seed_of(uint64_t a, uint64_t b)
{
    uint64_t x = (a + 1) * 0x9E3779B97F4A7C15ULL ^ (b + 7) * 0xC2B2AE3D27D4EB4FULL;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 29;
    return x;
}

/* Checksum of an object's identity: both sides compute it independently. */
static uint64_t object_sum(uint64_t seed, size_t size)
{
    return seed_of(seed, size);
}

/* ---- bounded FIFO queue ---- */

struct item {
    unsigned char *p;
    size_t size;
    unsigned producer; /* UINT32_MAX marks the end of one producer's stream */
    unsigned long seq;
};

#define QCAP 64

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    struct item items[QCAP];
    unsigned head;
    unsigned count;
};

static void queue_init(struct queue *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->head = 0;
    q->count = 0;
}

static void queue_destroy(struct queue *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
}

static void queue_push(struct queue *q, struct item it)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == QCAP)
        pthread_cond_wait(&q->not_full, &q->lock);
    q->items[(q->head + q->count) % QCAP] = it;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

static struct item queue_pop(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->not_empty, &q->lock);
    struct item it = q->items[q->head];
    q->head = (q->head + 1) % QCAP;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return it;
}

/* ---- producer / consumer ---- */

#define END_MARK UINT32_MAX

struct pc_shared {
    struct queue *queues;
    unsigned nconsumers;
    unsigned nproducers;
    unsigned long per_producer;
};

struct producer {
    pthread_t thread;
    struct pc_shared *sh;
    unsigned id;
    unsigned long produced;
    uint64_t sum;
    unsigned long null_returns;
};

struct consumer {
    pthread_t thread;
    struct pc_shared *sh;
    unsigned id;
    unsigned long consumed;
    unsigned long reallocs;
    uint64_t sum;
    unsigned long corrupted_bytes;
    unsigned long misaligned;
    unsigned long short_usable;
    unsigned long null_returns;
    unsigned long out_of_order;
    unsigned long bad_producer;
    unsigned ends_seen;
    char first_error[160];
};

static void consumer_error(struct consumer *c, const char *what, const struct item *it)
{
    if (c->first_error[0] == '\0')
        snprintf(c->first_error, sizeof(c->first_error),
                 "consumer %u: %s (producer %u, seq %lu, ptr %p, size %zu)", c->id, what,
                 it->producer, it->seq, (void *)it->p, it->size);
}

static void *producer_main(void *arg)
{
    struct producer *pr = arg;
    struct pc_shared *sh = pr->sh;
    uint64_t rng = seed_of(0xfeed, pr->id);

    for (unsigned long seq = 0; seq < sh->per_producer; seq++) {
        size_t size = pick_size(&rng);
        unsigned target = (unsigned)(rng_next(&rng) % sh->nconsumers);
        unsigned char *p = malloc(size);
        if (p == NULL) {
            pr->null_returns++;
            continue;
        }
        uint64_t seed = seed_of(pr->id, seq);
        pattern_fill(p, seed, size);
        pr->sum += object_sum(seed, size);
        pr->produced++;
        queue_push(&sh->queues[target], (struct item){p, size, pr->id, seq});
    }
    for (unsigned c = 0; c < sh->nconsumers; c++)
        queue_push(&sh->queues[c], (struct item){NULL, 0, END_MARK, 0});
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct consumer *c = arg;
    struct pc_shared *sh = c->sh;
    uint64_t rng = seed_of(0xc0c0, c->id);
    long *last_seq = malloc(sh->nproducers * sizeof(*last_seq));
    if (last_seq == NULL)
        return NULL;
    for (unsigned i = 0; i < sh->nproducers; i++)
        last_seq[i] = -1;

    while (c->ends_seen < sh->nproducers) {
        struct item it = queue_pop(&sh->queues[c->id]);
        if (it.producer == END_MARK) {
            c->ends_seen++;
            continue;
        }
        if (it.producer >= sh->nproducers) {
            c->bad_producer++;
            consumer_error(c, "item with an impossible producer id", &it);
            continue;
        }
        if ((long)it.seq <= last_seq[it.producer]) {
            c->out_of_order++;
            consumer_error(c, "sequence number out of order", &it);
        }
        last_seq[it.producer] = (long)it.seq;

        uint64_t seed = seed_of(it.producer, it.seq);
        size_t bad = pattern_count_bad(it.p, seed, it.size);
        if (bad) {
            c->corrupted_bytes += bad;
            consumer_error(c, "object content corrupted", &it);
        }
        c->sum += object_sum(seed, it.size);
        c->consumed++;

        if (rng_next(&rng) % 8 == 0) {
            /* cross-thread realloc: this block belongs to another thread */
            size_t nsize = pick_size(&rng);
            unsigned char *q = realloc(it.p, nsize);
            c->reallocs++;
            if (q == NULL) {
                c->null_returns++;
                consumer_error(c, "realloc returned NULL", &it);
                free(it.p);
                continue;
            }
            if ((uintptr_t)q % 16 != 0) {
                c->misaligned++;
                consumer_error(c, "realloc result not 16-byte aligned", &it);
            }
            if (malloc_usable_size(q) < nsize) {
                c->short_usable++;
                consumer_error(c, "malloc_usable_size < realloc size", &it);
            }
            size_t keep = nsize < it.size ? nsize : it.size;
            bad = pattern_count_bad(q, seed, keep);
            if (bad) {
                c->corrupted_bytes += bad;
                consumer_error(c, "prefix lost by cross-thread realloc", &it);
            }
            pattern_fill(q, seed ^ 1, nsize);
            it.p = q;
        }
        free(it.p);
    }
    free(last_seq);
    return NULL;
}

static void run_producer_consumer(unsigned np, unsigned nc, unsigned long per_producer)
{
    struct queue *queues = malloc(nc * sizeof(*queues));
    struct producer *ps = calloc(np, sizeof(*ps));
    struct consumer *cs = calloc(nc, sizeof(*cs));
    cr_assert(queues && ps && cs);
    struct pc_shared sh = {queues, nc, np, per_producer};
    for (unsigned i = 0; i < nc; i++)
        queue_init(&queues[i]);

    for (unsigned i = 0; i < nc; i++) {
        cs[i].sh = &sh;
        cs[i].id = i;
        cr_assert_eq(pthread_create(&cs[i].thread, NULL, consumer_main, &cs[i]), 0);
    }
    for (unsigned i = 0; i < np; i++) {
        ps[i].sh = &sh;
        ps[i].id = i;
        cr_assert_eq(pthread_create(&ps[i].thread, NULL, producer_main, &ps[i]), 0);
    }
    for (unsigned i = 0; i < np; i++)
        cr_assert_eq(pthread_join(ps[i].thread, NULL), 0);
    for (unsigned i = 0; i < nc; i++)
        cr_assert_eq(pthread_join(cs[i].thread, NULL), 0);

    unsigned long produced = 0, consumed = 0, reallocs = 0;
    uint64_t psum = 0, csum = 0;
    for (unsigned i = 0; i < np; i++) {
        cr_assert_eq(ps[i].null_returns, 0, "producer %u: malloc returned NULL %lu times", i,
                     ps[i].null_returns);
        cr_assert_eq(ps[i].produced, per_producer, "producer %u produced %lu of %lu objects", i,
                     ps[i].produced, per_producer);
        produced += ps[i].produced;
        psum += ps[i].sum;
    }
    for (unsigned i = 0; i < nc; i++) {
        struct consumer *c = &cs[i];
        const char *err = c->first_error[0] ? c->first_error : "none";
        cr_assert_eq(c->ends_seen, np, "consumer %u saw %u end markers, expected %u", i,
                     c->ends_seen, np);
        cr_assert_eq(c->corrupted_bytes, 0, "consumer %u: %lu corrupted bytes; first: %s", i,
                     c->corrupted_bytes, err);
        cr_assert_eq(c->bad_producer + c->out_of_order, 0,
                     "consumer %u: %lu bad ids, %lu out of order; first: %s", i, c->bad_producer,
                     c->out_of_order, err);
        cr_assert_eq(c->null_returns + c->misaligned + c->short_usable, 0,
                     "consumer %u: %lu NULL, %lu misaligned, %lu short usable; first: %s", i,
                     c->null_returns, c->misaligned, c->short_usable, err);
        consumed += c->consumed;
        reallocs += c->reallocs;
        csum += c->sum;
    }
    cr_assert_eq(produced, (unsigned long)np * per_producer);
    cr_assert_eq(consumed, produced, "%lu objects consumed, %lu produced", consumed, produced);
    cr_assert_eq(csum, psum, "consumer checksum %#llx != producer checksum %#llx",
                 (unsigned long long)csum, (unsigned long long)psum);
    cr_assert_gt(reallocs, 0, "no cross-thread realloc was exercised");

    for (unsigned i = 0; i < nc; i++)
        queue_destroy(&queues[i]);
    free(queues);
    free(ps);
    free(cs);
}

Test(cross_thread, producers_8_consumers_4, .timeout = 120)
{
    run_producer_consumer(8, 4, 15000);
}

Test(cross_thread, producers_3_consumers_13, .timeout = 120)
{
    run_producer_consumer(3, 13, 30000);
}

/* ---- ring ---- */

#define BATCH 48
#define MBOX_CAP 4

struct batch {
    unsigned char **objs; /* malloc'd array of BATCH pointers */
    size_t *sizes;        /* malloc'd array of BATCH sizes */
    unsigned owner;
    unsigned round;
};

struct mailbox {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct batch slots[MBOX_CAP];
    unsigned head;
    unsigned count;
};

struct ring_node {
    pthread_t thread;
    struct mailbox box; /* batches from the predecessor */
    struct ring_node *next;
    unsigned id;
    unsigned nthreads;
    unsigned rounds;
    unsigned pred;
    unsigned long produced;
    uint64_t produced_sum;
    unsigned long freed;
    uint64_t freed_sum;
    unsigned long corrupted_bytes;
    unsigned long wrong_owner;
    unsigned long null_returns;
    char first_error[160];
};

static void mbox_push(struct mailbox *m, struct batch b)
{
    pthread_mutex_lock(&m->lock);
    while (m->count == MBOX_CAP)
        pthread_cond_wait(&m->cond, &m->lock);
    m->slots[(m->head + m->count) % MBOX_CAP] = b;
    m->count++;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static struct batch mbox_pop(struct mailbox *m)
{
    pthread_mutex_lock(&m->lock);
    while (m->count == 0)
        pthread_cond_wait(&m->cond, &m->lock);
    struct batch b = m->slots[m->head];
    m->head = (m->head + 1) % MBOX_CAP;
    m->count--;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return b;
}

static uint64_t ring_seed(unsigned owner, unsigned round, unsigned k)
{
    return seed_of(((uint64_t)owner << 32) | round, k + 0x1000);
}

static void *ring_main(void *arg)
{
    struct ring_node *n = arg;
    uint64_t rng = seed_of(0xa11ce, n->id);

    for (unsigned round = 0; round < n->rounds; round++) {
        struct batch b = {malloc(BATCH * sizeof(*b.objs)), malloc(BATCH * sizeof(*b.sizes)), n->id,
                          round};
        if (b.objs == NULL || b.sizes == NULL) {
            n->null_returns++;
            break;
        }
        for (unsigned k = 0; k < BATCH; k++) {
            size_t size = pick_size(&rng);
            b.sizes[k] = size;
            b.objs[k] = malloc(size);
            if (b.objs[k] == NULL) {
                n->null_returns++;
                b.sizes[k] = 0;
                continue;
            }
            uint64_t seed = ring_seed(n->id, round, k);
            pattern_fill(b.objs[k], seed, size);
            n->produced++;
            n->produced_sum += object_sum(seed, size);
        }
        mbox_push(&n->next->box, b);

        struct batch in = mbox_pop(&n->box);
        if (in.owner != n->pred || in.round != round) {
            n->wrong_owner++;
            if (!n->first_error[0])
                snprintf(n->first_error, sizeof(n->first_error),
                         "node %u got batch of node %u round %u in round %u", n->id, in.owner,
                         in.round, round);
        }
        for (unsigned k = 0; k < BATCH; k++) {
            if (in.objs[k] == NULL)
                continue;
            uint64_t seed = ring_seed(in.owner, in.round, k);
            size_t bad = pattern_count_bad(in.objs[k], seed, in.sizes[k]);
            if (bad) {
                n->corrupted_bytes += bad;
                if (!n->first_error[0])
                    snprintf(n->first_error, sizeof(n->first_error),
                             "node %u: object %u of node %u round %u (size %zu) has %zu bad bytes",
                             n->id, k, in.owner, in.round, in.sizes[k], bad);
            }
            n->freed_sum += object_sum(seed, in.sizes[k]);
            n->freed++;
            free(in.objs[k]);
        }
        free(in.objs);
        free(in.sizes);
    }
    return NULL;
}

static void run_ring(unsigned k, unsigned rounds)
{
    struct ring_node *nodes = calloc(k, sizeof(*nodes));
    cr_assert_not_null(nodes);
    for (unsigned i = 0; i < k; i++) {
        nodes[i].id = i;
        nodes[i].nthreads = k;
        nodes[i].rounds = rounds;
        nodes[i].next = &nodes[(i + 1) % k];
        nodes[i].pred = (i + k - 1) % k;
        pthread_mutex_init(&nodes[i].box.lock, NULL);
        pthread_cond_init(&nodes[i].box.cond, NULL);
    }
    for (unsigned i = 0; i < k; i++)
        cr_assert_eq(pthread_create(&nodes[i].thread, NULL, ring_main, &nodes[i]), 0);
    for (unsigned i = 0; i < k; i++)
        cr_assert_eq(pthread_join(nodes[i].thread, NULL), 0);

    for (unsigned i = 0; i < k; i++) {
        struct ring_node *n = &nodes[i];
        struct ring_node *pred = &nodes[n->pred];
        const char *err = n->first_error[0] ? n->first_error : "none";
        cr_assert_eq(n->null_returns, 0, "node %u: %lu NULL returns", i, n->null_returns);
        cr_assert_eq(n->wrong_owner, 0, "node %u: %lu misrouted batches; first: %s", i,
                     n->wrong_owner, err);
        cr_assert_eq(n->corrupted_bytes, 0, "node %u: %lu corrupted bytes; first: %s", i,
                     n->corrupted_bytes, err);
        cr_assert_eq(n->freed, (unsigned long)rounds * BATCH, "node %u freed %lu objects, expected %lu",
                     i, n->freed, (unsigned long)rounds * BATCH);
        cr_assert_eq(n->freed, pred->produced, "node %u freed %lu, its predecessor produced %lu", i,
                     n->freed, pred->produced);
        cr_assert_eq(n->freed_sum, pred->produced_sum,
                     "node %u: checksum of freed objects differs from its predecessor's", i);
        cr_assert_eq(n->box.count, 0, "node %u: %u batches left in its mailbox", i, n->box.count);
        pthread_mutex_destroy(&n->box.lock);
        pthread_cond_destroy(&n->box.cond);
    }
    free(nodes);
}

Test(cross_thread, ring_16, .timeout = 120)
{
    run_ring(16, 250);
}

Test(cross_thread, ring_3, .timeout = 120)
{
    run_ring(3, 1200);
}
