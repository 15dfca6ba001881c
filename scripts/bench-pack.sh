#!/usr/bin/env bash
# Packs what scripts/bench.sh needs from Debian into one folder, for a machine
# that can run the benchmark but cannot install anything (a lent 16-core
# machine with no network): the three peer allocators, hyperfine and GNU
# time, with a VERSIONS file naming each package's version.
#
#   bash scripts/bench-pack.sh [DIR]        # DIR defaults to bench/peers
#
# Then, on the other machine, from a copy of the tree that carries DIR
# (bench/peers: `make bench-scaling` and scripts/device-scaling.sh look
# there; another DIR goes in BENCH_LIBDIR):
#
#   bash scripts/device-scaling.sh
#
# The copies are Debian 12's binaries: they need a glibc at least as new as
# 2.36 and, for tcmalloc, libstdc++ on the other machine.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-bench/peers}
bash scripts/deps.sh bench
mkdir -p "$dir/bin"

lib_of() { # PACKAGE SONAME -> path of that library in the package
	dpkg -L "$1" | grep -m1 "/$2\$"
}
: >"$dir/VERSIONS"
while read -r name pkg soname; do
	cp -L "$(lib_of "$pkg" "$soname")" "$dir/$soname"
	echo "$name $(dpkg-query -W -f '${Version}' "$pkg")" >>"$dir/VERSIONS"
done <<'EOF'
jemalloc libjemalloc2 libjemalloc.so.2
tcmalloc libtcmalloc-minimal4 libtcmalloc_minimal.so.4
mimalloc libmimalloc2.0 libmimalloc.so.2
EOF
cp -L "$(command -v hyperfine)" /usr/bin/time "$dir/bin/"
du -sh "$dir"
