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
 * Its source must be one of the task's addresses (sn_gateways: the gateway
 * bridge's, the ingress network's): anything else is dropped (gw_spoofed),
 * and mesh reply entries are keyed by the backend, so no task gets another
 * one's replies translated (issue 19, hole 2).
 * Before anything else: a task never sends to a node's data-path port (UDP)
 * or gossip port (TCP and UDP), on any node's underlay address or any address
 * of this node (its gateway bridge's included). The masquerade would give
 * such a datagram the node's own address as outer source, and no receiver
 * can tell it from the node's data path: VXLAN put into any network of any
 * node (issue 19, hole 1). Dropped and counted (gw_node_port).
 * A packet from an address of the ingress network that no flow explains is
 * dropped: the masquerade must never send a mesh reply out with the node's
 * address and the wrong port. Everything else (the task's own connections to
 * the outside, DNS for the resolver at the bridge) is TCX_NEXT: the other
 * programs on this hook and then the kernel see it unchanged.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mesh.h"
#include "icmp.h"
#include "fib.h"

/* TC_ACT_UNSPEC: the next TCX program on the hook, then the kernel (older uapi headers lack the TCX_ name). */
#define TCX_NEXT TC_ACT_UNSPEC

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

/* Is `dport` (of protocol `proto`) the data-path port or the given gossip port? */
static __always_inline int sn_is_node_port(__u8 proto, __be16 dport, __be16 vxlan_port, __be16 gossip_port)
{
	return (proto == IPPROTO_UDP && dport == vxlan_port) || (gossip_port && dport == gossip_port);
}

/*
 * 1 when the task's packet goes to a node's data-path or gossip port. The
 * ports are read past IP options; a later fragment has none (without its
 * first one, which is checked, the datagram is never whole). May pull the
 * headers into the linear part: the caller's packet pointers are stale after.
 */
static __always_inline int sn_gw_to_node_port(struct __sk_buff *skb, const struct sn_config *cfg)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct bpf_fib_lookup p = {};
	struct sn_mesh_node *node;
	struct sn_ports *ports;
	struct iphdr *ip;
	__be32 self, daddr;
	__be16 dport;
	__u32 ihl;
	__u8 proto;
	long rc;

	ip = data + ETH_HLEN;
	if (!sn_fits(ip, end) || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) ||
	    (ip->frag_off & bpf_htons(SN_IP_OFFSET)) || ip->ihl < 5)
		return 0;
	ihl = ip->ihl * 4;
	if (data + ETH_HLEN + ihl + sizeof(*ports) > end) {
		if (bpf_skb_pull_data(skb, ETH_HLEN + ihl + sizeof(*ports)))
			return 0; /* shorter than its headers: the kernel drops it */
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		ip = data + ETH_HLEN;
		if (!sn_fits(ip, end))
			return 0;
	}
	ports = data + ETH_HLEN + ihl;
	if (!sn_fits(ports, end))
		return 0;
	proto = ip->protocol;
	dport = ports->dest;
	daddr = ip->daddr;
	node = bpf_map_lookup_elem(&sn_mesh_nodes, &daddr);
	if (node)
		return sn_is_node_port(proto, dport, cfg->vxlan_port, node->gossip_port);
	self = cfg->node_ip;
	node = bpf_map_lookup_elem(&sn_mesh_nodes, &self);
	if (!sn_is_node_port(proto, dport, cfg->vxlan_port, node ? node->gossip_port : 0))
		return 0;
	/*
	 * Our ports on an address that is no node's underlay one: refused unless
	 * the kernel would forward it away (the gateway bridge's address, a second
	 * address, a broadcast are this node's own; so is anything when it cannot tell).
	 */
	rc = sn_fib_lookup(skb, &p, ip->saddr, daddr, skb->len - ETH_HLEN, skb->ifindex, 0);
	return !(rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED);
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

/*
 * A reply going back over VXLAN must fit the ingress network's MTU, as a
 * task's frame on an overlay network must (tc_task.c): the gateway veth has
 * Ethernet's 1500, the underlay carries the network's MTU and its 50 bytes of
 * VXLAN, no more. < 0 when it fits; else the verdict: a plain one with DF,
 * "fragmentation needed" back to the task from the client, so its stack
 * learns the path MTU; without DF, or a GSO one whose segments are too large
 * (TCP's are held by the clamped MSS), dropped and counted.
 */
