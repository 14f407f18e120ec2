/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The socket programs' map keys and values, defined here once, as layout.h's
 * are, and mirrored by src/bpf/codecs.ts (the codec test compares the two
 * through BTF): the routing mesh from the node itself (sock_mesh.h,
 * bpf/sock_mesh.c) and load balancing at connect() (sock_lb.h, bpf/sock_lb.c,
 * bpf/sock_lb_end.c).
 */
#ifndef SN_LAYOUT_SOCK_H
#define SN_LAYOUT_SOCK_H

#include <linux/types.h>

/* sock_mesh.h */

/* One entry: which namespace is this node's, and its address. */
struct sn_sock_config {
	__u64 netns_cookie;     /* 0: not set yet, every socket left alone */
	__be32 node_ip;         /* the underlay address (127.0.0.0/8 is always local) */
	__u32 flags;
};

#define SN_SOCK_MAX_TARGETS 8

struct sn_sock_target {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

/* A published port, as sn_mesh_ports has it (its own name: this object needs none of the XDP maps). */
struct sn_sock_key {
	__be16 port;
	__u8 proto;
	__u8 pad;
};

/* Per published port: where a node's own socket goes. */
struct sn_sock_targets {
	__u32 count;            /* 1..SN_SOCK_MAX_TARGETS */
	__u32 flags;
	struct sn_sock_target to[SN_SOCK_MAX_TARGETS];
};

/* A rewritten socket: what the process asked for, found by the socket and where it really goes. */
struct sn_sock_rev_key {
	__u64 cookie;           /* bpf_get_socket_cookie */
	__be32 addr;            /* the target */
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct sn_sock_rev {
	__be32 addr;            /* what the process used: 127.0.0.1 or the node's address */
	__be16 port;            /* the published port */
	__u16 pad;
};

/* sock_lb.h */

/* Networks per task the socket programs look at (more: those VIPs stay with tc). */
#define SN_SOCK_LB_NETS 8

struct sn_sock_lb_net {
	__u32 vni;
	__be32 ip;              /* the task's address on it: the source the flow hash uses, as tc's does */
};

/* Per task, keyed by its cgroup v2 id (__u64, the directory's inode number). */
struct sn_sock_lb_task {
	__u32 count;            /* 0..SN_SOCK_LB_NETS */
	__u32 flags;
	struct sn_sock_lb_net net[SN_SOCK_LB_NETS];
};

/* A rewritten socket: found by its cookie and the backend it really talks to. */
struct sn_sock_lb_rev_key {
	__u64 cookie;
	__be32 addr;            /* the backend */
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct sn_sock_lb_rev {
	__be32 vip;             /* what the task asked for */
	__be16 port;
	__u16 pad;
	__u32 vni;              /* the VIP's network: the end iterators check sn_backends with it */
};

#endif
