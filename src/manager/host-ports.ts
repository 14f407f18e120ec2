// The placement rule of host-mode published ports, as Swarm's host-port filter has it: a node
// answers a host-mode port with the one task of it there, so two tasks holding the same
// (published, protocol) in host mode never share a node, whichever services they belong to.
// Tasks that no node may take are left unplaced (Swarm leaves them pending); a request that
// would leave any unplaced is refused before anything is written (see manager.ts).
import type {PlacementRule} from '../model/allocate.js'
import {hostPortKeys} from '../model/publish.js'
import type {NodeRecord, Service, Task} from '../model/types.js'

/** How many of a service's tasks the rule leaves without a node, and why. */
export type HostPortShort = {
  want: number
  placed: number
  /** The service's host-mode ports, as 8080/tcp. */
  ports: string[]
  liveNodes: number
  /** Nodes where another service's task holds one of those ports. */
  heldBy: {node: string; service: string; port: string}[]
}

export type HostPortRule = {
  rule: PlacementRule
  short(placed: number, liveNodes: number): HostPortShort | undefined
}

export function hostPortRule(
  svc: Pick<Service, 'id' | 'mode' | 'ports'>,
  state: {tasks: Pick<Task, 'serviceId' | 'nodeId' | 'desiredState'>[]; services: Service[]; nodes: NodeRecord[]},
): HostPortRule | undefined {
  const keys = hostPortKeys(svc)
  if (keys.size === 0) return undefined
  const byId = new Map(state.services.filter((s) => s.id !== svc.id).map((s) => [s.id, s]))
  const names = new Map(state.nodes.map((n) => [n.id, n.name]))
  const heldBy: HostPortShort['heldBy'] = []
  const blocked = new Set<string>()
  for (const t of state.tasks) {
    // A task being stopped still holds its port until its node has stopped it.
    const other = byId.get(t.serviceId)
    if (!other || blocked.has(t.nodeId)) continue
    const clash = [...hostPortKeys(other)].find((k) => keys.has(k))
    if (!clash) continue
    blocked.add(t.nodeId)
    heldBy.push({node: names.get(t.nodeId) ?? t.nodeId, service: other.name, port: clash})
  }
  return {
    rule: {onePerNode: true, blocked},
    short(placed, liveNodes) {
      const want = 'global' in svc.mode ? liveNodes : svc.mode.replicas
      if (placed >= want) return undefined
      return {want, placed, ports: [...keys], liveNodes, heldBy: heldBy.sort((a, b) => (a.node < b.node ? -1 : 1))}
    },
  }
}

/** One line: which ports, how many tasks fit, and what holds the nodes that cannot take one. */
export function describeHostPortShort(svc: Pick<Service, 'name'>, s: HostPortShort): string {
  const ports = s.ports.join(', ')
  const held = s.heldBy.map((h) => `on ${h.node} service ${h.service} holds ${h.port}`).join('; ')
  return (
    `service ${svc.name}: host-mode port${s.ports.length > 1 ? 's' : ''} ${ports} take${s.ports.length > 1 ? '' : 's'} ` +
    `one task per node: only ${s.placed} of ${s.want} task${s.want === 1 ? '' : 's'} can be placed ` +
    `(${s.liveNodes} live node${s.liveNodes === 1 ? '' : 's'}${held ? `; ${held}` : ''})`
  )
}
