/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The routing mesh's XDP side, on the underlay (see mesh.h for the design):
 *   sn_mesh_xdp:        a request to a published port of this node;
 *   sn_mesh_decap:      a request an ingress node sent us over the ingress network;
 *   sn_mesh_reply_xdp:  a reply a backend's node sent back to us, the ingress node.
 * Each returns the verdict, or -1 when the packet is not the mesh's (the
 * caller goes on as before).
 */
#ifndef SN_MESH_XDP_H
#define SN_MESH_XDP_H

#include "mesh.h"
#include "icmp.h"
#include "fib.h"
#include "local.h"

/*
 * Verdicts are returned as constants (bpf_redirect with no flags always gives
 * XDP_REDIRECT; drops are sn_xdp_drop, maps.h): the verifier then sees that a
 * caller given a verdict never reads the packet again, which a helper's return
 * value would not prove.
 */

/*
 * The backend of a new mesh flow: Maglev on the service's table on the
 * ingress network, with its node from the backend set. 0 when there is none.
 */
static __always_inline __be32 sn_mesh_pick(const struct sn_mesh_port *mp, struct iphdr *ip, struct sn_ports *ports,
					   struct sn_mesh_ct *fwd)
{
	struct sn_service_key sk = {.vni = mp->vni, .vip = mp->addr};
	struct sn_backend_key bk;
	struct sn_maglev_key mk;
	struct sn_maglev_chunk *chunk;
	struct sn_service *svc;
	struct sn_backend *be;
	__u32 slot;
	__be32 addr;

	svc = bpf_map_lookup_elem(&sn_services, &sk);
	if (!svc || !svc->count || !svc->size)
		return 0;
	/* Hashed on the VIP and target, not the address the client chose: every node picks alike. */
	slot = sn_lb_hash(ip->saddr, mp->addr, ports->source, mp->target, ip->protocol) % svc->size;
	mk.table = svc->table;
	mk.chunk = slot / SN_MAGLEV_CHUNK;
	chunk = bpf_map_lookup_elem(&sn_maglev, &mk);
	if (!chunk)
		return 0;
	addr = chunk->backend[slot & (SN_MAGLEV_CHUNK - 1)];
	if (!addr)
		return 0;
	bk.vni = mp->vni;
	bk.vip = mp->addr;
	bk.ip = addr;
	be = bpf_map_lookup_elem(&sn_backends, &bk);
	if (!be)
		return 0;
	fwd->addr = addr;
	fwd->node = be->node_ip;
	fwd->table = svc->table;
	return addr;
}

/*
 * A tracked flow on an older table than its service's: is its backend still
 * in the set, on the node the flow goes to? An address freed by a stopped
 * task may be given to its replacement on another node: a flow to the old
 * one is over, and a SYN of it still unanswered is picked afresh.
 */
static __always_inline int sn_mesh_still_there(const struct sn_mesh_port *mp, struct sn_mesh_ct *ct)
{
	struct sn_service_key sk = {.vni = mp->vni, .vip = mp->addr};
	struct sn_backend_key bk;
	struct sn_service *svc;
	struct sn_backend *be;

	svc = bpf_map_lookup_elem(&sn_services, &sk);
	if (!svc)
		return 0;
	if (svc->table == ct->table)
		return 1;
	bk.vni = mp->vni;
	bk.vip = mp->addr;
	bk.ip = ct->addr;
	be = bpf_map_lookup_elem(&sn_backends, &bk);
	if (!be || be->node_ip != ct->node)
		return 0;
	ct->table = svc->table;
	return 1;
}

/*
 * The frame (its inner Ethernet header already addressed) wrapped in VXLAN
 * on network `vni` to `node`, built in XDP as tc_task.c would have built it,
 * and sent out of the underlay. The verdict.
 */
