// What the DNS fast path's maps hold (bpf/include/dns.h), from the same name table the
// TypeScript responder answers from: per network (VNI), every name with its A addresses (a name
// the fast path must not answer, one with more addresses than fit, is there marked PASS, so a
// later network of the task cannot shadow it; dnsrr's names are marked ROTATE: the program starts
// each answer at a random address, the responder at the next in turn); every name some network
// has, under SN_DNS_VNI_KNOWN marked KNOWN (a task none of whose networks has it gets NXDOMAIN);
// per asking task's gateway-bridge device, the resolver's address, the TTL and the task's
// networks in order; per network and address of a task, a VIP or an attachment, the name a
// reverse (PTR) question for it gets, as the responder gives it (one longer than the fast path
// holds, or not a plain name, marked PASS, so a later network cannot shadow it).
//
// A name the responder does not look up as a plain name (one that reads as a reverse or an SRV
// question) is not written at all, neither per network nor KNOWN: the fast path must not answer
// what the responder answers otherwise.
import {
  SN_DNS_FLAGS,
  SN_DNS_MAX_IPS,
  SN_DNS_MAX_NETS,
  SN_DNS_NAME_MAX,
  SN_DNS_PTR_MAX,
  SN_DNS_VNI_KNOWN,
  snDnsKey,
  snDnsName,
  snDnsPtr,
  snDnsPtrKey,
  snDnsScope,
  u32,
} from '../bpf/codecs.js'
import type {DesiredDns, Entries} from '../dataplane/desired.js'
import type {Network} from '../model/types.js'
import {EntryCache, NO_CACHE, type Entry} from '../dataplane/entry-cache.js'
import {SRV_NAME, type NameRecord, type NameTable} from './names.js'
import type {TableChanges} from './name-keeper.js'

/**
 * A name as the fast path keys it (or answers it, with max SN_DNS_PTR_MAX): wire format, lower
 * case, root label included; undefined when it cannot be one.
 */
export function wireName(name: string, max = SN_DNS_NAME_MAX): Buffer | undefined {
  const labels = name.toLowerCase().split('.')
  if (labels.some((l) => l.length === 0 || l.length > 63 || !/^[a-z0-9_-]+$/.test(l))) return undefined
  const out = Buffer.concat([
    ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])),
    Buffer.from([0]),
  ])
  return out.length <= max ? out : undefined
}

export interface FastPathInput {
  table: NameTable
  networks: Network[]
  /** The resolver's address (the gateway bridge's) and the TTL of answers. */
  resolver: string
  ttl: number
  /** The host-side gateway-bridge device of a task of this node, by task id; undefined when it is not there. */
  gwIfindex: (taskId: string) => number | undefined
  /** The entries of the last call, to take again those whose inputs are the same (absent: all encoded anew). */
  cache?: EntryCache
}

const entry = (k: Buffer, v: Buffer): Entry => [k.toString('hex'), [k, v]]

/** A name resolve() does not take for a plain name: a reverse (PTR) or SRV question's. */
const special = (name: string) => name.endsWith('.in-addr.arpa') || SRV_NAME.test(name)

export function desiredDns(o: FastPathInput): DesiredDns {
  const cache = o.cache ?? NO_CACHE
  const vniOf = vnisOf(o.networks)
  const names: Entries = new Map()
  const add = (to: Entries, e: Entry | null) => void (e && to.set(...e))
  for (const nn of o.table.networks.values()) {
    const vni = vniOf.get(nn.id)
    if (vni === undefined) continue
    for (const [name, r] of nn.a) {
      const pass = r.ips.length > SN_DNS_MAX_IPS
      const key = `a\0${vni}\0${name}\0${pass ? 'pass' : r.ips.join(',')}\0${r.rotate}`
      add(
        names,
        cache.get(key, () => nameEntry(vni, name, r)),
      )
    }
  }
  for (const name of o.table.known)
    add(
      names,
      cache.get(`known\0${name}`, () => knownEntry(name)),
    )
  const ptrs: Entries = new Map()
  for (const nn of o.table.networks.values()) {
    const vni = vniOf.get(nn.id)
    if (vni === undefined) continue
    for (const [ip, name] of nn.ptr)
      add(
        ptrs,
        cache.get(`ptr\0${vni}\0${ip}\0${name}`, () => ptrEntry(vni, ip, name)),
      )
  }
  const scopes = scopeEntries(o, vniOf, cache)
  o.cache?.turn()
  return {names, ptrs, scopes}
}

