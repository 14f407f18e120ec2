/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Service VIPs: the keys and values of the load-balancing maps, shared with
 * the codecs (src/bpf/codecs.ts) as layout.h's are.
 *
 * A VIP is also an entry of sn_endpoints (flag SN_EP_VIP, with its MAC for
 * ARP), so the plain path pays nothing for it: only a frame whose endpoint
 * lookup finds a VIP goes on to sn_services. Backends are picked by Maglev:
 * each service points at one table of sn_maglev by a table id; the agent
 * writes a new table under a fresh id and only then flips the service's
 * value to it (one map update), so a service never has a moment without
 * backends. Table ids are derived from the table's contents, so a table
 * that did not change is never rewritten.
 */
#ifndef SN_LB_H
#define SN_LB_H

#include <linux/types.h>
#include <linux/bpf.h>

/* A VIP on one network: the VNI and the address (every port: the target port is the same port). */
struct sn_service_key {
	__u32 vni;
	__be32 vip;
};

struct sn_service {
	__u32 table;            /* id of the Maglev table in sn_maglev */
	__u32 size;             /* its slots: a prime (src/lb/maglev.ts) */
	__u16 count;            /* backends in it; 0: new flows are refused */
	__u16 flags;            /* SN_SVC_* (none yet) */
};

/* Slots of one value of sn_maglev: a table of size M is ceil(M / 256) entries. */
#define SN_MAGLEV_CHUNK 256

struct sn_maglev_key {
	__u32 table;
	__u32 chunk;            /* slot / SN_MAGLEV_CHUNK */
};

struct sn_maglev_chunk {
	__be32 backend[SN_MAGLEV_CHUNK]; /* the backend's address on the service's network */
};

/* The backend set of a VIP: what a connection-tracking hit is checked against once the table changed. */
struct sn_backend_key {
	__u32 vni;
	__be32 vip;
	__be32 ip;
};

struct sn_backend {
	__be32 node_ip;         /* the node that runs it */
	__u32 flags;            /* SN_BE_* (none yet) */
};

/*
 * Connection tracking, written and ended by the programs only (RST at once,
 * FIN both ways after a grace, UDP when idle, else LRU eviction); the agent
 * only reads it (metrics, inspect) and carries it over to a new layout. A flow to a VIP has two entries: the forward one (client to VIP,
 * naming the backend) and the reply one (backend to client, naming the VIP),
 * which the path that delivers replies to the client uses to put the VIP back
 * as their source. Both live on the client's node.
 */
struct sn_ct_key {
	__u32 vni;
	__be32 src;             /* forward: the client; reply: the backend */
	__be32 dst;             /* forward: the VIP; reply: the client */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;               /* SN_CT_FORWARD or SN_CT_REPLY */
	__u16 pad;
};

#define SN_CT_FORWARD 0
#define SN_CT_REPLY 1

struct sn_ct {
#ifdef SN_LAYOUT_TEST_NEXT
	__u64 test_next;        /* test builds only (layout.h) */
#endif
	__be32 addr;            /* forward: the backend; reply: the VIP */
	__u32 table;            /* forward: the table the backend was picked from (a later table is checked against sn_backends) */
	__u32 flags;            /* SN_CT_* */
	__u32 seen;             /* UDP: the last packet either way, in seconds of the monotonic clock (idle lifetime) */
	/*
	 * Forward entries only: armed when the connection has ended (FIN both
	 * ways), it deletes both entries after a grace (SN_CT_CLOSE_GRACE_NS in
	 * nat.h). Nothing else ever arms it: an open TCP connection has no
	 * expiry; a UDP flow ends when idle (`seen`, looked at when used).
	 */
	struct bpf_timer close;
};

#define SN_CT_SEEN_FIN 0x1      /* forward: closing (FIN both ways): reclaimed after the grace */
#define SN_CT_FIN_CLIENT 0x2    /* forward: a FIN went by from the client */
#define SN_CT_FIN_BACKEND 0x4   /* forward: a FIN went by from the backend */
#define SN_CT_HAIRPIN 0x8       /* the client is its own backend: the VIP stands in for it as source (both entries) */

#endif
