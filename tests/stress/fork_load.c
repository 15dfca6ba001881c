/*
 * Stress test: fork() while other threads are inside the allocator.
 *
 * Workload model: WORKERS threads allocate, fill, verify and free blocks of
 * every size class in a tight loop (one of them also moves blocks through
 * realloc and frees blocks allocated by a neighbour) until a stop flag is
 * set. Once all of them are running (a barrier after their warm-up, not a
 * sleep), the forking thread forks FORKS times. Before each fork it
 * allocates a set of blocks (TINY, SMALL, LARGE, calloc, aligned, realloc'd)
 * filled with a pattern. Each child arms alarm(CHILD_ALARM) so that a
 * deadlock (an allocator lock inherited locked from a thread that does not
 * exist in the child) ends as SIGALRM instead of hanging the suite; then it
 * checks and frees the parent's pre-fork blocks, mallocs/reallocs/frees a
 * variety of sizes with content checks, starts a thread that allocates too
 * (the child must be able to create threads and use arenas), and leaves with
 * _exit(0) or a specific non-zero code. The parent waitpid()s each child.
 * A second test forks from a secondary thread while the main thread is one
 * of the allocating workers.
 *
 * Asserts: every child exited normally with status 0 (the failure message
 * decodes the code or the signal, SIGALRM meaning a hang); workers saw no
 * corrupted byte and no NULL, before and after the forks.
 *
 * Why: an allocator with locks must make fork safe (pthread_atfork or
 * equivalent): the child inherits locked mutexes and half-updated free
 * lists from threads that vanish at fork.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stress.h"

#define WORKERS 4
#define FORKS 50
#define CHILD_ALARM 10
#define WORKER_SLOTS 64

enum child_code {
    CHILD_OK = 0,
    CHILD_PARENT_BLOCK_BAD = 10,
    CHILD_NULL = 11,
    CHILD_OWN_BLOCK_BAD = 12,
    CHILD_THREAD_CREATE = 13,
    CHILD_THREAD_BAD = 14,
    CHILD_MISALIGNED = 15,
    CHILD_CALLOC_DIRTY = 16,
};

static const char *child_code_name(int code)
{
    switch (code) {
    case CHILD_PARENT_BLOCK_BAD: return "a block allocated by the parent before fork was corrupted";
    case CHILD_NULL: return "an allocation returned NULL in the child";
    case CHILD_OWN_BLOCK_BAD: return "a block allocated in the child was corrupted";
    case CHILD_THREAD_CREATE: return "pthread_create failed in the child";
    case CHILD_THREAD_BAD: return "a thread started in the child saw a bad block";
    case CHILD_MISALIGNED: return "a pointer in the child was not 16-byte aligned";
    case CHILD_CALLOC_DIRTY: return "calloc memory was not zeroed in the child";
    default: return "unknown exit code";
    }
}

/* 60% TINY, 37% SMALL, 3% LARGE up to 200 KiB above SMALL_MAX. */
static size_t pick_size(uint64_t *rng)
{
    return pick_class_size(rng, 60, 97, SMALL_MAX + 200 * 1024);
}

/* ---- background workers ---- */

struct handoff {
    /* one block passed from worker i to worker (i + 1) % WORKERS */
    pthread_mutex_t lock;
    unsigned char *p;
    size_t size;
    uint64_t seed;
};

struct worker {
    pthread_t thread;
    unsigned id;
    atomic_int *stop;
    pthread_barrier_t *warm;
    struct handoff *out; /* to the successor */
    struct handoff *in;  /* from the predecessor */
    unsigned long ops;
    unsigned long bad_blocks;
    unsigned long nulls;
};