/** Network id -> VNI, for the networks that have one. */
const vnisOf = (networks: Network[]) => new Map(networks.filter((n) => n.vni !== undefined).map((n) => [n.id, n.vni!]))

/** A name's entry on a network (VNI); null when the fast path cannot ask for it (it passes such names on). */
function nameEntry(vni: number, name: string, r: NameRecord): Entry | null {
  const pass = r.ips.length > SN_DNS_MAX_IPS
  // Not there, in no network: the fast path passes it on (it is so in every network or none).
  const wire = special(name) ? undefined : wireName(name)
  if (!wire) return null
  const ips = Buffer.alloc(4 * SN_DNS_MAX_IPS)
  if (!pass) r.ips.forEach((ip, i) => ip.split('.').forEach((b, j) => (ips[i * 4 + j] = Number(b))))
  return entry(
    snDnsKey.encode({vni, name: wire.toString('hex')}),
    snDnsName.encode({
      ips: ips.toString('hex'),
      count: pass ? 0 : r.ips.length,
      flags: pass ? SN_DNS_FLAGS.PASS : r.rotate ? SN_DNS_FLAGS.ROTATE : 0,
    }),
  )
}

const NO_IPS = Buffer.alloc(4 * SN_DNS_MAX_IPS).toString('hex')

/** A name some network has, under SN_DNS_VNI_KNOWN; null as for nameEntry. */
function knownEntry(name: string): Entry | null {
  const wire = special(name) ? undefined : wireName(name)
  if (!wire) return null
  return entry(
    snDnsKey.encode({vni: SN_DNS_VNI_KNOWN, name: wire.toString('hex')}),
    snDnsName.encode({ips: NO_IPS, count: 0, flags: SN_DNS_FLAGS.KNOWN}),
  )
}

/** The PTR of an address on a network (VNI). */
function ptrEntry(vni: number, ip: string, name: string): Entry {
  const wire = wireName(name, SN_DNS_PTR_MAX)
  const buf = Buffer.alloc(SN_DNS_PTR_MAX)
  wire?.copy(buf)
  return entry(
    snDnsPtrKey.encode({vni, ip}),
    snDnsPtr.encode({len: wire?.length ?? 0, flags: wire ? 0 : SN_DNS_FLAGS.PASS, name: buf.toString('hex')}),
  )
}

/** Per asking task's gateway-bridge device: the resolver, the TTL and its networks (as many as this node has tasks: made anew each call). */
function scopeEntries(
  o: Omit<FastPathInput, 'cache'>,
  vniOf: ReadonlyMap<string, number>,
  cache: Pick<EntryCache, 'get'>,
): Entries {
  const scopes: Entries = new Map()
  for (const [gwIp, netIds] of o.table.scopes) {
    const taskId = o.table.askers.get(gwIp)
    const ifindex = taskId ? o.gwIfindex(taskId) : undefined
    if (!ifindex) continue
    const vnis = netIds.map((id) => vniOf.get(id)).filter((v): v is number => v !== undefined)
    // A task on more networks than the fast path looks in, or on one it cannot look in (no VNI),
    // asks the slow path for everything: the fast path would miss names the responder finds.
    const used = vnis.length <= SN_DNS_MAX_NETS && vnis.length === netIds.length ? vnis : []
    const e = cache.get(`scope\0${ifindex}\0${used.join(',')}\0${o.resolver}\0${o.ttl}`, () => {
      const buf = Buffer.alloc(4 * SN_DNS_MAX_NETS)
      used.forEach((v, i) => u32.encode(v).copy(buf, i * 4))
      return entry(
        u32.encode(ifindex),
        snDnsScope.encode({resolver: o.resolver, ttl: o.ttl, count: used.length, vnis: buf.toString('hex')}),
      )
    })
    if (e) scopes.set(...e)
  }
  return scopes
}

