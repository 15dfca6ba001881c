/*
 * heap_demo: a small multithreaded program whose heap tests/heapmap/run.sh
 * draws with scripts/heapmap. It exists to give the renderer a real heap of
 * several arenas, with every chunk state the dump knows (live, cached in a
 * thread cache, free, never carved), TINY, SMALL and LARGE blocks, blocks
 * freed by a thread other than the one that allocated them, and zones that
 * hold nothing live any more.
 *
 *   heap_demo JSON_OUT SHOW_OUT [SEED]
 *
 * Each of NTHREADS workers allocates a seeded mix of sizes, fills every block
 * with a pattern derived from its address and size, frees about a third of
 * them at once, hands another share to the next worker through a mailbox and
 * frees, after a barrier, half of what it was handed (cross-thread frees).
 * One worker also fills two zones of a size class nobody else uses and frees
 * them entirely, so the dump has zones without live chunks. Then every
 * worker parks on a barrier, still alive so its thread cache is kept, and
 * the main thread, which makes no allocation from then on, writes
 * show_alloc_mem_json to JSON_OUT and show_alloc_mem (fd 1 redirected) to
 * SHOW_OUT: both describe the same, frozen heap. The workers are then
 * released, check every pattern, free everything and are joined.
 *
 * Exit status 0 when all went well; 1 with a message on stderr when a pattern
 * was damaged, an allocation failed or a file could not be written.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft_malloc.h"

#define NTHREADS 6
#define PER_THREAD 1500 /* allocations per worker */
#define HANDOFF 200     /* at most this many blocks given to the next worker */
#define LONELY_SIZE 200 /* class 193..224 B: pick_size never asks for it */
#define LONELY_COUNT 600 /* > two 64 KiB zones' worth of 224-byte chunks */
#define BURST 1200      /* 8-byte blocks: one zone with > 512 carved chunks */

struct block {
	unsigned char *p;
	size_t size;
};

struct mailbox {
	pthread_mutex_t lock;
	struct block items[HANDOFF];
	size_t count;
};

struct worker {
	pthread_t thread;
	unsigned id;
	uint64_t rng;
	struct block kept[PER_THREAD + HANDOFF + BURST]; /* live until the end */
	size_t nkept;
	int failed;
};

static struct mailbox boxes[NTHREADS];
static struct worker workers[NTHREADS];
static pthread_barrier_t handed;  /* every mailbox is full */
static pthread_barrier_t parked;  /* workers stopped: the heap is frozen */
static pthread_barrier_t dumped;  /* the main thread wrote both views */
static unsigned long base_seed = 42;

