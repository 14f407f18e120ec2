// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The end of sockets whose backend left (bpf/include/sock_lb.h): iterators
 * over a network namespace's TCP and UDP sockets that end, with
 * bpf_sock_destroy (Linux 6.5+), every socket the connect() load balancer
 * sent to a backend no longer in its VIP's set (sn_backends). The client
 * sees ECONNABORTED at once, as if the backend had reset it, not a hang until
 * its own timeout. The agent runs them in each task's namespace when a
 * backend leaves; a kernel without the kfunc refuses this object, and the
 * agent falls back to tc (a TCP segment to a gone backend is reset there).
 *
 * The kernel's own types, with only the fields used: CO-RE (libbpf, the
 * kernel's BTF) finds them where this kernel has them.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"
#include "sock_lb.h"

#define SN_AF_INET 2
#define SN_TCP_TIME_WAIT 6
#define SN_TCP_LISTEN 10
#define SN_TCP_NEW_SYN_RECV 12

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	volatile unsigned char skc_state;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct udp_sock;
struct bpf_iter_meta;

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
} __attribute__((preserve_access_index));

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* 1 when `skc` (to daddr:dport) was sent by us to a backend that is no longer in its VIP's set. */
static __always_inline int sn_sock_lb_gone(struct sock_common *skc, __u8 proto)
{
	struct sn_sock_lb_rev_key rk = {};
	struct sn_sock_lb_rev *rev;
	struct sn_backend_key bk;

	rk.cookie = bpf_get_socket_cookie(skc);
	rk.addr = skc->skc_daddr;
	rk.port = skc->skc_dport;
	rk.proto = proto;
	rev = bpf_map_lookup_elem(&sn_sock_lb_rev, &rk);
	if (!rev)
		return 0;
	bk.vni = rev->vni;
	bk.vip = rev->vip;
	bk.ip = rk.addr;
	return !bpf_map_lookup_elem(&sn_backends, &bk);
}

SEC("iter/tcp")
int sn_sock_lb_end_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	unsigned char state;

	if (!skc || skc->skc_family != SN_AF_INET)
		return 0;
	state = skc->skc_state;
	/* Only full sockets: a time-wait or request socket has nothing to end. */
	if (state == SN_TCP_TIME_WAIT || state == SN_TCP_NEW_SYN_RECV || state == SN_TCP_LISTEN)
		return 0;
	if (sn_sock_lb_gone(skc, IPPROTO_TCP) && !bpf_sock_destroy(skc))
		sn_count(SN_C_SOCK_LB_ENDED);
	return 0;
}

SEC("iter/udp")
int sn_sock_lb_end_udp(struct bpf_iter__udp *ctx)
{
	struct sock_common *skc = (struct sock_common *)ctx->udp_sk;

	if (!skc || skc->skc_family != SN_AF_INET || !skc->skc_dport)
		return 0;
	if (sn_sock_lb_gone(skc, IPPROTO_UDP) && !bpf_sock_destroy(skc))
		sn_count(SN_C_SOCK_LB_ENDED);
	return 0;
}

char _license[] SEC("license") = "Dual BSD/GPL";
