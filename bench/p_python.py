#!/usr/bin/python3
# p_python - a real interpreter on the allocator. CPython keeps objects of up
# to 512 bytes in its own pools (pymalloc) and takes everything bigger from
# malloc: list and dict tables as they grow, long strings and bytes, the
# buffers of json and of str.join. So this measures the allocator on the
# medium and large blocks of a real program, with realloc growth.
#
# Models a service handling JSON documents: ITERS requests, each builds a
# document (a dict of lists of dicts, strings of 1 to 3000 characters),
# serializes it, parses it back, transforms it (sorted copies, joined text),
# and keeps the result in a bounded cache of 300 entries from which old ones
# are evicted at random.
#
# Usage: p_python.py THREADS ITERS SEED (THREADS is ignored: one interpreter).
# Prints checksum=<16 hex digits>, built from lengths and values, never from
# addresses or str hashes, so every allocator prints the same.
import json
import random
import sys

if len(sys.argv) != 4:
    sys.exit("usage: p_python.py THREADS ITERS SEED")
iters, seed = int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
pieces = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3000)))
          for _ in range(256)]

cache = []
total = 0
for i in range(iters):
    doc = {
        "id": i,
        "items": [{"name": pieces[rng.randrange(256)][: rng.randint(1, 600)],
                   "tags": [rng.randrange(1000) for _ in range(rng.randint(0, 40))]}
                  for _ in range(rng.randint(1, 30))],
        "body": pieces[rng.randrange(256)] * rng.randint(1, 4),
    }
    text = json.dumps(doc)
    back = json.loads(text)
    names = sorted(item["name"] for item in back["items"])
    joined = "|".join(names) + back["body"]
    tags = sorted(t for item in back["items"] for t in item["tags"])
    total += len(text) + len(joined) + sum(tags[:10])
    if len(cache) >= 300:
        k = rng.randrange(len(cache))
        total += len(cache[k][1])
        cache[k] = cache[-1]
        cache.pop()
    cache.append((tags, joined))
total += sum(len(j) for _, j in cache)
print("checksum=%016x" % (total & 0xFFFFFFFFFFFFFFFF))
