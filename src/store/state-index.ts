// The answers placement and the views ask for, kept as the store changes instead of scanning
// it per question: records by kind, services by name, tasks by service and by node, the addresses
// in use on each network (and who holds each), the services holding each host-mode port. Built once from a
// full read, then fed every change (store.ts calls it before any other listener, so whatever
// a listener reads through it is already up to date). Lists come out in key order, as the
// store's own values() gives them, so callers behave exactly as over a scan.
import {attachmentAsTask} from '../model/attachment.js'
import {broadcast, cidrContains, formatIpv4, parseCidr, tryParseIpv4, type Cidr} from '../model/ipv4.js'
import {hostPortKeys} from '../model/publish.js'
import type {AttachmentStatus, Network, NetworkAttachment, NodeRecord, Service, Task, TaskStatus} from '../model/types.js'
import type {Json} from './json.js'
import type {NodeSpec} from '../model/placement.js'

/** Where an index's records come from: the node's store, or a manager's view of etcd for one request. */
export interface IndexSource {
  list(prefix?: string): {key: string; value: Json | null}[]
  /** first: called before the source's other listeners. */
  onChange(listener: (key: string, value: Json | undefined, old: Json | undefined) => void, opts?: {first?: boolean}): () => void
  /** Bumped when the source is loaded again (a store reopened): the index is then rebuilt. */
  readonly epoch?: number
  /** A source that keeps its index itself (an etcd request: its manager's shared one, etcd-index.ts). */
  ownIndex?(): StateIndex
}

type ListedKind = 'service' | 'task' | 'node' | 'network' | 'attachment'

/** Who holds an address: 'task/<id>', 'attachment/<id>' or 'vip/<serviceId>'. */
type Owner = string

/** The addresses in use on one network. */
class NetworkAddresses {
  readonly holders = new Map<string, Set<Owner>>()
  /**
   * The held addresses that parse (tryParseIpv4 takes only the canonical spelling, so n is here
   * exactly when holders has formatIpv4(n)), as numbers: a search walks tens of thousands of
   * addresses after a fill or a restart, and formatting each one to look it up cost ~1 us a step.
   */
  readonly held = new Set<number>()
  /** Every host address below it is held, but those in `dropped` (a hint: lowest-free searches start there). */
  low = 0
  /**
   * Addresses below `low` let go since (a task replaced or removed): free unless taken again.
   * Kept aside rather than lowering `low`, so a pass that retires and re-places many tasks does
   * not walk the whole network again for each.
   */
  readonly dropped = new Set<number>()
  /**
   * For a search from a start (managers on etcd, AddressPool.free(start)): start -> a mark such
   * that every address from the start up to the mark is held (or the gateway). Lowered when one
   * there is let go; a search walks on from the mark, not over all its manager gave before.
   */
  readonly marks = new Map<number, number>()
  /** Held addresses inside the network's subnet that are neither its gateway nor outside: undefined = count again. */
  private inside: number | undefined = undefined
  private cidr: Cidr | undefined
  private gateway = -1

  setNetwork(net: Network | undefined): void {
    this.cidr = net ? parseCidrOrUndefined(net.subnet) : undefined
    this.gateway = net ? (tryParseIpv4(net.gateway) ?? -1) : -1
    this.inside = undefined
    this.low = 0
    this.dropped.clear()
    this.marks.clear()
  }

  add(ip: string, owner: Owner): void {
    let set = this.holders.get(ip)
    if (!set) {
      set = new Set()
      this.holders.set(ip, set)
      const n = tryParseIpv4(ip)
      if (n !== undefined) this.held.add(n)
      if (this.inside !== undefined && this.counts(ip)) this.inside++
    }
    set.add(owner)
  }

  remove(ip: string, owner: Owner): void {
    const set = this.holders.get(ip)
    if (!set) return
    set.delete(owner)
    if (set.size > 0) return
    this.holders.delete(ip)
    if (this.inside !== undefined && this.counts(ip)) this.inside--
    const n = tryParseIpv4(ip)
    if (n === undefined) return
    this.held.delete(n)
    if (n < this.low) this.dropped.add(n)
    for (const [from, mark] of this.marks) if (n >= from && n < mark) this.marks.set(from, n)
  }

  /** Held addresses freeAddressCount would count: inside the subnet, not its gateway. */
  insideCount(): number {
    if (this.inside === undefined) {
      let n = 0
      for (const ip of this.holders.keys()) if (this.counts(ip)) n++
      this.inside = n
    }
    return this.inside
  }

  counts(ip: string): boolean {
    if (!this.cidr) return false
    const n = tryParseIpv4(ip)
    return n !== undefined && n !== this.gateway && n > this.cidr.addr && n < broadcast(this.cidr)
  }
}

