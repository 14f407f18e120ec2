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

static __always_inline int sn_gw_nat(struct __sk_buff *skb, __u8 proto, __be32 from_addr, __be32 to_addr,
				     __be16 from_port, __be16 to_port)
{
	__u32 l4 = ETH_HLEN + sizeof(struct iphdr);
	__u32 csum_off = l4 + (proto == IPPROTO_TCP ? __builtin_offsetof(struct tcphdr, check)
						    : __builtin_offsetof(struct udphdr, check));
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, csum_off, from_addr, to_addr, BPF_F_PSEUDO_HDR | sizeof(to_addr) | mangled) ||
	    bpf_l4_csum_replace(skb, csum_off, from_port, to_port, sizeof(to_port) | mangled) ||
	    bpf_l3_csum_replace(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, check), from_addr, to_addr,
				sizeof(to_addr)) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, saddr), &to_addr, sizeof(to_addr), 0) ||
	    bpf_skb_store_bytes(skb, l4 + __builtin_offsetof(struct sn_ports, source), &to_port, sizeof(to_port), 0))
		return -1;
	return 0;
}

/* The SYN-ACK's MSS option (first option) lowered to what the overlay carries; the helper keeps a partial checksum right. */
static __always_inline void sn_gw_clamp_mss(struct __sk_buff *skb, __u16 mss)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct tcphdr *tcp = (void *)(ip + 1);
	__be32 *opt = (void *)(tcp + 1);
	__be32 old, now;
	__u8 *b;

	if (!sn_fits(opt, end) || !tcp->syn || tcp->doff < 6)
		return;
	b = (__u8 *)opt;
	if (b[0] != SN_TCPOPT_MSS || b[1] != 4 || ((__u16)b[2] << 8 | b[3]) <= mss)
		return;
	old = *opt;
	b[2] = mss >> 8;
	b[3] = mss & 0xff;
	now = *opt;
	bpf_l4_csum_replace(skb, ETH_HLEN + sizeof(*ip) + __builtin_offsetof(struct tcphdr, check), old, now,
			    sizeof(now));
}

static __always_inline int sn_gw_encap(struct __sk_buff *skb, const struct sn_config *cfg, __u32 vni, __be32 remote,
				       __u32 hash)
{
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
		      BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	__u32 inner_len = skb->len;
	struct sn_vxlan_encap *h;
	struct ethhdr *outer;
	void *data, *end;

	if (bpf_skb_adjust_room(skb, SN_VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, flags))
		return -1;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	outer = data;
	h = (void *)(outer + 1);
	if ((void *)h + SN_VXLAN_OVERHEAD > end)
		return -1;
	__builtin_memcpy(&h->eth, outer, sizeof(h->eth));
	sn_vxlan_fill(h, cfg->node_ip, remote, cfg->vxlan_port, vni, hash, inner_len);
	return 0;
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
	rk.dst = ip->daddr;
	rk.sport = ports->source;
	rk.dport = ports->dest;
	rk.proto = ip->protocol;
	rk.dir = SN_CT_REPLY;
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
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		eth = data;
		ip = (void *)(eth + 1);
		if (!sn_fits(ip, end))
			return sn_drop(SN_C_MESH_DROP);
	}
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end))
		return sn_drop(SN_C_MESH_DROP);
	sn_mac_of_ip(eth->h_source, to_addr);
	sn_mac_of_ip(eth->h_dest, client);
	if (sn_gw_encap(skb, cfg, vni, ct->node, sn_flow_hash(ip, end)))
		return sn_drop(SN_C_MESH_DROP);
	sn_count(SN_C_MESH_RETURN);
	return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
