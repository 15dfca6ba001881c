#!/usr/bin/env python3
"""Writes the 25 MB JSON array that bench/README.md's jq measurement reads:
200 000 objects of five fields (a nested object and a list among them)."""
import json
import random
import sys

random.seed(1)
json.dump([{"a": random.randint(0, 10), "name": "n%d" % i,
            "tags": ["x%d" % random.randint(0, 99) for _ in range(3)],
            "v": random.random(),
            "o": {"k": i, "s": "abc" * random.randint(1, 8)}}
           for i in range(200000)], sys.stdout)
sys.stdout.write("\n")
