#!/usr/bin/env bash
# Instructions per malloc+free pair on the thread-cache hit path, for
# ft_malloc and the peers, counted by callgrind (exact and repeatable on a
# noisy machine): bench/fastpath.c runs N and 2N rounds; the difference in
# total instructions divided by N is the cost of one pair, start-up and exit
# cancelled out. Then the same for a mix of sizes and orders (bench/w_churn),
# where a one-size loop can flatter or wrong an allocator: the program's own
# instructions (those of the w_churn binary, the same under every allocator)
# are taken off, what is left is the allocator's. Writes
# bench/results/fastpath.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { bash scripts/deps.sh bench; apt-get install -y valgrind >/dev/null; }
make -s
mkdir -p bench/build bench/results
cc -O2 -o bench/build/fastpath bench/fastpath.c
cc -O2 -pthread -o bench/build/w_churn bench/w_churn.c
lib_of() { dpkg -L "$1" 2>/dev/null | grep -E "/$2[^/]*\.so[.0-9]*$" | head -n 1; }
declare -A libs=(
	[glibc]=""
	[jemalloc]="$(lib_of libjemalloc2 libjemalloc)"
	[tcmalloc]="$(lib_of libtcmalloc-minimal4 libtcmalloc_minimal)"
	[mimalloc]="$(lib_of libmimalloc2.0 libmimalloc)"
	[ft_malloc]="$PWD/libft_malloc.so"
)
present=() # the allocators installed here, glibc always
for name in glibc jemalloc tcmalloc mimalloc ft_malloc; do
	if [ "$name" = glibc ] || [ -n "${libs[$name]}" ]; then
		present+=("$name")
	fi
done
n=100000
count() { # LIB ROUNDS SIZE -> total instructions
	local out
	out=$(mktemp)
	env ${1:+LD_PRELOAD=$1} valgrind --tool=callgrind --callgrind-out-file=/dev/null \
		bench/build/fastpath "$2" "$3" 2>"$out" >/dev/null
	sed -nE 's/.*Collected : ([0-9]+).*/\1/p' "$out"
	rm -f "$out"
}
mix_counts() { # LIB MALLOCS -> "total program" instructions of one w_churn run
	local out
	out=$(mktemp)
	env ${1:+LD_PRELOAD=$1} valgrind --tool=callgrind --callgrind-out-file="$out" \
		bench/build/w_churn 1 "$2" 42 >/dev/null 2>&1
	callgrind_annotate --threshold=100 "$out" 2>/dev/null | awk '
		{ v = $1; gsub(",", "", v) }
		/PROGRAM TOTALS/ { t = v }
		/\[.*\/w_churn\]$/ { p += v }
		END { print t, p + 0 }'
	rm -f "$out"
}
split_counts() { # ROUNDS -> "malloc free total" instructions for ft_malloc, 64 B
	local out
	out=$(mktemp)
	LD_PRELOAD=${libs[ft_malloc]} valgrind --tool=callgrind --callgrind-out-file="$out" \
		bench/build/fastpath "$1" 64 >/dev/null 2>&1
	callgrind_annotate --inclusive=yes "$out" 2>/dev/null | awk '
		{ gsub(",", "", $1); v = $1 + 0 }
		/:malloc( |$)/ && v > m { m = v }
		/:free( |$)/ && v > f { f = v }
		/:main( |$)/ && v > t { t = v }
		END { print m, f, t }'
	rm -f "$out"
}
{
	echo "# Fast path: instructions per malloc+free pair (thread-cache hit)"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), callgrind; (I(2N) - I(N)) / N with N = $n, one size per column."
	echo
	echo "| allocator | 16 B | 64 B | 256 B | 1000 B | 4000 B |"
	echo "|---|---:|---:|---:|---:|---:|"
	for name in "${present[@]}"; do
		lib=${libs[$name]}
		row="| $name"
		for size in 16 64 256 1000 4000; do
			a=$(count "$lib" "$n" "$size")
			b=$(count "$lib" $((2 * n)) "$size")
			row="$row | $(awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')"
		done
		echo "$row |"
	done
	echo
	echo "The loop itself (call, store, load, add, loop) is part of every column."
	echo
	echo "ft_malloc per call, 64 B (callgrind, inclusive cost of each function):"
	echo
	echo "| malloc | free | the loop |"
	echo "|---:|---:|---:|"
	a=$(split_counts "$n")
	b=$(split_counts $((2 * n)))
	awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		m = (y[1] - x[1]) / n; f = (y[2] - x[2]) / n; t = (y[3] - x[3]) / n
		printf "| %.1f | %.1f | %.1f |\n", m, f, t - m - f }'
	mix=1000000
	echo
	echo "Mixed: bench/w_churn on 1 thread (8-256 B, log-uniform; LIFO runs and random"
	echo "replacement among 2048 live objects), $mix and $((2 * mix)) mallocs; the allocator's"
	echo "instructions per malloc+free pair, the program's own taken off. mimalloc puts a"
	echo "freed block on a second list that malloc collects only once the first is empty,"
	echo "so the one-size loop above takes its slower path every round; here it does not."
	echo
	echo "| allocator | instructions per pair |"
	echo "|---|---:|"
	for name in "${present[@]}"; do
		lib=${libs[$name]}
		a=$(mix_counts "$lib" "$mix")
		b=$(mix_counts "$lib" $((2 * mix)))
		awk -v a="$a" -v b="$b" -v n="$mix" -v name="$name" 'BEGIN {
			split(a, x, " "); split(b, y, " ")
			printf "| %s | %.1f |\n", name, ((y[1] - y[2]) - (x[1] - x[2])) / n }'
	done
} | tee bench/results/fastpath.md
