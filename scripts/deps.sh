#!/usr/bin/env bash
# Installs the Debian 12 packages a given part of the project needs, and only
# those that are missing, so that running it again is cheap and silent.
#
#   bash scripts/deps.sh test    # `make test`: compiler, Criterion, redis, git...
#   bash scripts/deps.sh bench   # benchmarks: hyperfine, other allocators, gnuplot, redis
#   bash scripts/deps.sh demo    # `make demo`: just a compiler and make
#   bash scripts/deps.sh fuzz    # `make fuzz`: clang and its libFuzzer/sanitizer runtimes
#   bash scripts/deps.sh heapmap # tests/heapmap: headless Chromium, python3
#
# Each package is checked with dpkg-query; apt-get runs (update, then a
# non-interactive install without recommends) only when something is missing.
# That needs root: without it the script prints the exact command and exits 1.
#
# Note: installing redis-server on Debian may start its system service on port
# 6379. That is harmless: the tests never use it, they start their own server
# on a free port of their own.
set -euo pipefail

usage() {
	echo "usage: bash scripts/deps.sh test|bench|demo|heapmap|fuzz" >&2
	exit 2
}

[ $# -eq 1 ] || usage

# gcc alone cannot link a program when installed without recommends: the C
# library headers and crt files come with libc6-dev.
build_tools=(gcc make libc6-dev)

case "$1" in
test)
	wanted=("${build_tools[@]}" libcriterion-dev pkg-config redis-server
		redis-tools git python3 procps)
	;;
bench)
	wanted=("${build_tools[@]}" hyperfine libjemalloc2 libtcmalloc-minimal4
		libmimalloc2.0 gnuplot-nox python3 time redis-server redis-tools)
	;;
demo)
	wanted=("${build_tools[@]}")
	;;
fuzz)
	# libclang-rt-14-dev holds libFuzzer and clang's ASan/UBSan runtimes
	wanted=("${build_tools[@]}" clang libclang-rt-14-dev)
	;;
heapmap)
	# chromium renders the page scripts/heapmap writes (checked headless)
	wanted=("${build_tools[@]}" chromium python3)
	;;
*)
	usage
	;;
esac

is_installed() {
	local status
	# dpkg-query fails for a package it has never heard of: that is "missing".
	status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
	[ "$status" = "install ok installed" ]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "deps.sh: dpkg-query not found; this script supports Debian 12 only." >&2
	echo "deps.sh: please install: ${wanted[*]}" >&2
	exit 1
fi

missing=()
for pkg in "${wanted[@]}"; do
	is_installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps.sh: all $1 dependencies are already installed."
	exit 0
fi

install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages for '$1': ${missing[*]}" >&2
	echo "deps.sh: run as root:" >&2
	echo "  $install_cmd" >&2
	exit 1
fi

echo "deps.sh: installing: ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

# Check that apt-get really delivered everything we asked for.
still=()
for pkg in "${missing[@]}"; do
	is_installed "$pkg" || still+=("$pkg")
done
if [ ${#still[@]} -ne 0 ]; then
	echo "deps.sh: still missing after install: ${still[*]}" >&2
	exit 1
fi
echo "deps.sh: done."