static void worker_loop(struct worker *w)
{
    unsigned char *slot[WORKER_SLOTS] = {0};
    size_t size[WORKER_SLOTS] = {0};
    uint64_t seed[WORKER_SLOTS] = {0};
    uint64_t rng = 0x9999 + w->id * 7919;
    int warmed = 0;

    while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
        unsigned i = (unsigned)(rng_next(&rng) % WORKER_SLOTS);
        unsigned r = (unsigned)(rng_next(&rng) % 16);
        if (slot[i] != NULL) {
            if (!pattern_intact(slot[i], seed[i], size[i]))
                w->bad_blocks++;
            if (r == 0) {
                /* realloc to another size, prefix must survive */
                size_t ns = pick_size(&rng);
                unsigned char *q = realloc(slot[i], ns);
                if (q == NULL) {
                    w->nulls++;
                } else {
                    size_t keep = ns < size[i] ? ns : size[i];
                    if (!pattern_intact(q, seed[i], keep))
                        w->bad_blocks++;
                    slot[i] = q;
                    size[i] = ns;
                    pattern_fill(q, seed[i], ns);
                }
            } else if (r == 1) {
                /* hand the block to the successor, take the predecessor's */
                pthread_mutex_lock(&w->out->lock);
                unsigned char *old = w->out->p;
                size_t old_size = w->out->size;
                uint64_t old_seed = w->out->seed;
                w->out->p = slot[i];
                w->out->size = size[i];
                w->out->seed = seed[i];
                pthread_mutex_unlock(&w->out->lock);
                slot[i] = NULL;
                if (old != NULL) {
                    /* the successor did not take it: it is still ours */
                    if (!pattern_intact(old, old_seed, old_size))
                        w->bad_blocks++;
                    free(old);
                }
                pthread_mutex_lock(&w->in->lock);
                unsigned char *got = w->in->p;
                size_t gs = w->in->size;
                uint64_t gseed = w->in->seed;
                w->in->p = NULL;
                pthread_mutex_unlock(&w->in->lock);
                if (got != NULL) {
                    if (!pattern_intact(got, gseed, gs))
                        w->bad_blocks++;
                    free(got);
                }
            } else {
                free(slot[i]);
                slot[i] = NULL;
            }
        } else {
            size[i] = pick_size(&rng);
            seed[i] = rng_next(&rng);
            slot[i] = malloc(size[i]);
            if (slot[i] == NULL)
                w->nulls++;
            else
                pattern_fill(slot[i], seed[i], size[i]);
        }
        w->ops++;
        if (!warmed && w->ops == 2000) {
            warmed = 1;
            pthread_barrier_wait(w->warm);
        }
    }
    for (unsigned i = 0; i < WORKER_SLOTS; i++) {
        if (slot[i] != NULL && !pattern_intact(slot[i], seed[i], size[i]))
            w->bad_blocks++;
        free(slot[i]);
    }
}

static void *worker_main(void *arg)
{
    worker_loop(arg);
    return NULL;
}

/* ---- the child's work ---- */

struct parent_block {
    unsigned char *p;
    size_t size;
    uint64_t seed;
};

#define PARENT_BLOCKS 9

/* Returns 0, or -1 when an allocation failed (message in err). */
static int make_parent_blocks(struct parent_block *b, unsigned round, char *err, size_t errlen)
{
    static const size_t sizes[PARENT_BLOCKS] = {1, 48, 512, 513, 9000, 32768, 32769, 150000, 3000};
    for (unsigned k = 0; k < PARENT_BLOCKS; k++) {
        b[k].size = sizes[k];
        b[k].seed = ((uint64_t)round << 20) ^ (k * 0x1234567ULL) ^ 0xabcdef;
        if (k == 2) {
            b[k].p = calloc(1, sizes[k]);
        } else if (k == 4) {
            void *q = NULL;
            b[k].p = posix_memalign(&q, 4096, sizes[k]) == 0 ? q : NULL;
        } else if (k == 8) {
            /* grown from TINY through realloc before the fork */
            b[k].p = malloc(100);
            if (b[k].p != NULL)
                b[k].p = realloc(b[k].p, sizes[k]);
        } else {
            b[k].p = malloc(sizes[k]);
        }
        if (b[k].p == NULL) {
            snprintf(err, errlen, "parent allocation %u (size %zu) failed in round %u", k, sizes[k],
                     round);
            return -1;
        }
        pattern_fill(b[k].p, b[k].seed, sizes[k]);
    }
    return 0;
}

static void *child_thread(void *arg)
{
    uint64_t rng = (uintptr_t)arg;
    for (int i = 0; i < 200; i++) {
        size_t n = pick_size(&rng);
        unsigned char *p = malloc(n);
        if (p == NULL)
            return (void *)(intptr_t)CHILD_NULL;
        pattern_fill(p, rng, n);
        if (!pattern_intact(p, rng, n)) {
            free(p);
            return (void *)(intptr_t)CHILD_THREAD_BAD;
        }
        free(p);
    }
    return NULL;
}