function parseCidrOrUndefined(s: string): Cidr | undefined {
  try {
    return parseCidr(s)
  } catch {
    return undefined
  }
}

export class StateIndex {
  readonly services = new Map<string, Service>()
  readonly tasks = new Map<string, Task>()
  readonly nodes = new Map<string, NodeRecord>()
  readonly networks = new Map<string, Network>()
  readonly attachments = new Map<string, NetworkAttachment>()
  readonly statuses = new Map<string, TaskStatus>()
  /** What nodes say of attachments (attachmentstatus/<id>): the manager reaps by them every pass. */
  readonly attachmentStatuses = new Map<string, AttachmentStatus>()
  /** Node labels and availability (nodespec/<id>, written by managers). */
  readonly nodeSpecs = new Map<string, NodeSpec>()
  /** serviceId -> its tasks (a service id with tasks may have no service record: orphans). */
  readonly tasksByService = new Map<string, Map<string, Task>>()
  /** nodeId -> ids of the tasks placed there. */
  readonly tasksByNode = new Map<string, Set<string>>()
  /** host-mode port key (8080/tcp) -> ids of the services publishing it. */
  readonly hostPorts = new Map<string, Set<string>>()
  /** service name -> ids of the services by that name (one, but for a conflict gossip carried in): a create's name check, `service ps NAME`. */
  readonly servicesByName = new Map<string, Set<string>>()
  private readonly addresses = new Map<string, NetworkAddresses>()
  private readonly sorted = new Map<ListedKind, {ids: string[]; values: unknown[]}>()
  /** Bumped on every change: callers may cache what they derive from the index against it. */
  version = 0
  /** Bumped on every change of a node record (node/<id>): placement keeps its node set against it (plan.ts). */
  nodeGeneration = 0

  static build(entries: Iterable<{key: string; value: Json | null}>): StateIndex {
    const ix = new StateIndex()
    for (const e of entries) if (e.value !== null) ix.apply(e.key, e.value, undefined)
    return ix
  }

  /** One change of one key: value/old undefined when absent. */
  apply(key: string, value: Json | undefined, old: Json | undefined): void {
    const slash = key.indexOf('/')
    if (slash < 0) return
    const kind = key.slice(0, slash)
    const id = key.slice(slash + 1)
    this.version++
    switch (kind) {
      case 'service':
        if (old) this.unService(id, old as Service)
        if (value) this.addService(id, value as Service)
        break
      case 'task':
        if (old) this.unTask(id, old as Task)
        if (value) this.addTask(id, value as Task)
        break
      case 'attachment':
        if (old) this.holdAll(attachmentAsTask(old as NetworkAttachment), `attachment/${id}`, false)
        if (value) this.holdAll(attachmentAsTask(value as NetworkAttachment), `attachment/${id}`, true)
        setOrDelete(this.attachments, id, value as NetworkAttachment | undefined)
        break
      case 'node':
        this.nodeGeneration++
        setOrDelete(this.nodes, id, value as NodeRecord | undefined)
        break
      case 'network':
        setOrDelete(this.networks, id, value as Network | undefined)
        this.addressesOf(id).setNetwork(value as Network | undefined)
        break
      case 'taskstatus':
        setOrDelete(this.statuses, id, value as TaskStatus | undefined)
        return
      case 'attachmentstatus':
        setOrDelete(this.attachmentStatuses, id, value as AttachmentStatus | undefined)
        return
      case 'nodespec':
        setOrDelete(this.nodeSpecs, id, value as NodeSpec | undefined)
        return
      default:
        return
    }
    this.resort(kind, id)
  }

  /** The records of a kind in key order (the store's values() order); the array is shared: do not change it. */
  list<T>(kind: ListedKind): readonly T[] {
    let l = this.sorted.get(kind)
    if (!l) {
      const m = this.mapOf(kind)
      const ids = [...m.keys()].sort(cmp)
      l = {ids, values: ids.map((k) => m.get(k)!)}
      this.sorted.set(kind, l)
    }
    return l.values as T[]
  }

  private mapOf(kind: ListedKind): Map<string, unknown> {
    return {service: this.services, task: this.tasks, node: this.nodes, network: this.networks, attachment: this.attachments}[
      kind
    ]
  }

