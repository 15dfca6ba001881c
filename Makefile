# ft_malloc build. `make` builds the library, `make demo` runs the bundled
# multithreaded demo under it, `make test` installs what the tests need and
# runs every suite.

ifeq ($(strip $(HOSTTYPE)),)
HOSTTYPE := $(shell uname -m)_$(shell uname -s)
endif

NAME    := libft_malloc_$(HOSTTYPE).so
LINK    := libft_malloc.so
CC      ?= cc
BUILD   := build

# -fno-builtin-*: the compiler must not turn our own malloc+memset into a call
# to calloc (which would recurse), nor reason about our malloc as libc's.
CFLAGS  += -Wall -Wextra -Werror -std=gnu11 -O2 -g -fPIC -pthread \
           -fvisibility=hidden -ftls-model=initial-exec \
           -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc \
           -fno-builtin-free -fno-plt -Iinclude
LDFLAGS += -shared -pthread -Wl,-z,now -Wl,--no-undefined

SRC      := $(sort $(wildcard src/*/*.c))
OBJ      := $(SRC:%.c=$(BUILD)/%.o)
# The core without the standard names (FTM_NO_OVERRIDE): unit tests link it
# beside libc's malloc and call the ftm_* entry points and internals.
CORE_OBJ := $(SRC:%.c=$(BUILD)/core/%.o)
CORE_LIB := $(BUILD)/libftm_core.a

TEST_CFLAGS := -Wall -Wextra -Werror -std=gnu11 -O1 -g -pthread -Iinclude
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit_%,$(wildcard tests/unit/*.c))
API_BIN    := $(patsubst tests/api/%.c,$(BUILD)/tests/api_%,$(wildcard tests/api/*.c))
STRESS_BIN := $(patsubst tests/stress/%.c,$(BUILD)/tests/stress_%,$(wildcard tests/stress/*.c))
DEMO_BIN   := $(BUILD)/demo

.PHONY: all clean fclean re test demo tests-build bench bench-scaling

all: $(LINK)

$(NAME): $(OBJ)
	$(CC) $(LDFLAGS) -o $@ $(OBJ)

$(LINK): $(NAME)
	ln -sf $(NAME) $(LINK)

$(BUILD)/%.o: %.c $(wildcard include/*.h include/ftm/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/core/%.o: %.c $(wildcard include/*.h include/ftm/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFTM_NO_OVERRIDE -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	ar rcs $@ $^

$(BUILD)/tests/unit_%: tests/unit/%.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(CORE_LIB) -lcriterion

# API and stress tests link the real library, so they run on it even without
# LD_PRELOAD and can call show_alloc_mem directly.
# -rdynamic: the leak report names the test's own functions as call sites.
$(BUILD)/tests/api_%: tests/api/%.c $(wildcard tests/api/*.h) $(LINK)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -rdynamic -o $@ $< -L. -lft_malloc -Wl,-rpath,$(CURDIR) -lcriterion -ldl

$(BUILD)/tests/stress_%: tests/stress/%.c tests/stress/stress.h $(LINK)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< -L. -lft_malloc -Wl,-rpath,$(CURDIR) -lcriterion -ldl

$(DEMO_BIN): demo/demo.c $(LINK)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< -L. -lft_malloc -Wl,-rpath,$(CURDIR)

demo:
	bash scripts/deps.sh demo
	$(MAKE) $(DEMO_BIN)
	LD_PRELOAD=$(CURDIR)/$(LINK) $(DEMO_BIN)

tests-build: $(LINK) $(UNIT_BIN) $(API_BIN) $(STRESS_BIN)

test:
	bash scripts/deps.sh test
	bash scripts/deps.sh heapmap
	$(MAKE) tests-build
	bash scripts/run_tests.sh

# Workloads under glibc, jemalloc, tcmalloc, mimalloc and ft_malloc, side by
# side (BENCH_QUICK=1 for a short run); results in bench/results/.
bench: $(LINK)
	bash scripts/bench.sh

# Thread scaling, 1 to 16 threads, into bench/results/scaling.*: for a machine
# with 16 cores. Without network, carry the folder scripts/bench-pack.sh
# fills (bench/peers) and it is used instead of installing anything.
bench-scaling: $(LINK)
	BENCH_SCALING=1 bash scripts/bench.sh

clean:
	rm -rf $(BUILD) bench/build

fclean: clean
	rm -f $(LINK) libft_malloc_*.so

re: fclean
	$(MAKE) all

# ---- sanitizers and fuzzing (issue 5) ----
# The core is built without the standard names (-DFTM_NO_OVERRIDE), so it
# lives beside the sanitizer's own malloc and is reached as ftm_*.
#   make asan     unit tests + core under AddressSanitizer and UBSan (build/asan)
#   make tsan     stress tests on our core under ThreadSanitizer (build/tsan):
#                 their allocator calls are renamed to ftm_* by a forced
#                 include, Criterion is replaced by tests/sanitize/criterion/
#                 (it cannot start under TSan); fork_load is left out (TSan
#                 does not support threads after fork) and so is
#                 thread_churn/hundred_thousand_threads (100,000 threads do
#                 not finish in 400 s under TSan; the file's other tests run)
#   make fuzz     libFuzzer harness tests/fuzz/fuzz_alloc.c, clang, core under
#                 ASan+UBSan, FUZZ_SECONDS (120) seconds from tests/fuzz/corpus
#   make fuzz-ci  the same for 60 seconds
#                 FT_MALLOC_* options in the environment apply to the fuzz
#                 run, except FT_MALLOC_ABORT_ON_ERROR (its misuse steps need
#                 the allocator to report and go on)
# Each fails on any sanitizer report or failed check; logs stay in build/*/.
# SAN_CC=clang gives a faster `make tsan` than the default compiler (gcc).
# A fuzz crash input replays with: build/fuzz/fuzz_alloc -runs=100 FILE
SAN_CC       ?= $(CC)
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 120
TSAN_TIMEOUT ?= 900
SAN_CORE_CFLAGS := -Wall -Wextra -std=gnu11 -O1 -g -pthread -fno-omit-frame-pointer \
                   -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc \
                   -fno-builtin-free -Iinclude -DFTM_NO_OVERRIDE
SAN_HEADERS := $(wildcard include/*.h include/ftm/*.h)

ASAN_DIR   := $(BUILD)/asan
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
ASAN_LIB   := $(ASAN_DIR)/libftm_core.a
ASAN_BIN   := $(patsubst tests/unit/%.c,$(ASAN_DIR)/unit_%,$(wildcard tests/unit/*.c))
ASAN_ENV   := ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
              UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1

TSAN_DIR   := $(BUILD)/tsan
TSAN_FLAGS := -fsanitize=thread
TSAN_LIB   := $(TSAN_DIR)/libftm_core.a
TSAN_BIN   := $(patsubst tests/stress/%.c,$(TSAN_DIR)/stress_%,\
                $(filter-out tests/stress/fork_load.c,$(wildcard tests/stress/*.c)))
TSAN_SKIP  := --skip thread_churn/hundred_thousand_threads
TSAN_ENV   := TSAN_OPTIONS="halt_on_error=1 abort_on_error=1 second_deadlock_stack=1 \
              suppressions=$(CURDIR)/tests/sanitize/tsan.supp"

FUZZ_DIR   := $(BUILD)/fuzz
FUZZ_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIB   := $(FUZZ_DIR)/libftm_core.a
FUZZ_BIN   := $(FUZZ_DIR)/fuzz_alloc
FUZZ_ARGS  := -max_len=4096 -timeout=60 -rss_limit_mb=3072 -print_final_stats=1 \
              -artifact_prefix=$(FUZZ_DIR)/artifacts/

.PHONY: asan tsan fuzz fuzz-ci fuzz-build

$(ASAN_DIR)/%.o: %.c $(SAN_HEADERS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_CORE_CFLAGS) $(ASAN_FLAGS) -c $< -o $@

$(ASAN_LIB): $(SRC:%.c=$(ASAN_DIR)/%.o)
	ar rcs $@ $^

$(ASAN_DIR)/unit_%: tests/unit/%.c $(ASAN_LIB)
	$(SAN_CC) $(TEST_CFLAGS) -fno-omit-frame-pointer $(ASAN_FLAGS) -o $@ $< $(ASAN_LIB) -lcriterion

asan:
	bash scripts/deps.sh test
	$(MAKE) $(ASAN_BIN)
	@status=0; for bin in $(ASAN_BIN); do \
		echo "== $$bin"; \
		$(ASAN_ENV) $$bin --jobs 2 --short-filename >$$bin.log 2>&1; rc=$$?; \
		grep -a -E '^\[(FAIL|----)\]|Synthesis' $$bin.log; \
		if [ $$rc -ne 0 ] || grep -a -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' $$bin.log; then \
			echo "asan: $$bin failed (exit status $$rc), its log:"; cat $$bin.log; status=1; \
		fi; \
	done; \
	if [ $$status -eq 0 ]; then echo "asan: clean"; fi; exit $$status

$(TSAN_DIR)/%.o: %.c $(SAN_HEADERS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_CORE_CFLAGS) $(TSAN_FLAGS) -c $< -o $@

$(TSAN_LIB): $(SRC:%.c=$(TSAN_DIR)/%.o)
	ar rcs $@ $^

$(TSAN_DIR)/tsan_mremap.o: tests/sanitize/tsan_mremap.c
	@mkdir -p $(dir $@)
	$(SAN_CC) $(TEST_CFLAGS) $(TSAN_FLAGS) -c $< -o $@

# -Itests/sanitize: <criterion/criterion.h> is the stand-in there.
# --wrap=mremap: TSan does not see mremap; see tests/sanitize/tsan_mremap.c.
$(TSAN_DIR)/stress_%: tests/stress/%.c tests/stress/stress.h $(TSAN_LIB) $(TSAN_DIR)/tsan_mremap.o \
		tests/sanitize/ftm_names.h tests/sanitize/criterion/criterion.h
	$(SAN_CC) $(TEST_CFLAGS) -Itests/sanitize -include tests/sanitize/ftm_names.h \
		$(TSAN_FLAGS) -o $@ $< $(TSAN_LIB) $(TSAN_DIR)/tsan_mremap.o -Wl,--wrap=mremap

tsan:
	bash scripts/deps.sh demo
	$(MAKE) $(TSAN_BIN)
	@status=0; for bin in $(TSAN_BIN); do \
		echo "== $$bin"; \
		$(TSAN_ENV) timeout $(TSAN_TIMEOUT) $$bin $(TSAN_SKIP) >$$bin.log 2>&1; rc=$$?; \
		grep -a -E '^\[(FAIL|SKIP|PASS)\]|Synthesis' $$bin.log; \
		if [ $$rc -ne 0 ] || grep -a -q -E 'WARNING: ThreadSanitizer|ERROR: ThreadSanitizer' $$bin.log; then \
			echo "tsan: $$bin failed (exit status $$rc), its log:"; cat $$bin.log; status=1; \
		fi; \
	done; \
	if [ $$status -eq 0 ]; then echo "tsan: clean"; fi; exit $$status

$(FUZZ_DIR)/%.o: %.c $(SAN_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(SAN_CORE_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_LIB): $(SRC:%.c=$(FUZZ_DIR)/%.o)
	ar rcs $@ $^

$(FUZZ_BIN): tests/fuzz/fuzz_alloc.c $(FUZZ_LIB) include/ft_malloc.h
	$(FUZZ_CC) $(TEST_CFLAGS) -fno-omit-frame-pointer $(FUZZ_FLAGS) -fsanitize=fuzzer \
		-o $@ $< $(FUZZ_LIB)

fuzz-build:
	bash scripts/deps.sh fuzz
	$(MAKE) $(FUZZ_BIN)

# New inputs go to build/fuzz/corpus (tests/fuzz/corpus is only read);
# a failing input is saved in build/fuzz/artifacts/.
fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/artifacts
	@echo "fuzz: $(FUZZ_SECONDS) s, log in $(FUZZ_DIR)/fuzz.log"
	@env -u FT_MALLOC_ABORT_ON_ERROR $(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) $(FUZZ_ARGS) \
		$(FUZZ_DIR)/corpus tests/fuzz/corpus >$(FUZZ_DIR)/fuzz.log 2>&1; rc=$$?; \
	grep -a -E '^stat::|Done [0-9]+ runs' $(FUZZ_DIR)/fuzz.log; \
	if [ $$rc -ne 0 ]; then \
		echo "fuzz: failed (exit status $$rc); end of $(FUZZ_DIR)/fuzz.log:"; \
		tail -n 80 $(FUZZ_DIR)/fuzz.log; exit 1; \
	fi; echo "fuzz: clean"

fuzz-ci:
	$(MAKE) fuzz FUZZ_SECONDS=60
# ---- end of sanitizers and fuzzing (issue 5) ----
