// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP on the node's underlay device: VXLAN that belongs to one of our
 * networks is decapsulated and handed straight to the task's device;
 * everything else goes to the kernel untouched, so the node's own traffic
 * (gossip, ssh, a kernel vxlan device on another VNI) keeps working.
 *
 * A packet is only delivered when its outer source is the node that owns the
 * inner source on that VNI: anyone who can reach the port can send VXLAN, but
 * only a node can speak for its own tasks.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "vxlan.h"
#include "nat.h"
#include "mesh_xdp.h"
#include "probe.h"

static __always_inline int sn_pass(void)
{
	sn_count(SN_C_XDP_PASS);
	return XDP_PASS;
}

/*
 * A packet to our address and port that we will not deliver: a VNI we do not
 * own may belong to a kernel vxlan device, so it goes to the kernel; on one of
 * ours it is dropped and counted.
 */
static __always_inline int sn_refuse(__u32 *vni, __u32 counter)
{
	if (!bpf_map_lookup_elem(&sn_networks, vni))
		return sn_pass();
	return sn_xdp_drop(counter);
}

SEC("xdp")
int sn_xdp_underlay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct sn_endpoint *src, *dst;
	struct sn_endpoint_key key;
	struct sn_vxlanhdr *vx;
	struct sn_config *cfg;
	struct ethhdr *inner;
	struct iphdr *ip, *iip;
	struct udphdr *udp;
	int verdict;

	/* A published port of this node (bpf/include/mesh_xdp.h). */
	verdict = sn_mesh_xdp(ctx);
	if (verdict >= 0)
		return verdict;
	/* An ICMP error about a mesh flow's reply (frag-needed, unreachable): to its backend. */
	verdict = sn_mesh_icmp_xdp(ctx);
	if (verdict >= 0)
		return verdict;
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
	if (!sn_fits(vx, end))
		return sn_xdp_drop(SN_C_XDP_MALFORMED);
	/* Not VXLAN: a liveness probe to answer, or malformed (ordinary frames never take this branch). */
	if (!(vx->flags & bpf_htonl(SN_VXLAN_FLAG_I)))
		return sn_probe_answer(eth, ip, udp, end);
	key.vni = sn_vni_of(vx);

	inner = (void *)(vx + 1);
	if (!sn_fits(inner, end))
		return sn_refuse(&key.vni, SN_C_XDP_MALFORMED);
	if (inner->h_proto != bpf_htons(ETH_P_IP))
		return sn_refuse(&key.vni, SN_C_XDP_NOT_IPV4);
	iip = (void *)(inner + 1);
	if (!sn_fits(iip, end) || iip->version != 4)
		return sn_refuse(&key.vni, SN_C_XDP_MALFORMED);

	/*
	 * The inner source must be a remote endpoint of this VNI owned by the
	 * outer source. Its entry also proves the VNI is ours, so the common case
	 * needs no lookup of the network.
	 */
	key.ip = iip->saddr;
	src = bpf_map_lookup_elem(&sn_endpoints, &key);
	if (!src) {
		/* A client's request an ingress node forwarded to a backend here. */
		verdict = sn_mesh_decap(ctx, ip, inner, iip, end, key.vni);
		if (verdict >= 0)
			return verdict;
	}
	if (!src || (src->flags & SN_EP_LOCAL) || src->node_ip != ip->saddr)
		return sn_refuse(&key.vni, SN_C_XDP_BAD_SOURCE);

	key.ip = iip->daddr;
	dst = bpf_map_lookup_elem(&sn_endpoints, &key);
	if (!dst) {
		/* A reply to a client of this node's published port. */
		verdict = sn_mesh_reply_xdp(ctx, inner, iip, end);
		if (verdict >= 0)
			return verdict;
	}
	if (!dst || !(dst->flags & SN_EP_LOCAL) || !dst->ifindex)
		return sn_xdp_drop(SN_C_XDP_NO_ENDPOINT);

	/* A reply from a backend to a client here: the client sees the VIP it spoke to. */
	if ((src->flags & SN_EP_BACKEND) && iip->ihl == 5)
		sn_rev_nat_direct(iip, end, key.vni);
	return sn_deliver_decap(ctx, inner, dst, SN_C_XDP_DECAP, SN_C_XDP_MALFORMED);
}

char _license[] SEC("license") = "Dual BSD/GPL";
