/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * VXLAN (RFC 7348) as Linux's own vxlan driver puts it on the wire: outer
 * IPv4 without options, UDP with a zero checksum and a source port taken from
 * the inner flow's hash (so ECMP and RSS spread flows), an 8-byte VXLAN header
 * with only the I flag, then the inner Ethernet frame. One difference: the
 * outer header has DF set (Linux clears it by default), so nothing on the way
 * fragments it: outer fragments would reach XDP, which leaves them to a kernel
 * that has no socket for them.
 */
#ifndef SN_VXLAN_H
#define SN_VXLAN_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include "hash.h"

struct sn_vxlanhdr {
	__be32 flags;
	__be32 vni;             /* VNI in the top 24 bits */
};

#define SN_VXLAN_FLAG_I 0x08000000
/* outer IPv4 + UDP + VXLAN + inner Ethernet: what a task's MTU gives up */
#define SN_VXLAN_OVERHEAD (sizeof(struct iphdr) + sizeof(struct udphdr) + \
			   sizeof(struct sn_vxlanhdr) + sizeof(struct ethhdr))
#define SN_VXLAN_SPORT_MIN 49152
#define SN_VXLAN_SPORT_SPAN 16384

struct sn_vxlan_encap {
	struct iphdr ip;
	struct udphdr udp;
	struct sn_vxlanhdr vx;
	struct ethhdr eth;
};
/* Written with an explicit length: the struct's tail padding must not reach the packet. */
_Static_assert(__builtin_offsetof(struct sn_vxlan_encap, eth) + sizeof(struct ethhdr) ==
	       SN_VXLAN_OVERHEAD, "encap headers must be 50 bytes");

static __always_inline __u32 sn_vni_of(const struct sn_vxlanhdr *vx)
{
	return bpf_ntohl(vx->vni) >> 8;
}

static __always_inline __u16 sn_csum_fold(__u64 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)~csum;
}

/* The 20-byte header summed as ten 16-bit words: cheaper than a helper call. */
static __always_inline __u16 sn_ipv4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return sn_csum_fold(sum);
}

/*
 * The inner flow's hash, for the outer UDP source port: addresses, protocol
 * and, when they are there, the ports, through murmur3's finaliser (hash.h).
 * Cheaper than asking the kernel's flow dissector, and the same for every
 * packet of a flow.
 */
static __always_inline __u32 sn_flow_hash(const struct iphdr *ip, const void *end)
{
	const __u32 *ports = (const void *)(ip + 1);
	__u32 h = ip->saddr ^ (ip->daddr * 31) ^ ip->protocol;

	if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) && ip->ihl == 5 &&
	    !(ip->frag_off & bpf_htons(0x3fff)) && (const void *)(ports + 1) <= end)
		h ^= *ports * 0x9e3779b1;
	return sn_fmix32(h);
}

/*
 * Fill the headers that go between the outer Ethernet header and the inner
 * frame. inner_len is the length of the inner Ethernet frame.
 */
static __always_inline void sn_vxlan_fill(struct sn_vxlan_encap *h, __be32 saddr,
					  __be32 daddr, __be16 dport, __u32 vni,
					  __u32 flow_hash, __u32 inner_len)
{
	__builtin_memset(h, 0, sizeof(struct iphdr) + sizeof(struct udphdr) +
				   sizeof(struct sn_vxlanhdr));
	h->ip.version = 4;
	h->ip.ihl = 5;
	h->ip.ttl = 64;
	h->ip.protocol = IPPROTO_UDP;
	h->ip.tot_len = bpf_htons(inner_len + sizeof(struct iphdr) +
				  sizeof(struct udphdr) + sizeof(struct sn_vxlanhdr));
	h->ip.saddr = saddr;
	h->ip.daddr = daddr;
	/* DF and ID 0: an atomic datagram, whose ID no one reads (RFC 6864 section 4.1). */
	h->ip.frag_off = bpf_htons(SN_IP_DF);
	h->ip.check = sn_ipv4_csum(&h->ip);

	h->udp.source = bpf_htons(SN_VXLAN_SPORT_MIN +
				  ((flow_hash ^ (flow_hash >> 16)) & (SN_VXLAN_SPORT_SPAN - 1)));
	h->udp.dest = dport;
	h->udp.len = bpf_htons(inner_len + sizeof(struct udphdr) + sizeof(struct sn_vxlanhdr));
	h->udp.check = 0;

	h->vx.flags = bpf_htonl(SN_VXLAN_FLAG_I);
	h->vx.vni = bpf_htonl(vni << 8);
}

/*
 * tc: wrap the skb's frame in VXLAN from saddr to daddr:dport. 0 when done;
 * the packet's pointers are stale after, either way. (XDP builds the same
 * headers in front of its frame with bpf_xdp_adjust_head: mesh_xdp.h.)
 */
static __always_inline int sn_vxlan_encap_skb(struct __sk_buff *skb, __be32 saddr, __be32 daddr,
					      __be16 dport, __u32 vni, __u32 flow_hash)
{
	/*
	 * FIXED_GSO: the task's MTU already leaves room for the 50 bytes, so a
	 * GSO packet keeps its segment size; without it the kernel would shrink
	 * TCP's MSS by 50 and refuse (-ENOTSUPP) every UDP GSO packet outright.
	 */
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
		      BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
		      BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	__u32 inner_len = skb->len;
	struct sn_vxlan_encap *h;
	struct ethhdr *outer;
	void *data, *end;

	/* Room goes after the MAC header: the outer Ethernet header is the old one's place. */
	if (bpf_skb_adjust_room(skb, SN_VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, flags))
		return -1;
	/* Written in place: adjust_room left the packet writable, so no store helper is needed. */
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	outer = data;
	h = (void *)(outer + 1);
	if ((void *)h + SN_VXLAN_OVERHEAD > end)
		return -1;
	__builtin_memcpy(&h->eth, outer, sizeof(h->eth));
	sn_vxlan_fill(h, saddr, daddr, dport, vni, flow_hash, inner_len);
	return 0;
}

#endif
