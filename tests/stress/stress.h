/*
 * Helpers shared by the stress tests in tests/stress/: the seeded random
 * numbers that drive their workloads, the size mix across the allocator's
 * classes, and the byte pattern they write into blocks and verify later.
 *
 * Each test is compiled alone, so everything here is static inline. The
 * header calls no allocator function: it works the same in the normal build
 * and in `make tsan`, where tests/sanitize/ftm_names.h is force-included
 * before it and renames malloc and friends.
 */
#ifndef STRESS_H
#define STRESS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The largest request of the TINY and of the SMALL class. */
#define TINY_MAX 512
#define SMALL_MAX 32768

/* xorshift64*: deterministic per seed, independent of the allocator. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [lo, hi] (up to the modulo bias, which does not matter here). */
static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next(s) % (hi - lo + 1));
}

/*
 * A request size: TINY (1..TINY_MAX) when a draw in [0, 100) is below
 * tiny_below, else SMALL (TINY_MAX + 1..SMALL_MAX) when it is below
 * small_below, else LARGE (SMALL_MAX + 1..large_max); uniform in its class.
 */
static inline size_t pick_class_size(uint64_t *rng, unsigned tiny_below, unsigned small_below,
                                     size_t large_max)
{
    unsigned r = (unsigned)(rng_next(rng) % 100);
    if (r < tiny_below)
        return rng_range(rng, 1, TINY_MAX);
    if (r < small_below)
        return rng_range(rng, TINY_MAX + 1, SMALL_MAX);
    return rng_range(rng, SMALL_MAX + 1, large_max);
}

/* Byte i of a block with seed s is byte (i % 8) of pattern_word(s, i / 8). */
static inline uint64_t pattern_word(uint64_t seed, size_t w)
{
    return seed ^ ((uint64_t)(w + 1) * 0x9E3779B97F4A7C15ULL);
}

static inline unsigned char pattern_byte(uint64_t seed, size_t i)
{
    return (unsigned char)(pattern_word(seed, i / 8) >> (8 * (i % 8)));
}

/* Writes the pattern of `seed` over bytes [from, to) of p. */
static inline void pattern_fill_range(unsigned char *p, uint64_t seed, size_t from, size_t to)
{
    size_t i = from;
    for (; i < to && i % 8 != 0; i++)
        p[i] = pattern_byte(seed, i);
    for (; i + 8 <= to; i += 8) {
        uint64_t w = pattern_word(seed, i / 8);
        memcpy(p + i, &w, 8);
    }
    for (; i < to; i++)
        p[i] = pattern_byte(seed, i);
}

/* Writes the pattern of `seed` over bytes [0, n) of p. */
static inline void pattern_fill(unsigned char *p, uint64_t seed, size_t n)
{
    pattern_fill_range(p, seed, 0, n);
}

/* How many of bytes [0, n) of p differ from the pattern of `seed`. */
static inline size_t pattern_count_bad(const unsigned char *p, uint64_t seed, size_t n)
{
    size_t bad = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w != pattern_word(seed, i / 8))
            for (size_t k = 0; k < 8; k++)
                bad += p[i + k] != pattern_byte(seed, i + k);
    }
    for (; i < n; i++)
        bad += p[i] != pattern_byte(seed, i);
    return bad;
}

/* Whether bytes [0, n) of p all hold the pattern of `seed`. */
static inline int pattern_intact(const unsigned char *p, uint64_t seed, size_t n)
{
    return pattern_count_bad(p, seed, n) == 0;
}

#endif
