// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP on the host side of a task's overlay veth: the common case of
 * tc_task.c done before the kernel builds an skb for it. A plain IPv4 TCP or
 * UDP frame from the task's own address to a task of its network on another
 * node is wrapped in VXLAN here, exactly as tc_task would wrap it, and sent
 * out of the underlay with XDP_REDIRECT. Everything else, and anything this
 * program is not sure of, is XDP_PASS: tc_task then sees the frame unchanged
 * and decides as it always did (ARP, local tasks, VIPs, MTU answers, every
 * drop and its counter). So this program only ever takes a frame tc_task
 * would have encapsulated to the same node, never more: the checks below are
 * tc_task's for that case (its device in sn_devices, its own source address,
 * an endpoint of its own network that is neither a VIP nor local, within the
 * network's MTU) plus narrower ones of its own.
 *
 * The inner L4 checksum is computed whole (l4csum.h): the task's stack may
 * have left it to offload, and XDP cannot see that.
 *
 * Not attached by the agent: measured against tc_task alone it did not pay
 * (bench/README.md, issue 25; bench/throughput.ts --xdp-task attaches it).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "vxlan.h"
#include "fib.h"
#include "l4csum.h"

static __always_inline int sn_task_pass(void)
{
	return XDP_PASS;
}

SEC("xdp")
int sn_xdp_task(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct bpf_fib_lookup fib = {};
	struct sn_endpoint_key key;
	struct sn_vxlan_encap *h;
	struct sn_endpoint *ep;
	struct sn_network *net;
	struct sn_device *dev;
	struct sn_config *cfg;
	struct ethhdr *outer;
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 inner_len, l4_len, hash, vni;
	__be32 node;
	__u8 *l4;

	if (!sn_fits(ip, end) || eth->h_proto != bpf_htons(ETH_P_IP) || !sn_ipv4_plain(ip))
		return sn_task_pass();
	if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP)
		return sn_task_pass();
	inner_len = end - data;
	/* The IP length must be the frame's: no padding, nothing cut (tc sees those, as ever). */
	if (bpf_ntohs(ip->tot_len) + ETH_HLEN != inner_len)
		return sn_task_pass();
	dev = bpf_map_lookup_elem(&sn_devices, &ifindex);
	if (!dev || ip->saddr != dev->ip)
		return sn_task_pass();
	vni = dev->vni;
	/* No larger than the network's MTU (tc answers the rest: ICMP back, or a drop). */
	if (inner_len > ETH_HLEN + SN_MTU_MIN) {
		net = bpf_map_lookup_elem(&sn_networks, &vni);
		if (!net || !net->mtu || inner_len - ETH_HLEN > net->mtu)
			return sn_task_pass();
	}
	key.vni = vni;
	key.ip = ip->daddr;
	ep = bpf_map_lookup_elem(&sn_endpoints, &key);
	if (!ep || (ep->flags & (SN_EP_VIP | SN_EP_LOCAL)) || !ep->node_ip)
		return sn_task_pass();
	node = ep->node_ip;
	cfg = sn_get_config();
	if (!cfg || !cfg->underlay_ifindex)
		return sn_task_pass();
	/*
	 * The next hop, and its MAC, out of the underlay: without one (or for another device), tc's
	 * redirect_neigh resolves it. The kernel answers only where forwarding is on (the agent turns
	 * ip_forward on with its gateway bridge); elsewhere everything goes to tc.
	 */
	if (sn_fib_lookup(ctx, &fib, cfg->node_ip, node, inner_len + SN_VXLAN_OVERHEAD - ETH_HLEN,
			  cfg->underlay_ifindex, BPF_FIB_LOOKUP_OUTPUT) != BPF_FIB_LKUP_RET_SUCCESS ||
	    fib.ifindex != cfg->underlay_ifindex)
		return sn_task_pass();

	l4 = (void *)(ip + 1);
	l4_len = inner_len - ETH_HLEN - sizeof(*ip);
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = (void *)l4;

		if (!sn_fits(udp, end) || bpf_ntohs(udp->len) != l4_len)
			return sn_task_pass();
		/* 0: sent without a checksum, which stays so (RFC 768). */
		if (udp->check && sn_l4_csum_fill(ip, l4, l4_len, &udp->check, end))
			return sn_task_pass();
	} else {
		struct tcphdr *tcp = (void *)l4;

		if (!sn_fits(tcp, end) || sn_l4_csum_fill(ip, l4, l4_len, &tcp->check, end))
			return sn_task_pass();
	}
	hash = sn_flow_hash(ip, end);

	/*
	 * From here on the frame is ours: its checksum is finished, which tc
	 * (that takes it for the pseudo-header's sum when the stack left it
	 * to offload) must not see. veth gives XDP 256 bytes of headroom, so
	 * this does not fail.
	 */
	if (bpf_xdp_adjust_head(ctx, -(int)SN_VXLAN_OVERHEAD))
		return sn_xdp_drop(SN_C_TC_ENCAP_FAIL);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	outer = data;
	h = (void *)(outer + 1);
	if ((void *)h + SN_VXLAN_OVERHEAD > end)
		return sn_xdp_drop(SN_C_TC_ENCAP_FAIL);
	outer->h_proto = bpf_htons(ETH_P_IP);
	sn_fib_set_macs(outer, &fib);
	sn_vxlan_fill(h, cfg->node_ip, node, cfg->vxlan_port, vni, hash, inner_len);
	sn_count(SN_C_XDP_ENCAP);
	bpf_redirect(fib.ifindex, 0);
	return XDP_REDIRECT;
}

char _license[] SEC("license") = "Dual BSD/GPL";
