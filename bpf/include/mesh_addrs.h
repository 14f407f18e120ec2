/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The node's own IPv4 addresses that answer published ports: Docker's routing
 * mesh answers on every address of a node, not only the one it joined with.
 * The agent keeps this map equal to the node's addresses as they come and go
 * (src/dataplane/node-addrs.ts), except loopback's 127.0.0.0/8 and the gateway
 * bridge's (tasks reach no published port there, as before). The underlay
 * address needs no entry (the programs know it from their config).
 *   - XDP on the underlay (mesh_xdp.h): a request to any of them is the mesh's;
 *     its reply entry records the address, and the reply leaves from it.
 *   - sock_mesh.c: a node's own socket to any of them is sent to a target.
 * Shared by both objects (pinned by name), so this header holds the map alone.
 */
#ifndef SN_MESH_ADDRS_H
#define SN_MESH_ADDRS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define SN_MAX_MESH_ADDRS 1024

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_MESH_ADDRS);
	__type(key, __be32);        /* a local address of the node */
	__type(value, __u32);       /* flags: none yet, 0 */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_mesh_addrs SEC(".maps");

/* Is `addr` one of the node's addresses that answer published ports (besides the underlay one)? */
static __always_inline int sn_mesh_addr(__be32 addr)
{
	return bpf_map_lookup_elem(&sn_mesh_addrs, &addr) != NULL;
}

#endif
