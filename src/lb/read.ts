// Reads what `inspect lb` shows from a node's pins and state file (no agent needed).
import {existsSync} from 'node:fs'
import {join} from 'node:path'
import {stateDir} from '../sys/node-paths.js'
import {decodeEntry} from '../bpf/codecs.js'
import {readCounters} from '../bpf/counters.js'
import {BpfMap} from '../bpf/map.js'
import {layoutPinDir} from '../bpf/upgrade.js'
import {valueProblem} from '../model/shape.js'
import type {Network, NodeRecord, Service, Task} from '../model/types.js'
import {readDurableState} from '../store/durable.js'
import {lbView, type LbNames, type LbServiceView} from './inspect.js'

type LbMapName = 'sn_services' | 'sn_backends' | 'sn_ct' | 'sn_maglev'

export function readLb(node: string): LbServiceView[] {
  const dir = layoutPinDir(node)
  if (!existsSync(dir)) throw new Error(`node ${node} has no pinned maps (${dir} does not exist)`)
  const maps = {services: readMap(dir, 'sn_services'), backends: readMap(dir, 'sn_backends'), ct: readMap(dir, 'sn_ct')}
  return lbView(maps, readNames(node))
}

/**
 * How this node's flows to VIPs were balanced, since its data plane was made: at connect() by the
 * socket programs (bpf/sock_lb.c: connects, unconnected datagrams, sockets ended because their
 * backend left) and per packet by tc_task (new flows tracked, replies given their VIP back).
 */
export interface LbPaths {
  socket: {connects: number; sends: number; ended: number}
  tc: {newFlows: number; revNat: number; backendGone: number}
}

export function readLbPaths(node: string): LbPaths {
  const path = join(layoutPinDir(node), 'sn_stats')
  if (!existsSync(path)) throw new Error(`node ${node} has no pinned counters (${path} does not exist)`)
  const map = BpfMap.openPinned(path)
  try {
    const c = readCounters(map)
    return {
      socket: {connects: Number(c.sock_lb_connect), sends: Number(c.sock_lb_send), ended: Number(c.sock_lb_ended)},
      tc: {newFlows: Number(c.lb_new_flow), revNat: Number(c.lb_rev_nat), backendGone: Number(c.lb_backend_gone)},
    }
  } finally {
    map.close()
  }
}

/** One load-balancing map of a node, decoded (values as the data path reads them, not for display). */
export function readLbMap<N extends LbMapName>(node: string, name: N): ReturnType<typeof decodeEntry<N>>[] {
  const dir = layoutPinDir(node)
  if (!existsSync(dir)) throw new Error(`node ${node} has no pinned maps (${dir} does not exist)`)
  return readMap(dir, name)
}

function readMap<N extends LbMapName>(dir: string, name: N): ReturnType<typeof decodeEntry<N>>[] {
  const path = join(dir, name)
  if (!existsSync(path)) throw new Error(`map ${name} is not pinned in ${dir}: the node's data plane predates load balancing`)
  const map = BpfMap.openPinned(path)
  try {
    return map.entries().map(([k, v]) => decodeEntry(name, k, v))
  } finally {
    map.close()
  }
}

/** The node's own copy of the store, as its state file holds it; values of the wrong shape are left out as the store does. */
function readNames(node: string): LbNames {
  // Where openNodeStore keeps it.
  const dir = join(stateDir(node), 'store')
  const snap = readDurableState(dir)
  if (!snap) throw new Error(`node ${node} has no state file in ${dir}`)
  const names: LbNames = {services: [], networks: [], tasks: [], nodes: []}
  for (const e of snap.entries) {
    if (e.value === null || valueProblem(e.key, e.value) !== undefined) continue
    const kind = e.key.slice(0, e.key.indexOf('/'))
    if (kind === 'service') names.services.push(e.value as Service)
    else if (kind === 'network') names.networks.push(e.value as Network)
    else if (kind === 'task') names.tasks.push(e.value as Task)
    else if (kind === 'node') names.nodes.push(e.value as NodeRecord)
  }
  return names
}
