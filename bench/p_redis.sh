#!/usr/bin/env bash
# p_redis - a real server on the allocator: redis-server, the program
# operators preload allocators into. Redis takes every key, value, list
# node, hash and set from malloc, grows strings with realloc and counts its
# memory with malloc_usable_size around each call.
#
# Models a cache and session server: ITERS commands over 50 000 string
# keys, 5 000 hashes, 64 queues and 2 000 sets, in proportions a cache sees:
# SET 35% (values of 8-512 bytes, log-uniform), GET 20%, APPEND 10% (16-256
# bytes: strings that grow), HSET 10%, LPUSH 8% and RPOP 7% (64-512 bytes),
# SADD 5%, DEL 5%. The live heap levels off at a few tens of MiB.
#
# Only redis-server runs on the allocator: this script takes LD_PRELOAD out
# of its own environment and gives it to the server alone, so the client
# (redis-cli --pipe, which streams the commands as fast as the server takes
# them) and the command generator run on glibc, the same for everyone. The
# commands are generated once per ITERS and SEED into bench/build/ (the
# check run does it) and replayed by the measured runs. Debian links
# redis-server with jemalloc: with no preload (the glibc column) the server
# gets redis_glibc.so, built here too, which hands every call to glibc.
#
# Usage: p_redis.sh THREADS ITERS SEED (THREADS is ignored: redis serves
# commands on one thread). Prints checksum=<16 hex digits>: a hash of the
# number of keys and of the contents (redis's DEBUG DIGEST-VALUE) of one key
# in 25 of each kind, every queue, the same on every allocator.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: p_redis.sh THREADS ITERS SEED" >&2; exit 2; }
iters=$2 seed=$3
preload=${LD_PRELOAD:-}
unset LD_PRELOAD

build=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/build
mkdir -p "$build"
cmds=$build/redis-$iters-$seed.resp
if [ ! -s "$cmds" ]; then
	python3 - "$iters" "$seed" >"$cmds.$$" <<'PY'
import math, random, sys

iters, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
pool = bytes(rng.randrange(97, 123) for _ in range(1 << 16))
out = sys.stdout.buffer

def size(lo, hi):
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))

def text(n):
    at = rng.randrange(len(pool) - n)
    return pool[at:at + n]

def command(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    out.write(b"".join(parts))

for _ in range(iters):
    r = rng.randrange(100)
    key = "str:%d" % rng.randrange(50000)
    if r < 35:
        command("SET", key, text(size(8, 512)))
    elif r < 55:
        command("GET", key)
    elif r < 65:
        command("APPEND", key, text(size(16, 256)))
    elif r < 75:
        command("HSET", "user:%d" % rng.randrange(5000), "f%d" % rng.randrange(50),
                text(size(8, 64)))
    elif r < 83:
        command("LPUSH", "q:%d" % rng.randrange(64), text(size(64, 512)))
    elif r < 90:
        command("RPOP", "q:%d" % rng.randrange(64))
    elif r < 95:
        command("SADD", "set:%d" % rng.randrange(2000), "m%d" % rng.randrange(100000))
    else:
        command("DEL", key)
PY
	mv "$cmds.$$" "$cmds"
fi

if [ -z "$preload" ]; then
	preload=$build/redis_glibc.so
	[ -s "$preload" ] || ${CC:-cc} -O2 -shared -fPIC -o "$preload" \
		"$build/../redis_glibc.c" -ldl
fi

. "$build/../redis_server.sh"
redis_start "$preload"

report=$(redis-cli -s "$sock" --pipe <"$cmds")
case $report in
*"errors: 0, replies: $iters"*) ;;
*) echo "p_redis: $report" >&2; exit 1 ;;
esac
# DEBUG DIGEST over the whole data set would cost more than the commands
# (SHA-1 over every value): a sample of each kind of key is hashed instead,
# with the number of keys.
mapfile -t sample < <(printf 'str:%d\n' $(seq 0 25 49999); printf 'user:%d\n' $(seq 0 25 4999)
	printf 'q:%d\n' $(seq 0 63); printf 'set:%d\n' $(seq 0 25 1999))
digest=$({ redis-cli -s "$sock" dbsize; redis-cli -s "$sock" debug digest-value "${sample[@]}"; } |
	sha1sum)
redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || true
wait "$server" || true
server=
echo "checksum=${digest:0:16}"