static int child_work(struct parent_block *pb, unsigned round)
{
    /* blocks that existed before fork: intact, then freed by the child */
    for (unsigned k = 0; k < PARENT_BLOCKS; k++) {
        if (!pattern_intact(pb[k].p, pb[k].seed, pb[k].size))
            return CHILD_PARENT_BLOCK_BAD;
        free(pb[k].p);
    }

    /* own allocations across all classes, held together then freed */
    enum { N = 40 };
    unsigned char *own[N];
    size_t sz[N];
    uint64_t rng = 0x51ed + round;
    for (unsigned i = 0; i < N; i++) {
        sz[i] = pick_size(&rng);
        if (i % 10 == 9)
            sz[i] = 40000 + i * 1000; /* make sure LARGE is reached */
        own[i] = (i % 7 == 3) ? calloc(sz[i], 1) : malloc(sz[i]);
        if (own[i] == NULL)
            return CHILD_NULL;
        if ((uintptr_t)own[i] % 16 != 0)
            return CHILD_MISALIGNED;
        if (i % 7 == 3)
            for (size_t j = 0; j < sz[i]; j++)
                if (own[i][j] != 0)
                    return CHILD_CALLOC_DIRTY;
        pattern_fill(own[i], i + round, sz[i]);
    }
    /* realloc chain across classes on one block */
    static const size_t chain[] = {700, 40000, 100, 20000, 300000, 5};
    size_t cur = sz[0];
    for (unsigned c = 0; c < sizeof(chain) / sizeof(chain[0]); c++) {
        unsigned char *q = realloc(own[0], chain[c]);
        if (q == NULL)
            return CHILD_NULL;
        size_t keep = cur < chain[c] ? cur : chain[c];
        if (!pattern_intact(q, 0 + round, keep))
            return CHILD_OWN_BLOCK_BAD;
        pattern_fill(q, 0 + round, chain[c]);
        own[0] = q;
        cur = chain[c];
    }
    sz[0] = cur;
    for (unsigned i = 0; i < N; i++) {
        if (!pattern_intact(own[i], i + round, sz[i]))
            return CHILD_OWN_BLOCK_BAD;
        free(own[i]);
    }

    /* a new thread in the child allocates too */
    pthread_t t;
    void *ret = NULL;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(round + 1)) != 0)
        return CHILD_THREAD_CREATE;
    pthread_join(t, &ret);
    if (ret != NULL)
        return (int)(intptr_t)ret;
    return CHILD_OK;
}

/*
 * Forks `forks` times, checking each child's status. Runs on the main thread
 * or on a secondary one, so it never asserts: it returns 0, or -1 with a
 * message in err.
 */
static int fork_rounds(unsigned forks, char *err, size_t errlen)
{
    for (unsigned round = 0; round < forks; round++) {
        struct parent_block pb[PARENT_BLOCKS];
        if (make_parent_blocks(pb, round, err, errlen) != 0)
            return -1;
        pid_t pid = fork();
        if (pid == -1) {
            snprintf(err, errlen, "fork failed in round %u: %s", round, strerror(errno));
            return -1;
        }
        if (pid == 0) {
            alarm(CHILD_ALARM);
            _exit(child_work(pb, round));
        }
        /* the parent's copies are its own to check and free */
        for (unsigned k = 0; k < PARENT_BLOCKS; k++) {
            if (!pattern_intact(pb[k].p, pb[k].seed, pb[k].size)) {
                snprintf(err, errlen, "parent block %u corrupted after fork in round %u", k, round);
                return -1;
            }
            free(pb[k].p);
        }
        int status = 0;
        pid_t w;
        do
            w = waitpid(pid, &status, 0);
        while (w == -1 && errno == EINTR);
        if (w != pid) {
            snprintf(err, errlen, "waitpid failed in round %u: %s", round, strerror(errno));
            return -1;
        }
        if (WIFSIGNALED(status)) {
            int sig = WTERMSIG(status);
            snprintf(err, errlen, "child of round %u killed by signal %d (%s)%s", round, sig,
                     strsignal(sig), sig == SIGALRM ? ": it hung (deadlock after fork?)" : "");
            return -1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            snprintf(err, errlen, "child of round %u exited with status %d: %s", round,
                     WEXITSTATUS(status), child_code_name(WEXITSTATUS(status)));
            return -1;
        }
    }
    return 0;
}

