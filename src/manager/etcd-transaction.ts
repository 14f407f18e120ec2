// A manager's transaction on etcd (issue 24): what a request (or a batch of them) wrote, as one
// etcd transaction that holds only if nothing it relied on changed. It compares each record it
// writes, each network its records name and each allocation it takes or frees at the revision
// it was decided over, and claims or frees the allocation keys (etcd-keys.ts): racing managers
// never get the same address, name or port. Built from what the request read (the copy, or the
// copy with landed commits on top: etcd-pipeline.ts Overlaid), sent with commit().
import type {IOperation, Namespace} from 'etcd3'
import type {Json} from '../store/json.js'
import type {CachedKv} from './etcd-cache.js'
import {ALLOC, HOST_PORT, LEADER, NETWORK_GUARD, ROLES, ROLE_GUARD, STATE, allocationsOf, hostPortsOf} from './etcd-keys.js'

/** How many times a request's transaction is decided and sent before it is refused (it kept losing races). */
export const MAX_ATTEMPTS = 30

/**
 * etcd refuses a transaction with more comparisons, or more operations in a branch, than its
 * --max-txn-ops (128 by default): a batch stops below it.
 */
export const MAX_TXN_OPS = 128

type Compare = [string, 'Mod' | 'Create', '==', string | number]
/** A transaction: what it compares, what it puts and deletes (writes: the keys of both), and the operations that do it. */
export type Txn = {
  compares: Compare[]
  puts: [string, string][]
  deletes: string[]
  writes: string[]
  then: (ns: Namespace) => IOperation[]
}

/** The reads a transaction is built from: the copy's keys, or the copy with landed commits on top (Overlaid). */
export type KvView = Pick<ReadonlyMap<string, CachedKv>, 'get' | 'has'>

/** Builds a transaction from its compares, puts and deletes. */
function txnOf(compares: Compare[], puts: [string, string][], deletes: string[]): Txn {
  return {
    compares,
    puts,
    deletes,
    writes: [...puts.map(([k]) => k), ...deletes],
    then: (ns) => [...puts.map(([k, v]) => ns.put(k).value(v)), ...deletes.map((k) => ns.delete().key(k))],
  }
}

/** Sends a transaction (it holds or not: see TxnResult's succeeded). */
export function commit(ns: Namespace, t: Txn) {
  // etcd3's builder takes one comparison per call: the first in if(), the others in and().
  let b = ns.if(...t.compares[0]!)
  for (const c of t.compares.slice(1)) b = b.and(...c)
  return b.then(...t.then(ns)).commit()
}

/** What etcd answered a transaction: whether it held, and the revision it is at. */
export type TxnResult = Awaited<ReturnType<typeof commit>>

/**
 * What transaction() computed for one batch, kept while the batch is decided: it builds the
 * transaction again after each request (to check etcd's limit and the keys in flight), over the
 * records of those before it, which are then the same objects and the same read values. Records
 * are not changed once written (a change is a new object), so a record's JSON stays its JSON.
 */
export class TxnMemo {
  private readonly json = new WeakMap<object, string>()
  private readonly parsed = new Map<string, Json>()

  stringify(value: Json): string {
    if (typeof value !== 'object' || value === null) return JSON.stringify(value)
    let s = this.json.get(value)
    if (s === undefined) this.json.set(value, (s = JSON.stringify(value)))
    return s
  }

  parse(text: string): Json {
    let v = this.parsed.get(text)
    if (v === undefined) this.parsed.set(text, (v = JSON.parse(text) as Json))
    return v
  }
}

/** No memo: each call computes afresh. */
const FRESH = {stringify: (v: Json) => JSON.stringify(v), parse: (t: string) => JSON.parse(t) as Json}

/**
 * The transaction for a request's writes, against what it read: compares (each record and
 * allocation touched is at its read revision) and operations (the records, their allocations).
 */