static __always_inline int sn_mesh_xdp_encap(struct xdp_md *ctx, const struct sn_config *cfg, __be32 node, __u32 vni)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct sn_vxlan_encap *h;
	struct ethhdr *outer;
	__u32 inner_len = end - data, hash;

	if (!sn_fits(ip, end))
		return sn_xdp_drop(SN_C_MESH_DROP);
	hash = sn_flow_hash(ip, end);
	if (bpf_xdp_adjust_head(ctx, -(int)SN_VXLAN_OVERHEAD))
		return sn_xdp_drop(SN_C_MESH_DROP);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	outer = data;
	h = (void *)(outer + 1);
	if ((void *)h + SN_VXLAN_OVERHEAD > end)
		return sn_xdp_drop(SN_C_MESH_DROP);
	outer->h_proto = bpf_htons(ETH_P_IP);
	sn_vxlan_fill(h, cfg->node_ip, node, cfg->vxlan_port, vni, hash, inner_len);
	return sn_fib_out_xdp(ctx, outer, cfg->node_ip, node, bpf_ntohs(h->ip.tot_len), NULL);
}

/*
 * ICMP "fragmentation needed" back to the client, in place, from the address
 * it spoke to: the first SN_ICMP_QUOTE bytes of its datagram as it sent it
 * (before any NAT), an IPv4 and an ICMP header in front, out of the underlay
 * as a reply goes (the MACs it came with when the FIB has no neighbour).
 */
static __always_inline int sn_mesh_frag_needed(struct xdp_md *ctx, __u16 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct sn_mesh_ct back = {};
	struct sn_icmp_frag *h;
	__be32 client, published;

	if (!sn_fits(ip, end))
		return sn_xdp_drop(SN_C_MESH_DROP);
	client = ip->saddr;
	published = ip->daddr;
	sn_mac_copy(back.peer_mac, eth->h_source);
	sn_mac_copy(back.own_mac, eth->h_dest);
	/* Shrink first (less to keep), then room in front for the two headers; the Ethernet header is written anew. */
	if (bpf_xdp_adjust_tail(ctx, (int)(ETH_HLEN + SN_ICMP_QUOTE) - (int)(end - data)) ||
	    bpf_xdp_adjust_head(ctx, -(int)sizeof(struct sn_icmp_frag)))
		return sn_xdp_drop(SN_C_MESH_DROP);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	h = (void *)(eth + 1);
	if ((void *)(h + 1) > end)
		return sn_xdp_drop(SN_C_MESH_DROP);
	eth->h_proto = bpf_htons(ETH_P_IP);
	if (sn_icmp_frag_fill(h, end, published, client, mtu))
		return sn_xdp_drop(SN_C_MESH_DROP);
	sn_count(SN_C_MESH_FRAG_NEEDED);
	return sn_fib_out_xdp(ctx, eth, published, client, sizeof(*h) + SN_ICMP_QUOTE, &back);
}

/*
 * A client's datagram to a published port on the ingress network must fit
 * the network's MTU: the backend's interface has it, and over VXLAN the
 * underlay carries that and no more. < 0 when it fits (or cannot be told);
 * else the verdict: with DF, "fragmentation needed" back to the client, as a
 * router answers, so its stack learns the path MTU; without, dropped and
 * counted: nothing on the way can fragment it (XDP cannot, and the kernel
 * has no socket for it nor a route for it once translated).
 */
static __always_inline int sn_mesh_fits(struct xdp_md *ctx, const struct iphdr *ip, const void *end, __u32 vni)
{
	__u32 len = bpf_ntohs(ip->tot_len);
	__u16 mtu;

	/* A frame no larger than the smallest MTU a network can have needs no look at its network. */
	if (len <= SN_MTU_MIN || (const void *)ip + len > end)
		return -1;
	mtu = sn_net_mtu(vni);
	if (!mtu || len <= mtu)
		return -1;
	if (!(ip->frag_off & bpf_htons(SN_IP_DF)))
		return sn_xdp_drop(SN_C_MESH_TOO_BIG);
	return sn_mesh_frag_needed(ctx, mtu);
}

/*
 * Has the established flow of forward entry `ct` ended, as this packet of
 * the client's finds it? Its reply entry `rct` (NULL: lost to LRU) has the
 * last packet the backend sent and the FINs. UDP: idle past its lifetime
 * either way; TCP: closed past its grace, or closed and this a new SYN on
 * the port (a new connection is picked afresh, never sent into the old
 * one's grace). *now: the clock, when it was read (0 else).
 */
