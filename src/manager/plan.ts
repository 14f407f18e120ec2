// What a service needs written for it to match its spec, computed in full
// before anything is written: its VIPs, which tasks go, which new tasks come,
// on which nodes, with which addresses, and what does not fit.
import {macForIp, placeTasks} from '../model/allocate.js'
import {hostPortKeys} from '../model/publish.js'
import type {StateIndex} from '../store/state-index.js'
import {hostPortRule, type HostPortShort} from './host-ports.js'
import {rollingStep, specOf, versionOf, type RollingStep} from './rolling.js'
import {NOBODY_DOWN, type MembershipView} from '../membership/view.js'
import {availabilityOf, nodeMatches, parseConstraint, parsePlacementPref} from '../model/placement.js'
import type {Network, NodeRecord, Service, ServiceVip, Task} from '../model/types.js'

export type ClusterState = {
  /** The cluster's records, indexed (state-index.ts): the service's tasks, addresses in use, host ports. */
  index: StateIndex
  /** Who is declared down now (src/membership/); nobody when absent. */
  membership?: MembershipView
  /** The nodes placement may use, when the caller has them already (one pass over many services). */
  nodes?: PlacementNodes
  /** Where in a subnet the search for free addresses starts (a fraction); absent: the lowest first. */
  addressStart?: number
}

/**
 * Member nodes ('ready' in the store) and, of those, the ones not declared down (in id order, and
 * as a set), and of those the ones whose agent is not heard now (view.agentAway): asked once per
 * pass, not once per node and service. Shared by callers while it stands (placementNodes): read only.
 */
export type PlacementNodes = {
  members: ReadonlySet<string>
  live: readonly NodeRecord[]
  liveIds: ReadonlySet<string>
  agentAway: readonly string[]
}

/** The last node set worked out over an index, and what it was worked out from. */
type Kept = {
  view: MembershipView
  nodeGeneration: number
  generation: number
  /** The volatile nodes' answers it used: [isDown, agentAway]. */
  asked: Map<string, readonly [boolean, boolean]>
  nodes: PlacementNodes
}
const kept = new WeakMap<StateIndex, Kept>()

/**
 * The nodes placement may use now. Every create and scale asks (a scan of all node records:
 * ~0.6 ms at 1,000 nodes), so the answer is kept while nothing it is made of changes: no node
 * record (index.nodeGeneration), no verdict of the view (view.changes()), and no answer of the
 * view's volatile nodes, asked again every time (their answers may change with time alone).
 */
export function placementNodes(index: StateIndex, view: MembershipView = NOBODY_DOWN): PlacementNodes {
  const change = view.changes?.()
  if (!change) return scanNodes(index, view)
  const k = kept.get(index)
  if (
    k &&
    k.view === view &&
    k.nodeGeneration === index.nodeGeneration &&
    k.generation === change.generation &&
    sameAnswers(k.asked, view)
  )
    return k.nodes
  // The volatile nodes are asked once, and the set is worked out from those very answers: one
  // that changes meanwhile is then seen changed by the next call.
  const asked = new Map<string, readonly [boolean, boolean]>()
  for (const id of change.volatile) asked.set(id, [view.isDown(id), view.agentAway?.(id) ?? false])
  const frozen: MembershipView = {
    isDown: (id) => asked.get(id)?.[0] ?? view.isDown(id),
    ...(view.agentAway ? {agentAway: (id: string) => asked.get(id)?.[1] ?? view.agentAway!(id)} : {}),
  }
  const nodes = scanNodes(index, frozen)
  kept.set(index, {view, nodeGeneration: index.nodeGeneration, generation: change.generation, asked, nodes})
  return nodes
}

function sameAnswers(asked: ReadonlyMap<string, readonly [boolean, boolean]>, view: MembershipView): boolean {
  for (const [id, [down, away]] of asked) if (view.isDown(id) !== down || (view.agentAway?.(id) ?? false) !== away) return false
  return true
}

