/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The DNS fast path's map keys and values (dns.h, bpf/tc_dns.c), defined here
 * once, as layout.h's are, and mirrored by src/bpf/codecs.ts (the codec test
 * compares the two through BTF).
 */
#ifndef SN_LAYOUT_DNS_H
#define SN_LAYOUT_DNS_H

#include <linux/types.h>

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

/*
 * The name a reverse (PTR) question for an address gets on one network (src/dns/names.ts: a VIP's
 * service name, a task's NAME.SLOT.TASKID, an attachment's name), wire format, lower case, root
 * label included, zero-padded. One longer than SN_DNS_PTR_MAX, or not a plain name, is there
 * marked SN_DNS_PASS: the slow path answers it, and a later network of the task cannot shadow it.
 */
#define SN_DNS_PTR_MAX 128

struct sn_dns_ptr_key {
	__u32 vni;
	__be32 ip;
};

struct sn_dns_ptr {
	__u32 len;             /* of name, bytes */
	__u32 flags;           /* SN_DNS_PASS */
	__u8 name[SN_DNS_PTR_MAX];
};

/* Keyed by the ifindex of a task's gateway-bridge device (host side): where its questions arrive. */
struct sn_dns_scope {
	__be32 resolver;       /* the node's gateway-bridge address: the task's nameserver */
	__u32 ttl;             /* of the answers, seconds */
	__u32 count;           /* vnis used */
	__u32 vnis[SN_DNS_MAX_NETS]; /* the task's networks, in the order the slow path looks in them */
};

#endif
