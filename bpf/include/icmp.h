/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP "fragmentation needed" (type 3, code 4, RFC 1191), as the data path
 * answers a datagram with DF that its network cannot carry: tc_task.c for a
 * task's frame larger than its network's MTU, tc_gw.c for a mesh reply
 * larger than the ingress network's, mesh_xdp.h for a client's datagram to a
 * published port larger than the ingress network's. Each
 * program makes room its own way (skb or XDP helpers); the headers and the
 * checksum are written here.
 */
#ifndef SN_ICMP_H
#define SN_ICMP_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "vxlan.h"
#include "nat.h"

/* What "fragmentation needed" quotes of the refused datagram: the reply stays within 576 bytes (RFC 1812 4.3.2.3). */
#define SN_ICMP_QUOTE (SN_MTU_MIN - sizeof(struct iphdr) - 8)

/* linux/icmp.h would pull in libc headers through linux/if.h. */
#define SN_ICMP_FRAG_NEEDED 4

struct sn_icmp_frag {
	struct iphdr ip;
	__u8 type;
	__u8 code;
	__sum16 check;
	__be16 unused;
	__be16 mtu;
};

/*
 * Write the IPv4 and ICMP headers in front of a quote of SN_ICMP_QUOTE bytes
 * (the refused datagram's first bytes, already in place after h), from `src`
 * to `dst`, advertising `mtu`. 0 when done.
 */
static __always_inline int sn_icmp_frag_fill(struct sn_icmp_frag *h, void *end, __be32 src, __be32 dst, __u16 mtu)
{
	__u8 *msg = &h->type;
	__s64 sum;

	if ((void *)(h + 1) + SN_ICMP_QUOTE > end)
		return -1;
	__builtin_memset(h, 0, sizeof(*h));
	h->ip.version = 4;
	h->ip.ihl = 5;
	h->ip.ttl = 64;
	h->ip.protocol = IPPROTO_ICMP;
	h->ip.tot_len = bpf_htons(sizeof(*h) + SN_ICMP_QUOTE);
	h->ip.frag_off = bpf_htons(SN_IP_DF);
	h->ip.saddr = src;
	h->ip.daddr = dst;
	h->ip.check = sn_ipv4_csum(&h->ip);
	h->type = SN_ICMP_DEST_UNREACH;
	h->code = SN_ICMP_FRAG_NEEDED;
	h->mtu = bpf_htons(mtu);
	/* The ICMP checksum covers its 8 bytes and the quote: 556 bytes, in two sums (the helper takes 512 at most). */
	sum = bpf_csum_diff(NULL, 0, (__be32 *)msg, 512, 0);
	if (sum < 0)
		return -1;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)(msg + 512), 8 + SN_ICMP_QUOTE - 512, (__wsum)sum);
	if (sum < 0)
		return -1;
	h->check = sn_csum_fold((__u32)sum);
	return 0;
}

#define sn_icmp_refuse(counter) ({ sn_count(counter); TC_ACT_SHOT; })

/*
 * tc: turn a frame too large for the network into "fragmentation needed"
 * back to the task that sent it, in place: keep the first
 * SN_ICMP_QUOTE bytes of its datagram, put an IPv4 and an ICMP header in
 * front, swap the addresses (the reply comes from the destination, as Linux's
 * own tunnels answer for a bridged peer) and send it out of the device it came in by.
 * Counted as `sent`, or dropped as `refused` when it cannot be built.
 */
static __always_inline int sn_frag_needed_skb(struct __sk_buff *skb, __u16 mtu, __u32 sent, __u32 refused)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *orig = (void *)(eth + 1);
	struct sn_icmp_frag *h;
	__u8 task_mac[6], peer_mac[6];
	__be32 task_ip, peer_ip;

	if (!sn_fits(orig, end))
		return sn_icmp_refuse(refused);
	sn_mac_copy(task_mac, eth->h_source);
	sn_mac_copy(peer_mac, eth->h_dest);
	task_ip = orig->saddr;
	peer_ip = orig->daddr;

	/* Shrink first (less to move), then make room for the two headers after Ethernet. */
	if (bpf_skb_change_tail(skb, ETH_HLEN + SN_ICMP_QUOTE, 0) ||
	    bpf_skb_adjust_room(skb, sizeof(struct sn_icmp_frag), BPF_ADJ_ROOM_MAC, 0))
		return sn_icmp_refuse(refused);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	h = (void *)(eth + 1);
	if ((void *)(h + 1) > end)
		return sn_icmp_refuse(refused);
	sn_mac_copy(eth->h_dest, task_mac);
	sn_mac_copy(eth->h_source, peer_mac);
	if (sn_icmp_frag_fill(h, end, peer_ip, task_ip, mtu))
		return sn_icmp_refuse(refused);
	sn_count(sent);
	/*
	 * With no flags bpf_redirect cannot fail; returning its verdict as a constant
	 * lets the verifier see that the caller never reads the old packet again.
	 */
	bpf_redirect(skb->ifindex, 0);
	return TC_ACT_REDIRECT;
}

#endif