static uint64_t next_rand(uint64_t *s)
{
	/* xorshift64*: deterministic for a given seed, good enough for sizes */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

/* Per mille: 30 exact class edges, 670 TINY, 285 SMALL, 15 LARGE. */
static size_t pick_size(uint64_t *s)
{
	uint64_t r = next_rand(s);
	unsigned roll = (unsigned)(r % 1000);
	r >>= 10;
	if (roll < 30)
		return (size_t[]){0, 1, 512, 513, 32768, 32769}[r % 6];
	if (roll < 700) {
		size_t sz = 1 + r % 512;
		/* keep out of the lonely class (193..224 bytes) */
		return sz > 192 && sz <= 224 ? sz - 40 : sz;
	}
	if (roll < 985)
		return 513 + r % (32768 - 512);
	return 32769 + r % (600 * 1024);
}

static unsigned char pattern(const unsigned char *p, size_t size)
{
	uintptr_t a = (uintptr_t)p;
	return (unsigned char)(a >> 4 ^ a >> 12 ^ size ^ 0x5a);
}

static int fill(struct block b)
{
	if (b.p == NULL)
		return -1;
	memset(b.p, pattern(b.p, b.size), b.size);
	return 0;
}

static int intact(struct block b)
{
	unsigned char c = pattern(b.p, b.size);
	for (size_t i = 0; i < b.size; i++)
		if (b.p[i] != c)
			return 0;
	return 1;
}

static void release(struct worker *w, struct block b)
{
	if (!intact(b)) {
		fprintf(stderr, "heap_demo: worker %u: block %p (%zu bytes) damaged\n",
			w->id, (void *)b.p, b.size);
		w->failed = 1;
	}
	free(b.p);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct block *mine = malloc(PER_THREAD * sizeof(*mine));
	struct block *lonely = malloc(LONELY_COUNT * sizeof(*lonely));
	if (mine == NULL || lonely == NULL) {
		w->failed = 1;
		free(mine);
		free(lonely);

	/* another: many 8-byte blocks, two in three kept (a zone the renderer
	 * must draw as runs of chunks rather than chunk by chunk) */
	if (w->id == 2) {
		for (size_t i = 0; i < BURST && !w->failed; i++) {
			struct block b = {malloc(8), 8};
			if (fill(b) != 0)
				w->failed = 1;
			else if (i % 3 == 0)
				release(w, b);
			else
				w->kept[w->nkept++] = b;
		}
	}
		mine = lonely = NULL;
	}
	size_t n = 0;
	for (; mine != NULL && n < PER_THREAD; n++) {
		mine[n].size = pick_size(&w->rng);
		mine[n].p = malloc(mine[n].size);
		if (fill(mine[n]) != 0) {
			fprintf(stderr, "heap_demo: malloc(%zu) failed\n", mine[n].size);
			w->failed = 1;
			break;
		}
		/* now and then grow or shrink a block, keeping its contents */
		if (next_rand(&w->rng) % 16 == 0) {
			size_t nsize = pick_size(&w->rng);
			size_t keep = nsize < mine[n].size ? nsize : mine[n].size;
			unsigned char c = pattern(mine[n].p, mine[n].size);
			unsigned char *q = realloc(mine[n].p, nsize ? nsize : 1);
			if (q == NULL) {
				w->failed = 1;
				break;
			}
			for (size_t i = 0; i < keep; i++)
				if (q[i] != c) {
					fprintf(stderr, "heap_demo: realloc lost byte %zu\n", i);
					w->failed = 1;
					break;
				}
			mine[n].p = q;
			mine[n].size = nsize ? nsize : 1;
			fill(mine[n]);
		}
	}

	/* one worker: a size class filled then emptied, zones with nothing live */
	if (w->id == 1 && lonely != NULL) {
		for (size_t i = 0; i < LONELY_COUNT; i++) {
			lonely[i] = (struct block){malloc(LONELY_SIZE), LONELY_SIZE};
			if (fill(lonely[i]) != 0) {
				w->failed = 1;
				for (size_t j = 0; j < i; j++)
					release(w, lonely[j]);
				break;
			}
			if (i == LONELY_COUNT - 1)
				for (size_t j = 0; j < LONELY_COUNT; j++)
					release(w, lonely[j]);
		}
	}
	free(lonely);

	/* another: many 8-byte blocks, two in three kept (a zone the renderer
	 * must draw as runs of chunks rather than chunk by chunk) */
	if (w->id == 2) {
		for (size_t i = 0; i < BURST && !w->failed; i++) {
			struct block b = {malloc(8), 8};
			if (fill(b) != 0)
				w->failed = 1;
			else if (i % 3 == 0)
				release(w, b);
			else
				w->kept[w->nkept++] = b;
		}
	}

	/* a third freed at once, some handed to the next worker, the rest kept */
	struct mailbox *next = &boxes[(w->id + 1) % NTHREADS];
	for (size_t i = 0; i < n; i++) {
		uint64_t r = next_rand(&w->rng) % 9;
		if (r < 3) {
			release(w, mine[i]);
		} else if (r < 4) {
			pthread_mutex_lock(&next->lock);
			int room = next->count < HANDOFF;
			if (room)
				next->items[next->count++] = mine[i];
			pthread_mutex_unlock(&next->lock);
			if (!room)
				w->kept[w->nkept++] = mine[i];
		} else {
			w->kept[w->nkept++] = mine[i];
		}
	}
	free(mine);

	pthread_barrier_wait(&handed);
	/* free half of what the previous worker handed over: remote frees */
	struct mailbox *own = &boxes[w->id];
	pthread_mutex_lock(&own->lock);
	for (size_t i = 0; i < own->count; i++) {
		if (i % 2 == 0)
			release(w, own->items[i]);
		else
			w->kept[w->nkept++] = own->items[i];
	}
	own->count = 0;
	pthread_mutex_unlock(&own->lock);

	pthread_barrier_wait(&parked);  /* the main thread dumps now */
	pthread_barrier_wait(&dumped);
	for (size_t i = 0; i < w->nkept; i++)
		release(w, w->kept[i]);
	return NULL;
}

/* show_alloc_mem writes to fd 1: point fd 1 at SHOW_OUT for the call. */
static int show_into(int fd)
{
	fflush(stdout);
	int saved = dup(1);
	if (saved < 0 || dup2(fd, 1) < 0)
		return -1;
	show_alloc_mem();
	if (dup2(saved, 1) < 0)
		return -1;
	close(saved);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: %s JSON_OUT SHOW_OUT [SEED]\n", argv[0]);
		return 2;
	}
	if (argc == 4)
		base_seed = strtoul(argv[3], NULL, 10);
	int json_fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int show_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (json_fd < 0 || show_fd < 0) {
		perror("heap_demo: open");
		return 1;
	}
	pthread_barrier_init(&handed, NULL, NTHREADS);
	pthread_barrier_init(&parked, NULL, NTHREADS + 1);
	pthread_barrier_init(&dumped, NULL, NTHREADS + 1);
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_mutex_init(&boxes[i].lock, NULL);
		workers[i].id = i;
		workers[i].rng = base_seed * 0x9E3779B97F4A7C15ULL + i + 1;
		if (pthread_create(&workers[i].thread, NULL, work, &workers[i]) != 0) {
			fprintf(stderr, "heap_demo: pthread_create failed\n");
			return 1;
		}
	}

	pthread_barrier_wait(&parked);
	/* every worker is blocked, and nothing below allocates: one heap, two views */
	show_alloc_mem_json(json_fd);
	int rc = show_into(show_fd);
	pthread_barrier_wait(&dumped);

	int failed = rc != 0;
	if (rc != 0)
		perror("heap_demo: dup2");
	size_t kept = 0;
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(workers[i].thread, NULL);
		failed |= workers[i].failed;
		kept += workers[i].nkept;
	}
	if (close(json_fd) != 0 || close(show_fd) != 0) {
		perror("heap_demo: close");
		failed = 1;
	}
	fprintf(stderr, "heap_demo: %u threads, %zu blocks live at the dump%s\n",
		NTHREADS, kept, failed ? ", FAILED" : "");
	return failed;
}
