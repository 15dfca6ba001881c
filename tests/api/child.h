/*
 * Shared child-process harness for the tests/api suites that need a fresh
 * process (options are read once at start-up, reports are written at exit).
 *
 * Child side: a scenario run from a constructor must not use stdio (it
 * allocates), so it writes its notes to fd 3 with write(2): note(),
 * note_num(), note_dec(), note_ptr(); opaque() hides a pointer from the
 * compiler so that a malloc/free pair is not optimised away.
 *
 * Parent side: child_spawn() re-executes /proc/self/exe with a clean
 * environment (no BXFI_, FT_MALLOC_ or FTM_TEST_ variable of ours) plus the
 * given variables and options, captures fds 1..nfds in memfds, waits, and
 * returns what the child wrote on each fd in c->fd[1..nfds].
 *
 * Every test file under tests/api is compiled alone, so the helpers are static inline
 * (no unused-function warning where a file does not use one of them).
 */
#ifndef FTM_TESTS_API_CHILD_H
#define FTM_TESTS_API_CHILD_H

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- child side: no stdio, notes written to fd 3 -------------------------- */

static inline void *opaque(void *p)
{
	__asm__ volatile("" : "+r"(p));
	return p;
}

static inline void note(const char *s)
{
	size_t n = strlen(s);
	if (write(3, s, n) != (ssize_t)n)
		_exit(120);
}

static inline void note_num(uint64_t v, int base)
{
	char tmp[24];
	size_t i = sizeof tmp;
	do {
		tmp[--i] = "0123456789abcdef"[v % (unsigned)base];
		v /= (unsigned)base;
	} while (v);
	if (base == 16) {
		tmp[--i] = 'x';
		tmp[--i] = '0';
	}
	if (write(3, tmp + i, sizeof tmp - i) != (ssize_t)(sizeof tmp - i))
		_exit(120);
}

static inline void note_dec(uint64_t v)
{
	note_num(v, 10);
}

static inline void note_ptr(const void *p)
{
	note_num((uintptr_t)p, 16);
}

/* ---- parent side ---------------------------------------------------------- */

#define CHILD_FDS 4 /* 1 stdout, 2 stderr, 3 notes, 4 spare (FT_MALLOC_OUTPUT=4) */

struct child {
	pid_t pid;
	int status;
	char *fd[CHILD_FDS + 1]; /* what the child wrote on fds 1..nfds, NULL past */
};

#define OUT(c) ((c)->fd[1])
#define ERR(c) ((c)->fd[2])
#define NOTES(c) ((c)->fd[3])
#define SPARE(c) ((c)->fd[4])

/* The whole content of a regular file or memfd, NUL-terminated. */
static inline char *slurp_fd(int fd)
{
	off_t len = lseek(fd, 0, SEEK_END);
	cr_assert(len >= 0);
	char *buf = malloc((size_t)len + 1);
	cr_assert(buf);
	ssize_t got = pread(fd, buf, (size_t)len, 0);
	cr_assert(got == len);
	buf[len] = '\0';
	return buf;
}

/* A calloc'd environment for execve: environ less the entries that start
 * with any prefix in drop, then the entries of add1 and add2 (each a
 * NULL-terminated "NAME=VALUE" list or NULL). free() it after use. */
static inline char **env_without(const char *const *drop, const char *const *add1, const char *const *add2)
{
	size_t n = 0, m1 = 0, m2 = 0, k = 0;
	while (environ[n])
		n++;
	while (add1 && add1[m1])
		m1++;
	while (add2 && add2[m2])
		m2++;
	char **envp = calloc(n + m1 + m2 + 1, sizeof *envp);
	cr_assert(envp);
	for (size_t i = 0; i < n; i++) {
		int keep = 1;
		for (size_t d = 0; drop && drop[d]; d++)
			if (!strncmp(environ[i], drop[d], strlen(drop[d])))
				keep = 0;
		if (keep)
			envp[k++] = environ[i];
	}
	for (size_t i = 0; i < m1; i++)
		envp[k++] = (char *)add1[i];
	for (size_t i = 0; i < m2; i++)
		envp[k++] = (char *)add2[i];
	envp[k] = NULL;
	return envp;
}

