/*
 * Stress test: many short-lived threads, and allocator calls at the edges of
 * a thread's life.
 *
 * Workload model (churn): TOTAL_THREADS threads are created and joined in
 * batches of BATCH. Each thread allocates a few blocks of several classes
 * (TINY and SMALL, plus one LARGE in every eighth thread), fills and checks
 * them, frees all but one (so its thread cache, if any, holds chunks when it
 * exits) and hands the last one to the main thread, which verifies and
 * frees it after the join. The resident set size (from /proc/self/statm) is
 * read once the first WARMUP_THREADS threads are done and again at the end:
 * it may not grow by more than RSS_GROWTH_LIMIT. An allocator that leaks a
 * per-thread cache, arena or descriptor at thread exit grows without bound
 * here (100,000 leaked thread caches of even one page are ~400 MiB).
 *
 * Edge cases, each on a fresh thread: the thread's first allocator call is
 * free(NULL), realloc(NULL, n), calloc, posix_memalign, aligned_alloc,
 * malloc_usable_size(NULL), or free() of a block the main thread allocated;
 * after it the thread allocates normally. And a pthread key destructor
 * registered by the test, which runs at thread exit after the allocator's
 * own thread-exit cleanup may have run: it verifies and frees the thread's
 * blocks and a main-thread block, allocates again, and re-arms itself once
 * so it also runs in a later destructor round.
 *
 * Why: thread exit is where allocators with thread caches lose memory, or
 * crash when a destructor uses malloc after the cache was torn down. Worker
 * threads report status codes; only the main thread asserts.
 */
#include <criterion/criterion.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stress.h"

#define TOTAL_THREADS 100000
#define BATCH 64
#define WARMUP_THREADS 5000
#define RSS_GROWTH_LIMIT (32L << 20)

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = -1;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/* ---- churn ---- */

enum churn_status { CHURN_OK, CHURN_NULL, CHURN_BAD, CHURN_MISALIGNED };

struct churn_arg {
    unsigned long index;
    unsigned char *handed; /* block handed to the main thread */
    size_t handed_size;
    uint64_t handed_seed;
    int status;
};

static const size_t churn_sizes[] = {16, 100, 512, 600, 4000, 32768, 100000};
#define CHURN_KINDS (sizeof(churn_sizes) / sizeof(churn_sizes[0]))

static void *churn_main(void *arg)
{
    struct churn_arg *a = arg;
    unsigned char *p[CHURN_KINDS];
    uint64_t seed[CHURN_KINDS];
    /* the LARGE one only in every eighth thread */
    unsigned n = (a->index % 8 == 0) ? CHURN_KINDS : CHURN_KINDS - 1;
    unsigned keep = (unsigned)(a->index % n);

    a->status = CHURN_OK;
    for (unsigned k = 0; k < n; k++) {
        seed[k] = a->index * 131 + k;
        p[k] = malloc(churn_sizes[k]);
        if (p[k] == NULL) {
            a->status = CHURN_NULL;
            n = k;
            break;
        }
        if ((uintptr_t)p[k] % 16 != 0)
            a->status = CHURN_MISALIGNED;
        pattern_fill(p[k], seed[k], churn_sizes[k]);
    }
    for (unsigned k = 0; k < n; k++) {
        if (!pattern_intact(p[k], seed[k], churn_sizes[k]))
            a->status = CHURN_BAD;
        if (k == keep) {
            a->handed = p[k];
            a->handed_size = churn_sizes[k];
            a->handed_seed = seed[k];
        } else {
            free(p[k]);
        }
    }
    /* a second round of TINY/SMALL traffic: leaves chunks in the cache */
    for (unsigned k = 0; k < 4; k++) {
        unsigned char *q = malloc(32 + k * 200);
        if (q == NULL) {
            a->status = CHURN_NULL;
            break;
        }
        pattern_fill(q, k, 32 + k * 200);
        if (!pattern_intact(q, k, 32 + k * 200))
            a->status = CHURN_BAD;
        free(q);
    }
    return NULL;
}