  /** Keeps a kind's sorted list (once asked for) as one record changes: a binary search, not a sort. */
  private resort(kind: ListedKind, id: string): void {
    const l = this.sorted.get(kind)
    if (!l) return
    const v = this.mapOf(kind).get(id)
    let lo = 0
    let hi = l.ids.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (l.ids[mid]! < id) lo = mid + 1
      else hi = mid
    }
    const here = l.ids[lo] === id
    if (v === undefined) {
      if (here) (l.ids.splice(lo, 1), l.values.splice(lo, 1))
    } else if (here) l.values[lo] = v
    else (l.ids.splice(lo, 0, id), l.values.splice(lo, 0, v))
  }

  /** The service named name that a scan in key order finds first (the lowest id), if any. */
  serviceNamed(name: string): Service | undefined {
    const ids = this.servicesByName.get(name)
    if (!ids) return undefined
    let first: string | undefined
    for (const id of ids) if (first === undefined || id < first) first = id
    return this.services.get(first!)
  }

  /** A service's tasks in key order. */
  tasksOf(serviceId: string): Task[] {
    const m = this.tasksByService.get(serviceId)
    if (!m) return []
    return [...m.keys()].sort(cmp).map((k) => m.get(k)!)
  }

  /** Who holds ip on the network (empty when free). */
  holders(networkId: string, ip: string): ReadonlySet<Owner> {
    return this.addresses.get(networkId)?.holders.get(ip) ?? EMPTY
  }

  /** Every address held on the network, with its holders (for the tests' full-scan comparison). */
  addressesOn(networkId: string): ReadonlyMap<string, ReadonlySet<Owner>> {
    return this.addresses.get(networkId)?.holders ?? new Map()
  }

  /** Networks that have addresses held on them (or a record). */
  addressNetworks(): string[] {
    return [...this.addresses.keys()]
  }

  /**
   * The addresses of a network as one plan sees them: held by anyone but `except` (the tasks it
   * removes, the service's own VIPs; exceptIps: the addresses they hold), plus `extra` (the VIP it keeps). What freeAddresses and
   * freeAddressCount answer over the equivalent set, without building it.
   */
  pool(net: Network, except: ReadonlySet<Owner>, exceptIps: readonly string[], extra: readonly string[]): AddressPool {
    return new AddressPool(this.addressesOf(net.id), net, except, exceptIps, extra)
  }

  private addressesOf(networkId: string): NetworkAddresses {
    let a = this.addresses.get(networkId)
    if (!a) {
      a = new NetworkAddresses()
      a.setNetwork(this.networks.get(networkId))
      this.addresses.set(networkId, a)
    }
    return a
  }

  private addService(id: string, s: Service): void {
    this.services.set(id, s)
    if (typeof s.name === 'string') addTo(this.servicesByName, s.name, id)
    for (const v of s.vips ?? []) this.addressesOf(v.networkId).add(v.ip, `vip/${id}`)
    for (const k of hostPortKeys(s)) addTo(this.hostPorts, k, id)
  }

  private unService(id: string, s: Service): void {
    this.services.delete(id)
    if (typeof s.name === 'string') removeFrom(this.servicesByName, s.name, id)
    for (const v of s.vips ?? []) this.addresses.get(v.networkId)?.remove(v.ip, `vip/${id}`)
    for (const k of hostPortKeys(s)) removeFrom(this.hostPorts, k, id)
  }

  private addTask(id: string, t: Task): void {
    this.tasks.set(id, t)
    let m = this.tasksByService.get(t.serviceId)
    if (!m) this.tasksByService.set(t.serviceId, (m = new Map()))
    m.set(id, t)
    addTo(this.tasksByNode, t.nodeId, id)
    this.holdAll(t, `task/${id}`, true)
  }

  private unTask(id: string, t: Task): void {
    this.tasks.delete(id)
    const m = this.tasksByService.get(t.serviceId)
    m?.delete(id)
    if (m && m.size === 0) this.tasksByService.delete(t.serviceId)
    removeFrom(this.tasksByNode, t.nodeId, id)
    this.holdAll(t, `task/${id}`, false)
  }

  private holdAll(t: Pick<Task, 'attachments'>, owner: Owner, hold: boolean): void {
    for (const a of t.attachments) {
      if (hold) this.addressesOf(a.networkId).add(a.ip, owner)
      else this.addresses.get(a.networkId)?.remove(a.ip, owner)
    }
  }
}

/** A network's free addresses for one plan, lowest first (see StateIndex.pool). */
export class AddressPool {
  private readonly extra: Set<string>
  /** Addresses held only by the excepted owners, as numbers: free here although the index holds them. */
  private readonly freed: number[]
  private readonly first: number
  private readonly last: number
  private readonly gw: number

  constructor(
    private readonly a: NetworkAddresses,
    net: Network,
    private readonly except: ReadonlySet<Owner>,
    exceptIps: readonly string[],
    extra: readonly string[],
  ) {
    const c = parseCidr(net.subnet)
    this.first = c.addr + 1
    this.last = broadcast(c)
    this.gw = tryParseIpv4(net.gateway) ?? -1
    this.extra = new Set(extra)
    const freed = new Set<number>()
    for (const ip of exceptIps) {
      const owners = a.holders.get(ip)
      if (!owners || [...owners].some((o) => !except.has(o)) || this.extra.has(ip)) continue
      const n = tryParseIpv4(ip)
      if (n !== undefined) freed.add(n)
    }
    this.freed = [...freed].sort((x, y) => x - y)
  }

