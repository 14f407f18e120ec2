// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tc ingress on the host side of a task's gateway-bridge device: the DNS fast
 * path. An A or AAAA question for a cluster name, sent by the task to its node's
 * resolver (the gateway-bridge address, UDP 53), is turned into its answer in
 * place (the same bytes the TypeScript responder would send) and sent straight
 * back into the task: A gets the name's addresses, AAAA NOERROR and no answer
 * (the cluster is IPv4 only, as Docker answers), and a name no network of the
 * task has but another network of the cluster does (its SN_DNS_VNI_KNOWN entry)
 * NXDOMAIN, which the responder gives and never forwards; PTR of
 * d.c.b.a.in-addr.arpa (four decimal labels as the responder reads them, no
 * leading zeros) for an address of a task's network in sn_dns_ptrs, the name the
 * responder gives. Everything else, and any question it is not sure of
 * (other types and classes, names not in sn_dns_names or marked to pass, names
 * with compression pointers or other bytes than letters, digits, '-' and '_',
 * longer than SN_DNS_NAME_MAX, EDNS0 with an option other than one cookie or
 * another version, TCP,
 * fragments, IP options), goes on untouched: TC_ACT_UNSPEC, so the next
 * program on the hook and then the kernel (and the TypeScript responder) see it.
 */
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "dns.h"

#define SN_DNS_HDR 12
#define SN_DNS_OPT_LEN 11
#define SN_DNS_ANSWER_LEN 16
/* An EDNS cookie option (RFC 7873): code 10, a client cookie of 8 bytes and perhaps a server's (8-32). */
#define SN_DNS_OPT_COOKIE 10
#define SN_DNS_COOKIE_MIN 8
#define SN_DNS_COOKIE_MAX 40
#define SN_L2L4 (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))
/* What our OPT record says: no extended rcode, version 0, no flags, and the UDP size we take (src/dns/responder.ts OUR_UDP). */
#define SN_DNS_OUR_UDP 1232
#define SN_DNS_T_A 1
#define SN_DNS_T_AAAA 28
#define SN_DNS_T_PTR 12
/* An answer record's fixed part: the name (a pointer to the question's), type, class, TTL, rdlength. */
#define SN_DNS_RR_LEN 12
/* in-addr.arpa. on the wire, after a reverse name's four labels. */
#define SN_DNS_ARPA_LEN 14
#define SN_DNS_NXDOMAIN 3

#define sn_pass() TC_ACT_UNSPEC

/*
 * The address a reverse name's first labels give (d.c.b.a.in-addr.arpa -> a.b.c.d, network
 * order), reading from the packet at name: four labels of 1-3 digits, no leading zero but
 * "0" itself, each at most 255, then in-addr.arpa (any case) and the root, ending where the
 * question's name ends (nlen). src/dns/names.ts reverseIp reads the same names; 0 when not one.
 */
static __always_inline int sn_reverse_ip(__u8 *name, void *end, __u32 nlen, __be32 *ip)
{
	static const __u8 arpa[SN_DNS_ARPA_LEN] = {7, 'i', 'n', '-', 'a', 'd', 'd', 'r', 4, 'a', 'r', 'p', 'a', 0};
	__u8 octets[4];
	__u32 p = 0, l, i;

#pragma clang loop unroll(full)
	for (l = 0; l < 4; l++) {
		__u8 *lp = name + p;
		__u32 len, d0, d1, d2, v;

		/* A label and the three bytes after it: the question's type and class follow any name. */
		if ((void *)(lp + 4) > end)
			return 0;
		len = lp[0];
		d0 = (__u32)lp[1] - '0';
		d1 = (__u32)lp[2] - '0';
		d2 = (__u32)lp[3] - '0';
		if (len < 1 || len > 3 || d0 > 9 || (d0 == 0 && len > 1))
			return 0;
		v = d0;
		if (len > 1) {
			if (d1 > 9)
				return 0;
			v = v * 10 + d1;
		}
		if (len > 2) {
			if (d2 > 9)
				return 0;
			v = v * 10 + d2;
		}
		if (v > 255)
			return 0;
		octets[3 - l] = v;
		p += len + 1;
	}
	if (nlen != p + SN_DNS_ARPA_LEN || (void *)(name + p + SN_DNS_ARPA_LEN) > end)
		return 0;
#pragma clang loop unroll(full)
	for (i = 0; i < SN_DNS_ARPA_LEN; i++) {
		__u8 c = name[p + i];

		/* Letters in any case ('-' has the bit already); the label lengths and the root exactly. */
		if (arpa[i] >= 'a')
			c |= 0x20;
		if (c != arpa[i])
			return 0;
	}
	__builtin_memcpy(ip, octets, 4);
	return 1;
}

