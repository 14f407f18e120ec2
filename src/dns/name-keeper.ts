// The name table (names.ts) kept as the store changes, instead of built again from every record
// on each change: a change marks what it touches (a service, a task, an attachment, a network,
// the nodes), and the next read of the table recomputes only the names those give. The table it
// keeps equals buildNames over the same records at every read (test/unit/dns-name-keeper.test.ts
// checks it after random sequences of changes).
//
// How buildNames' "first writer keeps a name" is kept without its full ordered pass: every
// contributor (a service's own names, a serving task's names, an attached attachment's name)
// offers its names with its rank, the place buildNames would write it in (services' names first
// by creation and id, then tasks by their service's place, slot and id, then attachments by id),
// and each name on each network answers with its lowest-ranked offer. A PTR goes the other way
// for services and tasks (buildNames overwrites: the highest rank), attachments only filling
// what none of those holds (the lowest). SRV records follow their name's owner: buildNames gives
// them to the service whose own name or alias holds the name.
//
// Reads are synchronous and follow the store at once (a change marks, the read that comes next
// recomputes before it answers): the reconciler's map sync reads the table when it reads the
// store, so a task being drained is out of the names its node acknowledges (drain-acks.ts).
import {isServing, servingNodes} from '../dataplane/desired.js'
import type {MembershipView} from '../membership/view.js'
import {taskName} from '../model/task-name.js'
import type {NetworkAttachment, NodeRecord, Service, Task} from '../model/types.js'
import {indexOf, type IndexSource, type StateIndex} from '../store/state-index.js'
import {normalize, type NameRecord, type NameTable, type NetworkNames, type SrvService} from './names.js'

/** Where buildNames writes a contributor's names: phase (0 services, 1 tasks, 2 attachments), then its order there. */
interface Rank {
  phase: 0 | 1 | 2
  at: number
  sid: string
  slot: number
  tid: string
}

const cmpStr = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)
const compareRank = (a: Rank, b: Rank) =>
  a.phase - b.phase || a.at - b.at || cmpStr(a.sid, b.sid) || a.slot - b.slot || cmpStr(a.tid, b.tid)

interface AOffer {
  net: string
  key: string
  rec: NameRecord
  /** The SRV records of the name, when this offer is a service's own name or alias. */
  srv?: SrvService
}
interface PtrOffer {
  net: string
  ip: string
  name: string
}

/** What one contributor offers, each (network, name) and (network, address) once. */
interface Contribution {
  rank: Rank
  a: Map<string, AOffer>
  ptr: Map<string, PtrOffer>
}

interface Candidate<T> {
  id: string
  rank: Rank
  offer: T
}

/** One network's offers (kept whether or not the network is there) and, when it is an overlay network, its names. */
interface NetState {
  id: string
  names?: NetworkNames
  a: Map<string, Candidate<AOffer>[]>
  ptr: Map<string, Candidate<PtrOffer>[]>
}

export interface TableChanges {
  all: boolean
  a: Set<string>
  ptr: Set<string>
  known: Set<string>
}

export interface NameKeeperOptions {
  /** The node's store (its index is read: src/store/state-index.ts). */
  source: IndexSource
  selfId: string
  membership?: MembershipView
  /** A change that may change the table: whoever keeps answers from it drops them. */
  onChange?: () => void
}

