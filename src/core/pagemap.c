/*
 * The page map: which zone covers each 64 KiB granule of the address space.
 * Lookups (pagemap_zone in internal.h) take no lock. A leaf, once installed,
 * stays for the life of the process, so a lookup racing with a zone's
 * creation or destruction reads either NULL or a zone pointer, never freed
 * memory of the map itself.
 *
 * The root starts with every entry on ftm_pagemap_empty, a leaf of zeros in
 * .bss that is only ever read: a lookup outside every installed leaf reads
 * NULL from it (the kernel's zero page) without a test of its own. The
 * initialiser is static because free may run before anything of ours does.
 */
#include "ftm/internal.h"

#define LEAF_ENTRIES ((size_t)1 << FTM_LEAF_BITS)

struct ftm_zone *ftm_pagemap_empty[LEAF_ENTRIES];
struct ftm_zone **ftm_pagemap[1u << FTM_ROOT_BITS] = {
	[0 ...(1u << FTM_ROOT_BITS) - 1] = ftm_pagemap_empty,
};

static struct ftm_zone **leaf_for(uintptr_t addr)
{
	struct ftm_zone ***slot = &ftm_pagemap[addr >> (FTM_GRANULE_SHIFT + FTM_LEAF_BITS)];
	struct ftm_zone **leaf = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	if (leaf != ftm_pagemap_empty)
		return leaf;
	struct ftm_zone **fresh = os_map(LEAF_ENTRIES * sizeof(*fresh));
	if (!fresh)
		return NULL;
	/* two arenas may race to install the same leaf: the loser unmaps */
	if (!__atomic_compare_exchange_n(slot, &leaf, fresh, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		os_unmap(fresh, LEAF_ENTRIES * sizeof(*fresh));
		return leaf;
	}
	return fresh;
}

static void pagemap_set(uintptr_t start, size_t size, struct ftm_zone *value)
{
	for (uintptr_t a = start; a < start + size; a += (uintptr_t)1 << FTM_GRANULE_SHIFT) {
		struct ftm_zone **leaf = __atomic_load_n(
		    &ftm_pagemap[a >> (FTM_GRANULE_SHIFT + FTM_LEAF_BITS)], __ATOMIC_ACQUIRE);
		/* a write there would name a zone for every unmapped address */
		if (FTM_UNLIKELY(leaf == ftm_pagemap_empty))
			continue;
		__atomic_store_n(&leaf[(a >> FTM_GRANULE_SHIFT) & (LEAF_ENTRIES - 1)], value,
				 __ATOMIC_RELEASE);
	}
}

/* Maps every granule of a zone's mapping [start, start + size) to its
 * header. A zone is aligned to its power-of-two size (at most 4 MiB), so it
 * never straddles two leaves. Fails only when the leaf cannot be mapped
 * (out of memory). */
bool pagemap_register(uintptr_t start, size_t size, struct ftm_zone *zone)
{
	if (((start + size - 1) >> FTM_ADDR_BITS) || !leaf_for(start))
		return false;
	pagemap_set(start, size, zone);
	return true;
}

void pagemap_unregister(uintptr_t start, size_t size)
{
	pagemap_set(start, size, NULL);
}
