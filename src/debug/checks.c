/*
 * Debug checks on every operation, on when FT_MALLOC_SCRIBBLE, _GUARD,
 * _HISTORY or _CALLERS is set. Then no thread cache is ever attached (the fast paths
 * always fall to the slow ones, which call these hooks), so with every
 * option off the fast paths carry no debug test at all.
 *
 *  - scribble: new blocks read 0xAA (not calloc's), freed ones 0x55;
 *  - guard: a TINY/SMALL block gets at least one byte of slack, filled with
 *    a canary checked on free and realloc (an overflow is reported with the
 *    address and the size class); LARGE blocks end against a PROT_NONE page
 *    (large.c), so an overflow faults at the first byte past the end;
 *  - history: every operation goes to the ring (history.c); the callers
 *    record it, one entry per call;
 *  - callers: each live block's call site (callsite.c), for the leak report.
 */
#include <stdlib.h>
#include <string.h>

#include "ftm/internal.h"

#define SCRIBBLE_NEW 0xaa
#define SCRIBBLE_FREED 0x55
#define CANARY 0xcb
#define CANARY_MAX 16 /* bytes of slack checked */

bool ftm_debug;

/* Bytes to allocate for a request: one more under guard, for the canary. */
size_t debug_request(size_t size)
{
	return ftm_options[FTM_OPT_GUARD] && size <= FTM_SMALL_MAX ? size + 1 : size;
}

static size_t canary_len(size_t size, size_t usable)
{
	size_t slack = usable - size;
	return slack < CANARY_MAX ? slack : CANARY_MAX;
}

/* Scribbles the whole room of a new block, not only the bytes asked for:
 * malloc_usable_size promises the rest too, and realloc carries it over, so
 * it must read 0xAA until written (tests/api/debug_scribble_guard.c). */
void debug_on_alloc(void *p, size_t size, bool large)
{
	size_t usable, asked;
	if (large)
		large_lookup(p, &asked, &usable);
	else
		usable = pagemap_zone(p)->size;
	if (ftm_options[FTM_OPT_SCRIBBLE])
		memset(p, SCRIBBLE_NEW, usable);
	if (ftm_options[FTM_OPT_GUARD] && !large)
		memset((char *)p + size, CANARY, canary_len(size, usable));
}

/* Checks the canary of a block about to be freed or moved; reports a heap
 * overflow with the block's size class. */
void debug_check(const char *call, const void *p, size_t size, size_t usable, bool large)
{
	if (!ftm_options[FTM_OPT_GUARD] || large)
		return;
	const unsigned char *tail = (const unsigned char *)p + size;
	for (size_t i = 0; i < canary_len(size, usable); i++)
		if (tail[i] != CANARY) {
			struct ftm_out o = {.fd = ftm_report_fd};
			out_str(&o, "ft_malloc: ");
			out_str(&o, call);
			out_str(&o, "(): heap overflow past ");
			out_hex(&o, (uintptr_t)p);
			out_str(&o, " (");
			out_dec(&o, size);
			out_str(&o, " bytes, ");
			out_str(&o, usable <= FTM_TINY_MAX ? "TINY" : "SMALL");
			out_str(&o, " class of ");
			out_dec(&o, usable);
			out_str(&o, " bytes) at ");
			out_hex(&o, (uintptr_t)(tail + i));
			out_line_end(&o);
			out_flush(&o);
			if (ftm_options[FTM_OPT_ABORT_ON_ERROR])
				abort();
			return;
		}
}

/* One history entry per call, and the block's call site. */
void debug_on_new_block(enum history_op op, void *p, size_t size, const void *caller)
{
	history_record(op, p, size);
	if (ftm_options[FTM_OPT_CALLERS])
		callsite_record(p, caller, size);
}

void debug_on_free(const char *call, void *p, size_t size, size_t usable, bool large)
{
	debug_check(call, p, size, usable, large);
	if (ftm_options[FTM_OPT_CALLERS])
		callsite_forget(p);
	if (ftm_options[FTM_OPT_SCRIBBLE])
		memset(p, SCRIBBLE_FREED, large ? size : usable);
}
