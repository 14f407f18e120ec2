// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP on the node's underlay device: VXLAN that belongs to one of our
 * networks is decapsulated and handed straight to the task's device;
 * everything else goes to the kernel untouched, so the node's own traffic
 * (gossip, ssh, a kernel vxlan device on another VNI) keeps working.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "vxlan.h"

static __always_inline int sn_pass(void)
{
	sn_count(xdp_pass);
	return XDP_PASS;
}

#define sn_drop(counter) ({ sn_count(counter); XDP_DROP; })

SEC("xdp")
int sn_xdp_underlay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct sn_endpoint_key key;
	struct sn_endpoint *ep;
	struct sn_vxlanhdr *vx;
	struct sn_config *cfg;
	struct ethhdr *inner;
	struct iphdr *ip, *iip;
	struct udphdr *udp;

	if (!sn_fits(eth, end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return sn_pass();
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end) || ip->protocol != IPPROTO_UDP || !sn_ipv4_plain(ip))
		return sn_pass();
	udp = (void *)(ip + 1);
	if (!sn_fits(udp, end))
		return sn_pass();
	cfg = sn_get_config();
	if (!cfg || udp->dest != cfg->vxlan_port || ip->daddr != cfg->node_ip)
		return sn_pass();

	/* Our address and our port: from here on it is ours to forward or drop. */
	vx = (void *)(udp + 1);
	if (!sn_fits(vx, end) || !(vx->flags & bpf_htonl(SN_VXLAN_FLAG_I)))
		return sn_drop(xdp_malformed);
	key.vni = sn_vni_of(vx);
	if (!bpf_map_lookup_elem(&sn_networks, &key.vni))
		return sn_pass(); /* a VNI we do not own may be a kernel vxlan device's */

	inner = (void *)(vx + 1);
	if (!sn_fits(inner, end) || inner->h_proto != bpf_htons(ETH_P_IP))
		return sn_drop(xdp_malformed);
	iip = (void *)(inner + 1);
	if (!sn_fits(iip, end) || iip->version != 4)
		return sn_drop(xdp_malformed);

	key.ip = iip->daddr;
	ep = bpf_map_lookup_elem(&sn_endpoints, &key);
	if (!ep || !(ep->flags & SN_EP_LOCAL) || !ep->ifindex)
		return sn_drop(xdp_no_endpoint);

	sn_mac_copy(inner->h_dest, ep->mac);
	if (bpf_xdp_adjust_head(ctx, (int)((void *)inner - data)))
		return sn_drop(xdp_malformed);
	sn_count(xdp_decap);
	return bpf_redirect(ep->ifindex, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