static __always_inline int sn_mesh_fwd_ended(const struct sn_mesh_ct *ct, const struct sn_mesh_ct *rct, __u8 proto,
					     __u8 tflags, __u32 *now, __u32 *idle_ms)
{
	__u32 last;

	if (proto == IPPROTO_UDP) {
		last = ct->seen;
		if (rct && (__s32)(rct->seen - last) > 0)
			last = rct->seen;
		*now = sn_mesh_now();
		*idle_ms = sn_mesh_udp_idle_ms();
		return sn_mesh_past(*now, last, *idle_ms);
	}
	if (!rct || !(rct->flags & SN_MESH_CT_CLOSING))
		return 0;
	if ((tflags & (SN_TCP_SYN | SN_TCP_ACK)) == SN_TCP_SYN)
		return 1;
	*now = sn_mesh_now();
	return sn_mesh_past(*now, rct->seen, SN_MESH_CLOSE_GRACE_MS);
}

static __always_inline int sn_mesh_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct sn_mesh_ct_key fk = {}, rk = {};
	struct sn_mesh_ct fwd = {}, rev = {};
	struct sn_mesh_port_key pk = {};
	struct sn_endpoint *ep;
	struct sn_mesh_port *mp;
	struct sn_config *cfg;
	struct sn_mesh_ct *ct, *rct = NULL;
	struct sn_ports *ports;
	struct iphdr *ip;
	__be32 backend, published_addr;
	__be16 published_port;
	int new_flow = 0, established;
	__u32 now = 0, idle_ms = 0;
	__u8 tflags = 0;

	if (!sn_fits(eth, end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end) || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return -1;
	/*
	 * A frame in several buffers (a merged one a veth hands over) is more than
	 * one wire packet: never wrapped or rewritten from its first buffer alone.
	 */
	if (bpf_xdp_get_buff_len(ctx) != (__u64)(end - data))
		return -1;
	ports = (void *)(ip + 1);
	/* Options and fragments are left to the kernel, which has no socket on a published port: never mis-forwarded. */
	if (!sn_ipv4_plain(ip) || !sn_fits(ports, end))
		return -1;
	cfg = sn_get_config();
	/* The underlay address, or another of the node's own (mesh_addrs.h). */
	if (!cfg || (ip->daddr != cfg->node_ip && !sn_mesh_addr(ip->daddr)))
		return -1;
	if (ip->protocol == IPPROTO_UDP && ports->dest == cfg->vxlan_port)
		return -1;
	pk.port = ports->dest;
	pk.proto = ip->protocol;
	mp = bpf_map_lookup_elem(&sn_mesh_ports, &pk);
	if (!mp)
		return -1;
	if (mp->mode == SN_MESH_INGRESS) {
		int verdict = sn_mesh_fits(ctx, ip, end, mp->vni);

		if (verdict >= 0) {
			sn_mesh_account(&pk, end - data, 0);
			return verdict;
		}
	}

	published_addr = ip->daddr;
	published_port = ports->dest;
	if (ip->protocol == IPPROTO_TCP)
		tflags = sn_tcp_flags(ports, end);
	sn_mesh_ct_key_of(&fk, ip, ports, SN_CT_FORWARD);
	/* An established flow (sn_mesh_ct), else a TCP one whose handshake is under way (sn_mesh_syn). */
	ct = bpf_map_lookup_elem(&sn_mesh_ct, &fk);
	if (ct) {
		/* Its reply entry holds what both sides did (FINs, UDP's last packet): has the flow ended? */
		sn_mesh_reply_key(&rk, ip->saddr, ports->source, ct->addr, mp->target, ip->protocol);
		rct = bpf_map_lookup_elem(&sn_mesh_ct, &rk);
		if (sn_mesh_fwd_ended(ct, rct, ip->protocol, tflags, &now, &idle_ms) ||
		    (mp->mode == SN_MESH_HOST && ct->addr != mp->addr)) {
			bpf_map_delete_elem(&sn_mesh_ct, &rk);
			bpf_map_delete_elem(&sn_mesh_ct, &fk);
			sn_count(SN_C_MESH_CT_EXPIRED);
			ct = NULL;
			rct = NULL;
		}
	}
	established = ct != NULL;
	if (!ct && ip->protocol == IPPROTO_TCP)
		ct = bpf_map_lookup_elem(&sn_mesh_syn, &fk);
	if (ct)
		__builtin_memcpy(&fwd, ct, sizeof(fwd));
	if (mp->mode == SN_MESH_HOST) {
		backend = mp->addr;
		fwd.addr = mp->addr;
		fwd.node = cfg->node_ip;
		new_flow = !ct;
	} else if (ct && sn_mesh_still_there(mp, ct)) {
		backend = ct->addr;
		fwd.table = ct->table;
	} else {
		if (ct) {
			bpf_map_delete_elem(&sn_mesh_ct, &fk);
			bpf_map_delete_elem(&sn_mesh_syn, &fk);
		}
		__builtin_memset(&fwd, 0, sizeof(fwd));
		backend = sn_mesh_pick(mp, ip, ports, &fwd);
		if (!backend) {
			sn_mesh_account(&pk, end - data, 0);
			return sn_xdp_drop(SN_C_MESH_NO_BACKEND);
		}
		new_flow = 1;
	}
	/*
	 * TCP entries are made on a SYN only: anything else of an unknown flow is
	 * no connection of ours. It goes to the kernel, whose socket it may be (a
	 * connection the node made from this port: its SYN-ACK and the rest), or
	 * which answers it with a RST (issue 19, hole 4).
	 */
	if (new_flow && ip->protocol == IPPROTO_TCP && (tflags & (SN_TCP_SYN | SN_TCP_ACK)) != SN_TCP_SYN) {
		sn_count(SN_C_MESH_NOT_SYN);
		return -1;
	}
	/* Keyed by the backend: only that task's replies find it (see mesh.h). */
	sn_mesh_reply_key(&rk, ip->saddr, ports->source, backend, mp->target, ip->protocol);
	rev.addr = published_addr;
	rev.port = published_port;
	rev.node = cfg->node_ip;
	rev.vni = mp->vni;
	sn_mac_copy(rev.peer_mac, eth->h_source);
	sn_mac_copy(rev.own_mac, eth->h_dest);
	fwd.port = mp->target;
	fwd.vni = mp->vni;
	if (new_flow) {
		/* The reply entry first: a reply must never find the flow without it. A TCP flow starts embryonic. */
		void *map = ip->protocol == IPPROTO_TCP ? (void *)&sn_mesh_syn : (void *)&sn_mesh_ct;

		fwd.flags = 0;
		fwd.seen = rev.seen = now ? now : sn_mesh_now();
		if (bpf_map_update_elem(map, &rk, &rev, BPF_ANY) || bpf_map_update_elem(map, &fk, &fwd, BPF_ANY))
			return sn_xdp_drop(SN_C_MESH_DROP);
		/*
		 * An older flow's established reply entry under the same key (the client
		 * reused its port, to another node or published port of the same backend)
		 * would be found first: this SYN supersedes it.
		 */
		if (ip->protocol == IPPROTO_TCP)
			bpf_map_delete_elem(&sn_mesh_ct, &rk);
	} else if (!established) {
		/* The client's ACK of the handshake: the flow is established, its entries move over (reply first). */
		if ((tflags & (SN_TCP_SYN | SN_TCP_ACK)) == SN_TCP_ACK) {
			if (bpf_map_update_elem(&sn_mesh_ct, &rk, &rev, BPF_ANY) ||
			    bpf_map_update_elem(&sn_mesh_ct, &fk, &fwd, BPF_ANY))
				return sn_xdp_drop(SN_C_MESH_DROP);
			bpf_map_delete_elem(&sn_mesh_syn, &rk);
			bpf_map_delete_elem(&sn_mesh_syn, &fk);
		}
	} else if (!rct) {
		/* The reply entry must outlive LRU pressure as the forward one does: one that went is written again. */
		rev.seen = now;
		if (!bpf_map_update_elem(&sn_mesh_ct, &rk, &rev, BPF_ANY))
			sn_count(SN_C_MESH_REPLY_RESTORED);
	} else if (ip->protocol == IPPROTO_UDP) {
		/* The reply entry's clock too: the ingress node's reply path looks at that one only. */
		sn_mesh_ct_touch(ct, now, idle_ms);
		sn_mesh_ct_touch(rct, now, idle_ms);
	} else if (tflags & SN_TCP_FIN) {
		sn_mesh_ct_fin(rct, SN_MESH_CT_FIN_CLIENT);
	}
	if (tflags & SN_TCP_RST)
		sn_mesh_reset(&rk, &fk);
	sn_mesh_account(&pk, end - data, new_flow);
	if (new_flow)
		sn_count(SN_C_MESH_NEW_FLOW);

	sn_nat_direct(ip, end, SN_NAT_DST, backend, 1, mp->target, NULL);

	if (mp->mode == SN_MESH_HOST) {
		if (!mp->ifindex)
			return sn_xdp_drop(SN_C_MESH_NO_BACKEND);
		sn_count(SN_C_MESH_LOCAL);
		sn_deliver(eth->h_dest, mp->mac, mp->ifindex);
		return XDP_REDIRECT;
	}
	if (fwd.node == cfg->node_ip) {
		ep = sn_local_endpoint(mp->vni, backend, SN_EP_LOCAL);
		if (!ep)
			return sn_xdp_drop(SN_C_MESH_NO_BACKEND);
		sn_count(SN_C_MESH_LOCAL);
		sn_deliver(eth->h_dest, ep->mac, ep->ifindex);
		return XDP_REDIRECT;
	}

	/* A backend on another node: VXLAN on the ingress network, as tc_task.c would have built it. */
	/* Only a SYN carries the MSS option: the network's MTU is looked up for it alone, not per segment. */
	if (tflags & SN_TCP_SYN) {
		__u16 mtu = sn_net_mtu(mp->vni);

		if (mtu > SN_TCPIP_HLEN)
			sn_clamp_mss_direct((void *)(ip + 1), end, mtu - SN_TCPIP_HLEN);
	}
	sn_mac_of_ip(eth->h_dest, backend);
	sn_count(SN_C_MESH_REMOTE);
	return sn_mesh_xdp_encap(ctx, cfg, fwd.node, mp->vni);
}

