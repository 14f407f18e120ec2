/**
 * The DNS fast path (bpf/tc_dns.c) in the fuzzer: its maps written from a name table by the
 * agent's own code (src/dns/names.ts buildNames, src/dns/fastpath.ts desiredDns), questions
 * drawn from the table's names and beyond (any case, EDNS with and without a cookie, other
 * options, types and classes, compression pointers, odd bytes), then mutated; the oracle says
 * which the fast path answers (a plain A/IN question for a name in the asker's networks, with
 * one to eight addresses; AAAA/IN for one, NOERROR and empty; A or AAAA for a name only networks
 * the asker is not on have, NXDOMAIN; PTR/IN of a reverse name, as names.ts reverseIp reads it,
 * of an address of the asker's networks, the name the responder gives) and with which bytes, and
 * that everything else passes on untouched.
 */
import * as dns from 'dns-packet'
import {SN_DNS_VNI_KNOWN, snDnsKey, snDnsName, snDnsPtr, snDnsPtrKey, snDnsScope, type CounterName} from '../src/bpf/index.js'
import {buildNames, reverseIp, type DnsView} from '../src/dns/names.js'
import {desiredDns} from '../src/dns/fastpath.js'
import type {Network, Task, TaskStatus} from '../src/model/types.js'
import {Loaded, TC_ACT_REDIRECT} from '../test/bpf/harness.js'
import {networkRecord, serviceRecord as svc} from '../test/unit/model-records.js'
import * as P from '../test/bpf/packets.js'
import {TC_ACT_UNSPEC, type Expected} from './fuzz-oracle.js'
import type {Rng} from './fuzz-packets.js'
import * as W from './fuzz-world.js'
import {skbCtx} from '../test/bpf/harness.js'

const RESOLVER = W.GW_BRIDGE
const TTL = 5
const NAME_MAX = 64
const BRIDGE_MAC = '02:42:ac:12:00:01'
const SIDE_VNI = 4099
const T_A = 1
const T_AAAA = 28
const T_PTR = 12

const net = (id: string, vni: number, third: number): Network =>
  networkRecord(id, `10.0.${third}.0/24`, {vni, gateway: `10.0.${third}.1`})
const task = (id: string, s: string, slot: number, ip: [string, string]): Task => ({
  id,
  serviceId: s,
  serviceName: s,
  slot,
  nodeId: 'n1',
  desiredState: 'running',
  attachments: [{networkId: ip[0], ip: ip[1], mac: '02:42:00:00:00:01'}],
  createdAt: 0,
})

/** A node's name table: VIP services, a dnsrr one (rotated), one with more tasks than an answer holds, two networks. */
function view(): DnsView {
  const running = (gwIp?: string): Pick<TaskStatus, 'state' | 'nodeId' | 'gwIp'> => ({state: 'running', nodeId: 'n1', gwIp})
  const many = Array.from({length: 10}, (_, i) => task(`m${i}`, 'many', i + 1, ['front', `10.0.1.${40 + i}`]))
  return {
    selfId: 'n1',
    nodes: [{id: 'n1', name: 'n1', addr: W.NODE, gossipPort: 7946, role: 'manager', state: 'ready', mtu: 1500, joinedAt: 0}],
    // side: a network the asker is not on, whose names it gets NXDOMAIN for.
    networks: [net('front', W.VNI, 1), net('back', W.VNI2, 2), net('side', SIDE_VNI, 3)],
    services: [
      svc('web', ['front'], {vips: [{networkId: 'front', ip: W.VIP}]}),
      svc('rr', ['front'], {endpointMode: 'dnsrr'}),
      svc('many', ['front'], {endpointMode: 'dnsrr'}),
      svc('db', ['back'], {vips: [{networkId: 'back', ip: '10.0.2.2'}]}),
      svc('cl', ['front', 'back'], {vips: [{networkId: 'front', ip: '10.0.1.3'}]}),
      svc('far', ['side'], {vips: [{networkId: 'side', ip: '10.0.3.2'}]}),
    ],
    tasks: [
      task('t1', 'web', 1, ['front', '10.0.1.10']),
      task('r1', 'rr', 1, ['front', '10.0.1.20']),
      task('r2', 'rr', 2, ['front', '10.0.1.21']),
      task('r3', 'rr', 3, ['front', '10.0.1.22']),
      task('d1', 'db', 1, ['back', '10.0.2.10']),
      task('f1', 'far', 1, ['side', '10.0.3.10']),
      {
        ...task('c1', 'cl', 1, ['front', '10.0.1.30']),
        attachments: [
          {networkId: 'front', ip: '10.0.1.30', mac: '02:42:00:00:00:01'},
          {networkId: 'back', ip: '10.0.2.30', mac: '02:42:00:00:00:02'},
        ],
      },
      ...many,
    ],
    statuses: new Map([
      ...['t1', 'r1', 'r2', 'r3', 'd1', 'f1', ...many.map((t) => t.id)].map((id) => [id, running()] as const),
      ['c1', running(W.TASK_GW)],
    ]),
  }
}