/** The node set from a scan of every node record (what placementNodes keeps). */
export function scanNodes(index: StateIndex, view: MembershipView): PlacementNodes {
  const all = index.list<NodeRecord>('node')
  const members = new Set(all.filter((n) => n.state === 'ready').map((n) => n.id))
  const live = all.filter((n) => members.has(n.id) && !view.isDown(n.id))
  const agentAway = view.agentAway ? live.filter((n) => view.agentAway!(n.id)).map((n) => n.id) : []
  return {members, live, liveIds: new Set(live.map((n) => n.id)), agentAway}
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
  /**
   * Running tasks given an address on a network the service was attached to since they started
   * (service update --network-add): the same task, its new attachment last; its node plugs the
   * interface into the running task (dataplane/tasks.ts) instead of replacing it.
   */
  extend: Task[]
  /** Empty when every slot the spec asks for got a task. */
  shortfalls: Shortfall[]
  /** Networks the service names that do not exist (any new task waits for them). */
  missingNetworks: string[]
  /** The service's VIPs when they differ from what it holds (a new VIP, or one for a network it left). */
  vips?: ServiceVip[]
  /** Tasks no node may take because of the service's host-mode ports (left unplaced, as Swarm leaves them pending). */
  hostPortShort?: HostPortShort
  /** Slots no node may take because of constraints or node availability (pending, as in Swarm). */
  pending?: number
}

/** Absent is vip, as in Docker. */
export const endpointModeOf = (svc: Pick<Service, 'endpointMode'>) => svc.endpointMode ?? 'vip'

export function planService(svc: Service, state: ClusterState, mint: {id: () => string; now: number}): ServicePlan {
  const nodes = state.nodes ?? placementNodes(state.index, state.membership ?? NOBODY_DOWN)
  // On a placed cluster nearly every service of a full pass is placed as its spec asks: that is
  // checked first, in one walk over its tasks, instead of planned in full to find nothing to do.
  if (isSettled(svc, state.index, fittingNodes(svc, state.index, nodes.live, nodes.liveIds).ids))
    return {remove: [], retire: [], create: [], extend: [], shortfalls: [], missingNetworks: []}
  return planInFull(svc, {...state, nodes}, mint)
}

/**
 * Whether planInFull would find nothing to do for the service: replicated, without host-mode
 * ports; every network it names exists; in vip mode it holds one VIP per network, in their order
 * (none otherwise); it has exactly one task per slot 1..replicas, each meant to run, of the
 * current spec version, on a node that may take it (`fit`: live, not drained, meeting its
 * constraints), with one address on each of its networks and on no other. Nothing there is
 * stale, rolled, moved, extended or allocated. (Statuses, paused nodes and agents away matter
 * only to tasks that go or come; test/unit/manager-state-index.test.ts checks the two agree.)
 */
export function isSettled(svc: Service, ix: StateIndex, fit: ReadonlySet<string>): boolean {
  if (!('replicas' in svc.mode)) return false
  const replicas = svc.mode.replicas
  if (svc.ports?.some((p) => p.mode === 'host')) return false
  const nets = svc.networks
  for (let i = 0; i < nets.length; i++) if (!ix.networks.has(nets[i]!) || nets.indexOf(nets[i]!) !== i) return false
  const vips = svc.vips ?? []
  if (endpointModeOf(svc) === 'vip') {
    if (vips.length !== nets.length) return false
    for (let i = 0; i < nets.length; i++) if (vips[i]!.networkId !== nets[i]) return false
  } else if (vips.length > 0) return false
  const tasks = ix.tasksByService.get(svc.id)
  if ((tasks?.size ?? 0) !== replicas) return false
  if (!tasks) return true
  const v = versionOf(svc)
  const slots = new Set<number>()
  for (const t of tasks.values()) {
    if (t.desiredState !== 'running' || specOf(t) !== v || !fit.has(t.nodeId)) return false
    if (!Number.isInteger(t.slot) || t.slot < 1 || t.slot > replicas || slots.has(t.slot)) return false
    slots.add(t.slot)
    if (t.attachments.length !== nets.length) return false
    for (const a of t.attachments) if (!nets.includes(a.networkId)) return false
    for (const id of nets) if (lacks(t, id)) return false
  }
  return true
}

