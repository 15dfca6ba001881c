#!/usr/bin/env bash
# x_redis_frag - how much memory a server keeps after its values change size,
# and after its data goes (bench/README.md, Other programs). redis-server,
# on the allocator given as $1 (a library to preload; none: the server's
# own, jemalloc on Debian), takes 400 000 SETs of 16-600 byte values, then
# DELs three keys in four at random, then 100 000 SETs of 600-2000 byte
# values; then a FLUSHALL SYNC, 6 s without a command (past the default
# FT_MALLOC_DECAY_MS), and 100 SETs. After each phase it prints the
# server's resident anonymous memory, read from /proc/PID/smaps_rollup:
# redis's own INFO rss comes from the kernel's per-CPU counters and moved
# by 15% between runs of the same state.
#
# Usage: x_redis_frag.sh [LIBRARY]
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/redis_server.sh"

python3 - "$work" <<'PY'
import math, random, sys

rng = random.Random(7)
pool = bytes(rng.randrange(97, 123) for _ in range(1 << 16))

def value(lo, hi):
    n = int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))
    at = rng.randrange(len(pool) - n)
    return pool[at:at + n]

def command(out, *args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))

keys = 400000
with open(sys.argv[1] + "/fill", "wb") as out:
    for i in range(keys):
        command(out, "SET", "k:%d" % i, value(16, 600))
with open(sys.argv[1] + "/delete", "wb") as out:
    for i in rng.sample(range(keys), keys * 3 // 4):
        command(out, "DEL", "k:%d" % i)
with open(sys.argv[1] + "/refill", "wb") as out:
    for i in range(keys // 4):
        command(out, "SET", "n:%d" % i, value(600, 2000))
with open(sys.argv[1] + "/flush", "wb") as out:
    command(out, "FLUSHALL", "SYNC")
with open(sys.argv[1] + "/trickle", "wb") as out:
    for i in range(100):
        command(out, "SET", "t:%d" % i, value(16, 600))
PY

redis_start "${1:-}"
for phase in fill delete refill flush trickle; do
	[ "$phase" = trickle ] && sleep 6
	redis-cli -s "$sock" --pipe <"$work/$phase" >/dev/null
	used=$(redis-cli -s "$sock" info memory | tr -d '\r' | sed -n 's/^used_memory://p')
	anon=$(awk '/^Anonymous:/ {print $2}' "/proc/$server/smaps_rollup")
	echo "$phase: used_memory $((used / 1024)) KiB, anonymous resident $anon KiB"
done
redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || true
wait "$server" || true
server=
