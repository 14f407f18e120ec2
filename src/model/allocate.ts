import {DEFAULT_NETWORK_MTU, VNI_MAX, VNI_MIN} from './defaults.js'
import {UserError} from './errors.js'
import {broadcast, cidrContains, cidrOverlaps, cidrSize, formatCidr, formatIpv4, nthHost, parseCidr, parseIpv4} from './ipv4.js'
import type {Network, NodeRecord, Service, Task} from './types.js'

/**
 * Allocation as pure functions of what already exists: the store is the only
 * memory, so a restarted agent (or another manager) computes the same answers.
 */

/** The lowest free VNI from 4096 up, as Swarm's overlay driver does. */
export function nextVni(existing: Iterable<number>): number {
  const used = new Set(existing)
  for (let v = VNI_MIN; v <= VNI_MAX; v++) if (!used.has(v)) return v
  throw new UserError(`no free VNI left in ${VNI_MIN}-${VNI_MAX}`)
}

/** The first /size block of the pool that overlaps none of the existing subnets. */
export function nextSubnet(pool: string, size: number, existing: Iterable<string>): string {
  const p = parseCidr(pool)
  if (!Number.isInteger(size) || size < p.prefix || size > 32) {
    throw new UserError(`invalid subnet size /${size} for pool ${pool}: must be /${p.prefix}-/32`)
  }
  const taken = [...existing].map((s) => parseCidr(s))
  const step = 2 ** (32 - size)
  const end = p.addr + cidrSize(p)
  let at = p.addr
  while (at < end) {
    const candidate = {addr: at, prefix: size}
    const clash = taken.find((t) => cidrOverlaps(t, candidate))
    if (!clash) return formatCidr(candidate)
    // Jump past the clashing block instead of probing every /24 inside a /8.
    const clashEnd = clash.addr + cidrSize(clash)
    at = Math.max(at + step, Math.ceil(clashEnd / step) * step)
  }
  throw new UserError(`the address pool ${pool} has no free /${size} subnet left`)
}

export type ExistingSubnet = {name: string; subnet: string}

/** Validates a requested subnet; an overlap names the network it clashes with. */
export function checkSubnet(subnet: string, existing: Iterable<ExistingSubnet>): string {
  const c = parseCidr(subnet)
  if (c.prefix > 30) throw new UserError(`subnet ${subnet} is too small: it needs room for a gateway and a task (/30 at most)`)
  for (const e of existing) {
    if (cidrOverlaps(c, parseCidr(e.subnet))) {
      throw new UserError(`subnet ${subnet} overlaps with network '${e.name}' (${e.subnet})`)
    }
  }
  return formatCidr(c)
}

/** Docker puts the gateway on the first host address. */
export function gatewayFor(subnet: string): string {
  return formatIpv4(nthHost(parseCidr(subnet), 1))
}

/** The lowest free host address: never the network, the gateway or the broadcast. */
export function allocateIp(subnet: string, gateway: string, used: Iterable<string>): string {
  const c = parseCidr(subnet)
  const taken = new Set<number>()
  for (const u of used) taken.add(parseIpv4(u))
  const gw = parseIpv4(gateway)
  if (!cidrContains(c, gw)) throw new UserError(`gateway ${gateway} is outside ${subnet}`)
  const last = broadcast(c)
  for (let ip = c.addr + 1; ip < last; ip++) {
    if (ip !== gw && !taken.has(ip)) return formatIpv4(ip)
  }
  throw new UserError(`no free address left in ${subnet}`)
}

/**
 * The free host addresses of a subnet, lowest first, lazily: placing n tasks
 * walks the subnet once, not n times. Never the network, gateway or broadcast.
 */
export function* freeAddresses(subnet: string, gateway: string, used: ReadonlySet<string>): Generator<string> {
  const c = parseCidr(subnet)
  const gw = parseIpv4(gateway)
  const last = broadcast(c)
  for (let ip = c.addr + 1; ip < last; ip++) {
    if (ip === gw) continue
    const text = formatIpv4(ip)
    if (!used.has(text)) yield text
  }
}

/** How many addresses freeAddresses would yield. */
export function freeAddressCount(subnet: string, gateway: string, used: ReadonlySet<string>): number {
  const c = parseCidr(subnet)
  const last = broadcast(c)
  const inside = (ip: number) => ip > c.addr && ip < last
  const gw = parseIpv4(gateway)
  let taken = inside(gw) ? 1 : 0
  for (const u of used) {
    const ip = parseIpv4(u)
    if (ip !== gw && inside(ip)) taken++
  }
  return Math.max(0, last - c.addr - 1 - taken)
}

/** Docker's rule: 02:42 and the four bytes of the IPv4 address. */
export function macForIp(ip: string): string {
  const n = parseIpv4(ip)
  const bytes = [0x02, 0x42, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':')
}

/** A task's interface on an overlay network has the network's MTU, on every node alike. */
export function taskMtu(net: Pick<Network, 'mtu'>): number {
  return net.mtu ?? DEFAULT_NETWORK_MTU
}

/**
 * Limits on where a service's tasks may go (host-mode published ports): at most one task of the
 * service per node, and none on the blocked nodes (where another service's task holds one of its
 * host ports). Tasks that break it are not kept, so they are placed again where they may run.
 */
