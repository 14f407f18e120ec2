/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Out of the node by the kernel's FIB: the next hop and its MAC from the
 * routing and neighbour tables, as the stack would pick them, then a redirect
 * (or XDP_TX) there. The routing mesh sends its replies, and the ICMP it
 * translates, this way: from XDP (mesh_xdp.h) and from tc (tc_gw.c).
 */
#ifndef SN_FIB_H
#define SN_FIB_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"
#include "parse.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* The one lookup: `p` zeroed by the caller; BPF_FIB_LOOKUP_OUTPUT when `src` is the node's own. The helper's answer. */
static __always_inline long sn_fib_lookup(void *ctx, struct bpf_fib_lookup *p, __be32 src, __be32 dst, __u16 tot_len,
					  __u32 ifindex, __u32 flags)
{
	p->family = AF_INET;
	p->tot_len = tot_len;
	p->ipv4_src = src;
	p->ipv4_dst = dst;
	p->ifindex = ifindex;
	return bpf_fib_lookup(ctx, p, sizeof(*p), flags);
}

/* The frame addressed to the next hop the lookup found, from the device it leaves by. */
static __always_inline void sn_fib_set_macs(struct ethhdr *eth, const struct bpf_fib_lookup *p)
{
	sn_mac_copy(eth->h_dest, p->dmac);
	sn_mac_copy(eth->h_source, p->smac);
}

/*
 * Out of the underlay towards `dst`, from `src`: the next hop's MAC from the
 * kernel's FIB and neighbour table. Without a neighbour (or too large for the
 * route): the MACs `fallback` names (those the flow's request came with), or
 * dropped; counted either way.
 */
static __always_inline int sn_fib_out_xdp(struct xdp_md *ctx, struct ethhdr *eth, __be32 src, __be32 dst,
					  __u16 tot_len, const struct sn_mesh_ct *fallback)
{
	struct bpf_fib_lookup p = {};
	long rc;

	rc = sn_fib_lookup(ctx, &p, src, dst, tot_len, ctx->ingress_ifindex, BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		sn_fib_set_macs(eth, &p);
		if (p.ifindex == ctx->ingress_ifindex)
			return XDP_TX;
		bpf_redirect(p.ifindex, 0);
		return XDP_REDIRECT;
	}
	/*
	 * Larger than the route's MTU (the underlay carries less than the network's
	 * MTU + 50, or a path MTU the kernel learned): counted apart, then as any failure.
	 */
	sn_count(rc == BPF_FIB_LKUP_RET_FRAG_NEEDED ? SN_C_MESH_UNDERLAY_MTU : SN_C_MESH_FIB_FAIL);
	if (!fallback || !(fallback->peer_mac[0] | fallback->peer_mac[1] | fallback->peer_mac[2] |
			   fallback->peer_mac[3] | fallback->peer_mac[4] | fallback->peer_mac[5]))
		return XDP_DROP;
	sn_mac_copy(eth->h_dest, fallback->peer_mac);
	sn_mac_copy(eth->h_source, fallback->own_mac);
	return XDP_TX;
}

/*
 * tc: out of the underlay, the same way; without a neighbour (or on any
 * other failure), bpf_redirect_neigh and the kernel resolves it (counted).
 */
static __always_inline int sn_fib_out_tc(struct __sk_buff *skb, const struct sn_config *cfg, __be32 src, __be32 dst)
{
	struct bpf_fib_lookup p = {};
	void *data, *end;
	struct ethhdr *eth;
	long rc;

	rc = sn_fib_lookup(skb, &p, src, dst, skb->len - ETH_HLEN, cfg->underlay_ifindex, BPF_FIB_LOOKUP_OUTPUT);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		sn_count(SN_C_MESH_FIB_FAIL);
		return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
	}
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if (!sn_fits(eth, end))
		return sn_tc_drop(SN_C_MESH_DROP);
	sn_fib_set_macs(eth, &p);
	return bpf_redirect(p.ifindex, 0);
}

/*
 * tc: a VXLAN frame of a task (tc_task.c) out of the underlay towards `dst`:
 * the next hop and its MAC from the FIB (tot_len 0: the kernel holds the skb,
 * GSO or not, to the device's MTU itself), then bpf_redirect. Cheaper than
 * bpf_redirect_neigh, which looks the route up again with a dst reference
 * and the neighbour after (issue 25: 3-6% more small UDP packets a second
 * from a sending CPU, bench/README.md). Without an answer (no neighbour yet, forwarding off,
 * another device, too large), bpf_redirect_neigh and the kernel resolves it,
 * as before.
 */
static __always_inline long sn_encap_out_tc(struct __sk_buff *skb, const struct sn_config *cfg, __be32 dst)
{
	struct bpf_fib_lookup p = {};
	struct ethhdr *eth;
	void *data, *end;

	if (sn_fib_lookup(skb, &p, cfg->node_ip, dst, 0, cfg->underlay_ifindex, BPF_FIB_LOOKUP_OUTPUT) !=
		    BPF_FIB_LKUP_RET_SUCCESS ||
	    p.ifindex != cfg->underlay_ifindex)
		return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
	/* A fresh context pointer: clang would reuse one offset to data_end, which the verifier refuses. */
	asm volatile("" : "+r"(skb));
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if (!sn_fits(eth, end))
		return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
	sn_fib_set_macs(eth, &p);
	return bpf_redirect(p.ifindex, 0);
}

#endif