interface Name {
  ips: Buffer
  count: number
  flags: number
}

export function dnsFuzzer(pinRoot: string, ix: W.Ifindexes) {
  const v = view()
  const table = buildNames(v)
  const loaded = new Loaded(pinRoot, 'tc_dns.o', 'sn_tc_dns', {keepPins: true})
  const want = desiredDns({
    table,
    networks: v.networks,
    resolver: RESOLVER,
    ttl: TTL,
    gwIfindex: (id) => (id === 'c1' ? ix.gw : undefined),
  })
  const names = new Map<string, Name>()
  for (const [k, val] of want.names.values()) {
    loaded.map('sn_dns_names').update(k, val)
    const key = snDnsKey.decode(k)
    const n = snDnsName.decode(val)
    names.set(`${key.vni}/${key.name}`, {ips: Buffer.from(n.ips, 'hex'), count: n.count, flags: n.flags})
  }
  /** sn_dns_ptrs by `${vni}/${address}`: the name, or undefined when marked PASS. */
  const ptrs = new Map<string, Buffer | undefined>()
  for (const [k, val] of want.ptrs.values()) {
    loaded.map('sn_dns_ptrs').update(k, val)
    const key = snDnsPtrKey.decode(k)
    const p = snDnsPtr.decode(val)
    ptrs.set(`${key.vni}/${key.ip}`, p.flags & 1 ? undefined : Buffer.from(p.name, 'hex').subarray(0, p.len))
  }
  const scopes = new Map<number, {resolver: string; ttl: number; vnis: number[]}>()
  for (const [k, val] of want.scopes.values()) {
    loaded.map('sn_dns_scopes').update(k, val)
    const s = snDnsScope.decode(val)
    const vnis = Buffer.from(s.vnis, 'hex')
    scopes.set(k.readUInt32LE(0), {
      resolver: s.resolver,
      ttl: s.ttl,
      vnis: Array.from({length: s.count}, (_, i) => vnis.readUInt32LE(i * 4)),
    })
  }
  const known = [...table.networks.values()].flatMap((n) => [...n.a.keys()])
  // Reverse names of every address with a PTR (the asker's networks and the one it is not on), and near misses.
  const reverse = [...table.networks.values()].flatMap((n) =>
    [...n.ptr.keys()].map((ip) => `${ip.split('.').reverse().join('.')}.in-addr.arpa`),
  )
  const nearReverse = [
    '99.1.0.10.in-addr.arpa',
    '010.1.0.10.in-addr.arpa',
    '10.1.0.10.in-addr.arpa.x',
    '10.1.0.10.in-addr.arp',
    '1.10.1.0.10.in-addr.arpa',
    '1.0.10.in-addr.arpa',
    '300.1.0.10.in-addr.arpa',
    '10.1.0.10.ip6.arpa',
    'in-addr.arpa',
  ]

  /** tc_dns.c, from the maps. */
  function expectDns(p: Buffer, ifindex: number): Expected {
    const next: Expected = {verdict: TC_ACT_UNSPEC, counters: {}, label: 'pass'}
    if (
      p.length < 34 ||
      p.readUInt16BE(12) !== P.ETH_P_IP ||
      p[14] !== 0x45 ||
      p.readUInt16BE(20) & 0x3fff ||
      p[23] !== P.IPPROTO_UDP
    )
      return next
    if (p.length < 42 || p.readUInt16BE(36) !== 53) return next
    const scope = scopes.get(ifindex)
    const ip4 = (at: number) => [...p.subarray(at, at + 4)].join('.')
    if (!scope || ip4(30) !== scope.resolver) return next
    const tot = p.readUInt16BE(16)
    if (p.length !== 14 + tot || p.readUInt16BE(38) !== tot - 20) return next
    const dnslen = tot - 28
    if (dnslen < 17 || dnslen > 12 + NAME_MAX + 4 + 11 + 4 + 40) return next
    const d = p.subarray(42)
    if (d.length < 12) return next
    if ((d[2]! & 0xfa) !== 0 || d[4] !== 0 || d[5] !== 1 || d[6] || d[7] || d[8] || d[9] || d[10] !== 0 || d[11]! > 1) return next
    const edns = d[11]!
    // The name: labels of letters, digits, '-' and '_' (lowered), within NAME_MAX bytes with its root.
    const key = Buffer.alloc(NAME_MAX)
    let nlen = 0
    let nextLabel = 0
    for (let i = 0; i < NAME_MAX; i++) {
      if (12 + i >= d.length) return next
      let c = d[12 + i]!
      if (i === nextLabel) {
        if (c === 0) {
          nlen = i + 1
          break
        }
        if (c > 63) return next
        nextLabel = i + c + 1
      } else {
        if (c >= 0x41 && c <= 0x5a) c += 0x20
        else if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f)) return next
      }
      key[i] = c
    }
    if (nlen === 0) return next
    let optx = 0
    if (edns && dnslen > 12 + nlen + 4 + 11) optx = dnslen - (12 + nlen + 4 + 11)
    if (optx && (optx < 12 || optx > 44)) return next
    if (dnslen !== 12 + nlen + 4 + (edns ? 11 : 0) + optx) return next
    const q = 12 + nlen
    const qtype = d[q + 1]
    if (
      d.length < q + 4 ||
      d[q] !== 0 ||
      (qtype !== T_A && qtype !== T_AAAA && qtype !== T_PTR) ||
      d[q + 2] !== 0 ||
      d[q + 3] !== 1
    )
      return next
    if (edns) {
      const o = q + 4
      if (d.length < o + 11) return next
      if (
        d[o] !== 0 ||
        d[o + 1] !== 0 ||
        d[o + 2] !== 41 ||
        d[o + 5] !== 0 ||
        d[o + 6] !== 0 ||
        d[o + 9] !== 0 ||
        d[o + 10] !== optx
      )
        return next
      if (optx && (d.length < o + 15 || d[o + 11] !== 0 || d[o + 12] !== 10 || d[o + 13] !== 0 || d[o + 14] !== optx - 4))
        return next
    }
    let hit: Name | undefined
    // PTR: the responder's reading of the name (dotted, lower case), its address looked up in the asker's networks.
    let ptr: Buffer | undefined
    if (qtype === T_PTR) {
      const labels: string[] = []
      for (let i = 0; key[i]; i += key[i]! + 1) labels.push(key.toString('latin1', i + 1, i + 1 + key[i]!))
      const dotted = labels.join('.')
      const ip = dotted.endsWith('.in-addr.arpa') ? reverseIp(dotted) : undefined
      if (!ip) return next
      const found = scope.vnis.map((vni) => `${vni}/${ip}`).find((k) => ptrs.has(k))
      ptr = found === undefined ? undefined : ptrs.get(found)
      if (!ptr) return next // no network of the asker has it, or PASS
    } else {
      for (const vni of scope.vnis) {
        hit = names.get(`${vni}/${key.toString('hex')}`)
        if (hit) break
      }
    }
    // What it answers: the name's addresses (A), none (AAAA), or NXDOMAIN when another network has it; PTR's name.
    let count: number
    let rcode = 0
    if (ptr) count = 0
    else if (hit && qtype === T_AAAA) count = 0
    else if (hit) {
      if (hit.flags & 1 || hit.count < 1 || hit.count > 8) return next
      count = hit.count
    } else {
      const marker = names.get(`${SN_DNS_VNI_KNOWN}/${key.toString('hex')}`)
      if (scope.vnis.length < 1 || !marker || !(marker.flags & 4)) return next
      count = 0
      rcode = 3
    }
    const answers = (start: number) => {
      if (ptr) {
        const rr = Buffer.from([0xc0, 12, 0, T_PTR, 0, 1, 0, 0, 0, 0, 0, ptr.length])
        rr.writeUInt32BE(scope.ttl, 6)
        return Buffer.concat([rr, ptr])
      }
      const a = Buffer.alloc(16 * count)
      for (let i = 0; i < count; i++) {
        const j = (i + start) % count
        Buffer.from([0xc0, 12, 0, 1, 0, 1]).copy(a, i * 16)
        a.writeUInt32BE(scope.ttl, i * 16 + 6)
        a.writeUInt16BE(4, i * 16 + 10)
        hit!.ips.copy(a, i * 16 + 12, j * 4, j * 4 + 4)
      }
      return a
    }
    const build = (start: number): Buffer => {
      const head = Buffer.from(p.subarray(0, 42 + q + 4))
      p.copy(head, 0, 6, 12)
      p.copy(head, 6, 0, 6)
      p.copy(head, 26, 30, 34)
      p.copy(head, 30, 26, 30)
      p.copy(head, 34, 36, 38)
      p.copy(head, 36, 34, 36)
      const opt = edns ? Buffer.from([0, 0, 41, 1232 >> 8, 1232 & 0xff, 0, 0, 0, 0, 0, 0]) : Buffer.alloc(0)
      const out = Buffer.concat([head, answers(start), opt])
      out.writeUInt16BE(out.length - 14, 16)
      out[22] = 64
      out.writeUInt16BE(0, 24)
      out.writeUInt16BE(P.inetChecksum(out.subarray(14, 34)), 24)
      out.writeUInt16BE(out.length - 34, 38)
      out.writeUInt16BE(0, 40)
      out[44] = 0x84 | (d[2]! & 1)
      out[45] = 0x80 | rcode
      out.writeUInt16BE(ptr ? 1 : count, 48)
      return out
    }
    const rotate = count > 0 && (hit!.flags & 2) !== 0
    const counters = {dns_fast_answer: 1} as Partial<Record<CounterName, number>>
    const label = ptr
      ? 'dns_fast_answer (ptr)'
      : rcode
        ? 'dns_fast_answer (nxdomain)'
        : count === 0
          ? 'dns_fast_answer (aaaa empty)'
          : 'dns_fast_answer'
    if (!rotate) return {verdict: TC_ACT_REDIRECT, counters, label, out: build(0)}
    const all = Array.from({length: count}, (_, s) => build(s))
    return {
      verdict: TC_ACT_REDIRECT,
      counters,
      label: 'dns_fast_answer (rotated)',
      check: (out) =>
        all.some((b) => b.equals(out))
          ? undefined
          : `no rotation of the answer:\n  got  ${out.toString('hex')}\n  want ${all[0]!.toString('hex')}`,
    }
  }

  function question(r: Rng): Buffer {
    const rev = r.chance(0.15)
    const pick = rev
      ? r.pick(r.chance(0.8) ? reverse : nearReverse)
      : r.chance(0.8)
        ? r.pick(known)
        : r.pick(['nope', 'web.', 'a'.repeat(63), 'x'.repeat(40) + '.' + 'y'.repeat(30), 'we b', 'tasks.rr', ''])
    const name = [...pick].map((c) => (r.chance(0.3) ? c.toUpperCase() : c)).join('')
    const kind = r.int(10)
    const options =
      kind === 0
        ? [{code: 10, data: r.bytes(r.pick([8, 16, 40, 41, 7]))}]
        : kind === 1
          ? [{code: r.pick([8, 12, 65001]), data: r.bytes(r.int(10))}]
          : []
    const edns = kind < 4
    try {
      const b = dns.encode({
        type: 'query',
        id: r.int(65536),
        flags: r.chance(0.8) ? dns.RECURSION_DESIRED : r.int(65536) & 0x7fff,
        questions: [
          {
            type:
              rev && r.chance(0.8)
                ? 'PTR'
                : r.chance(0.75)
                  ? 'A'
                  : r.chance(0.6)
                    ? 'AAAA'
                    : r.pick(['TXT', 'SRV', 'PTR'] as const),
            name,
            class: r.chance(0.95) ? 'IN' : 'CH',
          },
        ],
        ...(edns ? {additionals: [{type: 'OPT', name: '.', udpPayloadSize: 4096, options} as unknown as dns.Answer]} : {}),
      })
      if (r.chance(0.03) && b.length > 14) b[12] = 0xc0 // a compression pointer
      return b
    } catch {
      return r.bytes(12 + r.int(40))
    }
  }

  const ctxs = new Map<number, Buffer>()
  const ctx = (i: number) => ctxs.get(i) ?? (ctxs.set(i, skbCtx(i)), ctxs.get(i)!)

  return {
    loaded,
    /** One question through the program, judged; false when none was run (too large). */
    fuzzOne(
      r: Rng,
      judge: (prog: string, pkt: Buffer, want: Expected, run: () => {retval: number; data: Buffer}) => void,
    ): boolean {
      const q = question(r)
      const dst = r.chance(0.9) ? RESOLVER : r.pick([W.NODE, '8.8.8.8'])
      const tcp = r.chance(0.03)
      const l4 = tcp
        ? P.tcp({srcPort: 40000, dstPort: 53, flags: 0x18}, q)
        : P.udp({srcPort: 1024 + r.int(60000), dstPort: r.chance(0.97) ? 53 : 5353}, q)
      let f = P.ethernet(
        {dst: BRIDGE_MAC, src: W.macOfIp(W.TASK_GW), type: P.ETH_P_IP},
        P.ipv4Packet({src: W.TASK_GW, dst, protocol: tcp ? P.IPPROTO_TCP : P.IPPROTO_UDP, id: r.int(65536)}, l4),
      )
      if (r.chance(0.15)) f = mutateDns(r, f)
      if (f.length > 3000) return false
      const dev = r.chance(0.95) ? ix.gw : ix.hostGw
      judge('tc_dns', f, expectDns(f, dev), () => loaded.run(f, {ctx: ctx(dev)}))
      return true
    },
  }
}

/** A byte of the question or its headers changed, the frame cut or grown. */
function mutateDns(r: Rng, f: Buffer): Buffer {
  const out = Buffer.from(f)
  switch (r.int(3)) {
    case 0:
      out[14 + r.int(out.length - 14)] = r.u32() & 0xff
      return out
    case 1:
      return out.subarray(0, 34 + r.int(Math.max(1, out.length - 33)))
    default:
      return Buffer.concat([out, r.bytes(1 + r.int(8))])
  }
}
