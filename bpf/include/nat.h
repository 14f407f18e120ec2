/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the load balancer shares between tc and XDP: the flow hash that picks
 * a Maglev slot (the same on every node, and in src/lb/hash.ts), the
 * connection-tracking keys, and checksum fixes for a rewritten address.
 */
#ifndef SN_NAT_H
#define SN_NAT_H

#include <linux/types.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"

/* The two ports of TCP and UDP, where both headers have them. */
struct sn_ports {
	__be16 source;
	__be16 dest;
};

#define SN_LB_SEED 0x736e6c62 /* "snlb": fixed, so every node hashes alike */

static __always_inline __u32 sn_rol32(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

/* murmur3's block step and finaliser over host-order words: cheap, and well spread for a modulo. */
static __always_inline __u32 sn_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = sn_rol32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = sn_rol32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 sn_lb_hash(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport, __u8 proto)
{
	__u32 h = SN_LB_SEED;

	h = sn_mix(h, bpf_ntohl(saddr));
	h = sn_mix(h, bpf_ntohl(daddr));
	h = sn_mix(h, ((__u32)bpf_ntohs(sport) << 16) | bpf_ntohs(dport));
	h = sn_mix(h, proto);
	h ^= 16;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* RFC 1624 (eqn. 3): a 16-bit checksum after a 32-bit word of what it covers changed from `from` to `to`. */
static __always_inline __u16 sn_csum_replace4(__u16 check, __be32 from, __be32 to)
{
	__u32 nf = ~from;
	__u32 sum = (__u16)~check;

	sum += (nf & 0xffff) + (nf >> 16) + (to & 0xffff) + (to >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/*
 * Reverse NAT where the program may write the packet directly and its
 * checksums are whole (XDP): a reply from a backend to a client of this node
 * gets the VIP back as its source. ip is a plain header (ihl 5) inside the packet.
 */
static __always_inline int sn_rev_nat_direct(struct iphdr *ip, void *end, __u32 vni)
{
	struct sn_ports *ports = (void *)(ip + 1);
	struct sn_ct_key ck = {};
	struct sn_ct *ct;
	__be32 from;

	if ((ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) || ip->ihl != 5 ||
	    (ip->frag_off & bpf_htons(SN_IP_MF | SN_IP_OFFSET)) || !sn_fits(ports, end))
		return 0;
	ck.vni = vni;
	ck.src = ip->saddr;
	ck.dst = ip->daddr;
	ck.sport = ports->source;
	ck.dport = ports->dest;
	ck.proto = ip->protocol;
	ck.dir = SN_CT_REPLY;
	ct = bpf_map_lookup_elem(&sn_ct, &ck);
	if (!ct)
		return 0;
	from = ip->saddr;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip + 1);

		if (!sn_fits(tcp, end))
			return 0;
		tcp->check = sn_csum_replace4(tcp->check, from, ct->addr);
	} else {
		struct udphdr *udp = (void *)(ip + 1);

		if (!sn_fits(udp, end))
			return 0;
		if (udp->check) {
			udp->check = sn_csum_replace4(udp->check, from, ct->addr);
			if (!udp->check)
				udp->check = 0xffff;
		}
	}
	ip->check = sn_csum_replace4(ip->check, from, ct->addr);
	ip->saddr = ct->addr;
	sn_count(SN_C_LB_REV_NAT);
	return 1;
}

#endif
