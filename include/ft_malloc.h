/*
 * ft_malloc public interface.
 *
 * The library exports the whole malloc family under the standard names (so
 * LD_PRELOAD replaces libc's) and under ftm_* names, which call the same core:
 * a program or a sanitizer build that owns malloc can still reach ours.
 */
#ifndef FT_MALLOC_H
#define FT_MALLOC_H

#include <malloc.h>
#include <stddef.h>

/* Prints every live allocation of every arena and of the LARGE registry in
 * increasing address order, zone by zone, then the total, on standard output
 * (with write(2): flush stdio first if you mix the two). */
void show_alloc_mem(void);

/* The same heap as JSON lines on fd (format in src/show/dump.c), for tools
 * such as scripts/heapmap: every zone with each chunk's state (live, cached
 * in a thread cache, free), every live chunk, every LARGE mapping. */
void show_alloc_mem_json(int fd);

/* show_alloc_mem plus, per zone, its arena, class, bounds, used/free bytes
 * and fragmentation, a hex+ASCII dump of each block's first bytes (whole
 * blocks with FT_MALLOC_SHOW_FULL=1) and the allocation history
 * (FT_MALLOC_HISTORY=N). */
void show_alloc_mem_ex(void);

void *ftm_malloc(size_t size);
void ftm_free(void *ptr);
void *ftm_calloc(size_t count, size_t size);
void *ftm_realloc(void *ptr, size_t size);
void *ftm_reallocarray(void *ptr, size_t count, size_t size);
int ftm_posix_memalign(void **out, size_t alignment, size_t size);
void *ftm_aligned_alloc(size_t alignment, size_t size);
void *ftm_memalign(size_t alignment, size_t size);
void *ftm_valloc(size_t size);
void *ftm_pvalloc(size_t size);
size_t ftm_malloc_usable_size(void *ptr);
int ftm_malloc_trim(size_t pad);
void ftm_malloc_stats(void);
struct mallinfo2 ftm_mallinfo2(void);

#endif