Test(thread_churn, hundred_thousand_threads, .timeout = 180)
{
    static struct churn_arg args[BATCH];
    pthread_t th[BATCH];
    unsigned long done = 0, handed_back = 0;
    long rss_warm = -1;
    /* small stacks: they stay in libc's stack cache, so the test measures
     * the allocator rather than mmap'ing 8 MiB stacks */
    pthread_attr_t attr;
    cr_assert_eq(pthread_attr_init(&attr), 0);
    cr_assert_eq(pthread_attr_setstacksize(&attr, 128 * 1024), 0);

    while (done < TOTAL_THREADS) {
        unsigned n = TOTAL_THREADS - done < BATCH ? (unsigned)(TOTAL_THREADS - done) : BATCH;
        for (unsigned i = 0; i < n; i++) {
            args[i] = (struct churn_arg){.index = done + i};
            cr_assert_eq(pthread_create(&th[i], &attr, churn_main, &args[i]), 0,
                         "pthread_create failed at thread %lu", done + i);
        }
        for (unsigned i = 0; i < n; i++) {
            cr_assert_eq(pthread_join(th[i], NULL), 0);
            struct churn_arg *a = &args[i];
            cr_assert_eq(a->status, CHURN_OK, "thread %lu reported status %d (1 NULL, 2 corrupted, 3 misaligned)",
                         a->index, a->status);
            cr_assert_not_null(a->handed, "thread %lu handed no block", a->index);
            cr_assert(pattern_intact(a->handed, a->handed_seed, a->handed_size),
                      "block of %zu bytes handed by thread %lu corrupted after its exit",
                      a->handed_size, a->index);
            free(a->handed);
            handed_back++;
        }
        done += n;
        if (rss_warm < 0 && done >= WARMUP_THREADS) {
            rss_warm = rss_bytes();
            cr_assert_gt(rss_warm, 0, "cannot read /proc/self/statm");
        }
    }
    pthread_attr_destroy(&attr);
    long rss_end = rss_bytes();
    fprintf(stderr, "thread_churn: RSS after %d threads: %ld KiB, after %d threads: %ld KiB\n", WARMUP_THREADS,
                rss_warm / 1024, TOTAL_THREADS, rss_end / 1024);
    cr_assert_eq(done, TOTAL_THREADS);
    cr_assert_eq(handed_back, TOTAL_THREADS, "%lu blocks handed back for %d threads", handed_back,
                 TOTAL_THREADS);
    cr_assert_lt(rss_end - rss_warm, RSS_GROWTH_LIMIT,
                 "RSS grew from %ld KiB after %d threads to %ld KiB after %d threads (limit +%ld KiB)",
                 rss_warm / 1024, WARMUP_THREADS, rss_end / 1024, TOTAL_THREADS,
                 RSS_GROWTH_LIMIT / 1024);
}

/* ---- first allocator call of a thread ---- */

enum first_call {
    FIRST_FREE_NULL,
    FIRST_REALLOC_NULL,
    FIRST_CALLOC,
    FIRST_POSIX_MEMALIGN,
    FIRST_ALIGNED_ALLOC,
    FIRST_USABLE_SIZE_NULL,
    FIRST_FREE_FOREIGN,
    FIRST_KINDS
};

static const char *const first_names[FIRST_KINDS] = {
    "free(NULL)", "realloc(NULL, n)", "calloc", "posix_memalign", "aligned_alloc",
    "malloc_usable_size(NULL)", "free() of a main-thread block"};

struct first_arg {
    enum first_call kind;
    unsigned char *foreign; /* allocated by the main thread */
    size_t foreign_size;
    char error[128];
};