export class NameKeeper {
  private ix?: StateIndex
  private current?: NameTable
  private readonly networks = new Map<string, NetworkNames>()
  private readonly scopes = new Map<string, string[]>()
  private readonly askers = new Map<string, string>()
  /** Name -> on how many networks it has an answer (the table's `known` holds those above 0). */
  private readonly knownCount = new Map<string, number>()
  private readonly known = new Set<string>()
  private readonly nets = new Map<string, NetState>()
  /** Contributor ('s:', 't:', 'x:' and its id) -> what it offers now. */
  private readonly contribs = new Map<string, Contribution>()
  /** A task -> what its service's own names take from it ('' when nothing: not serving), and that service. */
  private readonly taskSig = new Map<string, {sid: string; sig: string}>()
  /** A service -> the creation time its tasks are ranked by (absent: no record, its tasks name nothing). */
  private readonly svcAt = new Map<string, number>()
  /** Local tasks asking from a gateway address: address -> the task ids that claim it; a task -> its address. */
  private readonly claims = new Map<string, Set<string>>()
  private readonly claimOf = new Map<string, string>()
  /** The nodes whose tasks and attachments are named (servingNodes). */
  private serving: ReadonlyMap<string, NodeRecord> = new Map()
  private changed = true
  /** What changed in the table since the last drainChanges() (for the fast path's entries: fastpath.ts). */
  private journal: TableChanges = {all: true, a: new Set(), ptr: new Set(), known: new Set()}

  private readonly dirtyTasks = new Set<string>()
  private readonly dirtyServices = new Set<string>()
  private readonly dirtyServiceRecords = new Set<string>()
  private readonly dirtyAttachments = new Set<string>()
  private readonly dirtyNetworks = new Set<string>()
  private nodesDirty = true
  private readonly unsubscribe: () => void

  constructor(private readonly o: NameKeeperOptions) {
    this.unsubscribe = o.source.onChange((key) => {
      if (this.mark(key)) o.onChange?.()
    })
  }

  stop(): void {
    this.unsubscribe()
  }

  /** Liveness changed (a node down or back): which nodes serve is read again at the next table(). */
  invalidate(): void {
    this.nodesDirty = true
  }

  /** The table as the store holds it now. A new object whenever it changed since the last call (the maps inside are shared). */
  table(): NameTable {
    this.flush()
    if (this.changed || !this.current) {
      this.current = {networks: this.networks, scopes: this.scopes, known: this.known, askers: this.askers}
      this.changed = false
    }
    return this.current
  }

  /**
   * What changed in table() since the last call: names and addresses as 'NETWORK\0NAME' and
   * 'NETWORK\0ADDRESS', `known` by name; `all`: take everything again (the first call, a reload).
   */
  drainChanges(): TableChanges {
    this.flush()
    const j = this.journal
    this.journal = {all: false, a: new Set(), ptr: new Set(), known: new Set()}
    return j
  }

  /** Whether a change of this key may change the table; marks what it touches. */
  private mark(key: string): boolean {
    const slash = key.indexOf('/')
    if (slash < 0) return false
    const id = key.slice(slash + 1)
    switch (key.slice(0, slash)) {
      case 'service':
        this.dirtyServiceRecords.add(id)
        this.dirtyServices.add(id)
        return true
      case 'task':
      case 'taskstatus':
        this.dirtyTasks.add(id)
        return true
      case 'attachment':
      case 'attachmentstatus':
        this.dirtyAttachments.add(id)
        return true
      case 'network':
        this.dirtyNetworks.add(id)
        return true
      case 'node':
        this.nodesDirty = true
        return true
      default:
        return false
    }
  }

  private flush(): void {
    const ix = indexOf(this.o.source)
    if (ix !== this.ix) this.reset(ix)
    if (this.nodesDirty) this.readNodes(ix)
    let netsChanged = false
    for (const id of this.dirtyNetworks) netsChanged = this.network(id, ix) || netsChanged
    this.dirtyNetworks.clear()
    for (const sid of this.dirtyServiceRecords) {
      const s = ix.services.get(sid)
      if (s?.createdAt === this.svcAt.get(sid) && (s !== undefined) === this.svcAt.has(sid)) continue
      // Its tasks' names are written in its place: a service come or gone, or created at another time, ranks them anew.
      if (s) this.svcAt.set(sid, s.createdAt)
      else this.svcAt.delete(sid)
      for (const tid of ix.tasksByService.get(sid)?.keys() ?? []) this.dirtyTasks.add(tid)
    }
    this.dirtyServiceRecords.clear()
    for (const tid of this.dirtyTasks) this.task(tid, ix)
    this.dirtyTasks.clear()
    for (const sid of this.dirtyServices) this.service(sid, ix)
    this.dirtyServices.clear()
    for (const xid of this.dirtyAttachments) this.attachment(xid, ix)
    this.dirtyAttachments.clear()
    if (netsChanged) for (const gw of this.claims.keys()) this.refreshAsker(gw, ix)
  }

