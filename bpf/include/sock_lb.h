/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Load balancing at connect() for the node's tasks (bpf/sock_lb.c): a task's
 * socket that connects (TCP, UDP) or sends (unconnected UDP) to a service VIP
 * of a network the task is on gets its destination rewritten to a backend
 * picked from the VIP's Maglev table (lb.h), before the kernel routes it. Its
 * packets then carry the backend's address from the first one: tc_task sees
 * plain task-to-task traffic, with no translation and no tracking.
 *
 * The programs sit on the node's cgroup (every task's cgroup is below it) and
 * know a task by its cgroup id: sn_sock_lb_tasks says which networks that
 * task is on, so a task never reaches another network's VIP this way.
 * sn_sock_lb_rev remembers each rewritten socket (by socket cookie and where
 * it really goes) so recvmsg and getpeername show the VIP, and so the end
 * iterators (bpf/sock_lb_end.c) find the sockets whose backend left.
 *
 * New maps of their own (new pins, created by libbpf where missing), so no
 * layout change: an agent of this layout that finds them absent makes them.
 */
#ifndef SN_SOCK_LB_H
#define SN_SOCK_LB_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "layout.h" /* the maps' keys and values: layout_sock.h */

#define SN_MAX_SOCK_LB_TASKS 16384
#define SN_MAX_SOCK_LB_REV 131072

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_SOCK_LB_TASKS);
	__type(key, __u64);
	__type(value, struct sn_sock_lb_task);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_sock_lb_tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SN_MAX_SOCK_LB_REV);
	__type(key, struct sn_sock_lb_rev_key);
	__type(value, struct sn_sock_lb_rev);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_sock_lb_rev SEC(".maps");

#endif
