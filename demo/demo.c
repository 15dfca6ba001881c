/*
 * The bundled demo: four worker threads, each bound to its own arena, build
 * a small heap of TINY, SMALL and LARGE blocks; each hands half of its blocks
 * to the next worker, which frees them (cross-thread free). The main thread
 * then prints the heap with show_alloc_mem: every live block of every arena
 * and of the LARGE registry, in address order, with the total.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_malloc.h"

#define WORKERS 4
#define BLOCKS 6

static const size_t sizes[BLOCKS] = {24, 42, 300, 3725, 20000, 48847};

struct worker {
	int id;
	pthread_barrier_t *built;
	char *blocks[BLOCKS];
	struct worker *next;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < BLOCKS; i++) {
		w->blocks[i] = malloc(sizes[i] + (size_t)w->id);
		memset(w->blocks[i], 'a' + w->id, sizes[i] + (size_t)w->id);
	}
	pthread_barrier_wait(w->built);
	/* free the odd blocks of the next worker: they go back to its arena */
	for (int i = 1; i < BLOCKS; i += 2) {
		free(w->next->blocks[i]);
		w->next->blocks[i] = NULL;
	}
	return NULL;
}

int main(void)
{
	pthread_t threads[WORKERS];
	struct worker workers[WORKERS];
	pthread_barrier_t built;
	pthread_barrier_init(&built, NULL, WORKERS);
	for (int i = 0; i < WORKERS; i++)
		workers[i] = (struct worker){.id = i, .built = &built, .next = &workers[(i + 1) % WORKERS]};
	for (int i = 0; i < WORKERS; i++)
		pthread_create(&threads[i], NULL, work, &workers[i]);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(threads[i], NULL);

	printf("ft_malloc demo: %d threads kept blocks of %zu, %zu, %zu bytes (+ thread id)\n",
	       WORKERS, sizes[0], sizes[2], sizes[4]);
	printf("show_alloc_mem():\n");
	fflush(stdout);
	show_alloc_mem();

	for (int i = 0; i < WORKERS; i++)
		for (int b = 0; b < BLOCKS; b++)
			free(workers[i].blocks[b]);
	pthread_barrier_destroy(&built);
	return 0;
}