  /** Everything again (the store was loaded again: its index is another one). */
  private reset(ix: StateIndex): void {
    this.ix = ix
    for (const id of [...this.contribs.keys()]) this.apply(id, undefined)
    for (const id of [...this.networks.keys()]) this.network(id, undefined)
    for (const tid of [...this.claimOf.keys()]) this.claim(tid, undefined, ix)
    this.taskSig.clear()
    this.svcAt.clear()
    this.serving = new Map()
    this.nodesDirty = true
    for (const id of ix.networks.keys()) this.dirtyNetworks.add(id)
    for (const [id, s] of ix.services) (this.svcAt.set(id, s.createdAt), this.dirtyServices.add(id))
    for (const id of ix.tasks.keys()) this.dirtyTasks.add(id)
    for (const id of ix.attachments.keys()) this.dirtyAttachments.add(id)
    this.changed = true
    this.journal.all = true
  }

  /** The serving nodes again; a node come or gone changes what its tasks and attachments name. */
  private readNodes(ix: StateIndex): void {
    this.nodesDirty = false
    const now = servingNodes({nodes: [...ix.nodes.values()], selfId: this.o.selfId, membership: this.o.membership})
    const flipped = [...now.keys()].filter((id) => !this.serving.has(id))
    for (const id of this.serving.keys()) if (!now.has(id)) flipped.push(id)
    this.serving = now
    if (flipped.length === 0) return
    for (const id of flipped) for (const tid of ix.tasksByNode.get(id) ?? []) this.dirtyTasks.add(tid)
    const set = new Set(flipped)
    for (const [id, x] of ix.attachments) if (set.has(x.nodeId)) this.dirtyAttachments.add(id)
  }

  /** A network's names there or not (an overlay network's only); true when the set of networks changed. */
  private network(id: string, ix: StateIndex | undefined): boolean {
    const n = ix?.networks.get(id)
    const st = this.netState(id)
    if (n?.driver === 'overlay') {
      if (st.names) {
        if (st.names.name !== n.name) ((st.names.name = n.name), (this.changed = true))
        return false
      }
      st.names = {id, name: n.name, a: new Map(), ptr: new Map(), srv: new Map()}
      this.networks.set(id, st.names)
      this.changed = true
      for (const key of st.a.keys()) this.refreshA(st, key)
      for (const ip of st.ptr.keys()) this.refreshPtr(st, ip)
      return true
    }
    if (!st.names) return false
    for (const key of st.names.a.keys()) (this.unknow(key), this.journal.a.add(`${id}\0${key}`))
    for (const ip of st.names.ptr.keys()) this.journal.ptr.add(`${id}\0${ip}`)
    st.names = undefined
    this.networks.delete(id)
    this.changed = true
    this.dropIfEmpty(st)
    return true
  }

  private task(tid: string, ix: StateIndex): void {
    const t = ix.tasks.get(tid)
    const serving = t !== undefined && isServing(t, this.serving, ix.statuses)
    // What the service's own names take from this task: when it changes, they are made again.
    const sig = serving ? `${t.slot}\0${taskName(t)}\0${t.attachments.map((a) => `${a.networkId}/${a.ip}`).join(',')}` : ''
    const sid = t?.serviceId ?? ''
    const was = this.taskSig.get(tid)
    if (was?.sid !== sid || was.sig !== sig) {
      if (was?.sig) this.dirtyServices.add(was.sid)
      if (sig) this.dirtyServices.add(sid)
      if (sig) this.taskSig.set(tid, {sid, sig})
      else this.taskSig.delete(tid)
    }
    const s = t && ix.services.get(t.serviceId)
    this.apply(`t:${tid}`, serving && s ? taskNames(t, s) : undefined)
    this.claim(tid, t, ix)
  }

