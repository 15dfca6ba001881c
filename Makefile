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

.PHONY: all clean fclean re test demo tests-build bench

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
$(BUILD)/tests/api_%: tests/api/%.c $(LINK)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< -L. -lft_malloc -Wl,-rpath,$(CURDIR) -lcriterion -ldl

$(BUILD)/tests/stress_%: tests/stress/%.c $(LINK)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< -L. -lft_malloc -Wl,-rpath,$(CURDIR) -lcriterion -ldl

$(DEMO_BIN): demo/demo.c $(LINK)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< -L. -lft_malloc -Wl,-rpath,$(CURDIR)

demo: $(DEMO_BIN)
	LD_PRELOAD=$(CURDIR)/$(LINK) $(DEMO_BIN)

tests-build: $(LINK) $(UNIT_BIN) $(API_BIN) $(STRESS_BIN)

test:
	bash scripts/deps.sh test
	$(MAKE) tests-build
	bash scripts/run_tests.sh

# Workloads under glibc, jemalloc, tcmalloc, mimalloc and ft_malloc, side by
# side (BENCH_QUICK=1 for a short run); results in bench/results/.
bench: $(LINK)
	bash scripts/bench.sh

clean:
	rm -rf $(BUILD) bench/build

fclean: clean
	rm -f $(LINK) libft_malloc_*.so

re: fclean
	$(MAKE) all
