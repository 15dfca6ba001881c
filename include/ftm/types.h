/*
 * ft_malloc data model: every structure the allocator keeps, in one place.
 *
 *   thread ─► tcache ──(batch, under arena lock)──► arena ─► zone (one size class)
 *             no lock                                mutex    power-of-two range
 *                                                             of a 4 MiB segment
 *
 *   size > FTM_SMALL_MAX ─► large registry (one global mutex), a mapping each
 *
 * A request is rounded up to one of FTM_CLASS_COUNT size classes. TINY and
 * SMALL classes are served from zones: a zone is a range of 2^zone_shift
 * bytes aligned to its own size, cut from one of its arena's segments,
 * carved into equal chunks of one class from its first byte. Its header and
 * per-chunk state array ("meta") live out of line, packed in header blocks
 * that its arena maps for them: a lightly used zone costs one page of data,
 * not a page of header too (111 of the 444 zone pages of w_thread_churn on
 * 8 threads were header pages), and no overflow out of a chunk can reach
 * any of the allocator's own data.
 * The page map records, for every FTM_GRANULE of address space, which zone
 * covers it: free() finds a pointer's zone in two loads and can reject a
 * pointer that is not ours without ever dereferencing it.
 *
 * Chunks in a thread cache are free for the program but still counted as
 * handed out by their zone ("used"); their meta says FTM_META_CACHED, which is
 * how show_alloc_mem skips them and how free() catches a double free even
 * when the first free went no further than the thread cache.
 */
#ifndef FTM_TYPES_H
#define FTM_TYPES_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Size classes                                                             */
/* ------------------------------------------------------------------------ */

#define FTM_ALIGN 16            /* every pointer we return is aligned to this */
#define FTM_TINY_MAX 512        /* largest TINY class: zones of 64 KiB */
#define FTM_SMALL_MAX 32768     /* largest SMALL class; above it, LARGE */
#define FTM_TINY_CLASSES 18     /* classes 0..17 are TINY */
#define FTM_CLASS_COUNT 48      /* classes 18..47 are SMALL */
#define FTM_ZONE_MIN_CHUNKS 100 /* the subject: a zone holds >= 100 of its class */
#define FTM_ZONE_MIN_SHIFT 16   /* smallest zone: 64 KiB */
#define FTM_ZONE_SHIFTS 7       /* zone sizes: 64 KiB .. 4 MiB */
#define FTM_HEADER_BLOCK 65536  /* bytes an arena maps at a time for zone headers */

/* Geometry of one size class, computed once at start-up from the page size. */
struct ftm_class {
	uint32_t size;         /* chunk size in bytes, a multiple of FTM_ALIGN */
	uint32_t zone_shift;   /* log2 of this class's zone size */
	uint64_t inverse;      /* size's odd factor's inverse mod 2^64: exact division */
	uint32_t index_shift;  /* size's power-of-two factor, log2 */
	uint32_t capacity;     /* chunks per zone */
	uint32_t header_bytes; /* a zone header with its meta, in whole cache lines */
	uint32_t tcache_cap;   /* chunks a bin of this class holds at first */
	uint32_t tcache_grown; /* chunks it may grow to (struct ftm_bin_phase) */
	uint32_t batch;        /* chunks a refill takes while the thread also frees the class */
};

/* ------------------------------------------------------------------------ */
/* Locks                                                                    */
/* ------------------------------------------------------------------------ */

/* The arenas' and the LARGE registry's mutex, one word (core/lock.c). */
struct ftm_lock {
	uint32_t state; /* 0 free, 1 held, 2 held and a thread may sleep on it */
};

/* ------------------------------------------------------------------------ */
/* Zones                                                                    */
/* ------------------------------------------------------------------------ */

/* Per-chunk state in zone->meta. A live chunk keeps how many bytes of its
 * class the caller did not ask for, so show_alloc_mem prints the exact size.
 * A free chunk's state is its free-list link: the next free chunk's index
 * + 1, or 0 at the end of the list (and for chunks never carved). */
#define FTM_META_FREE_MAX 0x3fffu /* up to here: free (value = link) */
#define FTM_META_CACHED 0x4000u   /* sitting in some thread's cache */
#define FTM_META_LIVE 0x8000u     /* owned by the program; low bits: slack */
#define FTM_META_SLACK 0x3fffu

