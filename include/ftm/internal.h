/*
 * Internal interface: prototypes grouped by the file that defines them, and
 * the few inline helpers the fast paths share (size class, page map, chunk
 * index). Nothing here is exported from the library.
 */
#ifndef FTM_INTERNAL_H
#define FTM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/single_threaded.h>

#include "ftm/types.h"

/* Everything declared here stays inside the library; saying so lets the
 * compiler address our globals directly instead of through the GOT. */
#pragma GCC visibility push(hidden)

struct ftm_out;

#define FTM_EXPORT __attribute__((visibility("default")))
#define FTM_COLD __attribute__((cold, noinline))
#define FTM_LIKELY(x) __builtin_expect(!!(x), 1)
#define FTM_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* The standard names are aliases of the ftm_* ones; the unit tests build the
 * core without them so it can live beside libc's malloc. */
#ifdef FTM_NO_OVERRIDE
#define FTM_OVERRIDE(std, ours)
#else
#define FTM_OVERRIDE(std, ours) \
	extern __typeof__(ours) std __attribute__((alias(#ours), visibility("default")));
#endif

/* ---- core/sizeclass.c ---------------------------------------------------- */
extern struct ftm_class ftm_classes[FTM_CLASS_COUNT];
void sizeclass_init(void);

/* size_class of 16 * k for k <= 64: a lookup for the common small sizes */
extern uint8_t ftm_class_lut[65];
/* The same lookup giving offsetof(struct ftm_tcache, bins[class]), for
 * malloc's fast path. */
extern uint16_t ftm_bin_lut[65];
/* The same in 128-byte steps, for 1024 < n <= FTM_SMALL_MAX. */
extern uint16_t ftm_bin_lut_medium[FTM_SMALL_MAX / 128 + 1];

/* Class of a request of n <= FTM_SMALL_MAX bytes: 16-byte steps up to 128,
 * then five classes per doubling, at 9/8, 10/8, 12/8, 14/8 and 16/8 of the
 * power of two below. Less than a sixth of a chunk is slack, and a request
 * just over a power of two (a 4 KiB page or a 1 KiB buffer behind a small
 * header, common in C programs: sqlite's pages are 4104 bytes) loses at most
 * a ninth where four even steps lost a fifth. q is the eighth of the
 * doubling that n - 1 falls in; the nibbles of 0x44332210 map it to the
 * class within the doubling. */
static inline uint32_t size_class(size_t n)
{
	if (n <= 128)
		return n ? (uint32_t)((n - 1) >> 4) : 0;
	size_t m = n - 1;
	uint32_t log = 63u - (uint32_t)__builtin_clzl(m);
	uint32_t q = (uint32_t)(m >> (log - 3)) & 7;
	return (log - 7) * 5 + 8 + ((0x44332210u >> (4 * q)) & 15);
}

/* size_class(n) for n <= 1024, by table. */
static inline uint32_t size_class_small(size_t n)
{
	return ftm_class_lut[(n + 15) >> 4];
}

/* The calling thread's bin for n <= 1024 bytes, by table. */
static inline struct ftm_bin *bin_small(struct ftm_tcache *tc, size_t n)
{
	return (struct ftm_bin *)((char *)tc + ftm_bin_lut[(n + 15) >> 4]);
}

/* The calling thread's bin for 1024 < n <= FTM_SMALL_MAX, by table: past
 * 1 KiB every class size is a multiple of 128, so 128-byte steps find it. */
static inline struct ftm_bin *bin_medium(struct ftm_tcache *tc, size_t n)
{
	return (struct ftm_bin *)((char *)tc + ftm_bin_lut_medium[(n + 127) >> 7]);
}

/* Size of class cls, the inverse of size_class. */
static inline uint32_t class_size(uint32_t cls)
{
	static const uint8_t eighths[5] = {9, 10, 12, 14, 16};
	if (cls < 8)
		return (cls + 1) * 16;
	return (uint32_t)eighths[(cls - 8) % 5] << ((cls - 8) / 5 + 4);
}

/* ---- core/pagemap.c ------------------------------------------------------ */
extern struct ftm_zone **ftm_pagemap[1u << FTM_ROOT_BITS];
extern struct ftm_zone *ftm_pagemap_empty[1u << FTM_LEAF_BITS];
bool pagemap_register(uintptr_t start, size_t size, struct ftm_zone *zone);
void pagemap_unregister(uintptr_t start, size_t size);

/* The zone covering p, or NULL when no zone of ours does. Never faults. The
 * root index is masked rather than range-checked: a non-canonical pointer
 * aliases some 128 GiB window, and the exact chunk-start check that every
 * caller makes next rejects it. */
static inline struct ftm_zone *pagemap_zone(const void *p)
{
	uintptr_t a = (uintptr_t)p;
	struct ftm_zone **leaf = __atomic_load_n(
	    &ftm_pagemap[(a >> (FTM_GRANULE_SHIFT + FTM_LEAF_BITS)) & ((1u << FTM_ROOT_BITS) - 1)],
	    __ATOMIC_ACQUIRE);
	return __atomic_load_n(&leaf[(a >> FTM_GRANULE_SHIFT) & ((1u << FTM_LEAF_BITS) - 1)],
			       __ATOMIC_ACQUIRE);
}

/* ---- arena/zone.c -------------------------------------------------------- */
extern uint64_t ftm_zone_key; /* a magic number ^ the process secret */
void zone_init_key(void);
void *zone_header_space(struct ftm_arena *arena, size_t bytes);
struct ftm_zone *zone_reserve(struct ftm_arena *arena, uint32_t cls);
void zone_unreserve(struct ftm_zone *zone);
struct ftm_zone *zone_open(struct ftm_zone *zone, uintptr_t base);
struct ftm_zone *zone_create(struct ftm_arena *arena, uint32_t cls);
void zone_close(struct ftm_zone *zone, bool keep_pages);
uint32_t zone_take(struct ftm_zone *zone, struct ftm_slot *out, uint32_t want);
struct ftm_page_run zone_carved_pages(const struct ftm_zone *zone, uint32_t from);
uint32_t zone_put_run(struct ftm_zone *zone, const struct ftm_slot *chunks, uint32_t count);

/* The header's seal is intact: it names a zone that has not ended. It is
 * the header's first word, so an overwrite from the header below cannot
 * reach the chunk geometry without breaking it, and free checks it before
 * trusting that geometry. The page map only ever points at headers, so the
 * seal need not mix in the header's address (one instruction less on free;
 * an attacker who can read one seal could undo the mixing anyway). */
static inline bool zone_sealed(const struct ftm_zone *zone)
{
	return zone->check == ftm_zone_key;
}

/* Sealed, and its class can index ftm_classes: what the slow paths check
 * before they read anything else of the header. */
static inline bool zone_check(const struct ftm_zone *zone)
{
	return zone_sealed(zone) && zone->cls < FTM_CLASS_COUNT;
}

/* Bytes of the zone's mapping. */
static inline size_t zone_bytes(const struct ftm_zone *zone)
{
	return (size_t)1 << ftm_classes[zone->cls].zone_shift;
}

/* Start of the zone's mapping, which is chunk 0. */
static inline uintptr_t zone_base(const struct ftm_zone *zone)
{
	return zone->first;
}

static inline char *zone_chunk(const struct ftm_zone *zone, uint32_t index)
{
	return (char *)zone->first + (size_t)index * zone->size;
}

/* off / size when size divides off exactly, and a number >= capacity for
 * every other offset (interior, misaligned, below the zone, past its end),
 * in one multiply and one rotate: with size = odd << shift, the product by
 * the odd factor's inverse is exact for multiples, and the rotate brings
 * any bits a non-multiple leaves below `shift`, or a remainder by the odd
 * factor, into the high bits (sizeclass_init; tests/unit/sizeclass.c). */
static inline uint64_t zone_chunk_slot(const struct ftm_zone *zone, const void *p)
{
	uint64_t scaled = ((uintptr_t)p - zone->first) * zone->inverse;
	uint32_t shift = zone->index_shift;
	return (scaled >> shift) | (scaled << (-shift & 63));
}

/* Index of the chunk that starts at p, or UINT32_MAX when p is not exactly
 * the start of a chunk of this zone. */
static inline uint32_t zone_chunk_index(const struct ftm_zone *zone, const void *p)
{
	uint64_t index = zone_chunk_slot(zone, p);
	return FTM_LIKELY(index < zone->capacity) ? (uint32_t)index : UINT32_MAX;
}

/* &zone->meta[index], written as byte arithmetic so that the compiler folds
 * meta's offset into the load or store instead of adding it first. */
static inline uint16_t *meta_slot(struct ftm_zone *zone, size_t index)
{
	return (uint16_t *)((char *)zone->meta + 2 * index);
}

static inline uint16_t meta_load(const struct ftm_zone *zone, size_t index)
{
	return __atomic_load_n(meta_slot((struct ftm_zone *)zone, index), __ATOMIC_RELAXED);
}

static inline void meta_store(struct ftm_zone *zone, size_t index, uint16_t state)
{
	__atomic_store_n(meta_slot(zone, index), state, __ATOMIC_RELAXED);
}

/* Moves a chunk from state `seen` to `state` only if no other thread changed
 * it in between: of two threads freeing the same pointer at once, exactly
 * one wins, so a racing double free is caught rather than caching the chunk
 * twice (tests/stress/double_free_race.c). No other thread can change it
 * while glibc says the process has one thread (__libc_single_threaded
 * turns false in pthread_create before the new thread exists), so the
 * compare-and-swap, about 15% of a single-threaded small-object churn, is
 * only paid once there are two. */
static inline bool meta_replace(struct ftm_zone *zone, size_t index, uint16_t seen,
				uint16_t state)
{
	if (FTM_LIKELY(__libc_single_threaded)) {
		meta_store(zone, index, state);
		return true;
	}
	return __atomic_compare_exchange_n(meta_slot(zone, index), &seen, state, false,
					   __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* ---- arena/span.c -------------------------------------------------------- */
uintptr_t span_take(struct ftm_arena *arena, uint32_t shift);
bool span_take_at(struct ftm_arena *arena, uintptr_t addr, uint32_t shift);
bool span_is_free(const struct ftm_arena *arena, uintptr_t addr, uint32_t shift);
void span_give(struct ftm_arena *arena, uintptr_t addr, uint32_t shift, bool keep_pages);

/* ---- arena/arena.c ------------------------------------------------------- */
extern struct ftm_arena ftm_arenas[FTM_MAX_ARENAS];
extern uint32_t ftm_arena_count;
extern struct ftm_zone_pages ftm_zone_pages;
/* Most idle zones a new zone's search for pages looks at (arena.c). */
#define FTM_TAKEOVER_LOOKS 64
extern uint32_t ftm_arena_threads[FTM_MAX_ARENAS]; /* threads bound to each arena now */
void arena_init_all(uint32_t count);
uint32_t arena_index(const struct ftm_arena *arena);
struct ftm_arena *arena_bind(void);
void arena_unbind(struct ftm_arena *arena);
struct ftm_arena *arena_for_thread(void);
void arena_lock(struct ftm_arena *arena);
void arena_unlock(struct ftm_arena *arena);
uint32_t arena_refill(struct ftm_arena *arena, uint32_t cls, struct ftm_slot *out, uint32_t want);
void arena_return(uint32_t cls, const struct ftm_slot *chunks, uint32_t count);
void *arena_alloc_one(uint32_t cls);
size_t arena_trim(void);
void arena_lock_all(void);
bool arena_trylock_all(void);
void arena_unlock_all(void);
void arena_reinit_after_fork(struct ftm_arena *mine);

/* ---- tcache/tcache.c ----------------------------------------------------- */
extern __thread struct ftm_tcache *ftm_tls_tcache;
extern struct ftm_tcache ftm_tcache_boot;
extern struct ftm_tcache ftm_tcache_dead;
void tcache_init_geometry(void);

/* Chunks a bin holds now; read by other threads for statistics. */
static inline uint32_t bin_count(const struct ftm_bin *bin)
{
	return (uint32_t)(__atomic_load_n(&bin->top, __ATOMIC_RELAXED) - bin->base);
}

/* The bin's newest chunk (the bin holds one), marked live with the size
 * asked for. */
static inline void *bin_pop(struct ftm_bin *bin, size_t size)
{
	struct ftm_slot *top = --bin->top;
	__atomic_store_n(top->meta, (uint16_t)(bin->live - size), __ATOMIC_RELAXED);
	return top->chunk;
}

/* Allocations served by a bin so far (see struct ftm_bin). */
static inline uint64_t bin_mallocs(const struct ftm_bin *bin)
{
	return __atomic_load_n(&bin->refilled, __ATOMIC_RELAXED) +
	       __atomic_load_n(&bin->frees, __ATOMIC_RELAXED) -
	       __atomic_load_n(&bin->flushed, __ATOMIC_RELAXED) - bin_count(bin);
}
struct ftm_tcache *tcache_attach(void);
uint32_t tcache_refill(struct ftm_tcache *tc, uint32_t cls);
void tcache_flush(struct ftm_tcache *tc, uint32_t cls, uint32_t keep);
void tcache_make_room(struct ftm_tcache *tc, uint32_t cls);
void tcache_flush_all(struct ftm_tcache *tc);
void tcache_sum_live_stats(struct ftm_class_stats *by_class);
void tcache_lock_pool(void);
void tcache_unlock_pool(void);
void tcache_reinit_pool_lock(void);

/* ---- large/extent.c (under the registry lock) ---------------------------- */
/* Ranges the caller must unmap once it has released the lock. */
struct extent_drop {
	struct ftm_extent range[4];
	size_t count;
};
void extent_drop_add(struct extent_drop *drop, uintptr_t addr, size_t len);
void *extent_take(size_t len);
bool extent_take_at(const void *addr, size_t len);
/* The cache holds at least this many bytes (see extent.c). */
#define FTM_EXTENT_BYTES_MIN ((size_t)64 << 20)
/* A cached range nothing went into for this long may go when the process
 * keeps more than its busy peak leaves room for (large.c, kept memory). */
#define FTM_STALE_MS 100
/* live: bytes of the LARGE blocks now mapped, which sets the byte bound;
 * now: os_now_ns(), against which idle ranges decay; what goes back to the
 * OS is appended to *drop (which may hold one range already) */
void extent_put(void *addr, size_t len, size_t live, uint64_t now, struct extent_drop *drop);
/* Lets go of up to `bytes` of the ranges nothing went into for `min_age`
 * ns, oldest first (a range's tail when that is enough), while *drop has
 * room. */
void extent_drop_stale(size_t bytes, uint64_t now, uint64_t min_age, struct extent_drop *drop);
/* The ranges nothing went into for FT_MALLOC_DECAY_MS go, while *drop has
 * room. */
void extent_decay(uint64_t now, struct extent_drop *drop);
size_t extent_drain(struct extent_drop *drop, size_t max);
size_t extent_cached_bytes(void);

/* ---- large/large.c ------------------------------------------------------- */
/* A block grown by realloc has its pages faulted in this far past its new
 * end (an eighth of it, at most this), and at most FTM_GROW_PREFAULT_MAX
 * at once (see grow_warm). */
#define FTM_GROW_AHEAD ((size_t)64 << 10)
#define FTM_GROW_PREFAULT_MAX ((size_t)256 << 10)
void *large_alloc(size_t size, size_t align, bool zero);
size_t large_trim(void);
bool large_free(void *p);
void large_trim_stale(void);
void large_decay(void);
bool large_lookup(const void *p, size_t *size, size_t *usable);
bool large_realloc(void *p, size_t size, void **moved);
void large_lock(void);
bool large_trylock(void);
void large_unlock(void);
void large_reinit_lock(void);
size_t large_bytes_mapped(void);
size_t large_count(void);
/* Visits every LARGE mapping (registry lock held by the caller). */
void large_for_each(void (*visit)(const struct ftm_large *, void *), void *ctx);

/* ---- debug/callsite.c ---------------------------------------------------- */
/* the return address of the malloc-family call being served */
#define FTM_CALLER __builtin_return_address(0)
void callsite_record(const void *block, const void *caller, size_t size);
void callsite_forget(const void *block);
uintptr_t callsite_of(const void *block);
size_t callsite_count(void);
void callsite_for_each(void (*visit)(uintptr_t caller, size_t size, void *ctx), void *ctx);
void callsite_lock(void);
void callsite_unlock(void);
void callsite_reinit_lock(void);

/* ---- debug/checks.c, debug/history.c, debug/report.c ---------------------- */
enum history_op { HISTORY_MALLOC, HISTORY_FREE, HISTORY_REALLOC };
extern bool ftm_debug; /* scribble, guard, history or callers on: no thread caches */
size_t debug_request(size_t size);
void debug_on_alloc(void *p, size_t size, bool large);
void debug_check(const char *call, const void *p, size_t size, size_t usable, bool large);
void debug_on_free(const char *call, void *p, size_t size, size_t usable, bool large);
void debug_on_new_block(enum history_op op, void *p, size_t size, const void *caller);
bool history_init(size_t entries);
void history_record(enum history_op op, const void *p, size_t size);
void history_print(struct ftm_out *o);
void debug_init(void);
void stats_print(struct ftm_out *o);

/* ---- show/walk.c --------------------------------------------------------- */
struct heap_visitor {
	void (*zone)(const struct ftm_zone *zone, void *ctx);   /* each zone */
	void (*large)(const struct ftm_large *large, void *ctx); /* each LARGE block */
};
/* Visits the whole heap in address order under every lock; false when the
 * locks (tried only, without `wait`) or the scratch memory for sorting
 * could not be had (nothing was visited). */
bool heap_walk(const struct heap_visitor *visit, void *ctx, bool wait);
void heap_dump_json(int fd, bool wait);

/* ---- core/init.c --------------------------------------------------------- */
extern volatile int ftm_ready;
extern uint64_t ftm_secret;
extern size_t ftm_page_size;
void ftm_init_slow(void);

static inline void ftm_ensure_init(void)
{
	if (FTM_UNLIKELY(!__atomic_load_n(&ftm_ready, __ATOMIC_ACQUIRE)))
		ftm_init_slow();
}

/* ---- core/options.c ------------------------------------------------------ */
enum ftm_option_id {
	FTM_OPT_ARENAS,         /* number of arenas (0: one per CPU) */
	FTM_OPT_ABORT_ON_ERROR, /* abort() after reporting bad input */
	FTM_OPT_VERBOSE,        /* print the options in force at start-up */
	FTM_OPT_SCRIBBLE,       /* fill new chunks with 0xAA, freed ones with 0x55 */
	FTM_OPT_GUARD,          /* canary after small payloads, PROT_NONE page after LARGE */
	FTM_OPT_HISTORY,        /* operations kept in the history ring (0: off) */
	FTM_OPT_LEAK_REPORT,    /* list live allocations at exit */
	FTM_OPT_STATS,          /* print statistics at exit */
	FTM_OPT_OUTPUT,         /* text: fd number or file path for all reports */
	FTM_OPT_DUMP,           /* text: file for a JSON heap dump at exit */
	FTM_OPT_DUMP_SIGNAL,    /* signal number that writes the JSON dump */
	FTM_OPT_SHOW_FULL,      /* show_alloc_mem_ex dumps whole blocks */
	FTM_OPT_CALLERS,        /* record each block's call site for the leak report */
	FTM_OPT_DECAY_MS,       /* idle zones and freed LARGE ranges go back to the OS after this */
	FTM_OPT_PREFAULT,       /* fault in pages about to be written with one call, not one fault each */
	FTM_OPT_COUNT
};
extern long ftm_options[FTM_OPT_COUNT];
extern const char *ftm_option_text[FTM_OPT_COUNT];
void options_load(char **env);
void options_print(void);

/* ---- core/diag.c --------------------------------------------------------- */
struct ftm_out {
	int fd;         /* where flush() writes */
	size_t len;     /* bytes buffered */
	char buf[4096]; /* whole lines only, so a reader never sees a torn one */
};
void out_str(struct ftm_out *o, const char *s);
void out_hex(struct ftm_out *o, uintptr_t v);
void out_dec(struct ftm_out *o, uint64_t v);
void out_line_end(struct ftm_out *o);
void out_flush(struct ftm_out *o);
void out_hexdump(struct ftm_out *o, const unsigned char *p, size_t len);
extern int ftm_report_fd; /* diagnostics and reports (FT_MALLOC_OUTPUT) */
void report_error(const char *call, const char *reason, const void *p);

/* ---- os/os.c ------------------------------------------------------------- */
extern uint64_t ftm_os_maps;   /* successful mmap/mremap calls */
extern uint64_t ftm_os_unmaps; /* munmap calls */
extern uint64_t ftm_os_prefaults; /* madvise calls made to prefault a run of pages */
void *os_map(size_t size);
bool os_protect_none(void *p, size_t size);
int os_open_write(const char *path, bool append);
uint64_t os_now_ns(void);
uint32_t os_thread_id(void);
void *os_map_aligned(size_t size, size_t align);
void os_unmap_aligned(void *p, size_t size);
void os_unmap(void *p, size_t size);
void os_discard(void *p, size_t size);
/* Whole pages about to be written, to fault in with one os_prefault call. */
struct ftm_page_run {
	char *addr; /* page-aligned */
	size_t len; /* a multiple of the page size; 0: nothing to do */
};
void os_prefault(struct ftm_page_run run);
void *os_remap(void *p, size_t old_size, size_t new_size);
size_t os_page_size(void);
uint32_t os_cpu_count(void);
uint64_t os_random(void);
void os_write(int fd, const void *buf, size_t len);
struct os_file_id {
	uint64_t device; /* st_dev */
	uint64_t inode;  /* st_ino */
};
bool os_file_id(int fd, struct os_file_id *out);
int os_dup_private(int fd, struct os_file_id *id);
struct os_symbol {
	const char *module;    /* path of the executable or library */
	uintptr_t module_base; /* where it is loaded */
	const char *name;      /* nearest exported symbol below, or NULL */
	uintptr_t name_addr;   /* its address */
};
bool os_symbol(const void *addr, struct os_symbol *out);
void os_futex_wait(uint32_t *word, uint32_t value);
void os_futex_wake(uint32_t *word);

/* ---- core/lock.c -------------------------------------------------------- */
void lock_wait(struct ftm_lock *lock);

static inline bool lock_try(struct ftm_lock *lock)
{
	uint32_t free_state = 0;
	return __atomic_compare_exchange_n(&lock->state, &free_state, 1, false, __ATOMIC_ACQUIRE,
					   __ATOMIC_RELAXED);
}

/* While glibc says the process has one thread (__libc_single_threaded turns
 * false in pthread_create, before the new thread exists, and never back),
 * the only code that can meet a held lock is a signal handler interrupting
 * its holder, on the same CPU thread: plain loads and stores order against
 * it, with a compiler barrier, and the locked instructions are not needed.
 * A held lock is still seen as held (the handler's trylock fails, a malloc
 * in a handler waits as before). A LARGE realloc that grows in place, on
 * one thread, went from 17-18 ns to 6-12 ns (tests/unit/lock.c pins the
 * states). */
static inline bool lock_take_alone(struct ftm_lock *lock)
{
	if (!__libc_single_threaded || __atomic_load_n(&lock->state, __ATOMIC_RELAXED))
		return false;
	__atomic_store_n(&lock->state, 1, __ATOMIC_RELAXED);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	return true;
}

static inline void lock_take(struct ftm_lock *lock)
{
	if (!lock_take_alone(lock) && !lock_try(lock))
		lock_wait(lock);
}

static inline void lock_give(struct ftm_lock *lock)
{
	if (__libc_single_threaded) {
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		__atomic_store_n(&lock->state, 0, __ATOMIC_RELAXED);
		return;
	}
	if (__atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 2)
		os_futex_wake(&lock->state);
}

/* ---- api/alloc.c --------------------------------------------------------- */
FTM_EXPORT void *ftm_malloc(size_t size);
FTM_EXPORT void ftm_free(void *ptr);
/* A chunk of class cls marked live with size (at most the class's): the
 * thread cache's bin, refilled when empty. Outside debug mode. */
void *class_alloc(uint32_t cls, size_t size);
void chunk_set_size(void *p, size_t size);
void report_bad_pointer(const void *p, const char *call);
bool free_checked(void *p, const char *call);
void *debug_block_alloc(size_t size);
void *malloc_debug(size_t size, const void *caller);
void free_slow(void *p, const char *call);

#pragma GCC visibility pop

#endif
