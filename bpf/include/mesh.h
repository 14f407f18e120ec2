/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The routing mesh: published ports answered on every address of the node
 * (its underlay address, and those of sn_mesh_addrs: mesh_addrs.h).
 *
 * Request, on the node the client spoke to (the "ingress node"), in XDP:
 * (a node address, port, protocol) found in sn_mesh_ports -> a backend from the
 * service's Maglev table on the ingress network (the same sn_services /
 * sn_maglev / sn_backends as VIPs) or from connection tracking -> DNAT to the
 * backend's address and target port, the client's address kept -> a local
 * backend: redirect into its ingress veth; a remote one: VXLAN on the
 * ingress network's VNI to its node, built in XDP and sent back out of the
 * underlay.
 *
 * Replies: the backend answers from its ingress address, by its default
 * route, through the gateway bridge. tc_gw.c on that veth finds the flow in
 * sn_mesh_ct (recorded when the request was delivered, naming the ingress
 * node): on the ingress node itself, reverse NAT and out of the underlay;
 * else VXLAN back to the ingress node, whose XDP does the reverse NAT (the
 * reply entry it wrote with the request) and sends the reply out of the
 * underlay. So the client only ever talks to the address it chose, and no
 * mesh reply meets the gateway bridge's masquerade.
 *
 * mode=host: the same, with the local task's gateway-bridge address as the
 * backend and no table: only nodes that run a task have the port.
 */
#ifndef SN_MESH_H
#define SN_MESH_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "vxlan.h"
#include "nat.h"
#include "mesh_addrs.h"

/* The maps' keys and values: layout_mesh.h. */

#define SN_MAX_MESH_PORTS 4096
#define SN_MAX_MESH_NODES 4096
#define SN_MAX_GATEWAYS 16384
#define SN_MAX_MESH_SYN 65536

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_MESH_PORTS);
	__type(key, struct sn_mesh_port_key);
	__type(value, struct sn_mesh_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_mesh_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SN_MAX_MESH_PORTS);
	__type(key, struct sn_mesh_port_key);
	__type(value, struct sn_mesh_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_mesh_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SN_MAX_CT);
	__type(key, struct sn_mesh_ct_key);
	__type(value, struct sn_mesh_ct);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_mesh_ct SEC(".maps");

/*
 * Mesh TCP flows whose handshake is not done (a SYN seen, not yet the
 * client's ACK): both entries live here, apart from sn_mesh_ct, so that a
 * flood of SYNs from forged sources churns this map only and never evicts an
 * established flow. The client's first ACK moves them to sn_mesh_ct.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SN_MAX_MESH_SYN);
	__type(key, struct sn_mesh_ct_key);
	__type(value, struct sn_mesh_ct);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_mesh_syn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_MESH_NODES);
	__type(key, __be32);
	__type(value, struct sn_mesh_node);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_mesh_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_GATEWAYS);
	__type(key, __u32);         /* ifindex of the host side of a task's gateway-bridge veth */
	__type(value, struct sn_gateway);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_gateways SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sn_mesh_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_mesh_config SEC(".maps");

static __always_inline struct sn_mesh_config *sn_get_mesh_config(void)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&sn_mesh_config, &key);
}

#define SN_TCPOPT_MSS 2
/* IPv4 + TCP headers: MSS = MTU - this. */
#define SN_TCPIP_HLEN 40

static __always_inline void sn_mesh_account(struct sn_mesh_port_key *pk, __u32 len, int new_flow)
{
	struct sn_mesh_stats *st = bpf_map_lookup_elem(&sn_mesh_stats, pk);

	if (!st) {
		struct sn_mesh_stats zero = {};

		/* The agent makes the entry when it publishes the port; this only covers the moment before. */
		bpf_map_update_elem(&sn_mesh_stats, pk, &zero, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&sn_mesh_stats, pk);
		if (!st)
			return;
	}
	st->packets++;
	st->bytes += len;
	st->new_flows += new_flow;
}

/* Docker's MACs: 02:42 and the IPv4 address. */
static __always_inline void sn_mac_of_ip(__u8 *mac, __be32 ip)
{
	mac[0] = 0x02;
	mac[1] = 0x42;
	__builtin_memcpy(mac + 2, &ip, 4);
}

/*
 * A SYN's MSS option, when it is the first option (as Linux, Windows and
 * the BSDs send it), lowered to `mss`, what fits the overlay: the peer then
 * never sends a segment that VXLAN would make too large for the underlay.
 * 1 when it was lowered, with the option's word before and after in *old and
 * *now: the caller fixes the TCP checksum its own way (tc keeps a partial one right).
 */