enum ftm_zone_kind { FTM_TINY, FTM_SMALL, FTM_LARGE };

struct ftm_arena;

struct ftm_zone {
	uint64_t check;              /* ftm_zone_key; 0 once the zone ended: the seal free checks */
	uintptr_t first;             /* address of chunk 0 */
	uint64_t inverse;            /* the class's, here so free needs no other lookup */
	uint64_t capacity;           /* chunks in this zone (the class's); 64 bits for free's compare */
	uint32_t index_shift;        /* the class's */
	uint32_t bin_offset;         /* offsetof(struct ftm_tcache, bins[cls]): free's bin without a multiply */
	uint32_t size;               /* chunk size (the class's) */
	uint32_t cls;                /* size class of every chunk here */
	struct ftm_arena *arena;     /* owner: only its lock may change the fields below */
	struct ftm_zone *all_next;   /* every zone of the arena, for show and trim */
	struct ftm_zone *all_prev;
	struct ftm_zone *avail_next; /* zones of this class with a free chunk; idle ones; spare headers */
	struct ftm_zone *avail_prev;
	struct ftm_zone *idle_next;  /* the arena's idle zones of every class, oldest first */
	struct ftm_zone *idle_prev;
	uint64_t idle_since;         /* os_now_ns() when it emptied; 0 while not idle */
	uint32_t used;               /* chunks handed out: live or in a thread cache */
	uint32_t carved;             /* chunks [carved, capacity) were never touched */
	uint32_t in_avail;           /* 1 while on the arena's avail list */
	uint32_t free_head;          /* first free chunk's index + 1 (0: none); links in meta */
	uint32_t warm_bytes;         /* bytes at its start left resident by the zone it recycled */
	uint16_t meta[];             /* per chunk: FTM_META_* */
};
/* free's fast path reads only the first 40 bytes of the header: one line. */

/* A segment is one mapping of 4 MiB, aligned to its size, that an arena
 * cuts into zone ranges as a buddy system (arena/span.c): a range of
 * 2^(16 + order) bytes is free or not as a whole, and two free buddies
 * merge, so a free range is marked at one order only. Zone ranges of every
 * size thus come from, and go back to, the same address space: one mmap
 * per 4 MiB instead of one mmap and one munmap per zone, and a zone of
 * 512 KiB can take over four neighbouring idle zones of 128 KiB, pages and
 * all (arena.c). The descriptor lives in the arena's
 * header blocks, out of the segment, like zone headers. */
#define FTM_SEGMENT_SHIFT (FTM_ZONE_MIN_SHIFT + FTM_ZONE_SHIFTS - 1)

struct ftm_segment {
	uintptr_t base;                 /* 2^FTM_SEGMENT_SHIFT aligned */
	uint64_t free[FTM_ZONE_SHIFTS]; /* bit i of free[order]: range i of that order is a free range */
	struct ftm_segment *next;       /* the arena's segments, or its spare descriptors */
};

/* ------------------------------------------------------------------------ */
/* Arenas                                                                   */
/* ------------------------------------------------------------------------ */

#define FTM_MAX_ARENAS 256

/* Per size class counters, under the arena lock. mallocs/frees/misses
 * come from thread caches, merged when a thread exits. */
struct ftm_class_stats {
	uint64_t mallocs;        /* allocations of this class */
	uint64_t frees;          /* frees of this class */
	uint64_t misses;         /* mallocs that found the thread cache empty */
	uint64_t chunks_out;     /* chunks handed to threads now */
	uint64_t peak_out;       /* most chunks_out ever */
	uint64_t zones_mapped;   /* zones created */
	uint64_t zones_unmapped; /* zones given back */
};

/* Counters kept under the arena lock (statistics and mallinfo2). */
struct ftm_arena_stats {
	uint64_t zones_mapped;   /* zones ever created */
	uint64_t zones_unmapped; /* zones given back to the OS */
	uint64_t bytes_mapped;   /* bytes of zones currently mapped, and of header blocks */
	uint64_t chunks_out;     /* chunks currently handed to threads */
	uint64_t bytes_out;      /* bytes of those chunks (class sizes) */
	uint64_t contended;      /* lock acquisitions that had to wait */
};

