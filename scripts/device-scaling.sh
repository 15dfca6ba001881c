#!/usr/bin/env bash
# The thread-scaling run of issue 3 on a lent many-core machine, as one
# command that fits a short lease: it says what the machine is, runs what
# `make bench-scaling` runs (1 to 16 threads) under a time limit, without
# make, and copies the results where the caller collects them.
#
# Prepare here, where Debian's packages are: `bash scripts/bench-pack.sh`
# fills bench/peers; carry it. The other machine then needs no network. If
# it has no C compiler either, also carry bench/build (the workloads any
# bench.sh run here built), libft_malloc.so and the library it links to:
# bench.sh uses them as they are (with a compiler, it rebuilds them for
# that machine's C library).
#
#   bash scripts/device-scaling.sh [SECONDS]    # the limit, default 480
#
# Results in bench/results/scaling.{md,json,svg}, copied with machine.txt
# (what it prints first) into $OUT when that is set. Exits with bench.sh's
# status (124: out of time).
set -uo pipefail
cd "$(dirname "$0")/.."
limit=${1:-480}
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
{
	echo "cores: $(nproc)"
	echo "kernel: $(uname -srm)"
	echo "libc: $(ldd --version 2>&1 | head -n 1)"
	for tool in cc make python3; do
		echo "$tool: $(command -v "$tool" || echo missing)"
	done
	[ -f bench/peers/VERSIONS ] && sed 's/^/peer: /' bench/peers/VERSIONS
} | tee ${OUT:+"$OUT/machine.txt"}
[ -f bench/peers/VERSIONS ] || echo "device-scaling.sh: no bench/peers: the peers must be installable here" >&2
timeout -k 10 "$limit" env BENCH_SCALING=1 bash scripts/bench.sh
status=$?
[ -z "${OUT:-}" ] || cp bench/results/scaling.* "$OUT/" 2>/dev/null
exit "$status"