  private service(sid: string, ix: StateIndex): void {
    const s = ix.services.get(sid)
    if (!s) return this.apply(`s:${sid}`, undefined)
    const tasks: Task[] = []
    for (const t of ix.tasksByService.get(sid)?.values() ?? []) if (this.taskSig.get(t.id)?.sig) tasks.push(t)
    tasks.sort((a, b) => a.slot - b.slot || (a.id < b.id ? -1 : 1))
    this.apply(`s:${sid}`, serviceNames(s, tasks))
  }

  private attachment(xid: string, ix: StateIndex): void {
    const x = ix.attachments.get(xid)
    const named = x && this.serving.has(x.nodeId) && ix.attachmentStatuses.get(xid)?.state === 'attached'
    this.apply(`x:${xid}`, named ? attachmentNames(x) : undefined)
  }

  /** A local task's claim on its gateway address (buildNames: a running task of this node that reported one). */
  private claim(tid: string, t: Task | undefined, ix: StateIndex): void {
    const st = ix.statuses.get(tid)
    const gw =
      t && t.nodeId === this.o.selfId && t.desiredState === 'running' && st?.gwIp && st.nodeId === this.o.selfId
        ? st.gwIp
        : undefined
    const was = this.claimOf.get(tid)
    if (was !== undefined && was !== gw) {
      const c = this.claims.get(was)!
      c.delete(tid)
      if (c.size === 0) this.claims.delete(was)
      this.claimOf.delete(tid)
      this.refreshAsker(was, ix)
    }
    if (gw === undefined) return
    if (was !== gw) {
      let c = this.claims.get(gw)
      if (!c) this.claims.set(gw, (c = new Set()))
      c.add(tid)
      this.claimOf.set(tid, gw)
    }
    this.refreshAsker(gw, ix)
  }

  /** An address's asker: the last claimant in key order, as buildNames' pass over the tasks leaves it. */
  private refreshAsker(gw: string, ix: StateIndex): void {
    let last: string | undefined
    for (const tid of this.claims.get(gw) ?? []) if (last === undefined || tid > last) last = tid
    const t = last === undefined ? undefined : ix.tasks.get(last)
    if (!t) {
      if (this.askers.delete(gw)) this.changed = true
      this.scopes.delete(gw)
      return
    }
    const scope = t.attachments.map((a) => a.networkId).filter((id) => this.networks.has(id))
    const was = this.scopes.get(gw)
    if (this.askers.get(gw) === t.id && was && sameList(was, scope)) return
    this.changed = true
    this.askers.set(gw, t.id)
    this.scopes.set(gw, scope)
  }

  /** A contributor's offers from now on (undefined: none); only those that differ are taken back and made. */
  private apply(id: string, next: Contribution | undefined): void {
    const prev = this.contribs.get(id)
    if (!prev && !next) return
    // The same rank: offers that did not change stay as they are (the new ones are dropped for them).
    const keep = prev && next && compareRank(prev.rank, next.rank) === 0 ? next : undefined
    if (prev)
      for (const [k, e] of prev.a) {
        const n = keep?.a.get(k)
        if (n && sameOffer(n, e)) keep!.a.set(k, e)
        else this.take(this.nets.get(e.net)!, 'a', e.key, id)
      }
    if (prev)
      for (const [k, e] of prev.ptr) {
        const n = keep?.ptr.get(k)
        if (n && n.name === e.name) keep!.ptr.set(k, e)
        else this.take(this.nets.get(e.net)!, 'ptr', e.ip, id)
      }
    if (next) {
      for (const [k, e] of next.a)
        if (!(keep && prev!.a.get(k) === e)) this.give(this.netState(e.net), 'a', e.key, {id, rank: next.rank, offer: e})
      for (const [k, e] of next.ptr)
        if (!(keep && prev!.ptr.get(k) === e)) this.give(this.netState(e.net), 'ptr', e.ip, {id, rank: next.rank, offer: e})
    }
    if (next && (next.a.size > 0 || next.ptr.size > 0)) this.contribs.set(id, next)
    else this.contribs.delete(id)
  }

