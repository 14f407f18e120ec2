// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Preloaded into kxdpgun (knot-dnsutils) by the DNS bench (bench/kxdpgun.ts), built there with
 * clang-14: its libknot attaches its XDP program with libbpf's bpf_xdp_attach() and lets the
 * kernel pick the mode, which on a veth is the driver's (native) mode. The DNS fast path answers
 * with bpf_redirect_peer() into the task's device, and a frame redirected so enters the device's
 * receive path after its native XDP hook: native, kxdpgun would see dnsmasq's and the responder's
 * answers but none of the fast path's. In generic (skb) mode the program runs in the core's
 * receive path, which the peer-redirected answer goes through as well: so every attach here is
 * made generic (XDP_FLAGS_SKB_MODE, the AF_XDP socket then in copy mode), for all three servers.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/if_link.h>

struct bpf_xdp_attach_opts;
typedef int (*attach_fn)(int ifindex, int prog_fd, unsigned int flags, const struct bpf_xdp_attach_opts *opts);

int bpf_xdp_attach(int ifindex, int prog_fd, unsigned int flags, const struct bpf_xdp_attach_opts *opts)
{
	attach_fn real = (attach_fn)dlsym(RTLD_NEXT, "bpf_xdp_attach");

	if (!real)
		return -1;
	flags &= ~(XDP_FLAGS_DRV_MODE | XDP_FLAGS_HW_MODE);
	return real(ifindex, prog_fd, flags | XDP_FLAGS_SKB_MODE, opts);
}

/* libbpf's detach is an attach of no program: the same mode, or the kernel finds nothing to detach. */
int bpf_xdp_detach(int ifindex, unsigned int flags, const struct bpf_xdp_attach_opts *opts)
{
	return bpf_xdp_attach(ifindex, -1, flags, opts);
}