export type PlacementRule = {onePerNode: boolean; blocked: ReadonlySet<string>}
export const NO_RULE: PlacementRule = {onePerNode: false, blocked: new Set()}

export type Placement = {slot: number; nodeId: string; /** set when an existing task keeps the slot */ taskId?: string}

/**
 * Where each task of a service should run. Stable: a running task on a live
 * node keeps its slot and node; only the rest is placed, each on the live node
 * with the fewest tasks of this service (ties broken by node id, so every
 * manager computes the same plan). Global mode: one task (slot 0) per live node.
 */
export function placeTasks(
  service: Pick<Service, 'id' | 'mode'>,
  /** As records, or as a set of ids (a pass over many services builds it once). */
  liveNodes: Pick<NodeRecord, 'id'>[] | ReadonlySet<string>,
  existingTasks: Pick<Task, 'id' | 'serviceId' | 'slot' | 'nodeId' | 'desiredState'>[],
  rule: PlacementRule = NO_RULE,
  /**
   * Live nodes that keep their tasks but take no new one: their agent is not heard now (a
   * restart, or a death not yet declared), so a task placed there would wait for it.
   */
  noNew: ReadonlySet<string> = new Set(),
  /**
   * --placement-pref spread: for each preference, the group of a node (its label's value, ''
   * without it). A new task goes to the group with fewest of the service's tasks first (the
   * first preference before the next), then to the node with fewest, as Swarm's spread.
   */
  spread: readonly ((nodeId: string) => string)[] = [],
): Placement[] {
  const live: ReadonlySet<string> =
    liveNodes instanceof Set ? liveNodes : new Set((liveNodes as Pick<NodeRecord, 'id'>[]).map((n) => n.id))
  const mine = existingTasks
    .filter((t) => t.serviceId === service.id && t.desiredState === 'running' && live.has(t.nodeId))
    .filter((t) => !rule.blocked.has(t.nodeId))
    .sort((a, b) => a.slot - b.slot || cmp(a.id, b.id))

  if ('global' in service.mode) {
    // The first of the service's tasks on each node, in the order above.
    const first = new Map<string, string>()
    for (const t of mine) if (!first.has(t.nodeId)) first.set(t.nodeId, t.id)
    return [...live]
      .filter((id) => !rule.blocked.has(id) && (first.has(id) || !noNew.has(id)))
      .sort(cmp)
      .map((nodeId) => {
        const taskId = first.get(nodeId)
        return taskId !== undefined ? {slot: 0, nodeId, taskId} : {slot: 0, nodeId}
      })
  }

  const replicas = service.mode.replicas
  if (!Number.isInteger(replicas) || replicas < 0) throw new UserError(`invalid replica count ${replicas}`)
  const out: Placement[] = []
  // Tasks of this service per live node (absent: none); only nodes that have some are held.
  const load = new Map<string, number>()
  const kept = new Set<number>()
  // Per spread preference: group -> tasks of this service in it.
  const groups = spread.map(() => new Map<string, number>())
  const addTo = (nodeId: string) => {
    load.set(nodeId, (load.get(nodeId) ?? 0) + 1)
    spread.forEach((g, i) => groups[i]!.set(g(nodeId), (groups[i]!.get(g(nodeId)) ?? 0) + 1))
  }
  for (const t of mine) {
    if (t.slot < 1 || t.slot > replicas || kept.has(t.slot)) continue
    if (rule.onePerNode && (load.get(t.nodeId) ?? 0) > 0) continue
    kept.add(t.slot)
    out.push({slot: t.slot, nodeId: t.nodeId, taskId: t.id})
    addTo(t.nodeId)
  }
  if (live.size === 0) return out.sort((a, b) => a.slot - b.slot)
  // Sorted once, only when a slot is to be placed: a placed service costs nothing per node.
  let byId: string[] | undefined
  for (let slot = 1; slot <= replicas; slot++) {
    if (kept.has(slot)) continue
    byId ??= sortedIds(live)
    let best = ''
    let bestKey: number[] = []
    for (const id of byId) {
      const n = load.get(id) ?? 0
      if (rule.blocked.has(id) || noNew.has(id) || (rule.onePerNode && n > 0)) continue
      const key = [...spread.map((g, i) => groups[i]!.get(g(id)) ?? 0), n]
      if (best === '' || less(key, bestKey)) {
        best = id
        bestKey = key
        // Nobody has fewer than none: the first such node in id order is the one.
        if (key.every((x) => x === 0)) break
      }
    }
    // No node may take it: the slot stays unplaced (the caller counts what is missing).
    if (best === '') continue
    addTo(best)
    out.push({slot, nodeId: best})
  }
  return out.sort((a, b) => a.slot - b.slot)
}

/**
 * A node set's ids in order, kept per set: placement passes the same set to every call while no
 * node changes (plan.ts placementNodes), so 1,000 ids are not sorted again for each create. The
 * sets are never changed once made (ReadonlySet), so a kept order stays right.
 */
const sortedOf = new WeakMap<ReadonlySet<string>, string[]>()
function sortedIds(live: ReadonlySet<string>): string[] {
  let ids = sortedOf.get(live)
  if (ids === undefined || ids.length !== live.size) {
    ids = [...live].sort(cmp)
    sortedOf.set(live, ids)
  }
  return ids
}

/** Lexicographic order of equal-length keys. */
function less(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!
  return false
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