/*
 * An ICMP error to this node about a reply of a mesh flow: its quote is the
 * reply as the client got it (published address:port -> client), so the
 * flow's forward entry, keyed as the client spoke, names the backend. The
 * quote and the outer destination become the backend and its target port
 * (the backend's stack then finds the socket, and the path MTU to the client
 * on a "fragmentation needed"), and the error goes where the flow's requests
 * go: into the local task, or over the ingress network to the backend's
 * node. -1: not about a mesh flow (the kernel gets it, as before).
 */
static __always_inline int sn_mesh_icmp_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct sn_mesh_ct_key fk = {};
	struct sn_mesh_port_key pk = {};
	struct sn_endpoint *ep;
	struct sn_mesh_port *mp;
	struct sn_config *cfg;
	struct sn_mesh_ct *ct;
	struct sn_ports *ports;
	struct iphdr *ip, *in;
	__be32 backend, node;
	__be16 target;
	__u32 vni;

	if (!sn_fits(eth, end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end) || ip->protocol != IPPROTO_ICMP || !sn_ipv4_plain(ip))
		return -1;
	if (bpf_xdp_get_buff_len(ctx) != (__u64)(end - data))
		return -1;
	in = sn_icmp_quote(ip, end);
	if (!in)
		return -1;
	ports = (void *)(in + 1);
	/* An error goes to the quoted datagram's source: the address the client spoke to. */
	if (!sn_fits(ports, end) || in->saddr != ip->daddr)
		return -1;
	cfg = sn_get_config();
	if (!cfg)
		return -1;
	/* The quote is a reply as the client got it: the forward entry is the other way. */
	sn_mesh_forward_key(&fk, in->daddr, ports->dest, in->saddr, ports->source, in->protocol);
	ct = bpf_map_lookup_elem(&sn_mesh_ct, &fk);
	if (!ct && fk.proto == IPPROTO_TCP)
		ct = bpf_map_lookup_elem(&sn_mesh_syn, &fk);
	if (!ct || !ct->addr || !ct->port)
		return -1;
	backend = ct->addr;
	node = ct->node;
	target = ct->port;
	vni = ct->vni;
	if (sn_icmp_quote_nat(ip, end, 1, backend, target))
		return sn_xdp_drop(SN_C_MESH_DROP);
	sn_count(SN_C_MESH_ICMP_TO_BACKEND);
	if (!vni) {
		/* Host mode: the task behind the published port, as its requests go. */
		pk.port = fk.dport;
		pk.proto = fk.proto;
		mp = bpf_map_lookup_elem(&sn_mesh_ports, &pk);
		if (!mp || mp->mode != SN_MESH_HOST || !mp->ifindex || mp->addr != backend)
			return sn_xdp_drop(SN_C_MESH_NO_BACKEND);
		sn_deliver(eth->h_dest, mp->mac, mp->ifindex);
		return XDP_REDIRECT;
	}
	if (node == cfg->node_ip) {
		ep = sn_local_endpoint(vni, backend, SN_EP_LOCAL);
		if (!ep)
			return sn_xdp_drop(SN_C_MESH_NO_BACKEND);
		sn_deliver(eth->h_dest, ep->mac, ep->ifindex);
		return XDP_REDIRECT;
	}
	sn_mac_of_ip(eth->h_dest, backend);
	return sn_mesh_xdp_encap(ctx, cfg, node, vni);
}