/** The plan worked out in full (planService checks first whether there is anything to do). */
export function planInFull(svc: Service, state: ClusterState, mint: {id: () => string; now: number}): ServicePlan {
  const ix = state.index
  const view = state.membership ?? NOBODY_DOWN
  const {members, live, liveIds, agentAway: awayLive} = state.nodes ?? placementNodes(ix, view)
  // The service's own tasks, in key order: all that placement keeps, replaces or removes.
  const mine = ix.tasksOf(svc.id)
  // A task without an address on the ingress network (added when the service got its first
  // ingress port), or with one on a network the service left, is replaced by one that has them all.
  // One that only lacks another network gets an address on it and keeps running (extend below).
  // (Loops rather than chains of closures: this runs for every service of every pass.)
  const ingressIds = svc.networks.filter((id) => ix.networks.get(id)?.ingress === true)
  const stale = new Set<string>()
  for (const t of mine)
    if (
      ingressIds.some((id) => lacks(t, id)) ||
      t.attachments.some((a) => !svc.networks.includes(a.networkId)) ||
      (t.desiredState !== 'running' && svc.networks.some((id) => lacks(t, id)))
    )
      stale.add(t.id)
  // Without a host-mode port there is no rule (hostPortRule says so): its state is not gathered.
  const hostRule = hostPortKeys(svc).size === 0 ? undefined : hostPortRule(svc, hostPortState(svc, ix))
  // Constraints and availability: tasks on a node that no longer fits (drained, relabelled) are
  // not kept, so they stop gracefully below and are placed again where they fit.
  const fit = fittingNodes(svc, ix, live, liveIds)
  const agentAway = fit.ids === liveIds ? awayLive : awayLive.filter((id) => fit.ids.has(id))
  const away = agentAway.length > 0 || fit.paused.size > 0 ? new Set([...agentAway, ...fit.paused]) : undefined
  // A rolling update's step (rolling.ts): held and retired old tasks leave placement (their slot
  // gets its new task), blocked ones keep their slot as if they still ran. Without a task of an
  // older spec version there is nothing to roll (rollingStep finds no old task): not asked.
  const current = mine.filter((t) => !stale.has(t.id))
  const v = versionOf(svc)
  // A global service rolls only on nodes that may take its new task now (rolling.ts says why).
  const rollOn = 'global' in svc.mode ? new Set([...fit.ids].filter((id) => !away?.has(id))) : undefined
  const roll = current.some((t) => specOf(t) !== v) ? rollingStep(svc, current, ix.statuses, mint.now, rollOn) : NO_ROLL
  const placements = placeTasks(
    svc,
    fit.ids,
    roll === NO_ROLL
      ? current
      : [
          ...current.filter((t) => !roll.hold.has(t.id) && !roll.retire.has(t.id)),
          ...mine.filter((t) => roll.block.has(t.id)).map((t) => ({...t, desiredState: 'running' as const})),
        ],
    hostRule?.rule,
    away,
    fit.spread,
  )
  const keep = new Set(placements.flatMap((p) => (p.taskId ? [p.taskId] : [])))
  const remove: Task[] = []
  const retire: Task[] = []
  for (const t of mine) {
    if (roll.stop.has(t.id)) {
      // Stop-first: it keeps its slot in this pass (placed above as it is), so nothing new starts there yet.
      if (ix.statuses.get(t.id)) retire.push({...t, desiredState: 'shutdown'})
      else remove.push(t)
      continue
    }
    if (keep.has(t.id) || roll.hold.has(t.id)) continue
    const down = members.has(t.nodeId) && view.isDown(t.nodeId)
    if (t.desiredState === 'running' && down) {
      // A global task belongs to its node: it waits for the node rather than moving.
      if (!('global' in svc.mode)) retire.push({...t, desiredState: 'shutdown'})
      continue
    }
    const st = ix.statuses.get(t.id)
    if (t.desiredState === 'running' && members.has(t.nodeId) && st) {
      // A task its node runs (scaled down, replaced) stops gracefully: marked shutdown, it leaves
      // the tables and DNS everywhere, and its node stops it (src/tasks/stop.ts) and says so.
      retire.push({...t, desiredState: 'shutdown'})
      continue
    }
    if (t.desiredState === 'shutdown' && members.has(t.nodeId)) {
      // Its node may still run it: it is down, or back and not done stopping it yet.
      if (down || (st && (st.state === 'running' || st.state === 'starting'))) continue
    }
    remove.push(t)
  }
  const wanted = placements.filter((p) => !p.taskId)

  // A replaced task's addresses stay taken in this pass: its node may not have stopped it yet.
  const removed = remove.filter((t) => !stale.has(t.id))
  const hostPortShort = hostRule?.short(placements.length, live.length)
  // Slots no node may take because of constraints or availability: left pending, as Swarm does.
  const want = 'replicas' in svc.mode ? svc.mode.replicas : 0
  const noNode = fit.limited && !hostPortShort && placements.length < want ? want - placements.length : 0
  const pending = noNode > 0 ? {pending: noNode} : {}
  const missingNetworks = svc.networks.filter((id) => !ix.networks.has(id))
  if (missingNetworks.length > 0)
    return {
      remove,
      retire,
      create: [],
      extend: [],
      shortfalls: [],
      missingNetworks,
      ...(hostPortShort ? {hostPortShort} : {}),
      ...pending,
    }
  const nets = svc.networks.map((id) => ix.networks.get(id)!)

  // Addresses in use stay in use, except those of the tasks this plan removes.
  // VIPs come from the same pool as task addresses, so the two never collide.
  const vipMode = endpointModeOf(svc) === 'vip'
  const kept = new Map((vipMode ? (svc.vips ?? []) : []).filter((v) => ix.networks.has(v.networkId)).map((v) => [v.networkId, v]))
  // Kept running tasks that lack a network of the service (it was added): they get an address on it.
  const toExtend = mine.filter((t) => keep.has(t.id) && svc.networks.some((id) => lacks(t, id)))
  const needPools = wanted.length > 0 || toExtend.length > 0 || (vipMode && nets.some((n) => !kept.has(n.id)))
  // Nothing to allocate: no address is looked at (a pass over a placed cluster stays cheap).
  const pools = needPools ? addressPools(svc, nets, removed, kept, vipMode, ix, state.addressStart) : []
  // A VIP first: a service in vip mode is reached only through it.
  const vips: ServiceVip[] = []
  if (!needPools) for (const n of nets) kept.has(n.id) && vips.push(kept.get(n.id)!)
  for (const p of pools) {
    const old = kept.get(p.net.id)
    if (old) vips.push(old)
    else if (p.vip && p.free > 0) vips.push({networkId: p.net.id, ip: p.next.next().value as string})
  }
  // Running tasks first: a network with no room for them all extends none (and is a shortfall).
  const extendFits = pools.every((p) => p.free - (p.vip ? 1 : 0) >= extNeed(toExtend, p.net.id))
  const extend = extendFits
    ? toExtend.map((t): Task => {
        const more = pools
          .filter((p) => lacks(t, p.net.id))
          .map((p) => {
            const ip = p.next.next().value as string
            return {networkId: p.net.id, ip, mac: macForIp(ip)}
          })
        return {...t, attachments: [...t.attachments, ...more]}
      })
    : []
  const fits = Math.min(
    wanted.length,
    ...pools.map((p) => Math.max(0, p.free - (p.vip ? 1 : 0) - (extendFits ? extNeed(toExtend, p.net.id) : 0))),
  )
  const shortfalls = pools
    .filter((p) => p.free < wanted.length + extNeed(toExtend, p.net.id) + (p.vip ? 1 : 0))
    .map((p) => ({network: p.net, need: wanted.length + extNeed(toExtend, p.net.id), free: p.free, vip: p.vip}))
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
      ...(svc.specVersion !== undefined ? {specVersion: svc.specVersion} : {}),
      createdAt: mint.now,
    }
  })
  return {
    remove,
    retire,
    create,
    extend,
    shortfalls,
    missingNetworks,
    ...(vipsChanged ? {vips: vipMode ? vips : []} : {}),
    ...(hostPortShort ? {hostPortShort} : {}),
    ...pending,
  }
}