/* Reads fd (a pipe) to its end or until buf holds cap - 1 bytes;
 * NUL-terminates. */
static inline void read_all(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == cap - 1)
			break;
	}
	buf[len] = '\0';
}

/* Runs this binary (named argv0) with the current environment less our own
 * BXFI_/FT_MALLOC_/FTM_TEST_ variables, plus vars then opts (both
 * NULL-terminated "NAME=VALUE" lists, opts may be NULL), with fds 1..nfds
 * (nfds <= CHILD_FDS) captured; no core dump. Waits for it. */
static inline void child_spawn(const char *argv0, const char *const *vars, const char *const *opts, int nfds,
			       struct child *c)
{
	cr_assert(nfds >= 1 && nfds <= CHILD_FDS);
	char **envp = env_without((const char *const[]){"BXFI_", "FT_MALLOC_", "FTM_TEST_", NULL}, vars, opts);

	int fds[CHILD_FDS];
	for (int i = 0; i < nfds; i++) {
		fds[i] = memfd_create("ftm_debug_child", 0);
		cr_assert(fds[i] >= 0);
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct rlimit no_core = {0, 0};
		setrlimit(RLIMIT_CORE, &no_core);
		int high[CHILD_FDS];
		for (int i = 0; i < nfds; i++) {
			if ((high[i] = fcntl(fds[i], F_DUPFD, 64)) < 0)
				_exit(126);
			close(fds[i]);
		}
		for (int i = 0; i < nfds; i++)
			dup2(high[i], i + 1);
		for (int i = 0; i < nfds; i++)
			close(high[i]);
		char *argv[] = {(char *)argv0, NULL};
		execve("/proc/self/exe", argv, envp);
		_exit(127);
	}
	c->pid = pid;
	cr_assert(waitpid(pid, &c->status, 0) == pid);
	for (int i = 0; i <= CHILD_FDS; i++)
		c->fd[i] = NULL;
	for (int i = 0; i < nfds; i++) {
		c->fd[i + 1] = slurp_fd(fds[i]);
		close(fds[i]);
	}
	free(envp);
}

static inline void child_free(struct child *c)
{
	for (int i = 1; i <= CHILD_FDS; i++)
		free(c->fd[i]);
}

static inline void assert_exit0(const struct child *c, const char *what)
{
	cr_assert(WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0,
		  "%s: child status %#x (exit %d, signal %d)\nstderr: %s\nnotes: %s", what, c->status,
		  WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1,
		  WIFSIGNALED(c->status) ? WTERMSIG(c->status) : 0, ERR(c), NOTES(c));
}

static inline void assert_signal(const struct child *c, int sig, const char *what)
{
	cr_assert(WIFSIGNALED(c->status) && WTERMSIG(c->status) == sig,
		  "%s: expected death by signal %d, status %#x (exit %d, signal %d)\nstderr: %s", what, sig,
		  c->status, WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1,
		  WIFSIGNALED(c->status) ? WTERMSIG(c->status) : 0, ERR(c));
}

/* The size class of a request of n <= 32768 bytes, from the documented rule:
 * 16-byte steps up to 128, then 9/8, 10/8, 12/8, 14/8 and 16/8 of the power
 * of two below. Computed here, not taken from the library. */
static inline size_t class_of(size_t n)
{
	if (n <= 128)
		return n ? (n + 15) & ~(size_t)15 : 16;
	size_t low = 128;
	while (low * 2 < n)
		low *= 2;
	size_t eighth = low / 8;
	size_t eighths = (n + eighth - 1) / eighth; /* 9..16 */
	if (eighths > 10)
		eighths = (eighths + 1) & ~(size_t)1;
	return eighths * eighth;
}

/* How many classes the rule gives up to 32 KiB. */
static inline size_t class_count(void)
{
	size_t n = 0;
	for (size_t size = 0; size < 32768; n++)
		size = class_of(size + 1);
	return n;
}

#endif
