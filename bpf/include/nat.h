/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the load balancer shares between tc and XDP: the flow hash that picks
 * a Maglev slot (the same on every node, and in src/lb/hash.ts), the
 * connection-tracking keys, and checksum fixes for a rewritten address.
 */
#ifndef SN_NAT_H
#define SN_NAT_H

#include <linux/types.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "hash.h"

/* The two ports of TCP and UDP, where both headers have them. */
struct sn_ports {
	__be16 source;
	__be16 dest;
};

#define SN_LB_SEED 0x736e6c62 /* "snlb": fixed, so every node hashes alike */

static __always_inline __u32 sn_rol32(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

/* murmur3's block step and finaliser over host-order words: cheap, and well spread for a modulo. */
static __always_inline __u32 sn_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = sn_rol32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = sn_rol32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 sn_lb_hash(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport, __u8 proto)
{
	__u32 h = SN_LB_SEED;

	h = sn_mix(h, bpf_ntohl(saddr));
	h = sn_mix(h, bpf_ntohl(daddr));
	h = sn_mix(h, ((__u32)bpf_ntohs(sport) << 16) | bpf_ntohs(dport));
	h = sn_mix(h, proto);
	h ^= 16;
	return sn_fmix32(h);
}

/* RFC 1624 (eqn. 3): a 16-bit checksum after a 32-bit word of what it covers changed from `from` to `to`. */
static __always_inline __u16 sn_csum_replace4(__u16 check, __be32 from, __be32 to)
{
	__u32 nf = ~from;
	__u32 sum = (__u16)~check;

	sum += (nf & 0xffff) + (nf >> 16) + (to & 0xffff) + (to >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* RFC 1624 for one 16-bit word of what a checksum covers. */
static __always_inline __u16 sn_csum_replace2(__u16 check, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~check + (__u16)~from + to;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Where the L4 checksum of a TCP or UDP packet with a plain IPv4 header is, from the frame's start. */
static __always_inline __u32 sn_l4_check_off(__u8 proto)
{
	return ETH_HLEN + sizeof(struct iphdr) +
	       (proto == IPPROTO_TCP ? __builtin_offsetof(struct tcphdr, check)
				     : __builtin_offsetof(struct udphdr, check));
}

/*
 * The one address rewrite, for either hook: `side` says which address (and
 * port) of a plain IPv4 TCP or UDP packet changes, from `from` to `to`; with
 * `with_port` (a constant at every call), its port too, from `from_port` to
 * `to_port`. The IP checksum and the L4 one (which covers both, the address
 * through the pseudo-header) follow.
 */
#define SN_NAT_SRC 0
#define SN_NAT_DST 1

/*
 * tc: the addresses, ports and IP checksum written directly, the L4
 * checksum by the kernel's helper, which also fixes one the task's stack
 * left for the device to finish (CHECKSUM_PARTIAL: the field holds the
 * pseudo-header's sum, not the checksum), which a plain incremental update
 * would get wrong. The IP checksum is always whole, and a header whose
 * checksum follows its change keeps its sum, so skb->csum needs no fix
 * (bpf_l3_csum_replace and bpf_skb_store_bytes did the same, at a helper
 * call each: ~40 ns of a VIP hit, bench/README.md). -1, and the packet
 * unchanged, when the helper failed (an L4 header cut short). The packet's
 * pointers are stale after.
 */
static __always_inline int sn_nat_tc(struct __sk_buff *skb, __u8 proto, int side, __be32 from, __be32 to,
				     int with_port, __be16 from_port, __be16 to_port)
{
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	struct sn_ports *ports;
	struct iphdr *ip;
	void *data, *end;

	/* The helper first: it fails on an L4 header cut short, and then nothing has changed. */
	if (bpf_l4_csum_replace(skb, sn_l4_check_off(proto), from, to, BPF_F_PSEUDO_HDR | sizeof(to) | mangled))
		return -1;
	if (with_port && bpf_l4_csum_replace(skb, sn_l4_check_off(proto), from_port, to_port, sizeof(to_port) | mangled))
		return -1;
	/* The checksum it wrote is past the ports: they and the IP header are in the linear part (a check the verifier needs). */
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	ports = (void *)(ip + 1);
	if (!sn_fits(ports, end))
		return -1;
	if (side == SN_NAT_SRC)
		ip->saddr = to;
	else
		ip->daddr = to;
	ip->check = sn_csum_replace4(ip->check, from, to);
	if (with_port) {
		if (side == SN_NAT_SRC)
			ports->source = to_port;
		else
			ports->dest = to_port;
	}
	return 0;
}

/*
 * XDP, where checksums are whole and the program writes the packet directly:
 * incremental updates (RFC 1624). A UDP checksum of 0 (none) stays 0, and one
 * that comes out 0 is sent as 0xffff. ip: a plain header (ihl 5) inside the
 * packet; an L4 header cut short gets no L4 checksum fix. `cover`: a
 * checksum over these headers themselves (an ICMP error's, over the datagram
 * it quotes: sn_icmp_quote_nat), which follows every word that changed; NULL
 * (a constant) at every other call.
 */
static __always_inline void sn_nat_direct(struct iphdr *ip, void *end, int side, __be32 to_addr, int with_port,
					  __be16 to_port, __u16 *cover)
{
	struct sn_ports *ports = (void *)(ip + 1);
	__be32 *addr = side == SN_NAT_SRC ? &ip->saddr : &ip->daddr;
	__be16 *port = side == SN_NAT_SRC ? &ports->source : &ports->dest;
	__be32 from_addr = *addr;
	__be16 from_port = 0;
	__u16 *l4check = NULL, was = 0, now = 0, ip_was, covered;

	/* The ports: callers that rewrite one have checked they are in the packet. */
	if (with_port)
		from_port = *port;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip + 1);

		if (sn_fits(tcp, end))
			l4check = &tcp->check;
	} else {
		struct udphdr *udp = (void *)(ip + 1);

		if (sn_fits(udp, end) && udp->check)
			l4check = &udp->check;
	}
	if (l4check) {
		was = *l4check;
		now = sn_csum_replace4(was, from_addr, to_addr);
		if (with_port)
			now = sn_csum_replace2(now, from_port, to_port);
		if (!now && ip->protocol == IPPROTO_UDP)
			now = 0xffff;
		*l4check = now;
	}
	ip_was = ip->check;
	ip->check = sn_csum_replace4(ip->check, from_addr, to_addr);
	if (cover) {
		covered = *cover;
		if (l4check)
			covered = sn_csum_replace2(covered, was, now);
		covered = sn_csum_replace2(covered, ip_was, ip->check);
		covered = sn_csum_replace4(covered, from_addr, to_addr);
		if (with_port)
			covered = sn_csum_replace2(covered, from_port, to_port);
		*cover = covered;
	}
	*addr = to_addr;
	if (with_port)
		*port = to_port;
}

/* The connection-tracking key of a TCP or UDP packet as it travels, looked up as entry `dir`. */
static __always_inline void sn_ct_key_of(struct sn_ct_key *k, __u32 vni, const struct iphdr *ip,
					 const struct sn_ports *ports, __u8 dir)
{
	k->vni = vni;
	k->src = ip->saddr;
	k->dst = ip->daddr;
	k->sport = ports->source;
	k->dport = ports->dest;
	k->proto = ip->protocol;
	k->dir = dir;
}

/*
 * Connection tracking's end of a TCP flow. RST: both entries go at once
 * (nothing valid follows a reset). FIN from both sides: the forward entry's
 * timer deletes both after this grace, so the last ACK, and a FIN the
 * backend sends again when that ACK was lost, still find their translation.
 * Nothing else ever deletes an entry but LRU pressure: an idle connection
 * keeps its backend for as long as it stays open.
 */
#define SN_CT_CLOSE_GRACE_NS (5ULL * 1000000000ULL)

/*
 * UDP has no end to see: a flow through a VIP lives while packets go by
 * either way, and ends after this many idle seconds (sn_config.ct_udp_idle
 * when set): 120 s, Cilium's default for non-TCP (and Linux conntrack's for a
 * UDP flow seen both ways). An entry is found idle when it is next used
 * (forward: deleted with its reply and the packet picked afresh; reply: not
 * translated); until then LRU pressure takes it first, as it is the least recent.
 * Refreshed at most once a second per entry, so a busy flow does not write its
 * entry on every packet.
 */
#define SN_CT_UDP_IDLE_DEFAULT 120

/* The coarse clock (a tick's resolution) is enough for seconds and reads no clock source (as sn_mesh_now). */
static __always_inline __u32 sn_now_s(void)
{
	return bpf_ktime_get_coarse_ns() / 1000000000ULL;
}

static __always_inline __u32 sn_ct_udp_idle(void)
{
	struct sn_config *cfg = sn_get_config();

	return cfg && cfg->ct_udp_idle ? cfg->ct_udp_idle : SN_CT_UDP_IDLE_DEFAULT;
}

/*
 * Last seen at `last`, idle past the lifetime at `now`. A difference < 0: a `last` up
 * to a second ahead of `now` (written by the fine clock, the agent's at an
 * upgrade or an older program's, and read back with the coarse one, a tick
 * behind) is just seen, not 2^32 - 1 seconds ago.
 */
static __always_inline int sn_ct_idle_past(__u32 now, __u32 last)
{
	__u32 idle = now - last;

	return (__s32)idle > 0 && idle > sn_ct_udp_idle();
}

/* A UDP reply entry used at `now`: 1 when the flow is still alive (and the entry refreshed), 0 when it went idle. */
static __always_inline int sn_ct_udp_alive(struct sn_ct *ct, __u32 now)
{
	if (sn_ct_idle_past(now, ct->seen))
		return 0;
	if (ct->seen != now)
		ct->seen = now;
	return 1;
}
#define SN_CLOCK_MONOTONIC 1
#define SN_TCP_FIN 0x01
#define SN_TCP_SYN 0x02
#define SN_TCP_RST 0x04
#define SN_TCP_ACK 0x10

/* The reply entry's key of a forward entry. */
static __always_inline void sn_ct_reply_key(const struct sn_ct_key *fk, const struct sn_ct *fwd, struct sn_ct_key *rk)
{
	rk->vni = fk->vni;
	/* A hairpin's replies come from the client itself, to the VIP it is shown as. */
	rk->src = (fwd->flags & SN_CT_HAIRPIN) ? fk->src : fwd->addr;
	rk->dst = (fwd->flags & SN_CT_HAIRPIN) ? fk->dst : fk->src;
	rk->sport = fk->dport;
	rk->dport = fk->sport;
	rk->proto = fk->proto;
	rk->dir = SN_CT_REPLY;
	rk->pad = 0;
}

/* The forward entry's key of a reply entry. */
static __always_inline void sn_ct_forward_key(const struct sn_ct_key *rk, const struct sn_ct *rev, struct sn_ct_key *fk)
{
	fk->vni = rk->vni;
	fk->src = (rev->flags & SN_CT_HAIRPIN) ? rk->src : rk->dst;
	fk->dst = (rev->flags & SN_CT_HAIRPIN) ? rk->dst : rev->addr;
	fk->sport = rk->dport;
	fk->dport = rk->sport;
	fk->proto = rk->proto;
	fk->dir = SN_CT_FORWARD;
	fk->pad = 0;
}

/* The close timer's callback: the grace is over, both entries go. */
static int sn_ct_expire(void *map, struct sn_ct_key *fk, struct sn_ct *fwd)
{
	struct sn_ct_key rk;

	sn_ct_reply_key(fk, fwd, &rk);
	bpf_map_delete_elem(map, &rk);
	bpf_map_delete_elem(map, fk);
	sn_count(SN_C_LB_CT_CLOSED);
	return 0;
}

/* The TCP flags byte of a segment whose header starts at l4 (0 when it is not there). */
static __always_inline __u8 sn_tcp_flags(void *l4, void *end)
{
	__u8 *flags = (__u8 *)l4 + 13;

	if ((void *)(flags + 1) > end)
		return 0;
	return *flags;
}

/*
 * A TCP segment of a tracked flow went by: the end of the connection seen
 * from either side. fk/fwd: the forward entry; from_client: its direction.
 * Called after the segment's own translation was decided.
 */
static __always_inline void sn_ct_tcp_seen(struct sn_ct_key *fk, struct sn_ct *fwd, __u8 flags, int from_client)
{
	struct sn_ct_key rk;
	__u32 bit = from_client ? SN_CT_FIN_CLIENT : SN_CT_FIN_BACKEND;

	if (flags & SN_TCP_RST) {
		sn_ct_reply_key(fk, fwd, &rk);
		bpf_map_delete_elem(&sn_ct, &rk);
		bpf_map_delete_elem(&sn_ct, fk);
		sn_count(SN_C_LB_CT_RESET);
		return;
	}
	if (!(flags & SN_TCP_FIN) || (fwd->flags & bit))
		return;
	fwd->flags |= bit;
	if ((fwd->flags & (SN_CT_FIN_CLIENT | SN_CT_FIN_BACKEND)) != (SN_CT_FIN_CLIENT | SN_CT_FIN_BACKEND))
		return;
	fwd->flags |= SN_CT_SEEN_FIN;
	bpf_timer_init(&fwd->close, &sn_ct, SN_CLOCK_MONOTONIC);
	bpf_timer_set_callback(&fwd->close, sn_ct_expire);
	bpf_timer_start(&fwd->close, SN_CT_CLOSE_GRACE_NS, 0);
}

/* A reply went by on its reply entry: the end of a TCP connection, seen from the backend's side. */
static __always_inline void sn_ct_reply_seen(const struct sn_ct_key *rk, const struct sn_ct *rev, __u8 flags)
{
	struct sn_ct_key fk;
	struct sn_ct *fwd;

	if (rk->proto != IPPROTO_TCP || !(flags & (SN_TCP_FIN | SN_TCP_RST)))
		return;
	sn_ct_forward_key(rk, rev, &fk);
	fwd = bpf_map_lookup_elem(&sn_ct, &fk);
	if (fwd)
		sn_ct_tcp_seen(&fk, fwd, flags, 0);
	else if (flags & SN_TCP_RST)
		bpf_map_delete_elem(&sn_ct, rk);
}

#define SN_ICMP_DEST_UNREACH 3
#define SN_ICMP_TIME_EXCEEDED 11
#define SN_ICMP_PARAMETERPROB 12

/* An ICMP error (destination unreachable, time exceeded, parameter problem): the kinds that quote a datagram. */
static __always_inline int sn_icmp_is_error(__u8 type)
{
	return type == SN_ICMP_DEST_UNREACH || type == SN_ICMP_TIME_EXCEEDED || type == SN_ICMP_PARAMETERPROB;
}

/*
 * The datagram an ICMP error quotes, when it is TCP or UDP with a plain
 * header and holds its ports: NULL otherwise. ip: the error's plain outer header.
 */
static __always_inline struct iphdr *sn_icmp_quote(struct iphdr *ip, void *end)
{
	__u8 *icmp = (void *)(ip + 1);
	struct iphdr *in = (void *)(icmp + 8);
	struct sn_ports *ports = (void *)(in + 1);

	if (!sn_fits(ports, end) || !sn_icmp_is_error(icmp[0]) || in->ihl != 5 ||
	    (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP))
		return NULL;
	return in;
}

/*
 * One side of an ICMP error's quoted datagram rewritten, and the outer
 * address that goes with it. `quoted_src` (a constant at every call): the
 * quote's source address and port, and the outer destination (an error goes
 * to the quote's source); else the quote's destination address and port,
 * and the outer source (an error comes from the quote's destination). The
 * quote is rewritten as any packet is (sn_nat_direct: its IP checksum, and
 * its L4 one where the quote holds it: UDP's is in its first 8 bytes, TCP's
 * past them), the ICMP checksum over all of that following each word that
 * changed; then the outer address and IP checksum (ICMP has no
 * pseudo-header). Direct writes: ip is a plain header (ihl 5) inside the
 * packet, its quote checked by sn_icmp_quote. 0 when done.
 */
static __always_inline int sn_icmp_quote_nat(struct iphdr *ip, void *end, int quoted_src, __be32 to_addr, __be16 to_port)
{
	__u8 *icmp = (void *)(ip + 1);
	struct iphdr *in = (void *)(icmp + 8);
	struct sn_ports *ports = (void *)(in + 1);
	__be32 outer;

	if (!sn_fits(ports, end))
		return -1;
	sn_nat_direct(in, end, quoted_src ? SN_NAT_SRC : SN_NAT_DST, to_addr, 1, to_port, (__u16 *)(icmp + 2));
	if (quoted_src) {
		outer = ip->daddr;
		ip->daddr = to_addr;
	} else {
		outer = ip->saddr;
		ip->saddr = to_addr;
	}
	ip->check = sn_csum_replace4(ip->check, outer, to_addr);
	return 0;
}

/*
 * An ICMP error from a backend about a datagram a client sent to a VIP (port
 * unreachable, time exceeded, ...): the client must see it come from the VIP
 * and quote the datagram as it sent it, or its stack cannot match it to the
 * socket. The outer source and the quoted destination become the VIP.
 * ip is a plain header (ihl 5) inside the packet. 1 when done.
 */
static __always_inline int sn_rev_nat_icmp(struct iphdr *ip, void *end, __u32 vni)
{
	struct iphdr *in = sn_icmp_quote(ip, end);
	struct sn_ports *ports;
	struct sn_ct_key ck = {};
	struct sn_ct *ct;

	if (!in)
		return 0;
	ports = (void *)(in + 1);
	if (!sn_fits(ports, end) || in->saddr != ip->daddr)
		return 0;
	/* The quoted datagram went client -> backend: its reply entry names the VIP. */
	ck.vni = vni;
	ck.src = in->daddr;
	ck.dst = in->saddr;
	ck.sport = ports->dest;
	ck.dport = ports->source;
	ck.proto = in->protocol;
	ck.dir = SN_CT_REPLY;
	ct = bpf_map_lookup_elem(&sn_ct, &ck);
	if (!ct || (ct->flags & SN_CT_HAIRPIN))
		return 0;
	if (sn_icmp_quote_nat(ip, end, 0, ct->addr, ck.sport))
		return 0;
	sn_count(SN_C_LB_REV_NAT_ICMP);
	return 1;
}

/*
 * Reverse NAT where the program may write the packet directly and its
 * checksums are whole (XDP): a reply from a backend to a client of this node
 * gets the VIP back as its source. ip is a plain header (ihl 5) inside the packet.
 */
static __always_inline int sn_rev_nat_direct(struct iphdr *ip, void *end, __u32 vni)
{
	struct sn_ports *ports = (void *)(ip + 1);
	struct sn_ct_key ck = {};
	struct sn_ct *ct;
	__u8 flags = 0;

	if (ip->ihl != 5 || (ip->frag_off & bpf_htons(SN_IP_MF | SN_IP_OFFSET)))
		return 0;
	if (ip->protocol == IPPROTO_ICMP)
		return sn_rev_nat_icmp(ip, end, vni);
	if ((ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) || !sn_fits(ports, end))
		return 0;
	sn_ct_key_of(&ck, vni, ip, ports, SN_CT_REPLY);
	ct = bpf_map_lookup_elem(&sn_ct, &ck);
	if (!ct || (ct->flags & SN_CT_HAIRPIN))
		return 0;
	if (ck.proto == IPPROTO_UDP && !sn_ct_udp_alive(ct, sn_now_s()))
		return 0;
	/* A header cut short is left alone (sn_nat_direct would fix only the IP checksum). */
	if (ip->protocol == IPPROTO_TCP) {
		if (!sn_fits((struct tcphdr *)(ip + 1), end))
			return 0;
		flags = sn_tcp_flags(ports, end);
	} else if (!sn_fits((struct udphdr *)(ip + 1), end)) {
		return 0;
	}
	sn_nat_direct(ip, end, SN_NAT_SRC, ct->addr, 0, 0, NULL);
	sn_count(SN_C_LB_REV_NAT);
	sn_ct_reply_seen(&ck, ct, flags);
	return 1;
}

#endif
