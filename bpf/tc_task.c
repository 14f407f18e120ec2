// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tc ingress on the host side of a task's overlay device: every frame the task
 * sends onto one of its networks. It answers ARP for the network's endpoints
 * itself (no flooding), hands frames for a task on this node straight to that
 * task's device, and wraps frames for a task elsewhere in VXLAN toward the
 * owning node. Anything addressed outside the task's own network is dropped:
 * that is what keeps networks isolated. So is everything from a device that
 * is not in sn_devices: the program is only ever attached to task devices, and
 * a frame it cannot place must not reach the node's stack, which could route
 * it anywhere.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "vxlan.h"
#include "nat.h"
#include "icmp.h"
#include "local.h"
#include "fib.h"

/*
 * Hold a frame to its network's MTU: < 0 when it fits, else the verdict. A
 * GSO packet is held to it segment by segment (what goes on the wire), a
 * plain one as a whole; a plain one with DF gets ICMP back, as a router would
 * answer, so the task's stack learns the path MTU.
 */
static __always_inline int sn_check_mtu(struct __sk_buff *skb, const struct sn_device *dev,
					const struct iphdr *ip, const void *end)
{
	struct sn_network *net = bpf_map_lookup_elem(&sn_networks, &dev->vni);
	__u32 mtu, seg, ihl;

	if (!net || !net->mtu)
		return -1;
	mtu = net->mtu;
	if (skb->gso_size) {
		ihl = ip->ihl * 4;
		seg = ihl + skb->gso_size;
		if (ip->protocol == IPPROTO_UDP) {
			seg += sizeof(struct udphdr);
		} else if (ip->protocol == IPPROTO_TCP) {
			const struct tcphdr *tcp = (const void *)ip + ihl;

			if ((const void *)(tcp + 1) > end)
				return sn_tc_drop(SN_C_TC_DROP_OTHER);
			seg += tcp->doff * 4;
		}
		return seg > mtu ? sn_tc_drop(SN_C_TC_TOO_BIG) : -1;
	}
	if (skb->len - ETH_HLEN <= mtu)
		return -1;
	if (!(ip->frag_off & bpf_htons(SN_IP_DF)))
		return sn_tc_drop(SN_C_TC_TOO_BIG); /* nowhere to fragment it: the task's own MTU should have */
	return sn_frag_needed_skb(skb, mtu, SN_C_TC_FRAG_NEEDED, SN_C_TC_TOO_BIG);
}

/* Turn an ARP request for a known endpoint into its reply, in place, back to the asker. */
static __always_inline int sn_arp_reply(struct __sk_buff *skb, const struct sn_device *dev)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct sn_arp *arp = (void *)(eth + 1);
	struct sn_endpoint_key key;
	struct sn_endpoint *ep;
	__be32 spa;

	if (!sn_fits(arp, end) || arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != 6 || arp->plen != 4 || arp->op != bpf_htons(SN_ARP_REQUEST))
		return sn_tc_drop(SN_C_TC_DROP_OTHER);
	/*
	 * Gratuitous ARP has nobody to tell, and a probe for the task's own address
	 * (duplicate address detection) must find nobody else holding it.
	 */
	if (arp->tpa == arp->spa || arp->tpa == dev->ip)
		return sn_tc_drop(SN_C_TC_DROP_OTHER);

	key.vni = dev->vni;
	key.ip = arp->tpa;
	ep = bpf_map_lookup_elem(&sn_endpoints, &key);
	if (!ep)
		return sn_tc_drop(SN_C_TC_NO_ENDPOINT);

	spa = arp->spa;
	arp->op = bpf_htons(SN_ARP_REPLY);
	sn_mac_copy(arp->tha, arp->sha);
	arp->tpa = spa;
	sn_mac_copy(arp->sha, ep->mac);
	arp->spa = key.ip;
	sn_mac_copy(eth->h_dest, eth->h_source);
	sn_mac_copy(eth->h_source, ep->mac);
	sn_count(SN_C_TC_ARP_REPLY);
	return bpf_redirect_peer(skb->ifindex, 0);
}

#define SN_ICMP_ECHO_REPLY 0
#define SN_ICMP_ECHO 8

