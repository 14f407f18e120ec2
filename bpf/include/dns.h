/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The DNS fast path (bpf/tc_dns.c): the names it answers and who may ask.
 * Written by the agent's reconciler from the same name table the TypeScript
 * responder answers from (src/dns/names.ts, src/dns/fastpath.ts).
 */
#ifndef SN_DNS_H
#define SN_DNS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* A name as it is on the wire, lower case, its root label included, zero-padded: longer ones go to the slow path. */
#define SN_DNS_NAME_MAX 64
/* Addresses of one name the fast path gives; a name with more is answered by the slow path. */
#define SN_DNS_MAX_IPS 8
/* Networks of one task the fast path looks a name up in; a task on more asks the slow path. */
#define SN_DNS_MAX_NETS 8

struct sn_dns_key {
	__u32 vni;
	__u8 name[SN_DNS_NAME_MAX];
};

struct sn_dns_name {
	__be32 ips[SN_DNS_MAX_IPS];
	__u32 count;
	__u32 flags;           /* SN_DNS_* */
};

/* A name the slow path answers (more addresses than fit here): found here, so a later network cannot shadow it. */
#define SN_DNS_PASS 0x1
/* dnsrr's name: each answer starts at a random one of its addresses and goes round (Docker shuffles them). */
#define SN_DNS_ROTATE 0x2

/*
 * A name some network of the cluster has, under the key SN_DNS_VNI_KNOWN (no VNI is: they are
 * 24 bits): a task none of whose networks has it gets NXDOMAIN, as from the responder.
 */
#define SN_DNS_KNOWN 0x4
#define SN_DNS_VNI_KNOWN 0xffffffff

/* Keyed by the ifindex of a task's gateway-bridge device (host side): where its questions arrive. */
struct sn_dns_scope {
	__be32 resolver;       /* the node's gateway-bridge address: the task's nameserver */
	__u32 ttl;             /* of the answers, seconds */
	__u32 count;           /* vnis used */
	__u32 vnis[SN_DNS_MAX_NETS]; /* the task's networks, in the order the slow path looks in them */
};

#define SN_MAX_DNS_NAMES 65536
#define SN_MAX_DNS_SCOPES 16384

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_DNS_NAMES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sn_dns_key);
	__type(value, struct sn_dns_name);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_dns_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_DNS_SCOPES);
	__type(key, __u32);
	__type(value, struct sn_dns_scope);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_dns_scopes SEC(".maps");

#endif
