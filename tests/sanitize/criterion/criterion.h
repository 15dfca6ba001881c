/*
 * A stand-in for <criterion/criterion.h>, used only by `make tsan` (the
 * build puts tests/sanitize first on the include path, so the stress tests
 * include this file instead of Criterion's).
 *
 * Why: Criterion cannot run under ThreadSanitizer. Its runner sets up a
 * shared "inheritable arena" for its sandboxed workers, and with the TSan
 * runtime loaded that fails ("Could not initialize inheritable arena:
 * Resource temporarily unavailable") or the runner crashes inside
 * libcriterion before any test starts (Criterion issue #274, still open;
 * seen here with gcc 12 and clang 14 on a one-line test).
 *
 * What it keeps: the part of the API the stress tests use (Test() with its
 * .timeout, .init, .fini and .disabled options; the cr_assert and cr_expect
 * families for booleans, comparisons, pointers and strings), with the same
 * meaning, except that a failed expectation stops the test like an
 * assertion: it prints where and why and ends the program with status 1.
 * What it drops: the per-test sandbox process. Tests run one after the
 * other, in this process, in the order they appear in the file (the stress
 * tests keep no state from one test to the next); a test that expects to die
 * (.signal, .exit_code) is skipped. Timeouts are not enforced (TSan makes
 * every test several times slower); the Makefile bounds each run instead.
 * TestSuite() is accepted without its options.
 *
 * Usage: ./binary [--skip suite/name]... ; ends with a line
 * "Synthesis: Tested: N | Passing: N | Failing: 0" when every test passed.
 */
#ifndef FTM_CRITERION_SHIM_H
#define FTM_CRITERION_SHIM_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ftm_shim_options {
	int unused_; /* keeps the initializer valid when Test() has no option */
	double timeout;
	void (*init)(void);
	void (*fini)(void);
	int disabled;
	int signal;    /* a test expected to die cannot run in this process: */
	int exit_code; /* it is skipped, and says so */
	const char *description;
};

struct ftm_shim_test {
	const char *suite;
	const char *name;
	void (*run)(void);
	struct ftm_shim_options options;
	struct ftm_shim_test *next;
};

static struct ftm_shim_test *ftm_shim_first, **ftm_shim_last = &ftm_shim_first;
static const struct ftm_shim_test *ftm_shim_current;

/* Constructors run in source order, so tests run in the order written. */
static void ftm_shim_register(struct ftm_shim_test *t)
{
	*ftm_shim_last = t;
	ftm_shim_last = &t->next;
}

#define Test(suite_, name_, ...)                                                        \
	static void suite_##_##name_##_shim_run(void);                                  \
	static struct ftm_shim_test suite_##_##name_##_shim_desc = {                    \
	    #suite_, #name_, suite_##_##name_##_shim_run, {.unused_ = 0, __VA_ARGS__}, NULL}; \
	__attribute__((constructor)) static void suite_##_##name_##_shim_reg(void)      \
	{                                                                               \
		ftm_shim_register(&suite_##_##name_##_shim_desc);                       \
	}                                                                               \
	static void suite_##_##name_##_shim_run(void)

/* fmt is "" followed by the assertion's optional message (a literal format
 * and its arguments, as Criterion takes them). */
__attribute__((noreturn)) static void ftm_shim_fail(const char *file, int line,
						    const char *what, const char *fmt, ...)
{
	fprintf(stderr, "[FAIL] %s::%s: %s:%d: %s", ftm_shim_current ? ftm_shim_current->suite : "?",
		ftm_shim_current ? ftm_shim_current->name : "?", file, line, what);
	if (fmt[0]) {
		va_list ap;
		va_start(ap, fmt);
		fputs(": ", stderr);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	exit(1);
}

#define FTM_SHIM_CHECK(ok, what, ...)                                                   \
	do {                                                                            \
		if (!(ok))                                                              \
			ftm_shim_fail(__FILE__, __LINE__, what, "" __VA_ARGS__);        \
	} while (0)

/* TestSuite() only names a suite here; its options are not supported. */
#define TestSuite(suite_, ...) struct ftm_shim_suite_##suite_

#define cr_assert(c, ...) FTM_SHIM_CHECK(c, "cr_assert(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) FTM_SHIM_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) FTM_SHIM_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) FTM_SHIM_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) FTM_SHIM_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_null(p, ...) FTM_SHIM_CHECK((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) FTM_SHIM_CHECK((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) FTM_SHIM_CHECK(strcmp((a), (b)) == 0, #a " equals " #b, __VA_ARGS__)
#define cr_assert_str_empty(s, ...) FTM_SHIM_CHECK((s)[0] == '\0', #s " is empty", __VA_ARGS__)
#define cr_assert_not(c, ...) FTM_SHIM_CHECK(!(c), "cr_assert_not(" #c ")", __VA_ARGS__)
#define cr_assert_neq(a, b, ...) FTM_SHIM_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) FTM_SHIM_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) FTM_SHIM_CHECK(strcmp((a), (b)) != 0, #a " differs from " #b, __VA_ARGS__)
#define cr_assert_str_not_empty(s, ...) FTM_SHIM_CHECK((s)[0] != '\0', #s " is not empty", __VA_ARGS__)
#define cr_assert_fail(...) FTM_SHIM_CHECK(0, "cr_assert_fail", __VA_ARGS__)
/* Expectations stop the test too: stricter than Criterion, never laxer. */
#define cr_expect cr_assert
#define cr_expect_eq cr_assert_eq
#define cr_expect_neq cr_assert_neq
#define cr_expect_gt cr_assert_gt
#define cr_expect_geq cr_assert_geq
#define cr_expect_lt cr_assert_lt
#define cr_expect_leq cr_assert_leq
#define cr_expect_null cr_assert_null
#define cr_expect_not_null cr_assert_not_null
#define cr_expect_str_eq cr_assert_str_eq
#define cr_log_info(...) (printf(__VA_ARGS__), putchar('\n'))
#define cr_log_warn cr_log_info

static int ftm_shim_skipped(const struct ftm_shim_test *t, int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i++) {
		if (strcmp(argv[i], "--skip"))
			continue;
		size_t n = strlen(t->suite);
		const char *s = argv[++i];
		if (!strncmp(s, t->suite, n) && s[n] == '/' && !strcmp(s + n + 1, t->name))
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned tested = 0, skipped = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (const struct ftm_shim_test *t = ftm_shim_first; t; t = t->next) {
		const char *why = ftm_shim_skipped(t, argc, argv) ? "--skip"
				  : t->options.disabled			 ? "disabled"
				  : t->options.signal || t->options.exit_code
				      ? "expects the process to die"
				      : NULL;
		if (why) {
			printf("[SKIP] %s::%s (%s)\n", t->suite, t->name, why);
			skipped++;
			continue;
		}
		struct timespec t0, t1;
		printf("[RUN ] %s::%s\n", t->suite, t->name);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ftm_shim_current = t;
		if (t->options.init)
			t->options.init();
		t->run();
		if (t->options.fini)
			t->options.fini();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("[PASS] %s::%s (%.2f s)\n", t->suite, t->name,
		       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
		tested++;
	}
	printf("Synthesis: Tested: %u | Passing: %u | Failing: 0 | Skipped: %u\n", tested, tested,
	       skipped);
	return tested ? 0 : 1;
}

#endif
