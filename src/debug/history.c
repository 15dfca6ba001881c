/*
 * The allocation history (FT_MALLOC_HISTORY=N): a ring of the last N
 * operations, each with its address, size, thread id and monotonic time.
 * Writers claim a slot with one atomic increment and publish it by writing
 * its sequence number last, so a reader (show_alloc_mem_ex, the fatal-signal
 * handler) skips a slot being rewritten instead of printing half of it.
 */
#include "ftm/internal.h"

struct history_entry {
	uint64_t seq;  /* 1 + the operation's number; 0 while being written */
	uint64_t ns;   /* CLOCK_MONOTONIC */
	uintptr_t ptr; /* the block */
	uint64_t size; /* bytes asked for (0 for free) */
	uint32_t tid;  /* kernel thread id */
	uint32_t op;   /* enum history_op */
};

static struct history_entry *ring;
static uint64_t ring_len;
static uint64_t ring_next; /* operations recorded so far */

static const char *const op_names[] = {"malloc", "free", "realloc"};

bool history_init(size_t entries)
{
	ring = os_map(entries * sizeof(*ring));
	ring_len = ring ? entries : 0;
	return ring != NULL;
}

void history_record(enum history_op op, const void *p, size_t size)
{
	if (!ring_len)
		return;
	uint64_t n = __atomic_fetch_add(&ring_next, 1, __ATOMIC_RELAXED);
	struct history_entry *e = &ring[n % ring_len];
	__atomic_store_n(&e->seq, 0, __ATOMIC_RELAXED);
	e->ns = os_now_ns();
	e->ptr = (uintptr_t)p;
	e->size = size;
	e->tid = os_thread_id();
	e->op = op;
	__atomic_store_n(&e->seq, n + 1, __ATOMIC_RELEASE);
}

/* Oldest first: "history: last K of N operations" then one line each. */
void history_print(struct ftm_out *o)
{
	if (!ring_len)
		return;
	uint64_t total = __atomic_load_n(&ring_next, __ATOMIC_ACQUIRE);
	uint64_t first = total > ring_len ? total - ring_len : 0;
	out_str(o, "history: last ");
	out_dec(o, total - first);
	out_str(o, " of ");
	out_dec(o, total);
	out_str(o, " operations");
	out_line_end(o);
	for (uint64_t n = first; n < total; n++) {
		const struct history_entry *e = &ring[n % ring_len];
		if (__atomic_load_n(&e->seq, __ATOMIC_ACQUIRE) != n + 1)
			continue;
		out_str(o, "  #");
		out_dec(o, n + 1);
		out_str(o, " t=");
		out_dec(o, e->ns);
		out_str(o, "ns tid=");
		out_dec(o, e->tid);
		out_str(o, " ");
		out_str(o, op_names[e->op]);
		out_str(o, " ");
		out_hex(o, e->ptr);
		out_str(o, " ");
		out_dec(o, e->size);
		out_line_end(o);
	}
}
