// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tc ingress on the host side of a task's overlay device: every frame the task
 * sends onto one of its networks. It answers ARP for the network's endpoints
 * itself (no flooding), hands frames for a task on this node straight to that
 * task's device, and wraps frames for a task elsewhere in VXLAN toward the
 * owning node. Anything addressed outside the task's own network is dropped:
 * that is what keeps networks isolated.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "vxlan.h"

#define sn_drop(counter) ({ sn_count(counter); TC_ACT_SHOT; })

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
		return sn_drop(tc_drop_other);
	/*
	 * Gratuitous ARP has nobody to tell, and a probe for the task's own address
	 * (duplicate address detection) must find nobody else holding it.
	 */
	if (arp->tpa == arp->spa || arp->tpa == dev->ip)
		return sn_drop(tc_drop_other);

	key.vni = dev->vni;
	key.ip = arp->tpa;
	ep = bpf_map_lookup_elem(&sn_endpoints, &key);
	if (!ep)
		return sn_drop(tc_no_endpoint);

	spa = arp->spa;
	arp->op = bpf_htons(SN_ARP_REPLY);
	sn_mac_copy(arp->tha, arp->sha);
	arp->tpa = spa;
	sn_mac_copy(arp->sha, ep->mac);
	arp->spa = key.ip;
	sn_mac_copy(eth->h_dest, eth->h_source);
	sn_mac_copy(eth->h_source, ep->mac);
	sn_count(tc_arp_reply);
	return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int sn_encap(struct __sk_buff *skb, const struct sn_config *cfg,
				    __u32 vni, __be32 remote, __u32 hash, __u16 ip_id)
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
	sn_vxlan_fill(h, cfg->node_ip, remote, cfg->vxlan_port, vni, hash, inner_len, bpf_htons(ip_id));
	return 0;
}

SEC("tc")
int sn_tc_task(struct __sk_buff *skb)
{
	struct sn_endpoint_key key;
	struct sn_endpoint *ep;
	struct sn_device *dev;
	struct sn_config *cfg;
	struct sn_stats *st;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 ifindex = skb->ifindex;
	void *data, *end;

	dev = bpf_map_lookup_elem(&sn_devices, &ifindex);
	if (!dev) {
		sn_count(tc_pass);
		return TC_ACT_OK;
	}

	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if (!sn_fits(eth, end))
		return sn_drop(tc_drop_other);
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return sn_arp_reply(skb, dev);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return sn_drop(tc_drop_other);
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end) || ip->version != 4)
		return sn_drop(tc_drop_other);
	/* A task speaks only with its own address: no spoofing into other endpoints. */
	if (ip->saddr != dev->ip)
		return sn_drop(tc_drop_other);

	key.vni = dev->vni;
	key.ip = ip->daddr;
	ep = bpf_map_lookup_elem(&sn_endpoints, &key);
	if (!ep)
		return sn_drop(tc_no_endpoint);

	if (ep->flags & SN_EP_LOCAL) {
		sn_mac_copy(eth->h_dest, ep->mac);
		sn_count(tc_local);
		return bpf_redirect(ep->ifindex, 0);
	}

	cfg = sn_get_config();
	if (!cfg || !cfg->underlay_ifindex)
		return sn_drop(tc_encap_fail);
	/*
	 * This CPU's count of encapsulated packets is the outer IP ID: it differs from
	 * packet to packet, as RFC 6864 asks while DF is clear, and costs nothing more.
	 */
	st = sn_get_stats();
	if (sn_encap(skb, cfg, dev->vni, ep->node_ip, sn_flow_hash(ip, end), st ? (__u16)st->tc_encap : 0))
		return sn_drop(tc_encap_fail);
	if (st)
		st->tc_encap += 1;
	return bpf_redirect_neigh(cfg->underlay_ifindex, NULL, 0, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