static void *first_call_main(void *arg)
{
    struct first_arg *a = arg;
    unsigned char *p = NULL;
    size_t n = 200;

    switch (a->kind) {
    case FIRST_FREE_NULL:
        free(NULL);
        break;
    case FIRST_REALLOC_NULL:
        n = 300;
        p = realloc(NULL, n);
        if (p == NULL) {
            snprintf(a->error, sizeof(a->error), "realloc(NULL, %zu) returned NULL", n);
            return NULL;
        }
        break;
    case FIRST_CALLOC:
        n = 5000;
        p = calloc(n / 8, 8);
        if (p == NULL) {
            snprintf(a->error, sizeof(a->error), "calloc returned NULL");
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            if (p[i] != 0) {
                snprintf(a->error, sizeof(a->error), "calloc byte %zu is %d", i, p[i]);
                return NULL;
            }
        break;
    case FIRST_POSIX_MEMALIGN: {
        void *q = NULL;
        int rc = posix_memalign(&q, 256, 1000);
        if (rc != 0 || q == NULL || (uintptr_t)q % 256 != 0) {
            snprintf(a->error, sizeof(a->error), "posix_memalign: rc %d, ptr %p", rc, q);
            return NULL;
        }
        p = q;
        n = 1000;
        break;
    }
    case FIRST_ALIGNED_ALLOC:
        p = aligned_alloc(4096, 8192);
        n = 8192;
        if (p == NULL || (uintptr_t)p % 4096 != 0) {
            snprintf(a->error, sizeof(a->error), "aligned_alloc(4096, 8192) returned %p", (void *)p);
            return NULL;
        }
        break;
    case FIRST_USABLE_SIZE_NULL: {
        size_t u = malloc_usable_size(NULL);
        if (u != 0) {
            snprintf(a->error, sizeof(a->error), "malloc_usable_size(NULL) returned %zu", u);
            return NULL;
        }
        break;
    }
    case FIRST_FREE_FOREIGN:
        if (!pattern_intact(a->foreign, 77, a->foreign_size)) {
            snprintf(a->error, sizeof(a->error), "main-thread block corrupted");
            return NULL;
        }
        free(a->foreign);
        break;
    default:
        break;
    }
    if (p != NULL) {
        if ((uintptr_t)p % 16 != 0 || malloc_usable_size(p) < n) {
            snprintf(a->error, sizeof(a->error), "first block %p: usable %zu for %zu bytes",
                     (void *)p, malloc_usable_size(p), n);
            return NULL;
        }
        pattern_fill(p, 5, n);
        /* grow it across a class boundary: contents must follow */
        unsigned char *q = realloc(p, 40000);
        if (q == NULL || !pattern_intact(q, 5, n)) {
            snprintf(a->error, sizeof(a->error), "realloc of the first block lost its content");
            return NULL;
        }
        free(q);
    }
    /* then ordinary use */
    for (unsigned k = 0; k < 50; k++) {
        size_t sz = 1 + k * 97;
        unsigned char *r = malloc(sz);
        if (r == NULL) {
            snprintf(a->error, sizeof(a->error), "malloc(%zu) after the first call returned NULL", sz);
            return NULL;
        }
        pattern_fill(r, k, sz);
        if (!pattern_intact(r, k, sz)) {
            snprintf(a->error, sizeof(a->error), "block of %zu bytes corrupted", sz);
            return NULL;
        }
        free(r);
    }
    snprintf(a->error, sizeof(a->error), "ok");
    return NULL;
}

Test(thread_churn, first_allocator_call_of_a_thread)
{
    for (int round = 0; round < 20; round++) {
        for (int kind = 0; kind < FIRST_KINDS; kind++) {
            struct first_arg a = {.kind = kind};
            if (kind == FIRST_FREE_FOREIGN) {
                a.foreign_size = (round % 3 == 0) ? 64 : (round % 3 == 1) ? 3000 : 70000;
                a.foreign = malloc(a.foreign_size);
                cr_assert_not_null(a.foreign);
                pattern_fill(a.foreign, 77, a.foreign_size);
            }
            pthread_t t;
            cr_assert_eq(pthread_create(&t, NULL, first_call_main, &a), 0);
            cr_assert_eq(pthread_join(t, NULL), 0);
            cr_assert_str_eq(a.error, "ok", "round %d, first call %s: %s", round, first_names[kind],
                             a.error);
        }
    }
}

/* ---- allocator use in a pthread key destructor ---- */

#define DTOR_THREADS 64
#define DTOR_BLOCKS 6

static pthread_key_t dtor_key;

struct dtor_state {
    unsigned id;
    int round;                 /* destructor runs seen */
    unsigned char *main_block; /* allocated by the main thread */
    size_t main_size;
    unsigned char *blocks[DTOR_BLOCKS];
    size_t sizes[DTOR_BLOCKS];
    unsigned long freed_in_dtor;
    char error[128];
    atomic_int done;
};

static void dtor(void *arg)
{
    struct dtor_state *s = arg;
    s->round++;
    for (unsigned k = 0; k < DTOR_BLOCKS; k++) {
        if (s->blocks[k] == NULL)
            continue;
        if (!pattern_intact(s->blocks[k], s->id * 100 + k + s->round, s->sizes[k]) && !s->error[0])
            snprintf(s->error, sizeof(s->error), "thread %u: block %u bad in destructor run %d",
                     s->id, k, s->round);
        free(s->blocks[k]);
        s->blocks[k] = NULL;
        s->freed_in_dtor++;
    }
    if (s->main_block != NULL) {
        if (!pattern_intact(s->main_block, 999, s->main_size) && !s->error[0])
            snprintf(s->error, sizeof(s->error), "thread %u: main-thread block bad", s->id);
        free(s->main_block);
        s->main_block = NULL;
        s->freed_in_dtor++;
    }
    if (s->round == 1) {
        /* allocate again, after the allocator's exit cleanup may have run,
         * and re-arm the key so that this runs once more */
        for (unsigned k = 0; k < DTOR_BLOCKS; k++) {
            s->sizes[k] = 8 + k * 7000;
            s->blocks[k] = malloc(s->sizes[k]);
            if (s->blocks[k] == NULL) {
                snprintf(s->error, sizeof(s->error), "thread %u: malloc in destructor failed", s->id);
                break;
            }
            pattern_fill(s->blocks[k], s->id * 100 + k + 2, s->sizes[k]);
        }
        if (pthread_setspecific(dtor_key, s) != 0)
            snprintf(s->error, sizeof(s->error), "thread %u: setspecific in destructor failed", s->id);
    } else {
        atomic_store(&s->done, 1);
    }
}

static void *dtor_thread(void *arg)
{
    struct dtor_state *s = arg;
    for (unsigned k = 0; k < DTOR_BLOCKS; k++) {
        s->sizes[k] = 16 + k * 6000 + (k == DTOR_BLOCKS - 1 ? 60000 : 0);
        s->blocks[k] = malloc(s->sizes[k]);
        if (s->blocks[k] == NULL) {
            snprintf(s->error, sizeof(s->error), "thread %u: malloc failed", s->id);
            return NULL;
        }
        pattern_fill(s->blocks[k], s->id * 100 + k + 1, s->sizes[k]);
    }
    /* some freed traffic so the thread has cached chunks at exit */
    for (unsigned k = 0; k < 32; k++)
        free(malloc(16 + k * 16));
    pthread_setspecific(dtor_key, s);
    return NULL;
}

Test(thread_churn, key_destructor_uses_allocator)
{
    static struct dtor_state st[DTOR_THREADS];
    pthread_t th[DTOR_THREADS];
    cr_assert_eq(pthread_key_create(&dtor_key, dtor), 0);
    for (unsigned i = 0; i < DTOR_THREADS; i++) {
        memset(&st[i], 0, sizeof(st[i]));
        st[i].id = i;
        st[i].main_size = 100 + i * 700;
        st[i].main_block = malloc(st[i].main_size);
        cr_assert_not_null(st[i].main_block);
        pattern_fill(st[i].main_block, 999, st[i].main_size);
        cr_assert_eq(pthread_create(&th[i], NULL, dtor_thread, &st[i]), 0);
    }
    for (unsigned i = 0; i < DTOR_THREADS; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
        struct dtor_state *s = &st[i];
        cr_assert_str_empty(s->error, "%s", s->error);
        cr_assert_eq(s->round, 2, "thread %u: destructor ran %d times, expected 2", i, s->round);
        cr_assert_eq(atomic_load(&s->done), 1);
        cr_assert_eq(s->freed_in_dtor, 2 * DTOR_BLOCKS + 1,
                     "thread %u: destructor freed %lu blocks, expected %d", i, s->freed_in_dtor,
                     2 * DTOR_BLOCKS + 1);
        for (unsigned k = 0; k < DTOR_BLOCKS; k++)
            cr_assert_null(s->blocks[k]);
    }
    cr_assert_eq(pthread_key_delete(dtor_key), 0);
}
