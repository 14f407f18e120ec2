// What the BPF maps of one node should hold, derived from the store alone
// (plus the ifindexes of the node's own task devices). Pure, so the
// reconciler's whole decision is testable without a kernel.
import {taskMtu} from '../model/allocate.js'
import type {Network, NodeRecord, Task} from '../model/types.js'

/** A local attachment: the host-side device the task runner made for (task, network). */
export interface LocalAttachment {
  taskId: string
  networkId: string
  hostIfindex: number
}

export interface DesiredEndpoint {
  vni: number
  ip: string
  nodeIp: string
  ifindex: number
  mac: string
  local: boolean
}

export interface DesiredMaps {
  networks: Map<number, {subnet: string; prefixLen: number; ingress: boolean; mtu: number}>
  /** keyed by `${vni}/${ip}` */
  endpoints: Map<string, DesiredEndpoint>
  /** keyed by host-side ifindex */
  devices: Map<number, {vni: number; ip: string}>
}

export interface ClusterView {
  selfId: string
  nodes: NodeRecord[]
  networks: Network[]
  tasks: Task[]
  local: LocalAttachment[]
}

export function desiredMaps(v: ClusterView): DesiredMaps {
  const out: DesiredMaps = {networks: new Map(), endpoints: new Map(), devices: new Map()}
  const netById = new Map(v.networks.filter((n) => n.driver === 'overlay' && n.vni !== undefined).map((n) => [n.id, n]))
  const nodeById = new Map(v.nodes.filter((n) => n.state !== 'left').map((n) => [n.id, n]))
  const localIf = new Map(v.local.map((a) => [`${a.taskId}/${a.networkId}`, a.hostIfindex]))

  for (const n of netById.values()) {
    const [subnet, len] = n.subnet.split('/')
    out.networks.set(n.vni!, {subnet: subnet!, prefixLen: Number(len), ingress: n.ingress, mtu: taskMtu(n)})
  }
  for (const t of v.tasks) {
    if (t.desiredState !== 'running') continue
    const owner = nodeById.get(t.nodeId)
    if (!owner) continue
    for (const a of t.attachments) {
      const net = netById.get(a.networkId)
      if (!net) continue
      const isLocal = t.nodeId === v.selfId
      const ifindex = isLocal ? localIf.get(`${t.id}/${a.networkId}`) : 0
      // A local task whose device does not exist yet has no endpoint here until it does.
      if (isLocal && !ifindex) continue
      out.endpoints.set(`${net.vni}/${a.ip}`, {
        vni: net.vni!,
        ip: a.ip,
        nodeIp: owner.addr,
        ifindex: ifindex ?? 0,
        mac: a.mac,
        local: isLocal,
      })
      if (isLocal) out.devices.set(ifindex!, {vni: net.vni!, ip: a.ip})
    }
  }
  return out
}