/*
 * The backend's node's side of sn_mesh_icmp_xdp: an ICMP error about a
 * flow's reply, translated by the ingress node and sent here over the
 * ingress network. Delivered to the local backend when the quote is a reply
 * of a flow that came in by that node (its reply entry says so); -1 else.
 */
static __always_inline int sn_mesh_decap_icmp(struct xdp_md *ctx, struct iphdr *oip, struct ethhdr *inner,
					      struct iphdr *iip, void *end, const struct sn_endpoint *ep)
{
	struct sn_mesh_ct_key rk = {};
	struct sn_mesh_ct *ct;
	struct sn_ports *ports;
	struct iphdr *in;
	__u32 now;

	in = sn_icmp_quote(iip, end);
	if (!in)
		return -1;
	ports = (void *)(in + 1);
	if (!sn_fits(ports, end) || in->saddr != iip->daddr)
		return -1;
	/* The quote is a reply as the backend sent it: its own tuple is the reply entry's key. */
	sn_mesh_ct_key_of(&rk, in, ports, SN_CT_REPLY);
	ct = sn_mesh_reply_lookup(&rk, &now);
	if (!ct || ct->node != oip->saddr)
		return -1;
	return sn_deliver_decap(ctx, inner, ep, SN_C_MESH_DECAP, SN_C_MESH_DROP);
}

