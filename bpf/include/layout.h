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

/*
 * The version of everything below. Maps are pinned under a folder named for it
 * (/sys/fs/bpf/swarmnet/<node>/v<N>/), so a new layout never meets the pins of
 * an old one: the agent creates the new maps, carries every old map over (a
 * converter per map and version in LAYOUT_STEPS, src/bpf/upgrade.ts) before it
 * swaps the programs, and removes the old pins. Bump it, with a step, on any
 * change of a key, a value, a map's type or size; a new counter is not one.
 * Version 1 is the layout before versioning, pinned straight in <node>/.
 */
#ifndef SN_LAYOUT_TEST_NEXT
#define SN_LAYOUT_VERSION 6
#else
/*
 * Test builds only (test/bpf/upgrade-next.test.ts): the next layout as the
 * upgrade test plays it, sn_ct and sn_mesh_ct values with a field in front.
 */
#define SN_LAYOUT_VERSION 7
#endif

/* One per node: what the programs need to know about the node itself. */
struct sn_config {
	__be32 node_ip;        /* the underlay address: outer source of VXLAN */
	__be16 vxlan_port;     /* the data-path port, 4789 unless init said otherwise */
	__u16 flags;           /* SN_CONFIG_* */
	__u32 underlay_ifindex;
	__u32 ct_udp_idle;     /* seconds a UDP flow through a VIP lives without a packet; 0: SN_CT_UDP_IDLE_DEFAULT */
	__u32 mesh_udp_idle;   /* the same for a UDP flow to a published port; 0: SN_MESH_UDP_IDLE_DEFAULT (mesh.h) */
};

#define SN_CONFIG_READY 0x1    /* the agent wrote the config: until then sn_get_config() gives NULL (maps.h) */

/* Every network the node knows, by VNI. An arriving VNI not in here is not ours. */
struct sn_network {
	__be32 subnet;
	__u8 prefix_len;
	__u8 flags;            /* SN_NET_* */
	__u16 mtu;             /* the network's MTU, the same on every node: the tasks' interfaces have it */
};

/* No network can be set below this (the IPv4 minimum every host must take whole). */
#define SN_MTU_MIN 576

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
#define SN_EP_VIP 0x2        /* a service VIP (bpf/include/lb.h): node_ip and ifindex are 0 */
#define SN_EP_BACKEND 0x4    /* a backend of some VIP: replies from it may need their VIP back */

/* The host-side device of a task attachment: which network it is on. */
struct sn_device {
	__u32 vni;
	__be32 ip;             /* the task's address on that network */
	__u32 flags;           /* SN_DEV_* */
};

#define SN_DEV_BACKEND 0x1     /* the task is a backend of some VIP: its replies to local clients may need their VIP back */

/*
 * Counters: slots of a per-CPU array, indexed by this enum (as Katran keeps
 * them), so adding a counter is a new name below SN_COUNTER_SLOTS, not a new
 * layout. src/bpf/counters.ts names them in the same order; a test holds the
 * two to each other through BTF.
 */