struct sn_icmp_echo {
	__u8 type;
	__u8 code;
	__u16 check;
	__be16 id;
	__be16 seq;
};

/*
 * Turn a TCP segment from the task into the RST that ends its connection,
 * in place, back to the task: from the address it was sent to, so its
 * socket takes it. Nothing answers a RST.
 */
static __always_inline int sn_tcp_reset(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	__u8 task_mac[6], peer_mac[6];
	__be32 task_ip, peer_ip, seq, ack_seq;
	__be16 task_port, peer_port;
	__u32 payload, sum = 0;
	__u16 *w;
	int had_ack;

	if (!sn_fits(tcp, end) || tcp->rst)
		return TC_ACT_SHOT;
	payload = bpf_ntohs(ip->tot_len) - sizeof(*ip) - tcp->doff * 4 + tcp->syn + tcp->fin;
	sn_mac_copy(task_mac, eth->h_source);
	sn_mac_copy(peer_mac, eth->h_dest);
	task_ip = ip->saddr;
	peer_ip = ip->daddr;
	task_port = tcp->source;
	peer_port = tcp->dest;
	seq = tcp->seq;
	ack_seq = tcp->ack_seq;
	had_ack = tcp->ack;

	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(*ip) + sizeof(*tcp), 0))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	tcp = (void *)(ip + 1);
	if (!sn_fits(tcp, end))
		return TC_ACT_SHOT;
	sn_mac_copy(eth->h_dest, task_mac);
	sn_mac_copy(eth->h_source, peer_mac);
	__builtin_memset(ip, 0, sizeof(*ip) + sizeof(*tcp));
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_TCP;
	ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*tcp));
	ip->frag_off = bpf_htons(SN_IP_DF);
	ip->saddr = peer_ip;
	ip->daddr = task_ip;
	ip->check = sn_ipv4_csum(ip);
	tcp->source = peer_port;
	tcp->dest = task_port;
	tcp->doff = 5;
	tcp->rst = 1;
	/* RFC 793 "Reset Generation": take the segment's ACK as our sequence, else acknowledge what it carried. */
	if (had_ack) {
		tcp->seq = ack_seq;
	} else {
		tcp->ack = 1;
		tcp->ack_seq = bpf_htonl(bpf_ntohl(seq) + payload);
	}
	sum = (peer_ip & 0xffff) + (peer_ip >> 16) + (task_ip & 0xffff) + (task_ip >> 16) +
	      bpf_htons(IPPROTO_TCP) + bpf_htons(sizeof(*tcp));
	w = (__u16 *)tcp;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	tcp->check = sn_csum_fold(sum);
	bpf_redirect_peer(skb->ifindex, 0);
	return TC_ACT_REDIRECT;
}

/* A flow to a VIP that cannot go on: counted, and ended at once for TCP rather than left to time out. */
static __always_inline int sn_lb_refuse(struct __sk_buff *skb, __u8 proto, __u32 counter)
{
	sn_count(counter);
	if (proto == IPPROTO_TCP)
		return sn_tcp_reset(skb);
	return TC_ACT_SHOT;
}

/* ICMP echo to a VIP: the VIP answers, as Swarm's does, in place and back to the task. */
static __always_inline int sn_lb_echo(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct sn_icmp_echo *icmp = (void *)(ip + 1);
	__u8 mac[6];
	__be32 addr;

	if (!sn_fits(icmp, end) || icmp->type != SN_ICMP_ECHO || icmp->code != 0)
		return sn_tc_drop(SN_C_LB_DROP_OTHER);
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	ip->ttl = 64;
	ip->check = 0;
	ip->check = sn_ipv4_csum(ip);
	icmp->type = SN_ICMP_ECHO_REPLY;
	/* The type's word went from 8 << 8 to 0. */
	icmp->check = sn_csum_replace4(icmp->check, bpf_htons(SN_ICMP_ECHO << 8), 0);
	sn_mac_copy(mac, eth->h_source);
	sn_mac_copy(eth->h_source, eth->h_dest);
	sn_mac_copy(eth->h_dest, mac);
	sn_count(SN_C_LB_ECHO);
	bpf_redirect_peer(skb->ifindex, 0);
	return TC_ACT_REDIRECT;
}

