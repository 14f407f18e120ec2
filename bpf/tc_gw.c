// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TCX ingress on the host side of a task's gateway-bridge veth: what the task
 * sends towards the node and the outside. Only the routing mesh's replies are
 * ours (bpf/include/mesh.h): a task answers a published port's client from
 * its ingress (or, in host mode, gateway-bridge) address by its default
 * route, which is this device. Found in sn_mesh_ct:
 *   - the flow came in by this node: the published address and port back as
 *     the source, and out of the underlay to the next hop the FIB names;
 *   - it came in by another node: VXLAN on the ingress network back to that
 *     node, which does the same.
 * A packet from an address of the ingress network that no flow explains is
 * dropped: the masquerade must never send a mesh reply out with the node's
 * address and the wrong port. Everything else (the task's own connections to
 * the outside, DNS for the resolver at the bridge) is TCX_NEXT: the other
 * programs on this hook and then the kernel see it unchanged.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mesh.h"

#define sn_drop(counter) ({ sn_count(counter); TC_ACT_SHOT; })
/* TC_ACT_UNSPEC: the next TCX program on the hook, then the kernel (older uapi headers lack the TCX_ name). */
#define TCX_NEXT TC_ACT_UNSPEC

/* The reply's source address and port rewritten, with the kernel's checksum helpers (nat.h). */
static __always_inline int sn_gw_nat(struct __sk_buff *skb, __u8 proto, __be32 from_addr, __be32 to_addr,
				     __be16 from_port, __be16 to_port)
{
	if (sn_nat_tc(skb, __builtin_offsetof(struct iphdr, saddr), from_addr, to_addr, proto) ||
	    sn_nat_port_tc(skb, __builtin_offsetof(struct sn_ports, source), from_port, to_port, proto))
		return -1;
	return 0;
}

/* The SYN-ACK's MSS option lowered to what the overlay carries; the kernel's helper keeps a partial checksum right. */
static __always_inline void sn_gw_clamp_mss(struct __sk_buff *skb, __u16 mss)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__be32 old, now;

	if (sn_mss_lower((void *)(ip + 1), end, mss, &old, &now))
		bpf_l4_csum_replace(skb, sn_l4_check_off(IPPROTO_TCP), old, now, sizeof(now));
}

/* Out of the underlay: the next hop's MAC from the FIB; without a neighbour, the kernel resolves it (counted). */
static __always_inline int sn_gw_out(struct __sk_buff *skb, const struct sn_config *cfg, __be32 src, __be32 dst)
{
	struct bpf_fib_lookup p = {};
	void *data, *end;
	struct ethhdr *eth;
	long rc;

	p.family = AF_INET;
	p.tot_len = skb->len - ETH_HLEN;
	p.ipv4_src = src;
	p.ipv4_dst = dst;
	p.ifindex = cfg->underlay_ifindex;
	rc = bpf_fib_lookup(skb, &p, sizeof(p), BPF_FIB_LOOKUP_OUTPUT);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		sn_count(SN_C_MESH_FIB_FAIL);
		return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
	}
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if (!sn_fits(eth, end))
		return sn_drop(SN_C_MESH_DROP);
	sn_mac_copy(eth->h_dest, p.dmac);
	sn_mac_copy(eth->h_source, p.smac);
	return bpf_redirect(p.ifindex, 0);
}

/* Is `addr` on the ingress network? (Its VNI is the one in any mesh reply entry; its subnet is in sn_networks.) */
static __always_inline int sn_gw_ingress_addr(__be32 addr, __u32 vni)
{
	struct sn_network *net = bpf_map_lookup_elem(&sn_networks, &vni);
	__u32 mask;

	if (!net || !(net->flags & SN_NET_INGRESS) || !net->prefix_len || net->prefix_len > 32)
		return 0;
	mask = bpf_htonl(~0U << (32 - net->prefix_len));
	return (addr & mask) == (net->subnet & mask);
}

SEC("tc")
int sn_tc_gw(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct sn_mesh_ct_key rk = {};
	struct sn_config *cfg;
	struct sn_mesh_ct *ct;
	struct sn_ports *ports;
	struct iphdr *ip;
	__be32 to_addr, client, from;
	__be16 to_port;
	__u32 vni;

	if (!sn_fits(eth, end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return TCX_NEXT;
	ip = (void *)(eth + 1);
	ports = (void *)(ip + 1);
	if (!sn_fits(ports, end) || !sn_ipv4_plain(ip) || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return TCX_NEXT;
	from = ip->saddr;
	sn_mesh_ct_key_of(&rk, ip, ports, SN_CT_REPLY);
	/* Found whatever the task answered from (see mesh.h). */
	rk.src = 0;
	ct = bpf_map_lookup_elem(&sn_mesh_ct, &rk);
	cfg = sn_get_config();
	if (!cfg || !cfg->underlay_ifindex)
		return TCX_NEXT;
	if (!ct) {
		struct sn_mesh_config *mc = sn_get_mesh_config();

		/* A task's own connections leave from its gateway-bridge address; one from its ingress address is a lost mesh reply. */
		if (mc && mc->ingress_vni && sn_gw_ingress_addr(ip->saddr, mc->ingress_vni))
			return sn_drop(SN_C_MESH_UNTRACKED);
		return TCX_NEXT;
	}
	client = ip->daddr;
	if (ct->node == cfg->node_ip) {
		if (!ct->addr)
			return sn_drop(SN_C_MESH_DROP);
		to_addr = ct->addr;
		to_port = ct->port;
		if (sn_gw_nat(skb, rk.proto, from, to_addr, rk.sport, to_port))
			return sn_drop(SN_C_MESH_DROP);
		sn_count(SN_C_MESH_REPLY);
		return sn_gw_out(skb, cfg, to_addr, client);
	}
	/* Back to the node the request came in by, on the network it came on, from the address it was sent to. */
	vni = ct->vni;
	to_addr = ct->addr;
	if (!to_addr)
		return sn_drop(SN_C_MESH_DROP);
	if (from != to_addr) {
		if (sn_gw_nat(skb, rk.proto, from, to_addr, rk.sport, rk.sport))
			return sn_drop(SN_C_MESH_DROP);
	}
	if (rk.proto == IPPROTO_TCP) {
		__u16 mtu = sn_net_mtu(vni);

		if (mtu > SN_TCPIP_HLEN)
			sn_gw_clamp_mss(skb, mtu - SN_TCPIP_HLEN);
	}
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end))
		return sn_drop(SN_C_MESH_DROP);
	sn_mac_of_ip(eth->h_source, to_addr);
	sn_mac_of_ip(eth->h_dest, client);
	if (sn_vxlan_encap_skb(skb, cfg->node_ip, ct->node, cfg->vxlan_port, vni, sn_flow_hash(ip, end)))
		return sn_drop(SN_C_MESH_DROP);
	sn_count(SN_C_MESH_RETURN);
	return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