struct ftm_arena {
	struct ftm_lock lock;                      /* guards everything below */
	struct ftm_zone *avail[FTM_CLASS_COUNT];   /* zones with a free chunk, none empty */
	struct ftm_zone *idle[FTM_CLASS_COUNT];    /* empty zones kept, newest first */
	struct ftm_zone *idle_oldest;              /* every class's idle zones, by age */
	struct ftm_zone *idle_newest;
	struct ftm_zone *zones;                    /* every zone of this arena */
	struct ftm_segment *segments;              /* where its zones' ranges come from */
	struct ftm_segment *spare_segments;        /* descriptors of segments given back */
	struct ftm_zone *spare_header[FTM_CLASS_COUNT]; /* headers of ended zones, per class */
	char *header_next;                         /* free room in the newest header block */
	char *header_end;                          /* end of that block */
	struct ftm_arena_stats stats;
	struct ftm_class_stats by_class[FTM_CLASS_COUNT];
} __attribute__((aligned(64)));

/* What every arena's zones may hold resident, process-wide (atomics, each
 * arena adding its own under its lock): idle zones are bounded against the
 * process's busy peak, not one arena's, since arenas peak at different
 * times (w_prodcons on 8 threads: peak RSS +18% with a bound per arena). */
struct ftm_zone_pages {
	uint64_t carved;    /* page-rounded carved bytes of all zones: the most they hold */
	uint64_t idle;      /* the part of it in idle zones */
	uint64_t busy_peak; /* most carved - idle ever seen */
};
/* Idle zones may pass the busy peak by 1/FTM_IDLE_SLACK of it: none at all
 * dropped every idle zone each time the busy pages reached a new high
 * (cppcheck: 2414 page faults; 1/16: 1991, peak RSS +0.7%; glibc 1302). */
#define FTM_IDLE_SLACK 16

/* ------------------------------------------------------------------------ */
/* Thread cache                                                             */
/* ------------------------------------------------------------------------ */

#define FTM_TCACHE_MAX 32    /* most chunks one bin holds at first (struct ftm_class.tcache_cap) */
#define FTM_TCACHE_GROWN 128 /* most chunks a bin grows to (struct ftm_class.tcache_grown) */
/* A thread's first refill of a class takes this many chunks, each next one
 * twice as many, up to the class's batch (a whole bin while the thread only
 * allocates the class, struct ftm_bin_phase): a thread that lives for a few
 * dozen mallocs over many classes (one per connection or task) would
 * otherwise take a whole batch of every class it touches and give most of
 * it back at exit (w_thread_churn: 97M -> 79M instructions; 1, 2 and 16
 * give 83M, 79M and 97M). */
#define FTM_TCACHE_FIRST_BATCH 4

/* A cached chunk and its state slot, side by side: the chunk's state slot
 * rides with it, so malloc marks the chunk live with one store and no
 * lookup, and both sit on one cache line. */
struct ftm_slot {
	void *chunk;    /* a chunk of the bin's class, FTM_META_CACHED */
	uint16_t *meta; /* its state slot in its zone */
};

/* A stack of chunks kept out of the chunks themselves, so a write after
 * free cannot redirect the next malloc. Its slots are the bin's stretch of
 * the cache's slot array, as long as the class's cap: a bin of 32 KiB
 * chunks holds 4, not the 32 of a 16-byte class, and a cache's bins take
 * four pages instead of seven; a bin that grows moves to a stretch of its
 * own past them (tcache.c). The bin keeps a pointer to its top, so neither
 * path computes an address from a count. */
struct ftm_bin {
	struct ftm_slot *top;  /* next free slot: [base, top) hold chunks, newest last */
	struct ftm_slot *base; /* the bin's first slot */
	struct ftm_slot *end;  /* base + the class's cap; == base in the boot/dead caches */
	uint32_t live;         /* FTM_META_LIVE + chunk size: minus the request, the chunk's meta */
	uint32_t batch;        /* most chunks the next refill takes (slow start up to the cap) */
	uint64_t refilled;     /* chunks that came in from the arena */
	uint64_t frees;        /* frees of this class by this thread (chunks that came in) */
	uint64_t misses;       /* mallocs that had to refill */
	uint64_t flushed;      /* chunks given back to arenas */
};
/* A bin counts what comes in and what is flushed out, so malloc's fast path
 * counts nothing: mallocs = refilled + frees - flushed - cached (bin_mallocs). */

