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

#define sn_drop(counter) ({ sn_count(counter); TC_ACT_SHOT; })

/* What "fragmentation needed" quotes of the refused datagram: the reply stays within 576 bytes (RFC 1812 4.3.2.3). */
#define SN_ICMP_QUOTE (SN_MTU_MIN - sizeof(struct iphdr) - 8)

/* linux/icmp.h would pull in libc headers through linux/if.h. */
#define SN_ICMP_DEST_UNREACH 3
#define SN_ICMP_FRAG_NEEDED 4

struct sn_icmp_frag {
	struct iphdr ip;
	__u8 type;
	__u8 code;
	__sum16 check;
	__be16 unused;
	__be16 mtu;
};

/*
 * Turn a frame too large for the network into ICMP "fragmentation needed"
 * (type 3, code 4, RFC 1191) back to the task, in place: keep the first
 * SN_ICMP_QUOTE bytes of its datagram, put an IPv4 and an ICMP header in
 * front, swap the addresses (the reply comes from the destination, as Linux's
 * own tunnels answer for a bridged peer) and send it out of the device it came in by.
 */
static __always_inline int sn_frag_needed(struct __sk_buff *skb, __u16 mtu)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *orig = (void *)(eth + 1);
	struct sn_icmp_frag *h;
	__u8 task_mac[6], peer_mac[6];
	__be32 task_ip, peer_ip;
	__s64 sum;
	__u8 *msg;

	if (!sn_fits(orig, end))
		return sn_drop(SN_C_TC_TOO_BIG);
	sn_mac_copy(task_mac, eth->h_source);
	sn_mac_copy(peer_mac, eth->h_dest);
	task_ip = orig->saddr;
	peer_ip = orig->daddr;

	/* Shrink first (less to move), then make room for the two headers after Ethernet. */
	if (bpf_skb_change_tail(skb, ETH_HLEN + SN_ICMP_QUOTE, 0) ||
	    bpf_skb_adjust_room(skb, sizeof(struct sn_icmp_frag), BPF_ADJ_ROOM_MAC, 0))
		return sn_drop(SN_C_TC_TOO_BIG);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	h = (void *)(eth + 1);
	msg = &h->type;
	if ((void *)(h + 1) + SN_ICMP_QUOTE > end)
		return sn_drop(SN_C_TC_TOO_BIG);

	sn_mac_copy(eth->h_dest, task_mac);
	sn_mac_copy(eth->h_source, peer_mac);
	__builtin_memset(h, 0, sizeof(*h));
	h->ip.version = 4;
	h->ip.ihl = 5;
	h->ip.ttl = 64;
	h->ip.protocol = IPPROTO_ICMP;
	h->ip.tot_len = bpf_htons(sizeof(*h) + SN_ICMP_QUOTE);
	h->ip.frag_off = bpf_htons(SN_IP_DF);
	h->ip.saddr = peer_ip;
	h->ip.daddr = task_ip;
	h->ip.check = sn_ipv4_csum(&h->ip);
	h->type = SN_ICMP_DEST_UNREACH;
	h->code = SN_ICMP_FRAG_NEEDED;
	h->mtu = bpf_htons(mtu);
	/* The ICMP checksum covers its 8 bytes and the quote: 556 bytes, in two sums (the helper takes 512 at most). */
	sum = bpf_csum_diff(NULL, 0, (__be32 *)msg, 512, 0);
	if (sum < 0)
		return sn_drop(SN_C_TC_TOO_BIG);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)(msg + 512), 8 + SN_ICMP_QUOTE - 512, (__wsum)sum);
	if (sum < 0)
		return sn_drop(SN_C_TC_TOO_BIG);
	h->check = sn_csum_fold((__u32)sum);
	sn_count(SN_C_TC_FRAG_NEEDED);
	/*
	 * With no flags bpf_redirect cannot fail; returning its verdict as a constant
	 * lets the verifier see that the caller never reads the old packet again.
	 */
	bpf_redirect(skb->ifindex, 0);
	return TC_ACT_REDIRECT;
}

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
				return sn_drop(SN_C_TC_DROP_OTHER);
			seg += tcp->doff * 4;
		}
		return seg > mtu ? sn_drop(SN_C_TC_TOO_BIG) : -1;
	}
	if (skb->len - ETH_HLEN <= mtu)
		return -1;
	if (!(ip->frag_off & bpf_htons(SN_IP_DF)))
		return sn_drop(SN_C_TC_TOO_BIG); /* nowhere to fragment it: the task's own MTU should have */
	return sn_frag_needed(skb, mtu);
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
		return sn_drop(SN_C_TC_DROP_OTHER);
	/*
	 * Gratuitous ARP has nobody to tell, and a probe for the task's own address
	 * (duplicate address detection) must find nobody else holding it.
	 */
	if (arp->tpa == arp->spa || arp->tpa == dev->ip)
		return sn_drop(SN_C_TC_DROP_OTHER);

	key.vni = dev->vni;
	key.ip = arp->tpa;
	ep = bpf_map_lookup_elem(&sn_endpoints, &key);
	if (!ep)
		return sn_drop(SN_C_TC_NO_ENDPOINT);

	spa = arp->spa;
	arp->op = bpf_htons(SN_ARP_REPLY);
	sn_mac_copy(arp->tha, arp->sha);
	arp->tpa = spa;
	sn_mac_copy(arp->sha, ep->mac);
	arp->spa = key.ip;
	sn_mac_copy(eth->h_dest, eth->h_source);
	sn_mac_copy(eth->h_source, ep->mac);
	sn_count(SN_C_TC_ARP_REPLY);
	return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int sn_encap(struct __sk_buff *skb, const struct sn_config *cfg,
				    __u32 vni, __be32 remote, __u32 hash)
{
	/*
	 * FIXED_GSO: the task's MTU already leaves room for the 50 bytes, so a
	 * GSO packet keeps its segment size; without it the kernel would shrink
	 * TCP's MSS by 50 and refuse (-ENOTSUPP) every UDP GSO packet outright.
	 */
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
		      BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
		      BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	__u32 inner_len = skb->len;
	struct sn_vxlan_encap *h;
	struct ethhdr *outer;
	void *data, *end;

	/* Room goes after the MAC header: the outer Ethernet header is the old one's place. */
	if (bpf_skb_adjust_room(skb, SN_VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, flags))
		return -1;
	/* Written in place: adjust_room left the packet writable, so no store helper is needed. */
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
		return sn_drop(SN_C_TC_UNKNOWN_DEVICE);

	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if (!sn_fits(eth, end))
		return sn_drop(SN_C_TC_DROP_OTHER);
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return sn_arp_reply(skb, dev);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return sn_drop(SN_C_TC_DROP_OTHER);
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end) || ip->version != 4)
		return sn_drop(SN_C_TC_DROP_OTHER);
	/* A task speaks only with its own address: no spoofing into other endpoints. */
	if (ip->saddr != dev->ip)
		return sn_drop(SN_C_TC_DROP_OTHER);
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
		return sn_drop(SN_C_TC_NO_ENDPOINT);

	if (ep->flags & SN_EP_LOCAL) {
		sn_mac_copy(eth->h_dest, ep->mac);
		sn_count(SN_C_TC_LOCAL);
		return bpf_redirect(ep->ifindex, 0);
	}

	cfg = sn_get_config();
	if (!cfg || !cfg->underlay_ifindex)
		return sn_drop(SN_C_TC_ENCAP_FAIL);
	if (sn_encap(skb, cfg, dev->vni, ep->node_ip, sn_flow_hash(ip, end)))
		return sn_drop(SN_C_TC_ENCAP_FAIL);
	sn_count(SN_C_TC_ENCAP);
	return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
