// Who writes each map of a node. One table for the two that act on it: the agent's reconciler
// (src/dataplane/desired.ts, mapsync.ts: which maps a sync rewrites, in which order) and the
// layout upgrade (./upgrade.ts: which old maps are refilled from the store and which hold state
// to migrate or drop). It sits here, beside the codecs, so src/bpf needs nothing of src/dataplane.

import type {MapName} from './codecs.js'

export type MapOwner = 'store' | 'datapath'
export type MapRule = 'mirror' | 'tables' | 'config' | 'none'

/**
 * Who writes each map of a node, and by which rule. 'store' maps are derived
 * from desired state by the agent's reconciler alone; 'datapath' maps are
 * written by the programs (counters, and the connection tracking to come) and
 * the reconciler never rewrites them, so a sync cannot wipe what the programs
 * learned.
 *   mirror: made to hold exactly the desired entries (stale keys deleted
 *           first, so a full map frees room before anything is inserted;
 *           except a backend that leaves, in sn_backends and sn_endpoints:
 *           deleted after sn_services flips to a table without it, so no
 *           table ever names a backend that is gone: mapsync.ts);
 *   tables: Maglev tables, immutable once written: a new one is written
 *           under a fresh id before sn_services points at it, and the ones no
 *           service points at are deleted after (so no moment without backends);
 *   config: one entry, set when the agent starts;
 *   none:   the agent only reads (and, for tables that grow, reclaims).
 * The order is the order a sync writes them in: a VIP's backend set
 * (sn_backends) is right before its service flips to a new table, so a
 * tracked flow checked against the set after the flip sees the new set.
 * Every map of the codecs' registry is here (the type checks it).
 */
export const MAP_OWNERSHIP = {
  sn_config: {owner: 'store', rule: 'config'},
  sn_networks: {owner: 'store', rule: 'mirror'},
  sn_endpoints: {owner: 'store', rule: 'mirror'},
  sn_devices: {owner: 'store', rule: 'mirror'},
  sn_backends: {owner: 'store', rule: 'mirror'},
  sn_maglev: {owner: 'store', rule: 'tables'},
  sn_services: {owner: 'store', rule: 'mirror'},
  sn_gateways: {owner: 'store', rule: 'mirror'},
  sn_mesh_ports: {owner: 'store', rule: 'mirror'},
  sn_mesh_nodes: {owner: 'store', rule: 'mirror'},
  // The node's own addresses (src/dataplane/node-addrs.ts), mirrored like the store-derived maps.
  sn_mesh_addrs: {owner: 'store', rule: 'mirror'},
  sn_mesh_config: {owner: 'store', rule: 'config'},
  sn_mesh_ct: {owner: 'datapath', rule: 'none'},
  sn_mesh_syn: {owner: 'datapath', rule: 'none'},
  sn_mesh_stats: {owner: 'datapath', rule: 'none'},
  sn_sock_targets: {owner: 'store', rule: 'mirror'},
  sn_sock_config: {owner: 'store', rule: 'config'},
  sn_sock_rev: {owner: 'datapath', rule: 'none'},
  sn_ct: {owner: 'datapath', rule: 'none'},
  sn_stats: {owner: 'datapath', rule: 'none'},
  sn_dns_names: {owner: 'store', rule: 'mirror'},
  sn_dns_ptrs: {owner: 'store', rule: 'mirror'},
  sn_dns_scopes: {owner: 'store', rule: 'mirror'},
  sn_probe_keys: {owner: 'store', rule: 'config'},
  // Load balancing at connect(): the node's tasks by cgroup id, written by src/dataplane/sock-lb.ts
  // from the tasks the store places here (ids the store cannot know); the sockets it rewrote.
  sn_sock_lb_tasks: {owner: 'store', rule: 'none'},
  sn_sock_lb_rev: {owner: 'datapath', rule: 'none'},
} as const satisfies Record<MapName, {owner: MapOwner; rule: MapRule}>