/*
 * An ICMP error a backend sent about a client's request (port unreachable,
 * ...), come back over VXLAN to this node, the ingress node: the client must
 * see it from the address it spoke to, quoting its datagram as it sent it
 * (published address and port), or its stack cannot match it. -1: no flow.
 */
static __always_inline int sn_mesh_reply_icmp_xdp(struct xdp_md *ctx, struct ethhdr *inner, struct iphdr *iip, void *end)
{
	void *data = (void *)(long)ctx->data;
	struct sn_mesh_ct_key rk = {};
	struct sn_config *cfg;
	struct sn_mesh_ct *ct;
	struct sn_ports *ports;
	struct ethhdr *eth;
	struct iphdr *ip, *in;
	__be32 addr, client;
	__be16 port;
	__u32 now;

	in = sn_icmp_quote(iip, end);
	if (!in)
		return -1;
	ports = (void *)(in + 1);
	/* From the backend the quote went to: xdp_underlay proved the outer source owns that address. */
	if (!sn_fits(ports, end) || in->daddr != iip->saddr || in->saddr != iip->daddr)
		return -1;
	/* The quote went client -> backend: the reply entry is the other way. */
	sn_mesh_reply_key(&rk, in->saddr, ports->source, in->daddr, ports->dest, in->protocol);
	ct = sn_mesh_reply_lookup(&rk, &now);
	cfg = sn_get_config();
	if (!ct || !cfg || ct->node != cfg->node_ip || !ct->addr)
		return -1;
	addr = ct->addr;
	port = ct->port;
	if (bpf_xdp_adjust_head(ctx, (int)((void *)inner - data)))
		return sn_xdp_drop(SN_C_MESH_DROP);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end) || ip->ihl != 5 || sn_icmp_quote_nat(ip, end, 0, addr, port))
		return sn_xdp_drop(SN_C_MESH_DROP);
	client = ip->daddr;
	sn_count(SN_C_MESH_ICMP_TO_CLIENT);
	return sn_fib_out_xdp(ctx, eth, addr, client, bpf_ntohs(ip->tot_len), ct);
}

