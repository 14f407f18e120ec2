// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup sock_addr hooks for the routing mesh from the node itself
 * (bpf/include/sock_mesh.h): connect4 and sendmsg4 send a node process's
 * socket for (127.0.0.0/8 or an address of the node, published port) to a target
 * of the port; recvmsg4 and getpeername4 give the process back the address
 * and port it used, so a UDP client sees its reply come from where it sent
 * and a TCP peer name is what it connected to. Every hook returns 1 (go on):
 * a socket that is not ours is never refused or changed.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "sock_mesh.h"

#define SN_SOCK_STREAM 1
#define SN_SOCK_DGRAM 2

static __always_inline struct sn_sock_config *sn_own_netns(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct sn_sock_config *cfg = bpf_map_lookup_elem(&sn_sock_config, &zero);

	if (!cfg || !cfg->netns_cookie || bpf_get_netns_cookie(ctx) != cfg->netns_cookie)
		return 0;
	return cfg;
}

static __always_inline void sn_sock_redirect(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct sn_sock_config *cfg = sn_own_netns(ctx);
	struct sn_sock_key pk = {};
	struct sn_sock_targets *t;
	struct sn_sock_rev_key rk = {};
	struct sn_sock_rev rev = {};
	struct sn_sock_rev *was;
	__be32 dst;
	__u32 i;

	if (!cfg)
		return;
	dst = ctx->user_ip4;
	if ((bpf_ntohl(dst) >> 24) != 127 && dst != cfg->node_ip && !sn_mesh_addr(dst))
		return;
	pk.port = (__be16)ctx->user_port;
	pk.proto = proto;
	t = bpf_map_lookup_elem(&sn_sock_targets, &pk);
	if (!t || !t->count)
		return;
	rk.cookie = bpf_get_socket_cookie(ctx);
	/* One target per socket: a UDP socket's datagrams all go the same way. */
	i = (__u32)rk.cookie % (t->count <= SN_SOCK_MAX_TARGETS ? t->count : SN_SOCK_MAX_TARGETS);
	/* i < 8 already; said again where clang cannot drop it, for the verifier. */
	asm volatile("%0 &= 7" : "+r"(i));
	rk.addr = t->to[i].addr;
	rk.port = t->to[i].port;
	rk.proto = proto;
	rev.addr = dst;
	rev.port = pk.port;
	/*
	 * An unconnected UDP socket comes here for every datagram, nearly always
	 * the same way: its entry is written only when missing or different (an
	 * LRU update allocates a new element, and may evict another when full).
	 */
	was = bpf_map_lookup_elem(&sn_sock_rev, &rk);
	if (!was || was->addr != rev.addr || was->port != rev.port)
		bpf_map_update_elem(&sn_sock_rev, &rk, &rev, BPF_ANY);
	ctx->user_ip4 = rk.addr;
	ctx->user_port = rk.port;
}

static __always_inline void sn_sock_restore(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct sn_sock_rev_key rk = {};
	struct sn_sock_rev *rev;

	if (!sn_own_netns(ctx))
		return;
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.addr = ctx->user_ip4;
	rk.port = (__be16)ctx->user_port;
	rk.proto = proto;
	rev = bpf_map_lookup_elem(&sn_sock_rev, &rk);
	if (!rev)
		return;
	ctx->user_ip4 = rev->addr;
	ctx->user_port = rev->port;
}

static __always_inline __u8 sn_sock_proto(struct bpf_sock_addr *ctx)
{
	return ctx->type == SN_SOCK_STREAM ? IPPROTO_TCP : ctx->type == SN_SOCK_DGRAM ? IPPROTO_UDP : 0;
}

SEC("cgroup/connect4")
int sn_sock_connect4(struct bpf_sock_addr *ctx)
{
	__u8 proto = sn_sock_proto(ctx);

	if (proto)
		sn_sock_redirect(ctx, proto);
	return 1;
}

SEC("cgroup/sendmsg4")
int sn_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	sn_sock_redirect(ctx, IPPROTO_UDP);
	return 1;
}

SEC("cgroup/recvmsg4")
int sn_sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	sn_sock_restore(ctx, IPPROTO_UDP);
	return 1;
}

SEC("cgroup/getpeername4")
int sn_sock_getpeername4(struct bpf_sock_addr *ctx)
{
	__u8 proto = sn_sock_proto(ctx);

	if (proto)
		sn_sock_restore(ctx, proto);
	return 1;
}

char _license[] SEC("license") = "Dual BSD/GPL";