/*
 * A frame from the task to a VIP: its backend from connection tracking, or
 * on a new flow from the service's Maglev table (and tracked from then on),
 * and the destination rewritten to it. < 0 when the frame goes on to the
 * backend (*backend set), else the verdict. A task picked as its own backend
 * (hairpin) sees the VIP as its peer both ways: its packets leave with the
 * VIP as source, or its stack would take them for martians.
 */
static __always_inline int sn_lb(struct __sk_buff *skb, const struct sn_device *dev, __be32 *backend)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct sn_service_key sk;
	struct sn_ct_key ck = {};
	struct sn_ct_key rk = {};
	struct sn_backend_key bk;
	struct sn_maglev_key mk;
	struct sn_maglev_chunk *chunk;
	struct sn_service *svc;
	struct sn_ports *ports;
	struct sn_ct nct = {};
	struct sn_ct *ct, *rct = NULL;
	__u32 slot, hairpin = 0, now = 0;
	__u8 proto, tflags = 0;

	if (!sn_fits(ip, end))
		return sn_tc_drop(SN_C_TC_DROP_OTHER);
	if (ip->frag_off & bpf_htons(SN_IP_MF | SN_IP_OFFSET))
		return sn_tc_drop(SN_C_LB_FRAGMENT);
	if (ip->ihl != 5)
		return sn_tc_drop(SN_C_LB_DROP_OTHER);
	proto = ip->protocol;
	if (proto == IPPROTO_ICMP)
		return sn_lb_echo(skb);
	ports = (void *)(ip + 1);
	if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) || !sn_fits(ports, end))
		return sn_tc_drop(SN_C_LB_DROP_OTHER);
	if (proto == IPPROTO_TCP)
		tflags = sn_tcp_flags(ports, end);

	sk.vni = dev->vni;
	sk.vip = ip->daddr;
	sn_ct_key_of(&ck, dev->vni, ip, ports, SN_CT_FORWARD);
	ct = bpf_map_lookup_elem(&sn_ct, &ck);
	/* A new connection on the port of one that is closing: picked afresh, not sent into the old one's grace. */
	if (ct && (ct->flags & SN_CT_SEEN_FIN) && (tflags & (SN_TCP_SYN | SN_TCP_ACK)) == SN_TCP_SYN)
		ct = NULL;
	/* A UDP flow idle past its lifetime (either way: its reply entry holds the last packet of both) has ended. */
	if (proto == IPPROTO_UDP) {
		now = sn_now_s();
		nct.seen = now;
		if (ct) {
			__u32 last = ct->seen;

			sn_ct_reply_key(&ck, ct, &rk);
			rct = bpf_map_lookup_elem(&sn_ct, &rk);
			if (rct && rct->seen > last)
				last = rct->seen;
			if (sn_ct_idle_past(now, last)) {
				bpf_map_delete_elem(&sn_ct, &rk);
				bpf_map_delete_elem(&sn_ct, &ck);
				sn_count(SN_C_LB_CT_EXPIRED);
				ct = NULL;
			}
		}
	}
	if (!ct) {
		/* A hairpin's reply: from the task as backend, to the VIP standing in for it as client. */
		ck.dir = SN_CT_REPLY;
		rct = bpf_map_lookup_elem(&sn_ct, &ck);
		ck.dir = SN_CT_FORWARD;
		if (rct && (rct->flags & SN_CT_HAIRPIN)) {
			ck.dir = SN_CT_REPLY;
			if (tflags)
				sn_ct_reply_seen(&ck, rct, tflags);
			sn_count(SN_C_LB_HAIRPIN);
			*backend = ck.src;
			/* VIP:port -> task becomes VIP:port as source, the task as destination: the two addresses swap. */
			if (sn_nat_tc(skb, proto, SN_NAT_SRC, ck.src, ck.dst, 0, 0, 0) ||
			    sn_nat_tc(skb, proto, SN_NAT_DST, ck.dst, ck.src, 0, 0, 0))
				return sn_tc_drop(SN_C_LB_DROP_OTHER);
			return -1;
		}
	}
	svc = bpf_map_lookup_elem(&sn_services, &sk);
	if (ct) {
		/* A later table than the flow's: is its backend still in the set? */
		if (!svc || ct->table != svc->table) {
			bk.vni = dev->vni;
			bk.vip = sk.vip;
			bk.ip = ct->addr;
			if (!svc || !bpf_map_lookup_elem(&sn_backends, &bk)) {
				sn_ct_reply_key(&ck, ct, &rk);
				bpf_map_delete_elem(&sn_ct, &rk);
				bpf_map_delete_elem(&sn_ct, &ck);
				return sn_lb_refuse(skb, proto, SN_C_LB_BACKEND_GONE);
			}
			ct->table = svc->table;
		}
		*backend = ct->addr;
		hairpin = ct->flags & SN_CT_HAIRPIN;
		/*
		 * The reply entry must outlive LRU pressure as long as the forward one
		 * does: looking it up keeps it recent, and one that went is written again.
		 * UDP looked it up above (its idle check; nothing since changed its key).
		 */
		if (proto != IPPROTO_UDP) {
			sn_ct_reply_key(&ck, ct, &rk);
			rct = bpf_map_lookup_elem(&sn_ct, &rk);
		}
		if (!rct) {
			nct.addr = ck.dst;
			nct.flags = hairpin;
			if (!bpf_map_update_elem(&sn_ct, &rk, &nct, BPF_ANY))
				sn_count(SN_C_LB_REPLY_RESTORED);
		} else if (now && rct->seen != now) {
			rct->seen = now;
		}
		if (now && ct->seen != now)
			ct->seen = now;
		if (tflags & (SN_TCP_FIN | SN_TCP_RST))
			sn_ct_tcp_seen(&ck, ct, tflags, 1);
	} else {
		if (!svc || !svc->count || !svc->size)
			return sn_lb_refuse(skb, proto, SN_C_LB_NO_BACKEND);
		slot = sn_lb_hash(ck.src, ck.dst, ck.sport, ck.dport, proto) % svc->size;
		mk.table = svc->table;
		mk.chunk = slot / SN_MAGLEV_CHUNK;
		chunk = bpf_map_lookup_elem(&sn_maglev, &mk);
		if (!chunk || !chunk->backend[slot & (SN_MAGLEV_CHUNK - 1)])
			return sn_lb_refuse(skb, proto, SN_C_LB_NO_BACKEND);
		*backend = chunk->backend[slot & (SN_MAGLEV_CHUNK - 1)];
		hairpin = *backend == ck.src ? SN_CT_HAIRPIN : 0;
		/* The reply entry first: a reply must never find the flow without it. */
		nct.addr = *backend;
		nct.flags = hairpin;
		sn_ct_reply_key(&ck, &nct, &rk);
		nct.addr = ck.dst;
		if (bpf_map_update_elem(&sn_ct, &rk, &nct, BPF_ANY))
			return sn_tc_drop(SN_C_LB_DROP_OTHER);
		nct.addr = *backend;
		nct.table = svc->table;
		if (bpf_map_update_elem(&sn_ct, &ck, &nct, BPF_ANY))
			return sn_tc_drop(SN_C_LB_DROP_OTHER);
		sn_count(SN_C_LB_NEW_FLOW);
	}
	if (hairpin) {
		sn_count(SN_C_LB_HAIRPIN);
		if (sn_nat_tc(skb, proto, SN_NAT_SRC, ck.src, ck.dst, 0, 0, 0))
			return sn_tc_drop(SN_C_LB_DROP_OTHER);
	}
	if (sn_nat_tc(skb, proto, SN_NAT_DST, ck.dst, *backend, 0, 0, 0))
		return sn_tc_drop(SN_C_LB_DROP_OTHER);
	return -1;
}