static __always_inline int sn_mss_lower(struct tcphdr *tcp, void *end, __u16 mss, __be32 *old, __be32 *now)
{
	__be32 *opt = (void *)(tcp + 1);
	__u8 *b;

	if (!sn_fits(opt, end) || !tcp->syn || tcp->doff < 6)
		return 0;
	b = (__u8 *)opt;
	if (b[0] != SN_TCPOPT_MSS || b[1] != 4 || ((__u16)b[2] << 8 | b[3]) <= mss)
		return 0;
	*old = *opt;
	b[2] = mss >> 8;
	b[3] = mss & 0xff;
	*now = *opt;
	return 1;
}

/* sn_mss_lower where the checksum is whole (XDP). */
static __always_inline void sn_clamp_mss_direct(struct tcphdr *tcp, void *end, __u16 mss)
{
	__be32 old, now;

	if (sn_mss_lower(tcp, end, mss, &old, &now))
		tcp->check = sn_csum_replace4(tcp->check, old, now);
}

/* The mesh's connection-tracking key of a TCP or UDP packet as it travels, looked up as entry `dir`. */
static __always_inline void sn_mesh_ct_key_of(struct sn_mesh_ct_key *k, const struct iphdr *ip,
					      const struct sn_ports *ports, __u8 dir)
{
	k->src = ip->saddr;
	k->dst = ip->daddr;
	k->sport = ports->source;
	k->dport = ports->dest;
	k->proto = ip->protocol;
	k->dir = dir;
}

/*
 * The keys of a mesh flow's entries, field by field. The caller's key starts
 * zeroed (`= {}`): its padding is hashed with the rest.
 */

/* The reply entry's key of a client's flow through `backend`:`target`. */
static __always_inline void sn_mesh_reply_key(struct sn_mesh_ct_key *rk, __be32 client, __be16 cport, __be32 backend,
					       __be16 target, __u8 proto)
{
	rk->src = backend;
	rk->dst = client;
	rk->sport = target;
	rk->dport = cport;
	rk->proto = proto;
	rk->dir = SN_CT_REPLY;
}

/* The forward entry's key of a client's flow to `addr`:`port` (the address and port it spoke to). */
static __always_inline void sn_mesh_forward_key(struct sn_mesh_ct_key *fk, __be32 client, __be16 cport, __be32 addr,
						 __be16 port, __u8 proto)
{
	fk->src = client;
	fk->dst = addr;
	fk->sport = cport;
	fk->dport = port;
	fk->proto = proto;
	fk->dir = SN_CT_FORWARD;
}

/*
 * Lifetimes (issue 19, hole 5), looked at when an entry is used, as the VIP
 * path's: an entry past its lifetime is a missing one (a new flow, a new
 * pick), and LRU pressure takes it first meanwhile. TCP ends with the
 * connection: at a RST at once (sn_mesh_reset), at FIN both ways after a
 * grace, so the last ACK, and a FIN sent again when it was lost, still find
 * their translation (Cilium keeps a closed flow 10 s); a SYN on a closing
 * flow's port is a new connection. UDP ends when idle for
 * sn_config.mesh_udp_idle seconds (120 by default, Cilium's non-TCP lifetime).
 */
#define SN_MESH_CLOSE_GRACE_MS 10000
#define SN_MESH_UDP_IDLE_DEFAULT 120

/*
 * The monotonic clock in milliseconds, wrapping at 2^32 (differences stay
 * right across the wrap). The coarse clock (a tick's resolution, a few ms)
 * is enough for lifetimes of seconds and costs no clock source read.
 */
static __always_inline __u32 sn_mesh_now(void)
{
	return bpf_ktime_get_coarse_ns() / 1000000ULL;
}

/*
 * A `seen` up to this far ahead of the clock is just seen, not 2^32 ms ago: the
 * agent stamps converted entries at an upgrade with the fine clock, which the
 * coarse one read here lags by a tick. Bounded, not a signed difference: that
 * would take a flow idle past 2^31 ms (24.8 days) for one seen ahead, alive.
 */
#define SN_MESH_AHEAD_MS 5000

/*
 * Was `seen` more than `limit` ms before `now`? One add shifts the window so
 * that [seen - SN_MESH_AHEAD_MS, seen + limit] is one unsigned range (for a
 * limit below 2^32 - SN_MESH_AHEAD_MS ms, ~49.7 days).
 */
static __always_inline int sn_mesh_past(__u32 now, __u32 seen, __u32 limit)
{
	return now - seen + SN_MESH_AHEAD_MS > limit + SN_MESH_AHEAD_MS;
}

static __always_inline __u32 sn_mesh_udp_idle_ms(void)
{
	struct sn_config *cfg = sn_get_config();

	return (cfg && cfg->mesh_udp_idle ? cfg->mesh_udp_idle : SN_MESH_UDP_IDLE_DEFAULT) * 1000;
}