static __always_inline int sn_gw_fits(struct __sk_buff *skb, __u32 vni)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__u32 mtu, seg;

	/* A frame no larger than the smallest MTU a network can have needs no look at its network. */
	if (skb->len <= ETH_HLEN + SN_MTU_MIN && !skb->gso_size)
		return -1;
	mtu = sn_net_mtu(vni);
	if (!mtu || !sn_fits(ip, end))
		return -1;
	if (skb->gso_size) {
		seg = sizeof(struct iphdr) + skb->gso_size;
		if (ip->protocol == IPPROTO_UDP)
			seg += sizeof(struct udphdr);
		else if (ip->protocol == IPPROTO_TCP) {
			struct tcphdr *tcp = (void *)(ip + 1);

			if (!sn_fits(tcp, end))
				return -1;
			seg += tcp->doff * 4;
		}
		return seg > mtu ? sn_tc_drop(SN_C_MESH_TOO_BIG) : -1;
	}
	if (skb->len - ETH_HLEN <= mtu)
		return -1;
	if (!(ip->frag_off & bpf_htons(SN_IP_DF)))
		return sn_tc_drop(SN_C_MESH_TOO_BIG);
	return sn_frag_needed_skb(skb, mtu, SN_C_MESH_FRAG_NEEDED, SN_C_MESH_TOO_BIG);
}

/*
 * An ICMP error the task sent about a client's request to a published port
 * (port unreachable, ...): from the address the request came to, quoting it
 * as the task got it (client -> backend:target). The flow's reply entry,
 * keyed as the backend answers, says where it goes: by this node, the
 * published address and port back in the outer source and the quote, and out
 * of the underlay; by another node, VXLAN back to it, which does the same
 * (mesh_xdp.h). TCX_NEXT when it is about no flow of this task's, as before.
 */
static __always_inline int sn_gw_icmp(struct __sk_buff *skb, const struct sn_config *cfg, const struct sn_gateway *gw)
{
	void *data, *end;
	struct sn_mesh_ct_key rk = {};
	struct sn_mesh_ct *ct;
	struct sn_ports *ports;
	struct ethhdr *eth;
	struct iphdr *ip, *in;
	__be32 to_addr, node;
	__be16 to_port;
	__u32 vni, now;

	/* The quote must be in the linear part to be read and rewritten in place. */
	if (bpf_skb_pull_data(skb, skb->len))
		return TCX_NEXT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	if (!sn_fits(ip, end) || !sn_ipv4_plain(ip))
		return TCX_NEXT;
	in = sn_icmp_quote(ip, end);
	if (!in)
		return TCX_NEXT;
	ports = (void *)(in + 1);
	/* About a datagram to the task itself, sent from where it went. */
	if (!sn_fits(ports, end) || in->daddr != ip->saddr || in->saddr != ip->daddr ||
	    (in->daddr != gw->gw_ip && in->daddr != gw->ingress_ip))
		return TCX_NEXT;
	/* The quote went client -> backend: the reply entry is the other way. */
	sn_mesh_reply_key(&rk, in->saddr, ports->source, in->daddr, ports->dest, in->protocol);
	ct = sn_mesh_reply_lookup(&rk, &now);
	if (!ct || !ct->addr)
		return TCX_NEXT;
	to_addr = ct->addr;
	to_port = ct->port;
	node = ct->node;
	vni = ct->vni;
	if (node == cfg->node_ip) {
		if (sn_icmp_quote_nat(ip, end, 0, to_addr, to_port))
			return sn_tc_drop(SN_C_MESH_DROP);
		sn_count(SN_C_MESH_ICMP_TO_CLIENT);
		return sn_fib_out_tc(skb, cfg, to_addr, rk.dst);
	}
	/* Back to the ingress node as the flow's replies go; it puts the published address and port in. */
	if (in->daddr != to_addr)
		return sn_tc_drop(SN_C_MESH_DROP);
	eth = data;
	sn_mac_of_ip(eth->h_source, to_addr);
	sn_mac_of_ip(eth->h_dest, rk.dst);
	if (sn_vxlan_encap_skb(skb, cfg->node_ip, node, cfg->vxlan_port, vni, sn_flow_hash(ip, end)))
		return sn_tc_drop(SN_C_MESH_DROP);
	sn_count(SN_C_MESH_RETURN);
	return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
}