/*
 * A reply from a backend task to a client task of this node: its VIP back as
 * the source; an ICMP error about a datagram the client sent to a VIP: the
 * VIP as its source and in its quote.
 */
static __always_inline void sn_rev_nat_tc(struct __sk_buff *skb, __u32 vni)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct sn_ports *ports = (void *)(ip + 1);
	struct sn_ct_key ck = {};
	struct sn_ct *ct;
	__u8 tflags;

	if (!sn_fits(ports, end) || ip->ihl != 5 || (ip->frag_off & bpf_htons(SN_IP_MF | SN_IP_OFFSET)))
		return;
	if (ip->protocol == IPPROTO_ICMP) {
		/* The quote must be in the linear part to be rewritten in place. */
		if (bpf_skb_pull_data(skb, skb->len))
			return;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		ip = data + ETH_HLEN;
		if (sn_fits(ip, end))
			sn_rev_nat_icmp(ip, end, vni);
		return;
	}
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return;
	sn_ct_key_of(&ck, vni, ip, ports, SN_CT_REPLY);
	ct = bpf_map_lookup_elem(&sn_ct, &ck);
	if (!ct || (ct->flags & SN_CT_HAIRPIN))
		return;
	if (ck.proto == IPPROTO_UDP && !sn_ct_udp_alive(ct, sn_now_s()))
		return;
	tflags = ck.proto == IPPROTO_TCP ? sn_tcp_flags(ports, end) : 0;
	if (sn_nat_tc(skb, ck.proto, SN_NAT_SRC, ck.src, ct->addr, 0, 0, 0))
		return;
	sn_count(SN_C_LB_REV_NAT);
	sn_ct_reply_seen(&ck, ct, tflags);
}