static __always_inline int sn_name_char(__u8 *c)
{
	if (*c >= 'A' && *c <= 'Z') {
		*c += 'a' - 'A';
		return 1;
	}
	return (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_';
}

SEC("tc")
int sn_tc_dns(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	struct sn_dns_scope *scope;
	struct sn_dns_name *hit = 0;
	struct sn_dns_ptr *ptr = 0;
	struct sn_dns_key key;
	__u8 *dns, *name, *q;
	__u32 ifindex = skb->ifindex;
	__u32 nlen = 0, next = 0, dnslen, tot, count, i;
	/* The query's EDNS option bytes (a cookie), which the answer leaves out. */
	__u32 optx = 0;
	__u32 rcode = 0;
	/* The PTR answer's name, bytes (0: not a PTR answer). */
	__u32 plen = 0;
	int edns, qtype;

	if (!sn_fits(eth, end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return sn_pass();
	ip = (void *)(eth + 1);
	if (!sn_fits(ip, end) || !sn_ipv4_plain(ip) || ip->protocol != IPPROTO_UDP)
		return sn_pass();
	udp = (void *)(ip + 1);
	if (!sn_fits(udp, end) || udp->dest != bpf_htons(53))
		return sn_pass();
	scope = bpf_map_lookup_elem(&sn_dns_scopes, &ifindex);
	if (!scope || ip->daddr != scope->resolver)
		return sn_pass();
	tot = bpf_ntohs(ip->tot_len);
	if (skb->len != sizeof(struct ethhdr) + tot || bpf_ntohs(udp->len) != tot - sizeof(struct iphdr))
		return sn_pass();
	dnslen = tot - sizeof(struct iphdr) - sizeof(struct udphdr);
	if (dnslen < SN_DNS_HDR + 1 + 4 || dnslen > SN_DNS_HDR + SN_DNS_NAME_MAX + 4 + SN_DNS_OPT_LEN + 4 + SN_DNS_COOKIE_MAX)
		return sn_pass();
	if ((void *)(long)skb->data + skb->len > (void *)(long)skb->data_end) {
		if (bpf_skb_pull_data(skb, skb->len))
			return sn_pass();
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	dns = data + SN_L2L4;
	if ((void *)(dns + SN_DNS_HDR) > end)
		return sn_pass();
	/* A standard query (QR 0, opcode 0, TC clear), one question, no answers or authority, at most an OPT. */
	if ((dns[2] & 0xfa) != 0 || dns[4] != 0 || dns[5] != 1 || dns[6] | dns[7] | dns[8] | dns[9] || dns[10] != 0 ||
	    dns[11] > 1)
		return sn_pass();
	edns = dns[11];

	__builtin_memset(&key, 0, sizeof(key));
	name = dns + SN_DNS_HDR;
#pragma clang loop unroll(full)
	for (i = 0; i < SN_DNS_NAME_MAX; i++) {
		__u8 c;

		if ((void *)(name + i + 1) > end)
			return sn_pass();
		c = name[i];
		if (i == next) {
			if (c == 0) {
				nlen = i + 1;
				break;
			}
			if (c > 63) /* a compression pointer or an extended label */
				return sn_pass();
			next = i + c + 1;
		} else if (!sn_name_char(&c)) {
			return sn_pass();
		}
		key.name[i] = c;
	}
	if (nlen == 0 || nlen > SN_DNS_NAME_MAX)
		return sn_pass();
	if (edns && dnslen > SN_DNS_HDR + nlen + 4 + SN_DNS_OPT_LEN)
		optx = dnslen - (SN_DNS_HDR + nlen + 4 + SN_DNS_OPT_LEN);
	if (optx && (optx < 4 + SN_DNS_COOKIE_MIN || optx > 4 + SN_DNS_COOKIE_MAX))
		return sn_pass();
	if (dnslen != SN_DNS_HDR + nlen + 4 + (edns ? SN_DNS_OPT_LEN : 0) + optx)
		return sn_pass();
	q = name + nlen;
	if ((void *)(q + 4) > end)
		return sn_pass();
	/* A, AAAA or PTR, IN */
	if (q[0] != 0 || (q[1] != SN_DNS_T_A && q[1] != SN_DNS_T_AAAA && q[1] != SN_DNS_T_PTR) || q[2] != 0 || q[3] != 1)
		return sn_pass();
	qtype = q[1];
	if (edns) {
		__u8 *o = q + 4;

		if ((void *)(o + SN_DNS_OPT_LEN) > end)
			return sn_pass();
		/* Root name, type OPT, extended rcode 0, version 0, options of optx bytes. */
		if (o[0] != 0 || o[1] != 0 || o[2] != 41 || o[5] != 0 || o[6] != 0 || o[9] != 0 || o[10] != optx)
			return sn_pass();
		/*
		 * One option, a cookie, of the length that is left. A server that does not do cookies
		 * ignores them (RFC 7873 5.2): so does the TypeScript responder, and so does this.
		 */
		if (optx) {
			if ((void *)(o + SN_DNS_OPT_LEN + 4) > end)
				return sn_pass();
			if (o[11] != 0 || o[12] != SN_DNS_OPT_COOKIE || o[13] != 0 || o[14] != optx - 4)
				return sn_pass();
		}
	}

	if (qtype == SN_DNS_T_PTR) {
		struct sn_dns_ptr_key pk;

		/*
		 * A reverse name of an address of the task's networks, looked up in their order (the
		 * responder's); any other PTR question (other names, addresses it does not know) is
		 * the slow path's, which forwards what is not the cluster's.
		 */
		if (!sn_reverse_ip(name, end, nlen, &pk.ip))
			return sn_pass();
#pragma clang loop unroll(full)
		for (i = 0; i < SN_DNS_MAX_NETS; i++) {
			if (i >= scope->count)
				break;
			pk.vni = scope->vnis[i];
			ptr = bpf_map_lookup_elem(&sn_dns_ptrs, &pk);
			if (ptr)
				break;
		}
		if (!ptr || (ptr->flags & SN_DNS_PASS))
			return sn_pass();
		plen = ptr->len;
		/* A name is its root label at least, and what the map holds. */
		if (plen < 1 || plen > SN_DNS_PTR_MAX)
			return sn_pass();
		count = 0;
		goto answer;
	}
#pragma clang loop unroll(full)
	for (i = 0; i < SN_DNS_MAX_NETS; i++) {
		if (i >= scope->count)
			break;
		key.vni = scope->vnis[i];
		hit = bpf_map_lookup_elem(&sn_dns_names, &key);
		if (hit)
			break;
	}
	if (hit && qtype == SN_DNS_T_AAAA) {
		/* A name of the task's networks: it has no IPv6 address, NOERROR and no answer. */
		count = 0;
	} else if (hit) {
		/* No running task (NOERROR, no answer) is the slow path's: the fast path answers addresses. */
		if ((hit->flags & SN_DNS_PASS) || hit->count < 1 || hit->count > SN_DNS_MAX_IPS)
			return sn_pass();
		count = hit->count;
	} else {
		/*
		 * In none of the task's networks: NXDOMAIN when the cluster knows the name elsewhere. A
		 * scope with no networks is one the fast path was not given (too many): the slow path's.
		 */
		if (scope->count < 1 || scope->count > SN_DNS_MAX_NETS)
			return sn_pass();
		key.vni = SN_DNS_VNI_KNOWN;
		hit = bpf_map_lookup_elem(&sn_dns_names, &key);
		if (!hit || !(hit->flags & SN_DNS_KNOWN))
			return sn_pass();
		count = 0;
		rcode = SN_DNS_NXDOMAIN;
	}

answer:
	/* The answers, then our OPT when the question had one, after the question. */
	{
		__u8 ans[SN_DNS_MAX_IPS * SN_DNS_ANSWER_LEN];
		__u8 opt[SN_DNS_OPT_LEN] = {0, 0, 41, SN_DNS_OUR_UDP >> 8, SN_DNS_OUR_UDP & 0xff, 0, 0, 0, 0, 0, 0};
		__be32 ttl = bpf_htonl(scope->ttl);
		__u32 off = SN_L2L4 + SN_DNS_HDR + nlen + 4;
		/* plen is 1..128; the mask says so to the verifier, whatever registers the compiler uses. */
		__u32 pmask = ((plen - 1) & (SN_DNS_PTR_MAX - 1)) + 1;
		__u32 alen = plen ? SN_DNS_RR_LEN + pmask : count * SN_DNS_ANSWER_LEN;
		__u8 rr[SN_DNS_RR_LEN] = {0xc0, SN_DNS_HDR, 0, SN_DNS_T_PTR, 0, 1};
		__u32 start = (count && (hit->flags & SN_DNS_ROTATE)) ? bpf_get_prandom_u32() % count : 0;
		__be32 saddr, daddr;
		__be16 sport;
		__u8 mac[6];
		__u8 flags[2];
		__be16 an = bpf_htons(plen ? 1 : count);
		__be16 len;
		__be16 rdlen = bpf_htons(pmask);

#pragma clang loop unroll(full)
		for (i = 0; i < SN_DNS_MAX_IPS && count; i++) {
			__u8 *a = ans + i * SN_DNS_ANSWER_LEN;
			/* A division, not a branch: eight branches would be 2^8 paths for the verifier. */
			__u32 j = (i + start) % count;

			/* The compiler knows j < count <= 8 and would drop the mask the verifier needs. */
			asm volatile("" : "+r"(j));

			a[0] = 0xc0; /* the name: a pointer to the question's */
			a[1] = SN_DNS_HDR;
			a[2] = 0;
			a[3] = 1; /* A */
			a[4] = 0;
			a[5] = 1; /* IN */
			__builtin_memcpy(a + 6, &ttl, 4);
			a[10] = 0;
			a[11] = 4;
			__builtin_memcpy(a + 12, &hit->ips[j & (SN_DNS_MAX_IPS - 1)], 4);
		}
		__builtin_memcpy(rr + 6, &ttl, 4);
		__builtin_memcpy(rr + 10, &rdlen, 2);
		flags[0] = 0x84 | (dns[2] & 0x01); /* QR, AA, the question's RD */
		flags[1] = 0x80 | rcode;           /* RA, the rcode */
		if (bpf_skb_change_tail(skb, skb->len + alen - optx, 0))
			return sn_pass();
		/* alen is 16..128; the mask says so to the verifier, whatever registers the compiler uses. */
		if (count && bpf_skb_store_bytes(skb, off, ans, ((alen - 1) & (sizeof(ans) - 1)) + 1, 0))
			return TC_ACT_SHOT;
		/* The PTR record: the name from the map as it is (the map's value, not a copy). */
		if (plen && (bpf_skb_store_bytes(skb, off, rr, sizeof(rr), 0) ||
			     bpf_skb_store_bytes(skb, off + SN_DNS_RR_LEN, ptr->name, pmask, 0)))
			return TC_ACT_SHOT;
		if (edns && bpf_skb_store_bytes(skb, off + alen, opt, sizeof(opt), 0))
			return TC_ACT_SHOT;
		if (bpf_skb_store_bytes(skb, SN_L2L4 + 2, flags, 2, 0) || bpf_skb_store_bytes(skb, SN_L2L4 + 6, &an, 2, 0))
			return TC_ACT_SHOT;

		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		eth = data;
		ip = (void *)(eth + 1);
		udp = (void *)(ip + 1);
		if (!sn_fits(udp, end))
			return TC_ACT_SHOT;
		sn_mac_copy(mac, eth->h_source);
		sn_mac_copy(eth->h_source, eth->h_dest);
		sn_mac_copy(eth->h_dest, mac);
		saddr = ip->saddr;
		daddr = ip->daddr;
		ip->saddr = daddr;
		ip->daddr = saddr;
		ip->tot_len = bpf_htons(tot + alen - optx);
		ip->ttl = 64;
		ip->check = 0;
		/* bpf_csum_diff gives a 32-bit sum: folded to 16 bits. */
		{
			__u32 s = bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0);

			s = (s & 0xffff) + (s >> 16);
			s = (s & 0xffff) + (s >> 16);
			ip->check = ~s & 0xffff;
		}
		sport = udp->source;
		udp->source = udp->dest;
		udp->dest = sport;
		len = bpf_htons(tot + alen - optx - sizeof(struct iphdr));
		udp->len = len;
		udp->check = 0; /* IPv4: no checksum, allowed (RFC 768) */
	}
	sn_count(SN_C_DNS_FAST_ANSWER);
	/*
	 * Into the task's end of this veth, ingress to ingress: no second trip through the CPU's
	 * backlog. The frame came in addressed to the bridge (not this port), so the kernel took it
	 * for another host's: it is the task's own now.
	 */
	bpf_skb_change_type(skb, PACKET_HOST);
	return bpf_redirect_peer(ifindex, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
