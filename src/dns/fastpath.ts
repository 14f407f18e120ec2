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
import {NO_CACHE, type Entry, type EntryCache} from '../dataplane/entry-cache.js'
import {SRV_NAME, type NameTable} from './names.js'

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
  const vniOf = new Map(o.networks.filter((n) => n.vni !== undefined).map((n) => [n.id, n.vni!]))
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
        cache.get(key, () => {
          // Not there, in no network: the fast path passes it on (it is so in every network or none).
          const wire = special(name) ? undefined : wireName(name)
          if (!wire) return null // the fast path cannot ask for it either: it passes such names on
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
        }),
      )
    }
  }
  const noIps = Buffer.alloc(4 * SN_DNS_MAX_IPS).toString('hex')
  for (const name of o.table.known) {
    add(
      names,
      cache.get(`known\0${name}`, () => {
        const wire = special(name) ? undefined : wireName(name)
        if (!wire) return null
        return entry(
          snDnsKey.encode({vni: SN_DNS_VNI_KNOWN, name: wire.toString('hex')}),
          snDnsName.encode({ips: noIps, count: 0, flags: SN_DNS_FLAGS.KNOWN}),
        )
      }),
    )
  }
  const ptrs: Entries = new Map()
  for (const nn of o.table.networks.values()) {
    const vni = vniOf.get(nn.id)
    if (vni === undefined) continue
    for (const [ip, name] of nn.ptr) {
      add(
        ptrs,
        cache.get(`ptr\0${vni}\0${ip}\0${name}`, () => {
          const wire = wireName(name, SN_DNS_PTR_MAX)
          const buf = Buffer.alloc(SN_DNS_PTR_MAX)
          wire?.copy(buf)
          return entry(
            snDnsPtrKey.encode({vni, ip}),
            snDnsPtr.encode({len: wire?.length ?? 0, flags: wire ? 0 : SN_DNS_FLAGS.PASS, name: buf.toString('hex')}),
          )
        }),
      )
    }
  }
  const scopes: Entries = new Map()
  for (const [gwIp, netIds] of o.table.scopes) {
    const taskId = o.table.askers.get(gwIp)
    const ifindex = taskId ? o.gwIfindex(taskId) : undefined
    if (!ifindex) continue
    const vnis = netIds.map((id) => vniOf.get(id)).filter((v): v is number => v !== undefined)
    // A task on more networks than the fast path looks in, or on one it cannot look in (no VNI),
    // asks the slow path for everything: the fast path would miss names the responder finds.
    const used = vnis.length <= SN_DNS_MAX_NETS && vnis.length === netIds.length ? vnis : []
    const buf = Buffer.alloc(4 * SN_DNS_MAX_NETS)
    used.forEach((v, i) => u32.encode(v).copy(buf, i * 4))
    scopes.set(
      ...entry(
        u32.encode(ifindex),
        snDnsScope.encode({resolver: o.resolver, ttl: o.ttl, count: used.length, vnis: buf.toString('hex')}),
      ),
    )
  }
  o.cache?.turn()
  return {names, ptrs, scopes}
}
