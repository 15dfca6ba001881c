/*
 * The thread-cache hit path in isolation: N rounds of malloc(size) then
 * free of that block, always the same size, so after the first round every
 * call is a cache hit. scripts/fastpath.sh runs it under callgrind for two
 * values of N; the difference divided by the difference in N is the cost
 * of one malloc+free pair, free of start-up and exit.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 100000;
	size_t size = argc > 2 ? (size_t)atol(argv[2]) : 64;
	unsigned long sum = 0;
	for (long i = 0; i < rounds; i++) {
		unsigned char *volatile p = malloc(size);
		p[0] = (unsigned char)i;
		sum += p[0];
		free(p);
	}
	printf("checksum=%lx\n", sum);
	return 0;
}