export function transaction(
  snap: KvView,
  ops: Map<string, Json | null>,
  leaderRevision: string | undefined,
  memo: Pick<TxnMemo, 'stringify' | 'parse'> = FRESH,
): Txn {
  const compares: Compare[] = []
  const mod = (k: string) => snap.get(k)?.mod ?? 0
  const puts: [string, string][] = []
  const deletes: string[] = []
  const claimed = new Map<string, string>()
  const freed = new Set<string>()
  const watchedNets = new Set<string>()
  let networksChange = false
  for (const [key, value] of ops) {
    const sk = STATE + key
    compares.push([sk, 'Mod', '==', mod(sk)])
    const before = snap.get(sk)
    const old = before ? memo.parse(before.value) : undefined
    for (const a of allocationsOf(key, old)) freed.add(a)
    for (const a of allocationsOf(key, value)) {
      // Two records of one transaction (a batch's requests) never hold one address, name or port.
      const other = claimed.get(a)
      if (other !== undefined && other !== key) throw new Error(`internal: ${a} is given to both ${other} and ${key}`)
      claimed.set(a, key)
    }
    if (value === null) deletes.push(sk)
    else puts.push([sk, memo.stringify(value)])
    if (key.startsWith('network/') || key === 'cluster') networksChange = true
    // A record that names networks holds only while they exist as read.
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const v = value as Record<string, unknown>
      if (Array.isArray(v.networks)) for (const n of v.networks) if (typeof n === 'string') watchedNets.add(n)
      if (typeof v.networkId === 'string') watchedNets.add(v.networkId)
      if (Array.isArray(v.attachments))
        for (const a of v.attachments as {networkId?: unknown}[])
          if (typeof a.networkId === 'string') watchedNets.add(a.networkId)
    }
  }
  for (const n of watchedNets) {
    const sk = `${STATE}network/${n}`
    if (!ops.has(`network/${n}`)) compares.push([sk, 'Mod', '==', mod(sk)])
  }
  for (const [a, owner] of claimed) {
    const ak = ALLOC + a
    const held = snap.get(ak)?.value
    if (held === owner) {
      freed.delete(a)
      continue
    }
    // A host-mode port's key is taken over by an ingress port decided over a state with no host-mode use of it.
    if (held !== undefined && held !== HOST_PORT && !freed.has(a) && !ops.has(held))
      throw new Error(`internal: ${a} is held by ${held} in etcd, yet ${owner} was given it`)
    freed.delete(a)
    compares.push([ak, 'Mod', '==', mod(ak)])
    puts.push([ak, owner])
  }
  // Host-mode ports: each one a task written here may hold on its node, or that a service newly
  // publishes, is rewritten (see etcd-keys.ts): any other transaction that does the same, or
  // claims the number for ingress, read it at another revision and is decided again.
  for (const a of hostPortsTouched(snap, ops, memo)) {
    const ak = ALLOC + a
    const held = snap.get(ak)?.value
    if (claimed.has(a)) throw new Error(`internal: ${a} is given both in ingress and in host mode`)
    if (held !== undefined && held !== HOST_PORT && !freed.has(a) && !ops.has(held))
      throw new Error(`internal: ${a} is held by ${held} in etcd, yet host mode was given it`)
    freed.delete(a)
    compares.push([ak, 'Mod', '==', mod(ak)])
    puts.push([ak, HOST_PORT])
  }
  for (const a of freed) {
    const ak = ALLOC + a
    if (!snap.has(ak)) continue
    compares.push([ak, 'Mod', '==', mod(ak)])
    deletes.push(ak)
  }
  if (networksChange) {
    compares.push([NETWORK_GUARD, 'Mod', '==', mod(NETWORK_GUARD)])
    puts.push([NETWORK_GUARD, String(Date.now())])
  }
  if (leaderRevision !== undefined) compares.push([LEADER, 'Create', '==', leaderRevision])
  return txnOf(compares, puts, deletes)
}

/**
 * The host-mode port keys a transaction's writes touch: the host ports of the service (as it will
 * be) of each task written, and those a service publishes that it did not. A task removed frees its
 * node's port: a racer that read it held was only kept from that node, so removals rewrite nothing.
 * A host-mode port, once published, keeps its key (HOST_PORT names no owner to free it with).
 */
function hostPortsTouched(snap: KvView, ops: Map<string, Json | null>, memo: Pick<TxnMemo, 'parse'>): Set<string> {
  const out = new Set<string>()
  const read = (k: string): Json | undefined => {
    const v = snap.get(STATE + k)?.value
    return v === undefined ? undefined : memo.parse(v)
  }
  const services = new Map<string, string[]>()
  const hostPortsOfService = (id: string): string[] => {
    let ports = services.get(id)
    if (ports === undefined) {
      const k = `service/${id}`
      ports = hostPortsOf(ops.has(k) ? ops.get(k) : read(k))
      services.set(id, ports)
    }
    return ports
  }
  for (const [key, value] of ops) {
    if (value === null) continue
    if (key.startsWith('task/')) {
      const sid = (value as {serviceId?: unknown}).serviceId
      if (typeof sid === 'string') for (const a of hostPortsOfService(sid)) out.add(a)
    } else if (key.startsWith('service/')) {
      const before = new Set(hostPortsOf(read(key)))
      for (const a of hostPortsOf(value)) if (!before.has(a)) out.add(a)
    }
  }
  return out
}

/**
 * A request's transaction with the nodes it removes: roles/<id> = left, serialized with the role
 * changes by guard/roles (compared and bumped), so a removal and a promotion are taken in order.
 */
export function withLeft(t: Txn, kvs: KvView, left: ReadonlySet<string>): Txn {
  if (left.size === 0) return t
  return txnOf(
    [...t.compares, [ROLE_GUARD, 'Mod', '==', kvs.get(ROLE_GUARD)?.mod ?? 0]],
    [...t.puts, ...[...left].map((id): [string, string] => [ROLES + id, 'left']), [ROLE_GUARD, String(Date.now())]],
    t.deletes,
  )
}