  private give<K extends 'a' | 'ptr'>(st: NetState, what: K, key: string, c: Candidate<AOffer> | Candidate<PtrOffer>): void {
    const m = st[what] as Map<string, Candidate<AOffer | PtrOffer>[]>
    let l = m.get(key)
    if (!l) m.set(key, (l = []))
    let i = l.length
    while (i > 0 && compareRank(l[i - 1]!.rank, c.rank) > 0) i--
    l.splice(i, 0, c)
    if (what === 'a') this.refreshA(st, key)
    else this.refreshPtr(st, key)
  }

  private take(st: NetState, what: 'a' | 'ptr', key: string, id: string): void {
    const m = st[what] as Map<string, Candidate<AOffer | PtrOffer>[]>
    const l = m.get(key)
    const i = l?.findIndex((c) => c.id === id) ?? -1
    if (!l || i < 0) return
    l.splice(i, 1)
    if (l.length === 0) m.delete(key)
    if (what === 'a') this.refreshA(st, key)
    else this.refreshPtr(st, key)
    this.dropIfEmpty(st)
  }

  /** A name's answer on a network: its lowest-ranked offer (buildNames' first writer). */
  private refreshA(st: NetState, key: string): void {
    const nn = st.names
    if (!nn) return
    const w = st.a.get(key)?.[0]?.offer
    if (!w) {
      if (nn.a.delete(key)) ((this.changed = true), this.journal.a.add(`${st.id}\0${key}`), this.unknow(key))
      nn.srv.delete(key)
      return
    }
    if (!nn.a.has(key)) {
      const n = (this.knownCount.get(key) ?? 0) + 1
      this.knownCount.set(key, n)
      if (n === 1) (this.known.add(key), this.journal.known.add(key))
    }
    if (nn.a.get(key) !== w.rec) ((this.changed = true), this.journal.a.add(`${st.id}\0${key}`), nn.a.set(key, w.rec))
    if (nn.srv.get(key) === w.srv) return
    this.changed = true
    if (w.srv) nn.srv.set(key, w.srv)
    else nn.srv.delete(key)
  }

  /** An address's PTR: the last service or task that gives one (buildNames overwrites), else the first attachment. */
  private refreshPtr(st: NetState, ip: string): void {
    const nn = st.names
    if (!nn) return
    const l = st.ptr.get(ip) ?? []
    let w = l[0]
    for (const c of l) if (c.rank.phase < 2) w = c
    const name = w?.offer.name
    if (nn.ptr.get(ip) === name) return
    this.changed = true
    this.journal.ptr.add(`${st.id}\0${ip}`)
    if (name === undefined) nn.ptr.delete(ip)
    else nn.ptr.set(ip, name)
  }

  private unknow(key: string): void {
    const n = (this.knownCount.get(key) ?? 0) - 1
    if (n > 0) return void this.knownCount.set(key, n)
    this.knownCount.delete(key)
    this.known.delete(key)
    this.journal.known.add(key)
  }

  private netState(id: string): NetState {
    let st = this.nets.get(id)
    if (!st) this.nets.set(id, (st = {id, a: new Map(), ptr: new Map()}))
    return st
  }

  private dropIfEmpty(st: NetState): void {
    if (!st.names && st.a.size === 0 && st.ptr.size === 0) this.nets.delete(st.id)
  }
}

