#!/usr/bin/env bash
# Runs every test suite and ends with one summary line "tests: N passed, M failed".
#   unit tests   build/tests/unit_*    the core linked statically, no override
#   api, stress  build/tests/api_*, build/tests/stress_*   on libft_malloc.so (linked and preloaded)
#   programs     tests/programs/run.sh real programs under LD_PRELOAD, outputs compared
#   heapmap      tests/heapmap/run.sh  JSON dump vs show_alloc_mem, rendered page in headless Chromium
set -uo pipefail
cd "$(dirname "$0")/.."
lib="$PWD/libft_malloc.so"
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Criterion's closing line: "Synthesis: Tested: T | Passing: P | Failing: F | Crashing: C"
count_criterion() {
	local line
	line=$(grep -a 'Synthesis:' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "  (no synthesis line: counted as one failure)"
		failed=$((failed + 1))
		return
	fi
	local p f c
	p=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$line")
	f=$(sed -E 's/.*Failing: ([0-9]+).*/\1/' <<<"$line")
	c=$(sed -E 's/.*Crashing: ([0-9]+).*/\1/' <<<"$line")
	passed=$((passed + p))
	failed=$((failed + f + c))
}

run_suite() {
	local bin=$1
	shift
	echo "== $(basename "$bin")"
	"$@" "$bin" --jobs 2 --short-filename >"$log" 2>&1
	local rc=$?
	grep -a -E '^\[(FAIL|----)\]|Synthesis' "$log" | tail -n 40
	count_criterion
	[ $rc -eq 0 ] || echo "  exit status $rc"
}

for bin in build/tests/unit_*; do
	[ -x "$bin" ] && run_suite "$bin" env
done
for bin in build/tests/api_* build/tests/stress_*; do
	[ -x "$bin" ] && run_suite "$bin" env LD_PRELOAD="$lib"
done

# Script suites end with "NAME: N passed, M failed".
run_script() {
	local name=$1 script=$2
	echo "== $name"
	bash "$script" "$lib" | tee "$log"
	local line
	line=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1)
	if [ -n "$line" ]; then
		passed=$((passed + $(sed -E "s/$name: ([0-9]+) passed.*/\\1/" <<<"$line")))
		failed=$((failed + $(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$line")))
	else
		failed=$((failed + 1))
	fi
}

run_script programs tests/programs/run.sh
run_script heapmap tests/heapmap/run.sh

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
