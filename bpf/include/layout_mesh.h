/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The routing mesh's map keys and values (its maps and code: mesh.h,
 * mesh_xdp.h, tc_gw.c), defined here once, as layout.h's are, and mirrored by
 * src/bpf/codecs.ts: the codec test compares the two through BTF.
 */
#ifndef SN_LAYOUT_MESH_H
#define SN_LAYOUT_MESH_H

#include <linux/types.h>

/* A published port: the port and protocol on the node's address. */
struct sn_mesh_port_key {
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct sn_mesh_port {
	__u32 vni;              /* ingress: the ingress network's VNI; host: 0 */
	__be32 addr;            /* ingress: the service's VIP on it; host: the local task's gateway-bridge address */
	__be16 target;          /* the port inside the task */
	__u8 mode;              /* SN_MESH_INGRESS or SN_MESH_HOST */
	__u8 flags;
	__u32 ifindex;          /* host: the host side of the task's gateway-bridge veth */
	__u8 mac[6];            /* host: the task's MAC on it */
	__u16 pad;
};

#define SN_MESH_INGRESS 1
#define SN_MESH_HOST 2

/* Per published port, per CPU: written by the programs only. */
struct sn_mesh_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

/*
 * Connection tracking of mesh flows (no VNI in the key: the mesh uses one
 * network, and the gateway-bridge program does not know a VNI).
 *   forward, on the ingress node: client -> node address:published => backend, its node
 *   reply, on the ingress node and on the backend's node: backend:target -> client
 *     => the address and port to give back, and the node that does so
 * A reply entry's src is the backend (its ingress address; in host mode its
 * gateway-bridge address): a task answers only for its own flows. A task may
 * answer from either of its addresses on the gateway veth (a UDP server bound
 * to 0.0.0.0 answers from the one its default route gives, the gateway
 * bridge's), so tc_gw looks the entry up by the packet's source and then by
 * the task's ingress address (sn_gateways names both). On the backend's node
 * its addr is the backend's ingress address, the source the reply is given
 * before it goes back; on the ingress node, the published address.
 */
struct sn_mesh_ct_key {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;               /* SN_CT_FORWARD or SN_CT_REPLY */
	__u16 pad;
};

struct sn_mesh_ct {
#ifdef SN_LAYOUT_TEST_NEXT
	__u64 test_next;        /* test builds only (layout.h) */
#endif
	__be32 addr;            /* forward: the backend; reply: the node address the client spoke to */
	__be32 node;            /* forward: the backend's node; reply: the node that does the reverse NAT */
	__be16 port;            /* forward: the target port; reply: the published port */
	__u16 pad;
	__u32 vni;              /* the network between the two nodes (0: host mode) */
	__u32 table;            /* forward: the Maglev table the backend was picked from */
	/*
	 * Milliseconds of the monotonic clock (wrapping): UDP, the last packet
	 * (written only once it moved by a step, sn_mesh_ct_touch); TCP, when
	 * the flow closed (SN_MESH_CT_CLOSING). Nothing writes it per TCP packet.
	 */
	__u32 seen;
	/*
	 * SN_MESH_CT_*. XDP (the client's side) and tc_gw (the backend's) both
	 * set bits of the same entry at once on different CPUs: only ever with an
	 * atomic or, never a plain read-modify-write that could lose the other's bit.
	 */
	__u64 flags;
	__u8 peer_mac[6];       /* reply, ingress node: the MAC the request came from (if the FIB has no neighbour) */
	__u8 own_mac[6];        /* reply, ingress node: the MAC it came to */
	__u32 pad2;
};

/* Flags of a reply entry (the one entry every node of a flow has). */
#define SN_MESH_CT_FIN_CLIENT 0x1  /* a FIN went by from the client */
#define SN_MESH_CT_FIN_BACKEND 0x2 /* a FIN went by from the backend */
#define SN_MESH_CT_CLOSING 0x4     /* FIN both ways: `seen` is when; the flow ends SN_MESH_CLOSE_GRACE_MS later */

/*
 * A node of the cluster, by underlay address: only these may hand us mesh
 * requests over VXLAN, and no task may send to their data-path or gossip port
 * (tc_gw.c).
 */
struct sn_mesh_node {
	__be16 gossip_port;     /* the node's gossip port (TCP and UDP) */
	__u16 flags;
};

/*
 * A task's gateway-bridge veth (host side), by ifindex: the addresses its
 * task may send from there (tc_gw.c drops any other source, so no task
 * answers for another task's flows).
 */
struct sn_gateway {
	__be32 gw_ip;           /* the task's gateway-bridge address */
	__be32 ingress_ip;      /* its address on the ingress network (mesh replies leave from it); 0: none */
};

/* What the mesh needs to know about the cluster: one entry. */
struct sn_mesh_config {
	__u32 ingress_vni;      /* the ingress network's VNI (0: none yet) */
	__u32 flags;
};

#endif
