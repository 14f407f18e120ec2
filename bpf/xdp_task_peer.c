// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP on the task's side of its veth, passing everything. A frame that the
 * underlay program redirects into a veth is only delivered when the veth's
 * far end runs NAPI, and an attached XDP program is what turns NAPI on.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int sn_xdp_task_peer(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