/*
 * VXLAN on the ingress network whose inner source is no endpoint: a client's
 * request an ingress node forwarded (already DNATed to a backend here). From
 * a node of the cluster, to a local backend only; the flow is recorded with
 * the node it came from, where its replies go back. The inner frame is then
 * delivered as any other. -1: not a mesh request (the caller refuses it).
 */
static __always_inline int sn_mesh_decap(struct xdp_md *ctx, struct iphdr *oip, struct ethhdr *inner,
					 struct iphdr *iip, void *end, __u32 vni)
{
	struct sn_mesh_ct_key rk = {};
	struct sn_mesh_ct rev = {};
	struct sn_endpoint *ep;
	struct sn_network *net;
	struct sn_mesh_ct *ct;
	struct sn_ports *ports;
	__u32 now = 0;
	__u8 tflags;

	net = bpf_map_lookup_elem(&sn_networks, &vni);
	if (!net || !(net->flags & SN_NET_INGRESS))
		return -1;
	if (!bpf_map_lookup_elem(&sn_mesh_nodes, &oip->saddr))
		return -1;
	if (iip->protocol == IPPROTO_ICMP && sn_ipv4_plain(iip)) {
		ep = sn_local_endpoint(vni, iip->daddr, SN_EP_LOCAL | SN_EP_BACKEND);
		if (!ep)
			return -1;
		return sn_mesh_decap_icmp(ctx, oip, inner, iip, end, ep);
	}
	ports = (void *)(iip + 1);
	if (!sn_ipv4_plain(iip) || (iip->protocol != IPPROTO_TCP && iip->protocol != IPPROTO_UDP) ||
	    !sn_fits(ports, end))
		return -1;
	ep = sn_local_endpoint(vni, iip->daddr, SN_EP_LOCAL | SN_EP_BACKEND);
	if (!ep)
		return -1;
	sn_mesh_reply_key(&rk, iip->saddr, ports->source, iip->daddr, ports->dest, iip->protocol);
	rev.addr = iip->daddr;
	rev.node = oip->saddr;
	rev.vni = vni;
	tflags = iip->protocol == IPPROTO_TCP ? sn_tcp_flags(ports, end) : 0;
	/* As on the ingress node: a SYN's entry is embryonic until the handshake's ACK (a node of the cluster sent it). */
	if ((tflags & (SN_TCP_SYN | SN_TCP_ACK)) == SN_TCP_SYN) {
		rev.seen = sn_mesh_now();
		if (bpf_map_update_elem(&sn_mesh_syn, &rk, &rev, BPF_ANY))
			return sn_xdp_drop(SN_C_MESH_DROP);
		/* A new flow under an older one's key (the client reused its port via another node): the old entry goes. */
		bpf_map_delete_elem(&sn_mesh_ct, &rk);
	} else if (tflags & SN_TCP_RST) {
		sn_mesh_reset(&rk, NULL); /* the client ended the flow: delivered, its entry goes */
	} else {
		/* The flow's entry as this node has it (by this ingress node, live): only marked; else written anew. */
		ct = bpf_map_lookup_elem(&sn_mesh_ct, &rk);
		if (ct && ct->node == rev.node && ct->addr == rev.addr && ct->vni == vni &&
		    sn_mesh_ct_live(ct, rk.proto, &now)) {
			sn_mesh_ct_used(ct, rk.proto, tflags, SN_MESH_CT_FIN_CLIENT, now);
		} else {
			rev.seen = now ? now : sn_mesh_now();
			rev.flags = (tflags & SN_TCP_FIN) ? SN_MESH_CT_FIN_CLIENT : 0;
			if (bpf_map_update_elem(&sn_mesh_ct, &rk, &rev, BPF_ANY))
				return sn_xdp_drop(SN_C_MESH_DROP);
			if (iip->protocol == IPPROTO_TCP)
				bpf_map_delete_elem(&sn_mesh_syn, &rk);
		}
	}
	return sn_deliver_decap(ctx, inner, ep, SN_C_MESH_DECAP, SN_C_MESH_DROP);
}

