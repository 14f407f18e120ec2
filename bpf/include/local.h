/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Delivery to a task of this node: its endpoint (sn_endpoints, flagged
 * local, with the host side of its veth), and the frame handed to that
 * device with the task's MAC as destination. The same from tc (tc_task.c)
 * and from XDP (the routing mesh, mesh_xdp.h; VXLAN decapsulated,
 * xdp_underlay.c).
 */
#ifndef SN_LOCAL_H
#define SN_LOCAL_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"
#include "parse.h"

/* A task of this node on network `vni` at `ip`, with every flag of `flags` (SN_EP_LOCAL and more) and a device: NULL else. */
static __always_inline struct sn_endpoint *sn_local_endpoint(__u32 vni, __be32 ip, __u16 flags)
{
	struct sn_endpoint_key k = {.vni = vni, .ip = ip};
	struct sn_endpoint *ep = bpf_map_lookup_elem(&sn_endpoints, &k);

	if (!ep || (ep->flags & flags) != flags || !ep->ifindex)
		return NULL;
	return ep;
}

/*
 * The frame (its destination MAC at `h_dest`) into the task's device:
 * bpf_redirect's answer. XDP callers return XDP_REDIRECT themselves, a
 * constant the verifier can follow (mesh_xdp.h).
 */
static __always_inline long sn_deliver(__u8 *h_dest, const __u8 *mac, __u32 ifindex)
{
	sn_mac_copy(h_dest, mac);
	return bpf_redirect(ifindex, 0);
}

/*
 * The same from tc ingress (tc_task.c): straight into the ingress of the
 * task's side of its veth (bpf_redirect_peer), in the task's namespace. A
 * plain redirect transmits on the host side, which queues the frame for the
 * task side's NAPI (xdp_task_peer turns it on) and, for a GSO packet, has
 * veth's XDP path copy it into pages first: bench/task-device.ts measured
 * one TCP stream between two tasks of a node at 2.85x with this.
 */
static __always_inline long sn_deliver_peer(__u8 *h_dest, const __u8 *mac, __u32 ifindex)
{
	sn_mac_copy(h_dest, mac);
	return bpf_redirect_peer(ifindex, 0);
}

/*
 * A VXLAN frame for task `ep` decapsulated in XDP (xdp_underlay.c, and the
 * routing mesh's requests and errors to a backend here, mesh_xdp.h): its
 * inner frame, at `inner`, addressed to the task, the outer headers cut off,
 * and delivered as above. `counter`: what a delivery counts; `drop`: the
 * reason when the head cannot move. The verdict, a constant (XDP_REDIRECT
 * or XDP_DROP): the caller reads the packet no more.
 */
static __always_inline int sn_deliver_decap(struct xdp_md *ctx, struct ethhdr *inner, const struct sn_endpoint *ep,
					    __u32 counter, __u32 drop)
{
	void *data = (void *)(long)ctx->data;

	/* Addressed and its device named while the inner header is at hand; a redirect not returned is never done. */
	sn_deliver(inner->h_dest, ep->mac, ep->ifindex);
	if (bpf_xdp_adjust_head(ctx, (int)((void *)inner - data)))
		return sn_xdp_drop(drop);
	sn_count(counter);
	return XDP_REDIRECT;
}

#endif