SEC("tc")
int sn_tc_gw(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct sn_mesh_ct_key rk = {};
	struct sn_mesh_ct_key fk = {};
	__u32 ifindex = skb->ifindex;
	__u8 tflags;
	struct sn_gateway *gw;
	struct sn_config *cfg;
	struct sn_mesh_ct *ct;
	struct sn_ports *ports;
	struct iphdr *ip;
	__be32 to_addr, client, from, node;
	__be16 to_port;
	__u32 vni, now;

	if (!sn_fits(eth, end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return TCX_NEXT;
	cfg = sn_get_config();
	if (!cfg || !cfg->underlay_ifindex)
		return TCX_NEXT;
	if (sn_gw_to_node_port(skb, cfg))
		return sn_tc_drop(SN_C_GW_NODE_PORT);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end))
		return TCX_NEXT;
	/* The task speaks from its own addresses only: never for another task's flows. */
	gw = bpf_map_lookup_elem(&sn_gateways, &ifindex);
	if (gw && ip->saddr != gw->gw_ip && (!gw->ingress_ip || ip->saddr != gw->ingress_ip))
		return sn_tc_drop(SN_C_GW_SPOOFED);
	if (gw && ip->protocol == IPPROTO_ICMP)
		return sn_gw_icmp(skb, cfg, gw);
	ports = (void *)(ip + 1);
	if (!sn_fits(ports, end) || !sn_ipv4_plain(ip) || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return TCX_NEXT;
	if (!gw) {
		struct sn_mesh_config *mc = sn_get_mesh_config();

		/*
		 * A veth whose entry is not written yet (the moment after its task
		 * started) answers for no flow; the masquerade takes its packets as
		 * any task connection, except from an ingress address (a lost mesh reply).
		 */
		if (mc && mc->ingress_vni && sn_gw_ingress_addr(ip->saddr, mc->ingress_vni))
			return sn_tc_drop(SN_C_MESH_UNTRACKED);
		return TCX_NEXT;
	}
	from = ip->saddr;
	/* The flow of this task (see mesh.h): by the source it answered from, then by its ingress address. */
	sn_mesh_ct_key_of(&rk, ip, ports, SN_CT_REPLY);
	ct = sn_mesh_reply_lookup(&rk, &now);
	if (!ct && from == gw->gw_ip && gw->ingress_ip) {
		rk.src = gw->ingress_ip;
		ct = sn_mesh_reply_lookup(&rk, &now);
	}
	tflags = rk.proto == IPPROTO_TCP ? sn_tcp_flags(ports, end) : 0;
	if (!ct) {
		/* A task's own connections leave from its gateway-bridge address; one from its ingress address is a lost mesh reply. */
		if (gw->ingress_ip && from == gw->ingress_ip)
			return sn_tc_drop(SN_C_MESH_UNTRACKED);
		return TCX_NEXT;
	}
	sn_mesh_ct_used(ct, rk.proto, tflags, SN_MESH_CT_FIN_BACKEND, now);
	client = ip->daddr;
	if (ct->node == cfg->node_ip) {
		if (!ct->addr)
			return sn_tc_drop(SN_C_MESH_DROP);
		to_addr = ct->addr;
		to_port = ct->port;
		if (sn_nat_tc(skb, rk.proto, SN_NAT_SRC, from, to_addr, 1, rk.sport, to_port))
			return sn_tc_drop(SN_C_MESH_DROP);
		if (tflags & SN_TCP_RST) {
			/* The backend ended the flow: both entries go, the RST itself translated first. */
			sn_mesh_forward_key(&fk, client, rk.dport, to_addr, to_port, rk.proto);
			sn_mesh_reset(&rk, &fk);
		}
		sn_count(SN_C_MESH_REPLY);
		return sn_fib_out_tc(skb, cfg, to_addr, client);
	}
	/* Back to the node the request came in by, on the network it came on, from the address it was sent to. */
	vni = ct->vni;
	to_addr = ct->addr;
	node = ct->node;
	if (!to_addr)
		return sn_tc_drop(SN_C_MESH_DROP);
	/* Too large for the way back (the datagram as the task sent it, before any NAT): refused before it is translated. */
	{
		int verdict = sn_gw_fits(skb, vni);

		if (verdict >= 0)
			return verdict;
	}
	/* The backend ended the flow: its entry here goes (the ingress node drops its own when the RST gets there). */
	if (tflags & SN_TCP_RST)
		sn_mesh_reset(&rk, NULL);
	if (from != to_addr) {
		if (sn_nat_tc(skb, rk.proto, SN_NAT_SRC, from, to_addr, 1, rk.sport, rk.sport))
			return sn_tc_drop(SN_C_MESH_DROP);
	}
	/* Only a SYN (the backend's SYN-ACK) carries the MSS option: the MTU is looked up for it alone. */
	if (tflags & SN_TCP_SYN) {
		__u16 mtu = sn_net_mtu(vni);

		if (mtu > SN_TCPIP_HLEN)
			sn_gw_clamp_mss(skb, mtu - SN_TCPIP_HLEN);
	}
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end))
		return sn_tc_drop(SN_C_MESH_DROP);
	sn_mac_of_ip(eth->h_source, to_addr);
	sn_mac_of_ip(eth->h_dest, client);
	if (sn_vxlan_encap_skb(skb, cfg->node_ip, node, cfg->vxlan_port, vni, sn_flow_hash(ip, end)))
		return sn_tc_drop(SN_C_MESH_DROP);
	sn_count(SN_C_MESH_RETURN);
	return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