/**
 * The live nodes a service's tasks may run on: not drained, meeting every constraint; of those
 * the paused ones (they keep tasks, take no new one); the spread groups; and whether anything
 * narrowed the live nodes (only then are unplaced slots said to be pending for that reason).
 */
function fittingNodes(svc: Service, ix: StateIndex, live: readonly NodeRecord[], liveIds: ReadonlySet<string>) {
  const prefs = (svc.placementPrefs ?? []).map(parsePlacementPref)
  const spread = prefs.map((k) => (id: string) => ix.nodeSpecs.get(id)?.labels[k] ?? '')
  const cs = (svc.constraints ?? []).map(parseConstraint)
  // The common case costs nothing per node: no labels, no availability set, no constraint.
  if (cs.length === 0 && ix.nodeSpecs.size === 0) return {ids: liveIds, paused: NONE, spread, limited: false}
  const ids = new Set<string>()
  const paused = new Set<string>()
  for (const n of live) {
    const spec = ix.nodeSpecs.get(n.id)
    const a = availabilityOf(spec)
    if (a === 'drain' || !nodeMatches(n, spec, cs)) continue
    ids.add(n.id)
    if (a === 'pause') paused.add(n.id)
  }
  return {ids, paused, spread, limited: ids.size < liveIds.size || paused.size > 0}
}