struct team {
    struct worker w[WORKERS];
    struct handoff h[WORKERS];
    atomic_int stop;
    pthread_barrier_t warm;
};

static void team_init(struct team *t, unsigned barrier_count)
{
    atomic_init(&t->stop, 0);
    pthread_barrier_init(&t->warm, NULL, barrier_count);
    for (unsigned i = 0; i < WORKERS; i++) {
        pthread_mutex_init(&t->h[i].lock, NULL);
        t->h[i].p = NULL;
    }
    for (unsigned i = 0; i < WORKERS; i++) {
        t->w[i] = (struct worker){.id = i, .stop = &t->stop, .warm = &t->warm,
                                  .out = &t->h[i], .in = &t->h[(i + WORKERS - 1) % WORKERS]};
    }
}

static void team_check(struct team *t)
{
    for (unsigned i = 0; i < WORKERS; i++) {
        if (t->h[i].p != NULL) {
            cr_assert(pattern_intact(t->h[i].p, t->h[i].seed, t->h[i].size),
                      "block left in handoff %u corrupted", i);
            free(t->h[i].p);
        }
        pthread_mutex_destroy(&t->h[i].lock);
        cr_assert_geq(t->w[i].ops, 2000, "worker %u did only %lu operations", i, t->w[i].ops);
        cr_assert_eq(t->w[i].bad_blocks, 0, "worker %u saw %lu corrupted blocks", i,
                     t->w[i].bad_blocks);
        cr_assert_eq(t->w[i].nulls, 0, "worker %u got %lu NULL returns", i, t->w[i].nulls);
    }
    pthread_barrier_destroy(&t->warm);
}

Test(fork_load, fork_while_threads_allocate, .timeout = 120)
{
    static struct team t;
    team_init(&t, WORKERS + 1);
    for (unsigned i = 0; i < WORKERS; i++)
        cr_assert_eq(pthread_create(&t.w[i].thread, NULL, worker_main, &t.w[i]), 0);
    pthread_barrier_wait(&t.warm); /* every worker is past its warm-up */
    char err[256] = "";
    int rc = fork_rounds(FORKS, err, sizeof(err));
    atomic_store(&t.stop, 1);
    for (unsigned i = 0; i < WORKERS; i++)
        cr_assert_eq(pthread_join(t.w[i].thread, NULL), 0);
    cr_assert_eq(rc, 0, "%s", err);
    team_check(&t);
}

/* Variant: the forking thread is not the main thread; the main thread is
 * worker 0 and keeps allocating while another thread forks. */
struct forker_arg {
    pthread_barrier_t *warm;
    atomic_int *stop;
    unsigned forks;
    int rc;
    char err[256];
};

static void *forker_main(void *arg)
{
    struct forker_arg *fa = arg;
    pthread_barrier_wait(fa->warm);
    fa->rc = fork_rounds(fa->forks, fa->err, sizeof(fa->err));
    atomic_store(fa->stop, 1);
    return NULL;
}

Test(fork_load, fork_from_secondary_thread, .timeout = 120)
{
    static struct team t;
    team_init(&t, WORKERS + 1);
    static struct forker_arg fa;
    fa = (struct forker_arg){.warm = &t.warm, .stop = &t.stop, .forks = 20};
    pthread_t forker;
    for (unsigned i = 1; i < WORKERS; i++)
        cr_assert_eq(pthread_create(&t.w[i].thread, NULL, worker_main, &t.w[i]), 0);
    cr_assert_eq(pthread_create(&forker, NULL, forker_main, &fa), 0);
    worker_loop(&t.w[0]); /* runs until the forker sets stop */
    cr_assert_eq(pthread_join(forker, NULL), 0);
    for (unsigned i = 1; i < WORKERS; i++)
        cr_assert_eq(pthread_join(t.w[i].thread, NULL), 0);
    cr_assert_eq(fa.rc, 0, "%s", fa.err);
    team_check(&t);
}
