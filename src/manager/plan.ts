// What a service needs written for it to match its spec, computed in full
// before anything is written: which tasks go, which new tasks come, on which
// nodes, with which addresses, and what does not fit.
import {freeAddressCount, freeAddresses, macForIp, placeTasks} from '../model/allocate.js'
import type {Network, NodeRecord, Service, Task} from '../model/types.js'

export type ClusterState = {nodes: NodeRecord[]; networks: Network[]; tasks: Task[]}

/** A network that has fewer free addresses than the service's new tasks need. */
export type Shortfall = {network: Network; need: number; free: number}

export type ServicePlan = {
  remove: Task[]
  /** Only tasks that fit: each has an address on every network of the service. */
  create: Task[]
  /** Empty when every slot the spec asks for got a task. */
  shortfalls: Shortfall[]
  /** Networks the service names that do not exist (any new task waits for them). */
  missingNetworks: string[]
}

export function planService(svc: Service, state: ClusterState, mint: {id: () => string; now: number}): ServicePlan {
  const live = state.nodes.filter((n) => n.state === 'ready')
  const placements = placeTasks(svc, live, state.tasks)
  const keep = new Set(placements.flatMap((p) => (p.taskId ? [p.taskId] : [])))
  const remove = state.tasks.filter((t) => t.serviceId === svc.id && !keep.has(t.id))
  const wanted = placements.filter((p) => !p.taskId)

  const removed = new Set(remove.map((t) => t.id))
  const byId = new Map(state.networks.map((n) => [n.id, n]))
  const missingNetworks = svc.networks.filter((id) => !byId.has(id))
  if (missingNetworks.length > 0) return {remove, create: [], shortfalls: [], missingNetworks}
  const nets = svc.networks.map((id) => byId.get(id)!)

  // Addresses in use stay in use, except those of the tasks this plan removes.
  const usedOn = (netId: string) =>
    new Set(
      state.tasks
        .filter((t) => !removed.has(t.id))
        .flatMap((t) => t.attachments.filter((a) => a.networkId === netId).map((a) => a.ip)),
    )
  const pools = nets.map((n) => {
    const used = usedOn(n.id)
    return {net: n, free: freeAddressCount(n.subnet, n.gateway, used), next: freeAddresses(n.subnet, n.gateway, used)}
  })
  const fits = Math.min(wanted.length, ...pools.map((p) => p.free))
  const shortfalls = pools.filter((p) => p.free < wanted.length).map((p) => ({network: p.net, need: wanted.length, free: p.free}))

  const create = wanted.slice(0, fits).map((p): Task => {
    const attachments = pools.map((pool) => {
      const ip = pool.next.next().value as string
      return {networkId: pool.net.id, ip, mac: macForIp(ip)}
    })
    return {
      id: mint.id(),
      serviceId: svc.id,
      serviceName: svc.name,
      slot: p.slot,
      nodeId: p.nodeId,
      desiredState: 'running',
      attachments,
      createdAt: mint.now,
    }
  })
  return {remove, create, shortfalls, missingNetworks}
}

/** One line for a plan that does not fit, naming each network that is short. */
export function describeShortfalls(svc: Pick<Service, 'name'>, shortfalls: Shortfall[]): string {
  const nets = shortfalls.map(
    (s) => `network ${s.network.name} (${s.network.subnet}) has ${s.free} free address${s.free === 1 ? '' : 'es'}`,
  )
  return `service ${svc.name} needs ${shortfalls[0]!.need} new task address${shortfalls[0]!.need === 1 ? '' : 'es'}, but ${nets.join(' and ')}`
}
