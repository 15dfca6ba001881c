/*
 * redis_glibc.so - glibc's malloc for a program linked with another one.
 *
 * Debian's redis-server is linked with libjemalloc, so running it with no
 * preload measures jemalloc, not glibc. p_redis.sh preloads this library
 * for the glibc column: every malloc-family call goes to glibc's own
 * allocator (its __libc_* entry points, or its definitions looked up in
 * libc.so.6 for the calls that have none), and jemalloc, still loaded,
 * sees none of them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *p, size_t size);
void __libc_free(void *p);
void *__libc_memalign(size_t align, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);

static size_t (*libc_usable_size)(void *);
static int (*libc_posix_memalign)(void **, size_t, size_t);
static void *(*libc_aligned_alloc)(size_t, size_t);

/* Looked up before main: dlsym may allocate, and by then it is glibc's. */
__attribute__((constructor)) static void find_libc(void)
{
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!libc)
		return;
	libc_usable_size = (size_t(*)(void *))dlsym(libc, "malloc_usable_size");
	libc_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(libc, "posix_memalign");
	libc_aligned_alloc = (void *(*)(size_t, size_t))dlsym(libc, "aligned_alloc");
}

void *malloc(size_t size) { return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { return __libc_calloc(count, size); }
void *realloc(void *p, size_t size) { return __libc_realloc(p, size); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t align, size_t size) { return __libc_memalign(align, size); }
void *valloc(size_t size) { return __libc_valloc(size); }
void *pvalloc(size_t size) { return __libc_pvalloc(size); }

size_t malloc_usable_size(void *p)
{
	return libc_usable_size(p);
}

int posix_memalign(void **out, size_t align, size_t size)
{
	return libc_posix_memalign(out, align, size);
}

void *aligned_alloc(size_t align, size_t size)
{
	return libc_aligned_alloc(align, size);
}
