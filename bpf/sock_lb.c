// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Load balancing at connect() (bpf/include/sock_lb.h): cgroup sock_addr hooks
 * on the node's cgroup. connect4 and sendmsg4 send a task's socket for a VIP
 * of one of its networks to a backend of the VIP's Maglev table, picked with
 * tc's flow hash (nat.h) over the same inputs where they are known: the
 * task's address, the VIP, the ports and the protocol; a socket not bound yet
 * (TCP and UDP connect) has no source port, and its cookie stands in for it.
 * recvmsg4 and getpeername4 give the task back the VIP. Every hook returns 1
 * (go on): a socket that is not a task's, or an address that is no VIP of its
 * networks, is left alone, and what is left alone tc_task still balances.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "nat.h"
#include "sock_lb.h"

#define SN_SOCK_STREAM 1
#define SN_SOCK_DGRAM 2

static __always_inline __u8 sn_sock_lb_proto(struct bpf_sock_addr *ctx)
{
	return ctx->type == SN_SOCK_STREAM ? IPPROTO_TCP : ctx->type == SN_SOCK_DGRAM ? IPPROTO_UDP : 0;
}

/* Rewrite a task's destination VIP:port to a backend; `counter` counts it when done. */
static __always_inline void sn_sock_lb(struct bpf_sock_addr *ctx, __u8 proto, __u32 counter)
{
	__u64 cg = bpf_get_current_cgroup_id();
	struct sn_sock_lb_task *t = bpf_map_lookup_elem(&sn_sock_lb_tasks, &cg);
	struct sn_sock_lb_rev_key rk = {};
	struct sn_sock_lb_rev rev = {};
	struct sn_service_key sk;
	struct sn_maglev_key mk;
	struct sn_maglev_chunk *chunk;
	struct sn_service *svc = 0;
	struct bpf_sock *s;
	__be32 backend, src = 0;
	__be16 sport = 0;
	__u32 i, slot, vni = 0;

	if (!t)
		return;
	sk.vip = ctx->user_ip4;
	for (i = 0; i < SN_SOCK_LB_NETS; i++) {
		if (i >= t->count)
			return;
		sk.vni = t->net[i].vni;
		svc = bpf_map_lookup_elem(&sn_services, &sk);
		if (svc) {
			vni = sk.vni;
			src = t->net[i].ip;
			break;
		}
	}
	/* No backend: left to tc, which refuses it as it always has (TCP: RST). */
	if (!svc || !svc->count || !svc->size)
		return;
	rk.cookie = bpf_get_socket_cookie(ctx);
	s = ctx->sk;
	if (s && s->src_port)
		sport = bpf_htons((__u16)s->src_port);
	else
		sport = (__be16)(rk.cookie ^ (rk.cookie >> 16) ^ (rk.cookie >> 32) ^ (rk.cookie >> 48));
	slot = sn_lb_hash(src, sk.vip, sport, (__be16)ctx->user_port, proto) % svc->size;
	mk.table = svc->table;
	mk.chunk = slot / SN_MAGLEV_CHUNK;
	chunk = bpf_map_lookup_elem(&sn_maglev, &mk);
	if (!chunk)
		return;
	backend = chunk->backend[slot & (SN_MAGLEV_CHUNK - 1)];
	if (!backend)
		return;
	rk.addr = backend;
	rk.port = (__be16)ctx->user_port;
	rk.proto = proto;
	/* A busy unconnected socket sends to the same backend again and again: written once. */
	if (!bpf_map_lookup_elem(&sn_sock_lb_rev, &rk)) {
		rev.vip = sk.vip;
		rev.port = rk.port;
		rev.vni = vni;
		/* Without its entry the task would see replies from an address it never used: not rewritten. */
		if (bpf_map_update_elem(&sn_sock_lb_rev, &rk, &rev, BPF_ANY))
			return;
	}
	ctx->user_ip4 = backend;
	sn_count(counter);
}

static __always_inline void sn_sock_lb_restore(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct sn_sock_lb_rev_key rk = {};
	struct sn_sock_lb_rev *rev;

	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.addr = ctx->user_ip4;
	rk.port = (__be16)ctx->user_port;
	rk.proto = proto;
	rev = bpf_map_lookup_elem(&sn_sock_lb_rev, &rk);
	if (!rev)
		return;
	ctx->user_ip4 = rev->vip;
	ctx->user_port = rev->port;
}

SEC("cgroup/connect4")
int sn_sock_lb_connect4(struct bpf_sock_addr *ctx)
{
	__u8 proto = sn_sock_lb_proto(ctx);

	if (proto)
		sn_sock_lb(ctx, proto, SN_C_SOCK_LB_CONNECT);
	return 1;
}

SEC("cgroup/sendmsg4")
int sn_sock_lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	sn_sock_lb(ctx, IPPROTO_UDP, SN_C_SOCK_LB_SEND);
	return 1;
}

SEC("cgroup/recvmsg4")
int sn_sock_lb_recvmsg4(struct bpf_sock_addr *ctx)
{
	sn_sock_lb_restore(ctx, IPPROTO_UDP);
	return 1;
}

SEC("cgroup/getpeername4")
int sn_sock_lb_getpeername4(struct bpf_sock_addr *ctx)
{
	__u8 proto = sn_sock_lb_proto(ctx);

	if (proto)
		sn_sock_lb_restore(ctx, proto);
	return 1;
}

char _license[] SEC("license") = "Dual BSD/GPL";
