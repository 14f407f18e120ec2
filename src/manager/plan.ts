// What a service needs written for it to match its spec, computed in full
// before anything is written: its VIPs, which tasks go, which new tasks come,
// on which nodes, with which addresses, and what does not fit.
import {freeAddressCount, freeAddresses, macForIp, placeTasks} from '../model/allocate.js'
import {hostPortRule, type HostPortShort} from './host-ports.js'
import {NOBODY_DOWN, type MembershipView} from '../membership/view.js'
import type {Network, NodeRecord, Service, ServiceVip, Task, TaskStatus} from '../model/types.js'

export type ClusterState = {
  nodes: NodeRecord[]
  networks: Network[]
  tasks: Task[]
  services: Service[]
  /** Who is declared down now (src/membership/); nobody when absent. */
  membership?: MembershipView
  /** What the nodes report of their tasks: a retired task goes once its node says it no longer runs. */
  statuses?: Map<string, TaskStatus>
}

/** A network that has fewer free addresses than the service's new tasks (and its new VIP) need. */
export type Shortfall = {network: Network; need: number; free: number; vip: boolean}

export type ServicePlan = {
  remove: Task[]
  /**
   * Replicated tasks of a node declared down, replaced elsewhere: kept as 'shutdown', so their
   * addresses stay taken until the node is back and has stopped them (no address used twice).
   */
  retire: Task[]
  /** Only tasks that fit: each has an address on every network of the service. */
  create: Task[]
  /** Empty when every slot the spec asks for got a task. */
  shortfalls: Shortfall[]
  /** Networks the service names that do not exist (any new task waits for them). */
  missingNetworks: string[]
  /** The service's VIPs when they differ from what it holds (a new VIP, or one for a network it left). */
  vips?: ServiceVip[]
  /** Tasks no node may take because of the service's host-mode ports (left unplaced, as Swarm leaves them pending). */
  hostPortShort?: HostPortShort
}

/** Absent is vip, as in Docker. */
export const endpointModeOf = (svc: Pick<Service, 'endpointMode'>) => svc.endpointMode ?? 'vip'

export function planService(svc: Service, state: ClusterState, mint: {id: () => string; now: number}): ServicePlan {
  const view = state.membership ?? NOBODY_DOWN
  const members = new Set(state.nodes.filter((n) => n.state === 'ready').map((n) => n.id))
  const live = state.nodes.filter((n) => members.has(n.id) && !view.isDown(n.id))
  // A task without an address on one of the service's networks (the ingress network, added
  // when the service got its first ingress port) is replaced by one that has them all.
  const stale = new Set(
    state.tasks
      .filter((t) => t.serviceId === svc.id && !svc.networks.every((id) => t.attachments.some((a) => a.networkId === id)))
      .map((t) => t.id),
  )
  const hostRule = hostPortRule(svc, state)
  const placements = placeTasks(
    svc,
    live,
    state.tasks.filter((t) => !stale.has(t.id)),
    hostRule?.rule,
  )
  const keep = new Set(placements.flatMap((p) => (p.taskId ? [p.taskId] : [])))
  const remove: Task[] = []
  const retire: Task[] = []
  for (const t of state.tasks) {
    if (t.serviceId !== svc.id || keep.has(t.id)) continue
    const down = members.has(t.nodeId) && view.isDown(t.nodeId)
    if (t.desiredState === 'running' && down) {
      // A global task belongs to its node: it waits for the node rather than moving.
      if (!('global' in svc.mode)) retire.push({...t, desiredState: 'shutdown'})
      continue
    }
    if (t.desiredState === 'shutdown' && members.has(t.nodeId)) {
      const st = state.statuses?.get(t.id)
      // Its node may still run it: it is down, or back and not done stopping it yet.
      if (down || (st && (st.state === 'running' || st.state === 'starting'))) continue
    }
    remove.push(t)
  }
  const wanted = placements.filter((p) => !p.taskId)

  // A replaced task's addresses stay taken in this pass: its node may not have stopped it yet.
  const removed = new Set(remove.filter((t) => !stale.has(t.id)).map((t) => t.id))
  const hostPortShort = hostRule?.short(placements.length, live.length)
  const byId = new Map(state.networks.map((n) => [n.id, n]))
  const missingNetworks = svc.networks.filter((id) => !byId.has(id))
  if (missingNetworks.length > 0)
    return {remove, retire, create: [], shortfalls: [], missingNetworks, ...(hostPortShort ? {hostPortShort} : {})}
  const nets = svc.networks.map((id) => byId.get(id)!)

  // Addresses in use stay in use, except those of the tasks this plan removes.
  // VIPs come from the same pool as task addresses, so the two never collide.
  const vipMode = endpointModeOf(svc) === 'vip'
  const kept = new Map((vipMode ? (svc.vips ?? []) : []).filter((v) => byId.has(v.networkId)).map((v) => [v.networkId, v]))
  const usedOn = (netId: string) =>
    new Set([
      ...state.tasks
        .filter((t) => !removed.has(t.id))
        .flatMap((t) => t.attachments.filter((a) => a.networkId === netId).map((a) => a.ip)),
      ...state.services
        .filter((o) => o.id !== svc.id)
        .flatMap((o) => (o.vips ?? []).filter((v) => v.networkId === netId).map((v) => v.ip)),
      ...(kept.has(netId) ? [kept.get(netId)!.ip] : []),
    ])
  const pools = nets.map((n) => {
    const used = usedOn(n.id)
    return {
      net: n,
      vip: vipMode && !kept.has(n.id),
      free: freeAddressCount(n.subnet, n.gateway, used),
      next: freeAddresses(n.subnet, n.gateway, used),
    }
  })
  // A VIP first: a service in vip mode is reached only through it.
  const vips: ServiceVip[] = []
  for (const p of pools) {
    const old = kept.get(p.net.id)
    if (old) vips.push(old)
    else if (p.vip && p.free > 0) vips.push({networkId: p.net.id, ip: p.next.next().value as string})
  }
  const fits = Math.min(wanted.length, ...pools.map((p) => Math.max(0, p.free - (p.vip ? 1 : 0))))
  const shortfalls = pools
    .filter((p) => p.free < wanted.length + (p.vip ? 1 : 0))
    .map((p) => ({network: p.net, need: wanted.length, free: p.free, vip: p.vip}))
  const vipsChanged = vipMode ? !sameVips(vips, svc.vips) : svc.vips !== undefined && svc.vips.length > 0

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
  return {
    remove,
    retire,
    create,
    shortfalls,
    missingNetworks,
    ...(vipsChanged ? {vips: vipMode ? vips : []} : {}),
    ...(hostPortShort ? {hostPortShort} : {}),
  }
}

function sameVips(a: ServiceVip[], b: ServiceVip[] = []): boolean {
  return a.length === b.length && a.every((v, i) => v.networkId === b[i]!.networkId && v.ip === b[i]!.ip)
}

/** One line for a plan that does not fit, naming each network that is short. */
export function describeShortfalls(svc: Pick<Service, 'name'>, shortfalls: Shortfall[]): string {
  const nets = shortfalls.map(
    (s) => `network ${s.network.name} (${s.network.subnet}) has ${s.free} free address${s.free === 1 ? '' : 'es'}`,
  )
  const need = shortfalls[0]!.need
  const vip = shortfalls.some((s) => s.vip) ? ' and a VIP' : ''
  return `service ${svc.name} needs ${need} new task address${need === 1 ? '' : 'es'}${vip}, but ${nets.join(' and ')}`
}
