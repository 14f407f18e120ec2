/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The keys and values of every swarmnet map: the one definition that the C
 * programs and the TypeScript codecs (src/bpf/codecs.ts) share. A test reads
 * these structs back from the compiled objects' BTF and fails when a codec
 * disagrees with them, so change both together.
 *
 * Addresses and ports are kept in network byte order, as they sit in the
 * packet, so the hot path never swaps bytes.
 */
#ifndef SN_LAYOUT_H
#define SN_LAYOUT_H

#include <linux/types.h>

/* One per node: what the programs need to know about the node itself. */
struct sn_config {
	__be32 node_ip;        /* the underlay address: outer source of VXLAN */
	__be16 vxlan_port;     /* the data-path port, 4789 unless init said otherwise */
	__u16 flags;           /* SN_CONFIG_* */
	__u32 underlay_ifindex;
	__u32 mtu;             /* underlay MTU; tasks get mtu - 50 */
};

#define SN_CONFIG_READY 0x1

/* Every network the node knows, by VNI. An arriving VNI not in here is not ours. */
struct sn_network {
	__be32 subnet;
	__u8 prefix_len;
	__u8 flags;            /* SN_NET_* */
	__u16 pad;
};

#define SN_NET_INGRESS 0x1

/* An endpoint is one task's address on one network. */
struct sn_endpoint_key {
	__u32 vni;
	__be32 ip;
};

struct sn_endpoint {
	__be32 node_ip;        /* the VTEP that owns it: this node's own address when local */
	__u32 ifindex;         /* host-side device of a local task, 0 for a remote one */
	__u8 mac[6];           /* the task's interface MAC */
	__u16 flags;           /* SN_EP_* */
};

#define SN_EP_LOCAL 0x1

/* The host-side device of a task attachment: which network it is on. */
struct sn_device {
	__u32 vni;
	__be32 ip;             /* the task's address on that network */
};

/*
 * Counters: the one value of a per-CPU array, one field per outcome, so that
 * BTF (and so bpftool and `swarmnet inspect maps`) names every counter.
 */
struct sn_stats {
	__u64 xdp_pass;            /* not ours: left to the kernel */
	__u64 xdp_decap;           /* VXLAN decapsulated and redirected to a task */
	__u64 xdp_no_endpoint;     /* our VNI, unknown inner destination: dropped */
	__u64 xdp_malformed;       /* our address and port, broken headers: dropped */
	__u64 tc_local;            /* task to a task on this node */
	__u64 tc_encap;            /* task to a task on another node */
	__u64 tc_arp_reply;        /* ARP answered for a known endpoint */
	__u64 tc_no_endpoint;      /* destination not on the task's network: dropped */
	__u64 tc_drop_other;       /* not IPv4 or ARP, spoofed or malformed: dropped */
	__u64 tc_pass;             /* device not managed by swarmnet: left alone */
	__u64 tc_encap_fail;       /* no room to encapsulate, or no underlay: dropped */
};

#endif