  /** Whether the plan sees ip as in use. */
  has(ip: string): boolean {
    if (this.extra.has(ip)) return true
    const owners = this.a.holders.get(ip)
    if (!owners) return false
    if (this.except.size === 0) return true
    for (const o of owners) if (!this.except.has(o)) return true
    return false
  }

  /** What freeAddressCount answers over the plan's set of used addresses. */
  count(): number {
    const inside = (n: number) => n >= this.first && n < this.last
    let taken = this.a.insideCount() + (inside(this.gw) ? 1 : 0)
    taken -= this.freed.filter((n) => n !== this.gw && inside(n)).length
    for (const ip of this.extra) if (!this.a.holders.has(ip) && this.a.counts(ip)) taken++
    return Math.max(0, this.last - this.first - taken)
  }

  /**
   * What freeAddresses yields over the plan's set, lowest first; from `start` (a fraction of the
   * subnet) up, then from the bottom, when given: managers racing on etcd each search their own part.
   */
  *free(start?: number): Generator<string> {
    const held = this.a.held
    if (start !== undefined) {
      const from = this.first + Math.floor(Math.min(Math.max(start, 0), 1) * (this.last - this.first))
      // From the start up to its mark every address is held: the mark moves up past what is held
      // first, and below it only what this plan frees may be free (as for the lowest-free search).
      let mark = Math.max(from, this.a.marks.get(from) ?? from)
      while (mark < this.last && (mark === this.gw || held.has(mark))) mark++
      this.a.marks.set(from, mark)
      for (const n of this.freed) if (n >= from && n < mark && n !== this.gw && !this.taken(n)) yield formatIpv4(n)
      for (const [lo, hi] of [
        [mark, this.last],
        [this.first, from],
      ] as const)
        for (let n = lo; n < hi; n++) if (n !== this.gw && !this.taken(n)) yield formatIpv4(n)
      return
    }
    // Up to the network's low mark every address is held (or is the gateway), but those let go
    // since: the mark moves up past what is held first, whatever this plan frees, so the next
    // search starts there and a whole pass walks the network once, not once per service.
    let low = Math.max(this.first, this.a.low)
    while (low < this.last && (low === this.gw || held.has(low))) low++
    this.a.low = low
    // Below it only what was let go and what this plan frees may be free.
    const below = new Set<number>()
    for (const n of this.a.dropped) {
      if (held.has(n)) this.a.dropped.delete(n)
      else if (n < low) below.add(n)
    }
    for (const n of this.freed) if (n < low) below.add(n)
    for (const n of [...below].sort((x, y) => x - y)) {
      if (n < this.first || n >= this.last || n === this.gw) continue
      if (!this.taken(n)) yield formatIpv4(n)
    }
    for (let n = low; n < this.last; n++) {
      if (n === this.gw) continue
      if (!this.taken(n)) yield formatIpv4(n)
    }
  }

  /** has(formatIpv4(n)), without formatting n unless the plan's exceptions or extras need it. */
  private taken(n: number): boolean {
    if (!this.a.held.has(n)) return this.extra.size > 0 && this.extra.has(formatIpv4(n))
    return this.except.size === 0 || this.has(formatIpv4(n))
  }
}

const EMPTY: ReadonlySet<string> = new Set()

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

function setOrDelete<T>(m: Map<string, T>, id: string, v: T | undefined): void {
  if (v === undefined) m.delete(id)
  else m.set(id, v)
}

function addTo(m: Map<string, Set<string>>, k: string, v: string): void {
  let s = m.get(k)
  if (!s) m.set(k, (s = new Set()))
  s.add(v)
}

function removeFrom(m: Map<string, Set<string>>, k: string, v: string): void {
  const s = m.get(k)
  if (!s) return
  s.delete(v)
  if (s.size === 0) m.delete(k)
}

const indexes = new WeakMap<object, {ix: StateIndex; epoch: number | undefined}>()

/** The index of a source, built on first use and kept up to date from its changes. */
export function indexOf(src: IndexSource): StateIndex {
  if (src.ownIndex) return src.ownIndex()
  const have = indexes.get(src)
  if (have && have.epoch === src.epoch) return have.ix
  const ix = StateIndex.build(src.list(''))
  if (!have) src.onChange((k, v, o) => indexes.get(src)?.ix.apply(k, v, o), {first: true})
  indexes.set(src, {ix, epoch: src.epoch})
  return ix
}

/** Whether a store can feed an index (the node's Store, the etcd request view); others are scanned. */
export function isIndexSource(x: object): x is IndexSource {
  return typeof (x as Partial<IndexSource>).onChange === 'function' && typeof (x as Partial<IndexSource>).list === 'function'
}
