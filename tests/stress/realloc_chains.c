/*
 * Stress test: long realloc chains on many threads at once.
 *
 * Workload models, every thread working on its own buffer while the others
 * run the same program concurrently:
 *  - steps: a buffer grows byte by byte from 1 to 2048 bytes (every TINY
 *    size and the TINY/SMALL boundary), then by steps of ~1/8 plus a
 *    per-thread jitter up to several MiB (through SMALL and LARGE), then
 *    shrinks the same way back to 1 byte. After every step the whole buffer
 *    is verified, grown bytes are filled, alignment and
 *    malloc_usable_size(p) >= size are checked.
 *  - vector: a dynamic array of 64-bit elements with capacity doubling
 *    (push_back), up to 512 Ki elements (4 MiB), then pop_back with
 *    shrink-to-fit halving; every element is checked after every realloc.
 *  - string: a string built by appending random 1-64 byte pieces, with a
 *    realloc to the exact new length + 1 on every append (naive C string
 *    code), up to 64 KiB, checked after each append.
 *  - shrink: blocks of each class (TINY, SMALL, LARGE) shrunk in small steps
 *    down to 1 byte, then grown back; the content must be preserved at every
 *    step (whether the allocator shrinks in place or moves the block).
 * Asserts: no corrupted byte, no NULL, aligned results, usable size large
 * enough, and the number of realloc steps each thread did equals the number
 * its program plans (computed separately).
 *
 * Why: realloc is where an allocator copies, splits, merges and moves blocks
 * between classes; a wrong copy length, a stale header after an in-place
 * resize or a race when merging with a neighbour shows up as lost content.
 */
#include <criterion/criterion.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

#define THREADS 12

struct chain {
    pthread_t thread;
    unsigned id;
    unsigned long steps;   /* realloc calls done */
    unsigned long planned; /* realloc calls the program plans */
    unsigned long corrupted_bytes;
    unsigned long nulls;
    unsigned long misaligned;
    unsigned long short_usable;
    char first_error[160];
};

static void chain_error(struct chain *c, const char *what, size_t from, size_t to)
{
    if (!c->first_error[0])
        snprintf(c->first_error, sizeof(c->first_error), "thread %u: %s (realloc %zu -> %zu)",
                 c->id, what, from, to);
}

/*
 * One checked realloc of a pattern buffer from `size` to `nsize`: verifies
 * the kept prefix, fills the grown tail. Returns the new pointer, or NULL
 * (the old block is then freed here) on failure.
 */
static unsigned char *step(struct chain *c, unsigned char *p, uint64_t seed, size_t size, size_t nsize)
{
    unsigned char *q = realloc(p, nsize);
    c->steps++;
    if (q == NULL) {
        c->nulls++;
        chain_error(c, "realloc returned NULL", size, nsize);
        free(p);
        return NULL;
    }
    if ((uintptr_t)q % 16 != 0) {
        c->misaligned++;
        chain_error(c, "result not 16-byte aligned", size, nsize);
    }
    if (malloc_usable_size(q) < nsize) {
        c->short_usable++;
        chain_error(c, "malloc_usable_size below the request", size, nsize);
    }
    size_t keep = size < nsize ? size : nsize;
    size_t bad = pattern_count_bad(q, seed, keep);
    if (bad) {
        c->corrupted_bytes += bad;
        chain_error(c, "content lost", size, nsize);
    }
    if (nsize > size)
        pattern_fill_range(q, seed, size, nsize);
    return q;
}

static void assert_chains(struct chain *cs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct chain *c = &cs[i];
        const char *err = c->first_error[0] ? c->first_error : "none";
        cr_assert_eq(c->nulls, 0, "thread %u: %lu NULL returns; first: %s", i, c->nulls, err);
        cr_assert_eq(c->corrupted_bytes, 0, "thread %u: %lu corrupted bytes; first: %s", i,
                     c->corrupted_bytes, err);
        cr_assert_eq(c->misaligned, 0, "thread %u: %lu misaligned results; first: %s", i,
                     c->misaligned, err);
        cr_assert_eq(c->short_usable, 0, "thread %u: %lu short usable sizes; first: %s", i,
                     c->short_usable, err);
        cr_assert_eq(c->steps, c->planned, "thread %u did %lu realloc steps, %lu planned", i,
                     c->steps, c->planned);
        cr_assert_gt(c->steps, 0);
    }
}