/*
 * Is the flow of this entry still on? UDP: not idle past its lifetime; TCP:
 * not closed past the grace. An open TCP flow never reads the clock; *now is
 * the clock when it was read (0 else). One that ended is counted.
 */
static __always_inline int sn_mesh_ct_live(const struct sn_mesh_ct *ct, __u8 proto, __u32 *now)
{
	__u32 limit;

	if (proto == IPPROTO_UDP)
		limit = sn_mesh_udp_idle_ms();
	else if (ct->flags & SN_MESH_CT_CLOSING)
		limit = SN_MESH_CLOSE_GRACE_MS;
	else
		return 1;
	*now = sn_mesh_now();
	if (!sn_mesh_past(*now, ct->seen, limit))
		return 1;
	sn_count(SN_C_MESH_CT_EXPIRED);
	return 0;
}

/*
 * A UDP packet of the flow went by at `now`: `seen` moves, but only once it
 * is a step behind (an eighth of the lifetime, at most a second), so a busy
 * flow writes its entry a few times per lifetime, not per packet. A `seen`
 * ahead of `now` (see SN_MESH_AHEAD_MS) is put back to `now`.
 */
static __always_inline void sn_mesh_ct_touch(struct sn_mesh_ct *ct, __u32 now, __u32 idle_ms)
{
	__u32 step = idle_ms / 8;

	if (step > 1000)
		step = 1000;
	if (now - ct->seen >= step)
		ct->seen = now;
}

/*
 * A TCP segment with FIN went by on the flow of reply entry `ct`, from the
 * client or the backend (`side`: SN_MESH_CT_FIN_*). The second side's FIN
 * starts the close grace. The bits are or-ed atomically: the two sides'
 * FINs may be seen at once, one by XDP and one by tc_gw.
 */
static __always_inline void sn_mesh_ct_fin(struct sn_mesh_ct *ct, __u64 side)
{
	__u64 both = SN_MESH_CT_FIN_CLIENT | SN_MESH_CT_FIN_BACKEND;
	__u64 was = __sync_fetch_and_or(&ct->flags, side);

	/* Only the FIN that completes the pair (a repeated one finds its own bit set) starts the grace. */
	if ((was & side) || (was | side) != both)
		return;
	ct->seen = sn_mesh_now();
	__sync_fetch_and_or(&ct->flags, SN_MESH_CT_CLOSING);
	sn_count(SN_C_MESH_CT_CLOSED);
}

/*
 * A packet of the flow of reply entry `ct` (found alive) went by: UDP moves
 * its clock, a TCP FIN is marked from `side`.
 */
static __always_inline void sn_mesh_ct_used(struct sn_mesh_ct *ct, __u8 proto, __u8 tflags, __u64 side, __u32 now)
{
	if (proto == IPPROTO_UDP)
		sn_mesh_ct_touch(ct, now, sn_mesh_udp_idle_ms());
	else if (tflags & SN_TCP_FIN)
		sn_mesh_ct_fin(ct, side);
}

/*
 * A mesh reply entry: an established flow's, else (TCP) one whose handshake
 * is under way (the SYN-ACK's). One whose flow has ended (idle, or closed
 * past its grace) is none. *now: the clock, read when the entry needed it.
 */
static __always_inline struct sn_mesh_ct *sn_mesh_reply_lookup(struct sn_mesh_ct_key *rk, __u32 *now)
{
	struct sn_mesh_ct *ct = bpf_map_lookup_elem(&sn_mesh_ct, rk);

	*now = 0;
	if (ct && !sn_mesh_ct_live(ct, rk->proto, now))
		ct = NULL;
	if (!ct && rk->proto == IPPROTO_TCP)
		ct = bpf_map_lookup_elem(&sn_mesh_syn, rk);
	return ct;
}

/*
 * A RST went by on a tracked mesh flow: it has ended, its entries go (rk:
 * the reply entry; fk: the forward one, NULL where this node has none).
 */
static __always_inline void sn_mesh_reset(struct sn_mesh_ct_key *rk, struct sn_mesh_ct_key *fk)
{
	bpf_map_delete_elem(&sn_mesh_ct, rk);
	bpf_map_delete_elem(&sn_mesh_syn, rk);
	if (fk) {
		bpf_map_delete_elem(&sn_mesh_ct, fk);
		bpf_map_delete_elem(&sn_mesh_syn, fk);
	}
	sn_count(SN_C_MESH_CT_RESET);
}

/* The MTU of a network, as every task of it has (0 when unknown). */
static __always_inline __u16 sn_net_mtu(__u32 vni)
{
	struct sn_network *net = bpf_map_lookup_elem(&sn_networks, &vni);

	return net ? net->mtu : 0;
}

#endif