/** A service's own names on its networks (buildNames' first pass), from its serving tasks in slot order. */
function serviceNames(s: Service, tasks: Task[]): Contribution {
  const c: Contribution = {rank: {phase: 0, at: s.createdAt, sid: s.id, slot: 0, tid: ''}, a: new Map(), ptr: new Map()}
  const dnsrr = s.endpointMode === 'dnsrr'
  for (const netId of s.networks) {
    const ips = tasks.flatMap((t) => t.attachments.filter((a) => a.networkId === netId).map((a) => a.ip))
    const vip = s.vips?.find((x) => x.networkId === netId)?.ip
    const names = [s.name, ...(s.aliases?.find((a) => a.networkId === netId)?.names ?? [])]
    const taskTargets = tasks.flatMap((t) =>
      t.attachments.filter((a) => a.networkId === netId).map((a) => ({name: normalize(taskName(t)), ip: a.ip})),
    )
    for (const [i, name] of names.entries()) {
      const kind = i === 0 ? 'service' : 'alias'
      const key = normalize(name)
      const srv = {ports: s.ports ?? [], targets: dnsrr ? taskTargets : vip ? [{name: key, ip: vip}] : []}
      if (dnsrr) offerA(c, netId, key, {ips, rotate: true, kind}, srv)
      else if (vip) offerA(c, netId, key, {ips: [vip], rotate: false, kind}, srv)
      offerA(c, netId, normalize(`tasks.${name}`), {ips, rotate: false, kind: 'tasks'})
    }
    if (vip && !dnsrr) c.ptr.set(`${netId}\0${vip}`, {net: netId, ip: vip, name: normalize(s.name)})
  }
  return c
}

/** A serving task's own names (buildNames' second pass), ranked in its service's place. */
function taskNames(t: Task, s: Service): Contribution {
  const c: Contribution = {rank: {phase: 1, at: s.createdAt, sid: s.id, slot: t.slot, tid: t.id}, a: new Map(), ptr: new Map()}
  const short = taskName(t)
  const full = `${short}.${t.id}`
  for (const a of t.attachments) {
    offerA(c, a.networkId, normalize(full), {ips: [a.ip], rotate: false, kind: 'task'})
    offerA(c, a.networkId, normalize(short), {ips: [a.ip], rotate: false, kind: 'task'})
    // buildNames overwrites: a later attachment's PTR for the same address wins (the same name anyway).
    c.ptr.set(`${a.networkId}\0${a.ip}`, {net: a.networkId, ip: a.ip, name: normalize(full)})
  }
  return c
}

/** An attached attachment's name (buildNames' last pass). */
function attachmentNames(x: NetworkAttachment): Contribution {
  const c: Contribution = {rank: {phase: 2, at: 0, sid: x.id, slot: 0, tid: ''}, a: new Map(), ptr: new Map()}
  offerA(c, x.networkId, normalize(x.name), {ips: [x.ip], rotate: false, kind: 'attachment'})
  c.ptr.set(`${x.networkId}\0${x.ip}`, {net: x.networkId, ip: x.ip, name: normalize(x.name)})
  return c
}

/** A contributor's first offer of a name on a network is its only one (buildNames: the first writer keeps it). */
function offerA(c: Contribution, net: string, key: string, rec: NameRecord, srv?: SrvService): void {
  const k = `${net}\0${key}`
  if (!c.a.has(k)) c.a.set(k, {net, key, rec, ...(srv ? {srv} : {})})
}

function sameOffer(a: AOffer, b: AOffer): boolean {
  return sameRecord(a.rec, b.rec) && sameSrv(a.srv, b.srv)
}

function sameRecord(a: NameRecord, b: NameRecord): boolean {
  return a.kind === b.kind && a.rotate === b.rotate && sameList(a.ips, b.ips)
}

function sameSrv(a: SrvService | undefined, b: SrvService | undefined): boolean {
  if (!a || !b) return a === b
  return (
    a.targets.length === b.targets.length &&
    a.targets.every((t, i) => t.name === b.targets[i]!.name && t.ip === b.targets[i]!.ip) &&
    JSON.stringify(a.ports) === JSON.stringify(b.ports)
  )
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}
