/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The data path's liveness probe, answered in XDP with no agent running
 * (src/dataplane/probe.ts sends it, src/membership uses the answer): a node
 * that answers has its link, its underlay address and its XDP program, which
 * is what its tasks' traffic needs, whatever its agent is doing.
 *
 * A probe is a UDP datagram to the node's data-path port whose payload is
 * not VXLAN (the I flag clear, so ordinary frames never get here):
 *
 *   [magic "SNLP" 4][version 1][type 1][key id 1][0 1][nonce 16][tag 8]
 *
 * tag = SipHash-2-4(key, outer source 4 | outer destination 4 | the first 8
 * bytes | nonce 16), the key the agent derived from the cluster key `key id`
 * names (sn_probe_keys). A request (type 1) whose tag checks is answered in
 * place: type 2, a tag of its own over the swapped addresses, addresses and
 * ports swapped, back out by XDP_TX. So only a holder of the cluster key can
 * make a node answer, and only the node (or another holder) can answer: a
 * reply cannot be forged for a node that is gone, nor replayed (the nonce is
 * the prober's, fresh each time). A request that does not check is dropped,
 * never answered; the answer is no larger than the request (no amplifier).
 */
#ifndef SN_PROBE_H
#define SN_PROBE_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"
#include "parse.h"

#define SN_PROBE_MAGIC 0x504c4e53 /* "SNLP" as it sits in memory, read as a little-endian __u32 */
#define SN_PROBE_VERSION 1
#define SN_PROBE_REQUEST 1
#define SN_PROBE_REPLY 2
#define SN_PROBE_KEYS 256 /* one slot per cluster key id (src/gossip/keyring.ts: 0-255) */

struct sn_probe {
	__u32 magic;
	__u8 version;
	__u8 type;
	__u8 key_id;
	__u8 zero;
	__u8 nonce[16];
	__u8 tag[8];
} __attribute__((packed));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SN_PROBE_KEYS);
	__type(key, __u32); /* the cluster key's id */
	__type(value, struct sn_probe_key);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_probe_keys SEC(".maps");

#define SN_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

#define SN_SIPROUND                                                                                        \
	do {                                                                                               \
		v0 += v1; v1 = SN_ROTL(v1, 13); v1 ^= v0; v0 = SN_ROTL(v0, 32);                            \
		v2 += v3; v3 = SN_ROTL(v3, 16); v3 ^= v2;                                                  \
		v0 += v3; v3 = SN_ROTL(v3, 21); v3 ^= v0;                                                  \
		v2 += v1; v1 = SN_ROTL(v1, 17); v1 ^= v2; v2 = SN_ROTL(v2, 32);                            \
	} while (0)

/* SipHash-2-4 of exactly 32 bytes (four little-endian words), as src/dataplane/siphash.ts. */
static __always_inline __u64 sn_siphash32(__u64 k0, __u64 k1, const __u64 m[4])
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
	__u64 b = (__u64)32 << 56;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		v3 ^= m[i];
		SN_SIPROUND;
		SN_SIPROUND;
		v0 ^= m[i];
	}
	v3 ^= b;
	SN_SIPROUND;
	SN_SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SN_SIPROUND;
	SN_SIPROUND;
	SN_SIPROUND;
	SN_SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* The tag of `p` sent from `src` to `dst` (the first 8 bytes of `p` as they are now). */
static __always_inline __u64 sn_probe_tag(const struct sn_probe_key *k, __be32 src, __be32 dst,
					  const struct sn_probe *p)
{
	__u64 m[4], k0, k1;

	__builtin_memcpy(&k0, k->key, 8);
	__builtin_memcpy(&k1, k->key + 8, 8);
	m[0] = (__u64)src | ((__u64)dst << 32);
	__builtin_memcpy(&m[1], p, 8);
	__builtin_memcpy(&m[2], p->nonce, 16);
	return sn_siphash32(k0, k1, m);
}

/*
 * A datagram to our address and data-path port that is not VXLAN: a probe to
 * answer (XDP_TX), or dropped. `udp` is in bounds, the outer IPv4 header plain.
 */
static __always_inline int sn_probe_answer(struct ethhdr *eth, struct iphdr *ip, struct udphdr *udp, void *end)
{
	struct sn_probe *p = (void *)(udp + 1);
	struct sn_probe_key *k;
	__u8 mac[6];
	__u32 key_id;
	__u64 tag, got;
	__be32 a;
	__be16 port;

	if (!sn_fits(p, end) || p->magic != SN_PROBE_MAGIC || p->version != SN_PROBE_VERSION ||
	    p->type != SN_PROBE_REQUEST || p->zero)
		return sn_xdp_drop(SN_C_XDP_MALFORMED);
	key_id = p->key_id;
	k = bpf_map_lookup_elem(&sn_probe_keys, &key_id);
	if (!k || !(k->flags & SN_PROBE_KEY_SET))
		return sn_xdp_drop(SN_C_PROBE_REFUSED);
	tag = sn_probe_tag(k, ip->saddr, ip->daddr, p);
	__builtin_memcpy(&got, p->tag, 8);
	if (tag != got)
		return sn_xdp_drop(SN_C_PROBE_REFUSED);

	/* The answer: type and tag, then every address swapped (the IPv4 checksum is a sum: unchanged). */
	p->type = SN_PROBE_REPLY;
	tag = sn_probe_tag(k, ip->daddr, ip->saddr, p);
	__builtin_memcpy(p->tag, &tag, 8);
	a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->check = 0; /* optional over IPv4 (RFC 768); the payload changed */
	sn_mac_copy(mac, eth->h_source);
	sn_mac_copy(eth->h_source, eth->h_dest);
	sn_mac_copy(eth->h_dest, mac);
	sn_count(SN_C_PROBE_ANSWERED);
	return XDP_TX;
}

#endif
