/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A TCP or UDP checksum over IPv4 computed whole, in XDP. A frame a task's
 * stack sends through its veth may carry only the pseudo-header's sum
 * (CHECKSUM_PARTIAL: veth offers checksum offload), and an XDP program cannot
 * tell that from a finished checksum; tc could, and left the rest to the
 * kernel. Summed from scratch, the checksum is right on the wire whatever
 * state the frame was in.
 */
#ifndef SN_L4CSUM_H
#define SN_L4CSUM_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "vxlan.h"

/* bpf_csum_diff takes at most 512 bytes a call; this many calls cover any frame an XDP veth takes (its MTU stops under a page). */
#define SN_CSUM_CHUNK 512
#define SN_CSUM_CHUNKS 7

/* `len` bytes at `p` (a multiple of 4, at most `s` when `s` is the piece's size) added to `sum`: 0, or -1 when they do not fit. */
#define sn_csum_piece(p, end, left, s, sum)                                            \
	({                                                                             \
		int _rc = 0;                                                           \
		if ((left) >= (s)) {                                                   \
			if ((void *)(p) + (s) > (end)) {                               \
				_rc = -1;                                              \
			} else {                                                       \
				__s64 _r = bpf_csum_diff(NULL, 0, (__be32 *)(p), (s), (sum)); \
				if (_r < 0)                                            \
					_rc = -1;                                      \
				else                                                   \
					(sum) = (__wsum)_r;                            \
				(p) += (s);                                            \
				(left) -= (s);                                         \
			}                                                              \
		}                                                                      \
		_rc;                                                                   \
	})

/*
 * The checksum of the TCP or UDP segment at `l4`, `len` bytes to `end`, of
 * `ip`, with its checksum field at `check` (in the segment, at an even
 * offset): written there. 0 when done; -1, with nothing written, when the
 * segment is longer than this sums or runs past `end`. The field's old value
 * (a finished checksum, or the pseudo-header's sum alone) is summed with the
 * rest and taken out again, so nothing is written before the sum is whole.
 * A UDP sum that comes to 0 is sent as 0xffff (0 means none, RFC 768).
 */
static __always_inline int sn_l4_csum_fill(const struct iphdr *ip, __u8 *l4, __u32 len, __u16 *check,
					   const void *end)
{
	__u8 *p = l4;
	__u32 left = len;
	__wsum sum;
	__u64 total;
	__u16 folded;

	if (len > SN_CSUM_CHUNK * SN_CSUM_CHUNKS || (void *)(check + 1) > end)
		return -1;
	/* The pseudo-header, as it sits in memory: the same byte order as the words summed below. */
	sum = (__wsum)((__u64)(ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) + (ip->daddr >> 16) +
		       bpf_htons(ip->protocol) + bpf_htons((__u16)len));
	for (int i = 0; i < SN_CSUM_CHUNKS; i++) {
		if (left < SN_CSUM_CHUNK)
			break;
		if (sn_csum_piece(p, end, left, SN_CSUM_CHUNK, sum))
			return -1;
	}
	if (sn_csum_piece(p, end, left, 256, sum) || sn_csum_piece(p, end, left, 128, sum) ||
	    sn_csum_piece(p, end, left, 64, sum) || sn_csum_piece(p, end, left, 32, sum) ||
	    sn_csum_piece(p, end, left, 16, sum) || sn_csum_piece(p, end, left, 8, sum) ||
	    sn_csum_piece(p, end, left, 4, sum))
		return -1;
	/* One to three bytes left: a word padded with zeros after them, as the checksum pads an odd tail. */
	/* Ones' complement: adding the old field's complement takes it out of the sum. */
	total = (__u64)sum + (__u16)~*check;
	if (left) {
		__u8 tail[4] = {};

		if ((void *)(p + 1) > end)
			return -1;
		tail[0] = p[0];
		if (left > 1) {
			if ((void *)(p + 2) > end)
				return -1;
			tail[1] = p[1];
		}
		if (left > 2) {
			if ((void *)(p + 3) > end)
				return -1;
			tail[2] = p[2];
		}
		total += *(__u32 *)tail;
	}
	folded = sn_csum_fold(total);
	*check = (folded == 0 && ip->protocol == IPPROTO_UDP) ? 0xffff : folded;
	return 0;
}

#endif
