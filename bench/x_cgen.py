#!/usr/bin/env python3
"""Writes the C file that bench/README.md's cc1 measurement compiles: N
structs and functions with loops and switches (default 300), so that GCC's
optimisers build and drop many trees, hash tables and vectors.
Usage: python3 bench/x_cgen.py [N] > gen.c; gcc -E gen.c > gen.i"""
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
out = ["#include <stdio.h>", "#include <string.h>"]
for i in range(n):
    words, chars, steps = i % 7 + 1, i % 13 + 1, i % 9 + 2
    out.append(f"struct s{i} {{ int a; long b[{words}]; char c[{chars}]; }};")
    out.append(
        f"static int f{i}(struct s{i} *p, int x) {{ int r = x;"
        f" for (int k = 0; k < {steps}; k++) {{ r += p->a * k + (int)p->b[k % {words}];"
        f" if (r > {i}) r ^= p->c[k % {chars}]; }}"
        f" switch (x & 7) {{ case 0: r += {i}; break; case 1: r -= 3; break;"
        f" case 2: r *= 5; break; default: r = r / 3 + x; }} return r; }}")
out.append("int main(void) { int t = 0;")
for i in range(n):
    out.append(f" {{ struct s{i} v; memset(&v, {i % 5}, sizeof v); t += f{i}(&v, t); }}")
out.append(' printf("%d\\n", t); return 0; }')
print("\n".join(out))
