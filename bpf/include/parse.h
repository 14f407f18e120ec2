/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing. Every header is checked with sn_fits() and the caller
 * returns at once when it does not fit: a plain branch the verifier follows,
 * where a pointer-or-NULL select would have the compiler re-test the bounds
 * in a form the verifier cannot connect to the first test.
 */
#ifndef SN_PARSE_H
#define SN_PARSE_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>

#define sn_fits(ptr, end) ((void *)((ptr) + 1) <= (end))

#define SN_IP_DF 0x4000
#define SN_IP_MF 0x2000
#define SN_IP_OFFSET 0x1fff

/* Ethernet/IPv4 ARP as it sits after the Ethernet header. */
struct sn_arp {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__be32 spa;
	__u8 tha[6];
	__be32 tpa;
} __attribute__((packed));

#define SN_ARP_REQUEST 1
#define SN_ARP_REPLY 2

static __always_inline void sn_mac_copy(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, 6);
}

/* A plain IPv4 header: no options, not a fragment. Anything else is left to the kernel. */
static __always_inline int sn_ipv4_plain(const struct iphdr *ip)
{
	return ip->version == 4 && ip->ihl == 5 &&
	       !(ip->frag_off & bpf_htons(SN_IP_MF | SN_IP_OFFSET));
}

#endif
