/*
 * Forced-include header for the sanitizer builds of the stress tests
 * (`make tsan` passes it with -include before the test's own source).
 *
 * A ThreadSanitizer program owns malloc: its runtime interposes the standard
 * names, so a stress test linked as usual would exercise TSan's allocator,
 * not ours. This header renames every allocator call the test makes to the
 * ftm_* entry points of include/ft_malloc.h, which the core built with
 * -DFTM_NO_OVERRIDE provides under those names only; libc and Criterion keep
 * using TSan's malloc for their own memory, and the two heaps never mix as
 * long as the test does not free memory that libc allocated for it (strdup,
 * asprintf, getline...: the stress tests use none of them).
 *
 * The system headers that declare the standard names are included first, so
 * their prototypes stay as they are; the macros only apply to the test's own
 * code (and to headers included after this one, which are all guarded and
 * so already seen). The names are object-like macros, so a function pointer
 * taken to `free` is renamed too. mallinfo2 is the exception: it also names
 * a struct type (`struct mallinfo2`), so it is renamed only where called.
 */
#ifndef FTM_SANITIZE_NAMES_H
#define FTM_SANITIZE_NAMES_H

/* These headers come before the test's own lines: a test that asks for
 * GNU extensions (with the usual empty #define) must still get them. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "ft_malloc.h"

#define malloc ftm_malloc
#define free ftm_free
#define cfree ftm_free
#define calloc ftm_calloc
#define realloc ftm_realloc
#define reallocarray ftm_reallocarray
#define posix_memalign ftm_posix_memalign
#define aligned_alloc ftm_aligned_alloc
#define memalign ftm_memalign
#define valloc ftm_valloc
#define pvalloc ftm_pvalloc
#define malloc_usable_size ftm_malloc_usable_size
#define malloc_trim ftm_malloc_trim
#define malloc_stats ftm_malloc_stats
#define mallinfo2() ftm_mallinfo2()

#endif
