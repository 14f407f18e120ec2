/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The routing mesh from the node itself (bpf/sock_mesh.c): a node's own
 * process that connects (TCP) or sends (UDP) to a published port on 127.0.0.1
 * or any of the node's addresses (mesh_addrs.h) never meets XDP on the underlay, so the socket's
 * destination is rewritten before the kernel routes it, in cgroup sock_addr
 * hooks on the cgroup2 root, to one of the port's targets:
 *   - a task of the service on this node: its gateway-bridge address and the
 *     target port (the bridge is on this node's namespace: a plain route);
 *   - otherwise another node running a task: its underlay address and the
 *     published port, which its XDP answers as for any client.
 * The lab's nodes share one host's cgroups, so every node's programs run for
 * every process on the host: each acts only in the network namespace whose
 * cookie the agent wrote in sn_sock_config.
 */
#ifndef SN_SOCK_MESH_H
#define SN_SOCK_MESH_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "mesh_addrs.h"
#include "layout.h" /* the maps' keys and values: layout_sock.h */

#define SN_MAX_SOCK_REV 65536
#define SN_MAX_SOCK_PORTS 4096

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sn_sock_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_sock_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_SOCK_PORTS);
	__type(key, struct sn_sock_key);
	__type(value, struct sn_sock_targets);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_sock_targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SN_MAX_SOCK_REV);
	__type(key, struct sn_sock_rev_key);
	__type(value, struct sn_sock_rev);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_sock_rev SEC(".maps");


#endif