const NONE: ReadonlySet<string> = new Set()

/** rollingStep's answer when no task is of an older spec version (shared: never changed). */
const NO_ROLL: RollingStep = {hold: new Set(), retire: new Set(), block: new Set(), stop: new Set(), wait: new Set()}

/** How many of the tasks to extend lack an address on the network. */
function extNeed(toExtend: Task[], id: string): number {
  return toExtend.filter((t) => lacks(t, id)).length
}

/** Whether a task has no address on the network. */
function lacks(t: Task, id: string): boolean {
  return !t.attachments.some((a) => a.networkId === id)
}

/**
 * Each network's free addresses as this plan sees them: everything held (tasks, attachments,
 * other services' VIPs) except the tasks it removes and the service's own VIPs, plus the VIP
 * it keeps on that network.
 */
function addressPools(
  svc: Service,
  nets: Network[],
  removed: Task[],
  kept: Map<string, ServiceVip>,
  vipMode: boolean,
  ix: StateIndex,
  start: number | undefined,
) {
  const own = ix.services.get(svc.id)?.vips ?? []
  const except = new Set([...removed.map((t) => `task/${t.id}`), `vip/${svc.id}`])
  return nets.map((n) => {
    const ips = [
      ...removed.flatMap((t) => t.attachments.filter((a) => a.networkId === n.id).map((a) => a.ip)),
      ...own.filter((v) => v.networkId === n.id).map((v) => v.ip),
    ]
    const pool = ix.pool(n, except, ips, kept.has(n.id) ? [kept.get(n.id)!.ip] : [])
    return {net: n, vip: vipMode && !kept.has(n.id), free: pool.count(), next: pool.free(start)}
  })
}

/** What the host-port rule reads: only the services sharing a host-mode port with svc, and their tasks. */
function hostPortState(svc: Service, ix: StateIndex) {
  const others = new Set<string>()
  for (const k of hostPortKeys(svc)) for (const id of ix.hostPorts.get(k) ?? []) if (id !== svc.id) others.add(id)
  const services = [...others].flatMap((id) => (ix.services.has(id) ? [ix.services.get(id)!] : []))
  const tasks = [...others].flatMap((id) => ix.tasksOf(id)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return {tasks, services, nodes: others.size > 0 ? [...ix.list<NodeRecord>('node')] : []}
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
