/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * murmur3's 32-bit finaliser (fmix32): spreads every input bit over the
 * whole word, cheaply. The load balancer's flow hash (nat.h, the same as
 * src/lb/hash.ts) and the VXLAN source port's (vxlan.h) both end with it.
 */
#ifndef SN_HASH_H
#define SN_HASH_H

#include <linux/types.h>

static __always_inline __u32 sn_fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

#endif