enum sn_counter {
	SN_C_XDP_PASS,            /* not ours: left to the kernel */
	SN_C_XDP_DECAP,           /* VXLAN decapsulated and redirected to a task */
	SN_C_XDP_NO_ENDPOINT,     /* our VNI, unknown inner destination: dropped */
	SN_C_XDP_MALFORMED,       /* our address and port, broken headers: dropped */
	SN_C_XDP_NOT_IPV4,        /* our VNI, an inner frame that is not IPv4: dropped */
	SN_C_XDP_BAD_SOURCE,      /* inner source not an endpoint of the outer source's node: dropped */
	SN_C_TC_LOCAL,            /* task to a task on this node */
	SN_C_TC_ENCAP,            /* task to a task on another node */
	SN_C_TC_ARP_REPLY,        /* ARP answered for a known endpoint */
	SN_C_TC_NO_ENDPOINT,      /* destination not on the task's network: dropped */
	SN_C_TC_DROP_OTHER,       /* not IPv4 or ARP, spoofed or malformed: dropped */
	SN_C_TC_UNKNOWN_DEVICE,   /* from a device not in sn_devices: dropped */
	SN_C_TC_ENCAP_FAIL,       /* no room to encapsulate, or no underlay: dropped */
	SN_C_TC_TOO_BIG,          /* larger than the network's MTU, DF clear or GSO: dropped */
	SN_C_TC_FRAG_NEEDED,      /* larger than the network's MTU with DF: ICMP sent back */
	SN_C_LB_NEW_FLOW,         /* to a VIP, no connection tracked: backend picked by Maglev */
	SN_C_LB_NO_BACKEND,       /* to a VIP with no service entry or no backends: dropped (TCP: RST) */
	SN_C_LB_BACKEND_GONE,     /* tracked flow whose backend left the set: entry removed, dropped (TCP: RST) */
	SN_C_LB_FRAGMENT,         /* an IP fragment to a VIP: dropped */
	SN_C_LB_ECHO,             /* ICMP echo to a VIP: answered */
	SN_C_LB_DROP_OTHER,       /* to a VIP: not TCP, UDP or echo, IP options, or no room in the tracking table */
	SN_C_LB_REV_NAT,          /* a reply given its VIP back as source */
	SN_C_MESH_NEW_FLOW,       /* to a published port, no flow tracked: a backend picked (or the host-mode task) */
	SN_C_MESH_LOCAL,          /* to a published port: DNAT and redirected into a task of this node */
	SN_C_MESH_REMOTE,         /* to a published port: DNAT and sent over the ingress network to the backend's node */
	SN_C_MESH_NO_BACKEND,     /* to a published port whose service has no running backend: dropped */
	SN_C_MESH_DECAP,          /* a request from an ingress node delivered to a backend here (flow recorded) */
	SN_C_MESH_REPLY,          /* a reply given the published address and port back, out of the underlay */
	SN_C_MESH_RETURN,         /* a reply sent back over the overlay to the node its request came in by */
	SN_C_MESH_FIB_FAIL,       /* no route or neighbour for a mesh packet out of the underlay (fallback MAC or dropped) */
	SN_C_MESH_DROP,           /* a mesh packet that could not be rewritten or tracked: dropped */
	SN_C_MESH_UNTRACKED,      /* from a task's ingress address to the outside, no flow tracked: dropped, never masqueraded */
	SN_C_DNS_FAST_ANSWER,     /* a task's A question answered by the DNS fast path (bpf/tc_dns.c) */
	SN_C_LB_CT_CLOSED,        /* a TCP flow's entries deleted by its close timer (FIN both ways, grace over) */
	SN_C_LB_CT_RESET,         /* a TCP flow's entries deleted at a RST */
	SN_C_LB_REV_NAT_ICMP,     /* an ICMP error from a backend given its VIP back (outer source and quoted destination) */
	SN_C_LB_HAIRPIN,          /* a packet of a flow whose client is its own backend: the VIP stands in as source */
	SN_C_LB_REPLY_RESTORED,   /* a tracked flow's reply entry was gone (LRU): written again from the forward one */
	SN_C_GW_NODE_PORT,        /* from a task to a node's data-path or gossip port: dropped (VXLAN injection) */
	SN_C_GW_SPOOFED,          /* from a task's gateway veth with a source that is none of the task's addresses: dropped */
	SN_C_MESH_NOT_SYN,        /* TCP to a published port, no flow tracked and not a SYN: left to the kernel (entries are made on SYN only) */
	SN_C_MESH_CT_RESET,       /* a mesh flow's entries deleted at a RST */
	SN_C_MESH_REPLY_RESTORED, /* a mesh flow's reply entry was gone (LRU): written again from the forward one */
	SN_C_LB_CT_EXPIRED,       /* a UDP flow through a VIP idle past its lifetime: its entries deleted, the packet a new flow */
	SN_C_PROBE_ANSWERED,      /* a data-path liveness probe with a good tag: answered (bpf/include/probe.h) */
	SN_C_PROBE_REFUSED,       /* a probe whose key id is unset or whose tag does not check: dropped */
	SN_C_MESH_FRAG_NEEDED,    /* to a published port, larger than the ingress network's MTU with DF: ICMP frag-needed sent back from the published address */
	SN_C_MESH_TOO_BIG,        /* the same without DF: dropped (nothing on the way can fragment it; the kernel has no socket for it) */
	SN_C_MESH_UNDERLAY_MTU,   /* as mesh_fib_fail, the FIB's answer being "larger than the route's MTU" (MACs it came with, or dropped) */
	SN_C_MESH_ICMP_TO_BACKEND,/* an ICMP error about a mesh reply given the backend back (quote and destination), sent where the flow's requests go */
	SN_C_MESH_ICMP_TO_CLIENT, /* an ICMP error from a backend about a client's request given the published address and port back */
	SN_C_MESH_CT_CLOSED,      /* a mesh TCP flow saw FIN both ways: its entries end after the close grace (mesh.h) */
	SN_C_MESH_CT_EXPIRED,     /* a mesh entry found past its lifetime (UDP idle, TCP closed past the grace): a missing one */
	/* Load balancing at connect() (bpf/sock_lb.c, bpf/sock_lb_end.c): no packet of these flows meets tc's LB. */
	SN_C_SOCK_LB_CONNECT,     /* a task's socket connected to a VIP: its destination set to a backend */
	SN_C_SOCK_LB_SEND,        /* a task's unconnected UDP datagram to a VIP: sent to a backend */
	SN_C_SOCK_LB_ENDED,       /* a connected socket whose backend left the VIP's set: ended (bpf_sock_destroy) */
	SN_C_XDP_ENCAP,           /* task to a task on another node, encapsulated in XDP on the task's veth (bpf/xdp_task.c) */
	SN_C__COUNT
};

#define SN_COUNTER_SLOTS 64
_Static_assert(SN_C__COUNT <= SN_COUNTER_SLOTS, "more counters than slots: raise SN_COUNTER_SLOTS (a layout change)");

/* The data path's liveness probe (probe.h): a key slot, valid only with SN_PROBE_KEY_SET (an unset slot is zeros, a key anyone knows). */
struct sn_probe_key {
	__u8 key[16];
	__u32 flags;
	__u32 pad;
};

#define SN_PROBE_KEY_SET 0x1

/* The rest, one header per part: VIPs, the routing mesh, the socket programs, the DNS fast path. */
#include "lb.h"
#include "layout_mesh.h"
#include "layout_sock.h"
#include "layout_dns.h"

#endif
