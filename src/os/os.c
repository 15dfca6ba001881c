/*
 * The only file that talks to the kernel (and, for symbol names, to the
 * dynamic loader). Every function either succeeds or returns NULL/0 with
 * errno left as the kernel set it; callers turn failures into ENOMEM. Raw
 * syscalls where libc might allocate or lock.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#include "ftm/internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older headers lack it */
#endif

uint64_t ftm_os_maps;
uint64_t ftm_os_unmaps;
uint64_t ftm_os_prefaults;

static void *counted_map(void *p)
{
	if (p == MAP_FAILED)
		return NULL;
	__atomic_fetch_add(&ftm_os_maps, 1, __ATOMIC_RELAXED);
	return p;
}

static void counted_unmap(void *p, size_t size)
{
	__atomic_fetch_add(&ftm_os_unmaps, 1, __ATOMIC_RELAXED);
	munmap(p, size);
}

void *os_map(size_t size)
{
	return counted_map(
	    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
}

bool os_protect_none(void *p, size_t size)
{
	return mprotect(p, size, PROT_NONE) == 0;
}

/* A file to write reports to: appended to, or started anew. */
int os_open_write(const char *path, bool append)
{
	return open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
}

uint64_t os_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t os_thread_id(void)
{
	return (uint32_t)syscall(SYS_gettid);
}

/* A mapping of size bytes aligned to align (both powers of two, more than a
 * page): over-map, then give back the unaligned head and the tail, but for
 * one untouched page just below. A mapping that starts on a 2 MiB line
 * leaves the one the kernel puts below it (a thread stack, say) alone on
 * its last page table, which is then freed with it and made again for the
 * next: w_thread_churn on 8 threads, whose stacks came and went below our
 * 4 MiB segments, ran 1.15x slower for it. Give it back with
 * os_unmap_aligned. */
void *os_map_aligned(size_t size, size_t align)
{
	char *raw = os_map(size + align);
	if (!raw)
		return NULL;
	char *aligned =
	    (char *)(((uintptr_t)raw + ftm_page_size + align - 1) & ~(uintptr_t)(align - 1));
	size_t head = (size_t)(aligned - ftm_page_size - raw);
	size_t tail = (size_t)(raw + size + align - (aligned + size));
	if (head)
		counted_unmap(raw, head);
	if (tail)
		counted_unmap(aligned + size, tail);
	return aligned;
}

void os_unmap_aligned(void *p, size_t size)
{
	counted_unmap((char *)p - ftm_page_size, size + ftm_page_size);
}

void os_unmap(void *p, size_t size)
{
	counted_unmap(p, size);
}

/* Gives the pages back but keeps the range: it reads as zeros from now on,
 * and faults nothing in until written. */
void os_discard(void *p, size_t size)
{
	madvise(p, size, MADV_DONTNEED);
}

/* Faults a run of pages in with one madvise instead of one page fault
 * each, where the program is about to write them all: carved chunks, the
 * new end of a growing block. On the VM we measure on, a page fault costs
 * about 15 us; the madvise about 1 us a page, and the first write to the
 * page then still about 7 us (the hypervisor fills its own page tables
 * then, which no guest call can do ahead): 8.5 us a page in runs of 4,
 * 10.7 us for a single page.
 * Kernels before 5.14 lack MADV_POPULATE_WRITE and say EINVAL, a seccomp
 * filter may say EPERM or ENOSYS: the first such refusal turns it off.
 * Any other failure (a memory limit) leaves the pages to fault in as
 * usual. errno is the program's: it survives. */
void os_prefault(struct ftm_page_run run)
{
	static bool unsupported;
	if (!run.len || !ftm_options[FTM_OPT_PREFAULT] ||
	    __atomic_load_n(&unsupported, __ATOMIC_RELAXED))
		return;
	int saved = errno;
	__atomic_fetch_add(&ftm_os_prefaults, 1, __ATOMIC_RELAXED);
	if (madvise(run.addr, run.len, MADV_POPULATE_WRITE) != 0 &&
	    (errno == EINVAL || errno == EPERM || errno == ENOSYS))
		__atomic_store_n(&unsupported, true, __ATOMIC_RELAXED);
	errno = saved;
}

void *os_remap(void *p, size_t old_size, size_t new_size)
{
	return counted_map(mremap(p, old_size, new_size, MREMAP_MAYMOVE));
}

/* From the auxiliary vector rather than sysconf, and the CPU count below
 * by raw syscall: libc's sysconf and affinity wrappers sit on text pages that
 * a program seldom touches, and the first call into each maps a fault-around
 * window of libc (up to 64 KiB) into the process. The two cost a 100-malloc
 * program 64 KiB of its 1.9 MiB peak RSS. */
size_t os_page_size(void)
{
	unsigned long page = getauxval(AT_PAGESZ);
	return page ? (size_t)page : 4096;
}

/* CPUs this process may run on. */
uint32_t os_cpu_count(void)
{
	uint64_t mask[16] = {0};
	long bytes = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
	uint32_t n = 0;
	for (long i = 0; i < bytes / (long)sizeof(*mask); i++)
		n += (uint32_t)__builtin_popcountll(mask[i]);
	return n ? n : 1;
}

uint64_t os_random(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uintptr_t)&v;
	}
	return v | 1;
}

void os_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/* Which open file fd names, so that a later look can tell whether the number
 * was closed and given to another file meanwhile; false when fd is closed. */
bool os_file_id(int fd, struct os_file_id *out)
{
	struct stat st;
	if (fstat(fd, &st))
		return false;
	*out = (struct os_file_id){(uint64_t)st.st_dev, (uint64_t)st.st_ino};
	return true;
}

/* A duplicate of fd numbered 100 or above, which programs seldom hand out,
 * closed on exec, and the file it names; -1 when it cannot be made. */
int os_dup_private(int fd, struct os_file_id *id)
{
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	if (copy >= 0 && !os_file_id(copy, id)) {
		close(copy);
		return -1;
	}
	return copy;
}

/* The loaded object and nearest exported symbol at or below a code address.
 * dladdr takes the loader's lock (never malloc): call it with no allocator
 * lock held, as the leak report does. */
bool os_symbol(const void *addr, struct os_symbol *out)
{
	Dl_info info;
	if (!dladdr(addr, &info) || !info.dli_fname)
		return false;
	out->module = info.dli_fname;
	out->module_base = (uintptr_t)info.dli_fbase;
	out->name = info.dli_sname;
	out->name_addr = (uintptr_t)info.dli_saddr;
	return true;
}

/* Sleeps while *word == value (or until woken); errno is kept, since the
 * callers are malloc and free. */
void os_futex_wait(uint32_t *word, uint32_t value)
{
	int saved = errno;
	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
	errno = saved;
}

void os_futex_wake(uint32_t *word)
{
	int saved = errno;
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	errno = saved;
}
