// Reads what `inspect lb` shows from a node's pins and state file (no agent needed).
import {existsSync} from 'node:fs'
import {join} from 'node:path'
import {stateDir} from '../agent/paths.js'
import {decodeEntry} from '../bpf/codecs.js'
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