/*
 * VXLAN from a backend's node whose inner destination is no endpoint: a
 * reply to a client of this node, the ingress node. Found in the flow's reply
 * entry: the address and port the client spoke to go back in as the source,
 * and the reply leaves the underlay as a plain packet. -1: not a mesh reply.
 */
static __always_inline int sn_mesh_reply_xdp(struct xdp_md *ctx, struct ethhdr *inner, struct iphdr *iip, void *end)
{
	void *data = (void *)(long)ctx->data;
	struct sn_mesh_ct_key rk = {}, fk = {};
	struct sn_config *cfg;
	struct sn_mesh_ct *ct;
	struct sn_ports *ports;
	struct ethhdr *eth;
	struct iphdr *ip;
	__be32 client, addr;
	__be16 port;
	__u32 now;
	__u8 tflags;
	int verdict;

	ports = (void *)(iip + 1);
	if (iip->protocol == IPPROTO_ICMP && sn_ipv4_plain(iip))
		return sn_mesh_reply_icmp_xdp(ctx, inner, iip, end);
	if (!sn_ipv4_plain(iip) || (iip->protocol != IPPROTO_TCP && iip->protocol != IPPROTO_UDP) ||
	    !sn_fits(ports, end))
		return -1;
	sn_mesh_ct_key_of(&rk, iip, ports, SN_CT_REPLY);
	ct = sn_mesh_reply_lookup(&rk, &now);
	cfg = sn_get_config();
	if (!ct || !cfg || ct->node != cfg->node_ip || !ct->addr)
		return -1;
	tflags = iip->protocol == IPPROTO_TCP ? sn_tcp_flags(ports, end) : 0;
	sn_mesh_ct_used(ct, rk.proto, tflags, SN_MESH_CT_FIN_BACKEND, now);
	if (bpf_xdp_adjust_head(ctx, (int)((void *)inner - data)))
		return sn_xdp_drop(SN_C_MESH_DROP);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	ports = (void *)(ip + 1);
	if (!sn_fits(ports, end) || ip->ihl != 5)
		return sn_xdp_drop(SN_C_MESH_DROP);
	addr = ct->addr;
	port = ct->port;
	sn_nat_direct(ip, end, SN_NAT_SRC, addr, 1, port, NULL);
	client = ip->daddr;
	sn_count(SN_C_MESH_REPLY);
	verdict = sn_fib_out_xdp(ctx, eth, addr, client, bpf_ntohs(ip->tot_len), ct);
	if (tflags & SN_TCP_RST) {
		/* The backend ended the flow: both entries of this, its ingress node, go (after the RST was sent on). */
		sn_mesh_forward_key(&fk, client, rk.dport, addr, port, rk.proto);
		sn_mesh_reset(&rk, &fk);
	}
	return verdict;
}

#endif