static void run_threads(void *(*fn)(void *), unsigned n)
{
    struct chain *cs = calloc(n, sizeof(*cs));
    cr_assert_not_null(cs);
    for (unsigned i = 0; i < n; i++) {
        cs[i].id = i;
        cr_assert_eq(pthread_create(&cs[i].thread, NULL, fn, &cs[i]), 0);
    }
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(pthread_join(cs[i].thread, NULL), 0);
    assert_chains(cs, n);
    free(cs);
}

/* ---- steps: 1 -> 2048 by 1, -> several MiB by ~1/8, and back ---- */

#define BYTE_STEPS_MAX 2048

static size_t grow_to(unsigned id, size_t size)
{
    return size + size / 8 + 1 + (id * 37 + size) % 61;
}

static size_t top_size(unsigned id)
{
    return (3u << 20) + id * 40961; /* ~3 to ~3.5 MiB */
}

/* Runs the program; with p == NULL only counts its steps. */
static unsigned long steps_program(struct chain *c, int dry)
{
    uint64_t seed = 0x5a5a0000ULL + c->id;
    unsigned char *p = NULL;
    size_t size = 1;
    unsigned long n = 0;
    size_t top = top_size(c->id);

    if (!dry) {
        p = malloc(1);
        if (p == NULL) {
            c->nulls++;
            return 0;
        }
        pattern_fill(p, seed, 1);
    }
#define STEP_TO(ns)                                                                              \
    do {                                                                                         \
        size_t ns_ = (ns);                                                                       \
        n++;                                                                                     \
        if (!dry && (p = step(c, p, seed, size, ns_)) == NULL)                                   \
            return n;                                                                            \
        size = ns_;                                                                              \
    } while (0)

    while (size < BYTE_STEPS_MAX)
        STEP_TO(size + 1);
    while (size < top)
        STEP_TO(grow_to(c->id, size) < top ? grow_to(c->id, size) : top);
    while (size > BYTE_STEPS_MAX) {
        size_t ns = size - size / 9 - 1 - (c->id * 13 + size) % 53;
        STEP_TO(ns > BYTE_STEPS_MAX ? ns : BYTE_STEPS_MAX);
    }
    while (size > 1)
        STEP_TO(size - 1);
#undef STEP_TO
    if (!dry) {
        size_t bad = pattern_count_bad(p, seed, 1);
        c->corrupted_bytes += bad;
        free(p);
    }
    return n;
}

static void *steps_thread(void *arg)
{
    struct chain *c = arg;
    c->planned = steps_program(c, 1);
    steps_program(c, 0);
    return NULL;
}

Test(realloc_chains, grow_and_shrink_by_steps, .timeout = 120)
{
    run_threads(steps_thread, THREADS);
}

/* ---- vector with capacity doubling ---- */

#define VEC_MAX (512u * 1024u)

static uint64_t elem(unsigned id, size_t i)
{
    return ((uint64_t)id << 40) ^ (i * 0x9E3779B97F4A7C15ULL) ^ i;
}

static void *vector_thread(void *arg)
{
    struct chain *c = arg;
    uint64_t *v = NULL;
    size_t len = 0, cap = 0;
    unsigned long planned = 0;

    for (size_t k = 1; k < VEC_MAX; k *= 2)
        planned++; /* growth reallocs: capacities 1, 2, 4 ... VEC_MAX */
    planned++;
    for (size_t k = VEC_MAX; k > 1; k /= 2)
        planned++; /* shrink-to-fit reallocs: VEC_MAX / 2 ... 1 */
    c->planned = planned;

    for (size_t i = 0; i < VEC_MAX; i++) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1;
            uint64_t *nv = realloc(v, ncap * sizeof(*v));
            c->steps++;
            if (nv == NULL) {
                c->nulls++;
                chain_error(c, "vector growth failed", cap * 8, ncap * 8);
                free(v);
                return NULL;
            }
            if ((uintptr_t)nv % 16 != 0)
                c->misaligned++;
            for (size_t j = 0; j < len; j++)
                if (nv[j] != elem(c->id, j)) {
                    c->corrupted_bytes += 8;
                    chain_error(c, "vector element lost on growth", cap * 8, ncap * 8);
                }
            v = nv;
            cap = ncap;
        }
        v[len++] = elem(c->id, i);
    }
    /* pop_back; shrink to fit whenever len falls to cap / 2 */
    while (cap > 1) {
        while (len > cap / 2)
            len--;
        size_t ncap = cap / 2;
        uint64_t *nv = realloc(v, ncap * sizeof(*v));
        c->steps++;
        if (nv == NULL) {
            c->nulls++;
            chain_error(c, "vector shrink failed", cap * 8, ncap * 8);
            free(v);
            return NULL;
        }
        if (malloc_usable_size(nv) < ncap * sizeof(*v))
            c->short_usable++;
        for (size_t j = 0; j < len; j++)
            if (nv[j] != elem(c->id, j)) {
                c->corrupted_bytes += 8;
                chain_error(c, "vector element lost on shrink", cap * 8, ncap * 8);
            }
        v = nv;
        cap = ncap;
    }
    if (len != 1 || v[0] != elem(c->id, 0)) {
        c->corrupted_bytes += 8;
        chain_error(c, "last element wrong", 8, 8);
    }
    free(v);
    return NULL;
}