/* What a bin did since its last refill and overflow. A thread that only
 * allocates a class for a while (building a structure: jq parsing its
 * input) or only frees it (tearing one down, or consuming what other
 * threads allocate) moves whole bins at a time instead of halves, which
 * halves the locking and bookkeeping per chunk; one that does both keeps
 * moving halves, so that its next few mallocs and frees stay in the cache.
 * A bin that overflows after running dry since its last overflow swings
 * between bursts of mallocs and of frees longer than it is (perl: 40% of
 * the chunks it freed went to their zone and came back): it grows by its
 * first cap instead of flushing, up to the class's tcache_grown, which
 * keeps the same 8 KiB bound as the larger classes' bins; a burst of frees
 * only that empties it shrinks it back (tcache_make_room). Kept apart from
 * the bins, which stay one cache line each. */
struct ftm_bin_phase {
	uint64_t frees_at_refill;  /* the bin's frees when it was last refilled */
	uint64_t mallocs_at_flush; /* its bin_mallocs() when it was last flushed */
	uint64_t refilled_at_room; /* its refilled count when it last overflowed */
};

struct ftm_tcache {
	struct ftm_bin bins[FTM_CLASS_COUNT]; /* first, so the fast path indexes it directly */
	struct ftm_arena *arena;              /* refills come from here */
	struct ftm_tcache *pool_next;         /* in the pool of caches of exited threads */
	struct ftm_tcache *live_next;         /* caches of running threads, for statistics */
	struct ftm_tcache *live_prev;
	uint64_t refills;                     /* batches taken from the arena */
	uint64_t flushes;                     /* batches given back */
	struct ftm_bin_phase phase[FTM_CLASS_COUNT]; /* sizes each bin's next batch */
	struct ftm_slot slots[];              /* every bin's slots, in class order */
};

/* ------------------------------------------------------------------------ */
/* LARGE                                                                    */
/* ------------------------------------------------------------------------ */

/* Header at the start of each LARGE mapping; the registry hashes it by the
 * user pointer, so a free of anything else is rejected without a fault. */
struct ftm_large {
	uint64_t check;             /* FTM_LARGE_MAGIC ^ address ^ secret */
	void *user;                 /* the pointer the program holds */
	size_t size;                /* bytes the program asked for */
	size_t map_len;             /* length of the whole mapping */
	size_t warm;                /* the pages past this offset were never touched */
	struct ftm_large *hash_next; /* chain in the registry's bucket */
	struct ftm_large *all_next;  /* every LARGE mapping, for show */
	struct ftm_large *all_prev;
};

/* A freed LARGE address range, pages still mapped, kept for reuse
 * (large/extent.c). */
struct ftm_extent {
	uintptr_t addr;    /* page aligned */
	size_t len;        /* whole pages */
	uint64_t freed_at; /* when a block last went into it (os_now_ns) */
};

/* ------------------------------------------------------------------------ */
/* Page map                                                                 */
/* ------------------------------------------------------------------------ */

/* Two levels cover the 47-bit user address space: root[addr >> 37] is a leaf
 * of 2^21 zone pointers, one per 64 KiB granule. Leaves are mapped on first
 * use and never freed, so a lookup needs no lock. A root entry with no leaf
 * points at a shared leaf of zeros (never written) rather than at NULL, so a
 * lookup is two loads and no test. Each entry of that static initialiser is
 * a relocation the dynamic loader writes at every process start: /bin/true
 * takes 65-66 page faults at 2^11 entries (16 KiB), 63-64 at 2^10 (8 KiB),
 * 61-62 at 2^9 (glibc alone 48). A leaf is 16 MiB of address space, of
 * which only the pages for granules in use are ever touched; 2^9 entries
 * would take leaves of 32 MiB and a small process's VmSize from 24 MB to
 * 73 MB, where 2^10 takes it to 40 MB (mimalloc's: 37 MB). */
#define FTM_GRANULE_SHIFT 16
#define FTM_ADDR_BITS 47
#define FTM_LEAF_BITS 21
#define FTM_ROOT_BITS (FTM_ADDR_BITS - FTM_GRANULE_SHIFT - FTM_LEAF_BITS)

#endif