SEC("tc")
int sn_tc_task(struct __sk_buff *skb)
{
	struct sn_endpoint_key key;
	struct sn_endpoint *ep;
	struct sn_device *dev;
	struct sn_config *cfg;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 ifindex = skb->ifindex;
	void *data, *end;
	int verdict;

	dev = bpf_map_lookup_elem(&sn_devices, &ifindex);
	if (!dev)
		return sn_tc_drop(SN_C_TC_UNKNOWN_DEVICE);

	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if (!sn_fits(eth, end))
		return sn_tc_drop(SN_C_TC_DROP_OTHER);
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return sn_arp_reply(skb, dev);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return sn_tc_drop(SN_C_TC_DROP_OTHER);
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end) || ip->version != 4)
		return sn_tc_drop(SN_C_TC_DROP_OTHER);
	/* A task speaks only with its own address: no spoofing into other endpoints. */
	if (ip->saddr != dev->ip)
		return sn_tc_drop(SN_C_TC_DROP_OTHER);
	/* A frame no larger than the smallest MTU a network can have needs no look at its network. */
	if (skb->len > ETH_HLEN + SN_MTU_MIN || skb->gso_size) {
		verdict = sn_check_mtu(skb, dev, ip, end);
		if (verdict >= 0)
			return verdict;
	}

	key.vni = dev->vni;
	key.ip = ip->daddr;
	ep = bpf_map_lookup_elem(&sn_endpoints, &key);
	if (!ep)
		return sn_tc_drop(SN_C_TC_NO_ENDPOINT);

	if (ep->flags & SN_EP_VIP) {
		verdict = sn_lb(skb, dev, &key.ip);
		if (verdict >= 0)
			return verdict;
		ep = bpf_map_lookup_elem(&sn_endpoints, &key);
		if (!ep || (ep->flags & SN_EP_VIP))
			return sn_tc_drop(SN_C_TC_NO_ENDPOINT);
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		eth = data;
		ip = (void *)(eth + 1);
		if (!sn_fits(ip, end))
			return sn_tc_drop(SN_C_TC_DROP_OTHER);
	}

	if (ep->flags & SN_EP_LOCAL) {
		if (dev->flags & SN_DEV_BACKEND) {
			sn_rev_nat_tc(skb, dev->vni);
			data = (void *)(long)skb->data;
			end = (void *)(long)skb->data_end;
			eth = data;
			if (!sn_fits(eth, end))
				return sn_tc_drop(SN_C_TC_DROP_OTHER);
		}
		sn_count(SN_C_TC_LOCAL);
		return sn_deliver_peer(eth->h_dest, ep->mac, ep->ifindex);
	}

	cfg = sn_get_config();
	if (!cfg || !cfg->underlay_ifindex)
		return sn_tc_drop(SN_C_TC_ENCAP_FAIL);
	if (sn_vxlan_encap_skb(skb, cfg->node_ip, ep->node_ip, cfg->vxlan_port, dev->vni, sn_flow_hash(ip, end)))
		return sn_tc_drop(SN_C_TC_ENCAP_FAIL);
	sn_count(SN_C_TC_ENCAP);
	return sn_encap_out_tc(skb, cfg, ep->node_ip);
}

char _license[] SEC("license") = "Dual BSD/GPL";