Test(realloc_chains, vector_doubling, .timeout = 120)
{
    run_threads(vector_thread, THREADS);
}

/* ---- string append with exact-size realloc ---- */

#define STR_MAX (64u * 1024u)

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

static void *string_thread(void *arg)
{
    struct chain *c = arg;
    uint64_t seed = 0xabc000 + c->id;
    uint64_t rng = c->id + 1;
    unsigned long planned = 0;
    for (size_t len = 0; len < STR_MAX;)
        len += 1 + lcg(&rng) % 64, planned++;
    c->planned = planned;

    rng = c->id + 1;
    char *s = NULL;
    size_t len = 0;
    while (len < STR_MAX) {
        size_t piece = 1 + lcg(&rng) % 64;
        char *ns = realloc(s, len + piece + 1);
        c->steps++;
        if (ns == NULL) {
            c->nulls++;
            free(s);
            return NULL;
        }
        if (malloc_usable_size(ns) < len + piece + 1)
            c->short_usable++;
        /* the old string, terminator included, must be intact */
        size_t bad = pattern_count_bad((unsigned char *)ns, seed, len);
        if (bad || (s != NULL && ns[len] != '\0')) {
            c->corrupted_bytes += bad + 1;
            chain_error(c, "string content lost on append", len + 1, len + piece + 1);
        }
        pattern_fill_range((unsigned char *)ns, seed, len, len + piece);
        /* the pattern never matters as text: only the terminator is read */
        len += piece;
        ns[len] = '\0';
        s = ns;
    }
    free(s);
    return NULL;
}

Test(realloc_chains, string_append_exact_size, .timeout = 120)
{
    run_threads(string_thread, THREADS);
}

/* ---- shrink in small steps, then grow back ---- */

static const size_t shrink_start[] = {512, 4000, 32768, 70000, 1u << 20};
#define SHRINK_KINDS (sizeof(shrink_start) / sizeof(shrink_start[0]))

static size_t shrink_step(size_t size)
{
    return size > 4096 ? size / 16 : size > 64 ? 16 : 1;
}

static void *shrink_thread(void *arg)
{
    struct chain *c = arg;
    unsigned long planned = 0;
    for (unsigned k = 0; k < SHRINK_KINDS; k++) {
        for (size_t s = shrink_start[k]; s > 1; s -= shrink_step(s) < s ? shrink_step(s) : s - 1)
            planned++;
        planned++; /* grow back to the start size in one call */
    }
    c->planned = planned;

    for (unsigned k = 0; k < SHRINK_KINDS; k++) {
        uint64_t seed = ((uint64_t)c->id << 8) | k;
        size_t size = shrink_start[k];
        unsigned char *p = malloc(size);
        if (p == NULL) {
            c->nulls++;
            return NULL;
        }
        pattern_fill(p, seed, size);
        while (size > 1) {
            size_t d = shrink_step(size) < size ? shrink_step(size) : size - 1;
            /* step() verifies the kept prefix of size - d bytes */
            if ((p = step(c, p, seed, size, size - d)) == NULL)
                return NULL;
            size -= d;
            /* the whole of what is left, again, after the call returned */
            size_t bad = pattern_count_bad(p, seed, size);
            if (bad) {
                c->corrupted_bytes += bad;
                chain_error(c, "content changed after shrink", size + d, size);
            }
        }
        /* grow back: the first byte kept, the rest writable */
        if ((p = step(c, p, seed, 1, shrink_start[k])) == NULL)
            return NULL;
        size_t bad = pattern_count_bad(p, seed, shrink_start[k]);
        c->corrupted_bytes += bad;
        if (bad)
            chain_error(c, "content wrong after growing back", 1, shrink_start[k]);
        free(p);
    }
    return NULL;
}

Test(realloc_chains, shrink_in_small_steps, .timeout = 120)
{
    run_threads(shrink_thread, THREADS);
}