/**
 * desiredDns kept from the name table's changes (NameKeeper.drainChanges): only the entries of
 * names and addresses that changed are made again, so a pass's read costs what changed, not the
 * cluster. The maps it returns are new objects whenever their content changed (the map sync
 * remembers what it wrote by them: mapsync.ts MirrorMemo) and the same ones otherwise. The
 * scopes are gone through each call (one per task of this node, whose devices come and go
 * outside the store), encoded again only where their inputs changed.
 */
export class FastPathKeeper {
  private readonly names: Entries = new Map()
  private readonly ptrs: Entries = new Map()
  /** 'a\0NETWORK\0NAME', 'k\0NAME', 'NETWORK\0ADDRESS' -> the hex key of the entry it made. */
  private readonly made = new Map<string, string>()
  private vniSig?: string
  private vniOf: ReadonlyMap<string, number> = new Map()
  private out?: {names: Entries; ptrs: Entries}
  private namesChanged = true
  private ptrsChanged = true
  /** The scopes' entries of the last call, taken again where their inputs are the same. */
  private readonly scopeCache = new EntryCache()

  constructor(private readonly changes: () => TableChanges) {}

  desired(o: Omit<FastPathInput, 'cache'>): DesiredDns {
    const c = this.changes()
    const vniOf = vnisOf(o.networks)
    const sig = [...vniOf].map(([id, v]) => `${id}=${v}`).join(',')
    if (c.all || sig !== this.vniSig) {
      this.vniSig = sig
      this.vniOf = vniOf
      this.everything(o.table)
    } else {
      for (const k of c.a) this.name(o.table, k)
      for (const k of c.known) this.known(o.table, k)
      for (const k of c.ptr) this.ptr(o.table, k)
    }
    if (!this.out || this.namesChanged || this.ptrsChanged) {
      this.out = {
        names: this.namesChanged || !this.out ? new Map(this.names) : this.out.names,
        ptrs: this.ptrsChanged || !this.out ? new Map(this.ptrs) : this.out.ptrs,
      }
      this.namesChanged = this.ptrsChanged = false
    }
    const scopes = scopeEntries(o, this.vniOf, this.scopeCache)
    this.scopeCache.turn()
    return {...this.out, scopes}
  }

  private everything(t: NameTable): void {
    this.names.clear()
    this.ptrs.clear()
    this.made.clear()
    for (const nn of t.networks.values()) {
      for (const name of nn.a.keys()) this.name(t, `${nn.id}\0${name}`)
      for (const ip of nn.ptr.keys()) this.ptr(t, `${nn.id}\0${ip}`)
    }
    for (const name of t.known) this.known(t, name)
    this.namesChanged = this.ptrsChanged = true
  }

  private name(t: NameTable, k: string): void {
    const at = k.indexOf('\0')
    const net = k.slice(0, at)
    const name = k.slice(at + 1)
    const r = t.networks.get(net)?.a.get(name)
    const vni = this.vniOf.get(net)
    if (this.put(this.names, `a\0${k}`, r && vni !== undefined ? nameEntry(vni, name, r) : null)) this.namesChanged = true
  }

  private known(t: NameTable, name: string): void {
    if (this.put(this.names, `k\0${name}`, t.known.has(name) ? knownEntry(name) : null)) this.namesChanged = true
  }

  private ptr(t: NameTable, k: string): void {
    const at = k.indexOf('\0')
    const net = k.slice(0, at)
    const ip = k.slice(at + 1)
    const name = t.networks.get(net)?.ptr.get(ip)
    const vni = this.vniOf.get(net)
    if (this.put(this.ptrs, k, name !== undefined && vni !== undefined ? ptrEntry(vni, ip, name) : null)) this.ptrsChanged = true
  }

  /** An item's entry from now on (null: none); whether the map's content changed. */
  private put(to: Entries, id: string, e: Entry | null): boolean {
    const was = this.made.get(id)
    if (e && was === e[0] && to.get(was)![1].equals(e[1][1])) return false
    if (was !== undefined) to.delete(was)
    if (e) (to.set(...e), this.made.set(id, e[0]))
    else this.made.delete(id)
    return was !== undefined || e !== null
  }
}
