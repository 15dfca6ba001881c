/*
 * mremap for the ThreadSanitizer build (`make tsan` links it with
 * -Wl,--wrap=mremap, so the core's calls to mremap land here).
 *
 * Why: the TSan runtimes of gcc 12 and clang 14 intercept mmap and munmap
 * (a fresh or unmapped range gets its shadow state reset) but not mremap.
 * When the LARGE realloc path moves a mapping with mremap, the kernel frees
 * the old range without TSan knowing, and a later mremap may place another
 * thread's block there: TSan then compares accesses to the new block with
 * stale ones to the old and reports a race between two threads that never
 * shared memory (seen in realloc_chains: large_realloc reading the old
 * header's map_len in one thread, another thread writing its own grown
 * header at the same address). The kernel orders the two (the range is free
 * only once the first mremap has returned); TSan cannot see it. Its
 * AnnotateNewMemory, which could have said so, is a no-op in these runtimes.
 *
 * What it does instead: the same result with calls TSan does see. Shrinking
 * unmaps the tail; growing first tries to extend the mapping in place (no
 * range is vacated); when the mapping must move, it maps a fresh range,
 * copies the pages and unmaps the old range. So no address range is ever
 * released behind TSan's back. Only the TSan build pays for the copy.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void *__real_mremap(void *old, size_t old_size, size_t new_size, int flags, ...);
void *__wrap_mremap(void *old, size_t old_size, size_t new_size, int flags, ...);

static size_t page_up(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (n + page - 1) & ~(page - 1);
}

void *__wrap_mremap(void *old, size_t old_size, size_t new_size, int flags, ...)
{
	if (flags & ~MREMAP_MAYMOVE) { /* MREMAP_FIXED and co: the core never asks */
		errno = EINVAL;
		return MAP_FAILED;
	}
	old_size = page_up(old_size);
	new_size = page_up(new_size);
	if (new_size <= old_size) {
		if (new_size < old_size && munmap((char *)old + new_size, old_size - new_size))
			return MAP_FAILED;
		return old;
	}
	void *p = __real_mremap(old, old_size, new_size, 0);
	if (p != MAP_FAILED || !(flags & MREMAP_MAYMOVE))
		return p;
	p = mmap(NULL, new_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return MAP_FAILED;
	memcpy(p, old, old_size);
	munmap(old, old_size);
	return p;
}
