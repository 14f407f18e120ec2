// The load balancer in sn_tc_task on crafted frames (BPF_PROG_TEST_RUN): a
// new flow to a VIP gets the backend the TypeScript Maglev table names for its
// hash (the C and TS picks agree), its destination rewritten with valid
// checksums; a tracked flow keeps its backend; replies get the VIP back; the
// VIP answers ping; a VIP without backends, a backend that left and fragments
// are refused and counted (TCP: RST).

import assert from 'node:assert/strict'
import {after, before, describe, it} from 'node:test'
import {snBackendKey, snCt, snCtKey, SN_CT_FLAGS, snEndpoint, snEndpointKey} from '../../src/bpf/index.js'
import {maglevSize, maglevTable} from '../../src/lb/maglev.js'
import {lbSlot} from '../../src/lb/hash.js'
import {Loaded, TC_ACT_REDIRECT, TC_ACT_SHOT, pinRootFor, skbCtx} from './harness.js'
import * as P from './packets.js'

const NODE = '172.30.0.11'
const PEER = '172.30.0.12'
const VNI = 4097
const CLIENT = {ip: '10.0.1.4', mac: '02:42:0a:00:01:04'}
const VIP = {ip: '10.0.1.100', mac: '02:42:0a:00:01:64'}
const NO_SVC_VIP = {ip: '10.0.1.101', mac: '02:42:0a:00:01:65'}
const B = [
  {key: 'task-a', ip: '10.0.1.5', mac: '02:42:0a:00:01:05', local: true},
  {key: 'task-b', ip: '10.0.1.9', mac: '02:42:0a:00:01:09', local: false},
  {key: 'task-c', ip: '10.0.1.10', mac: '02:42:0a:00:01:0a', local: false},
]
const ctx = skbCtx(1)
let l: Loaded

function endpoint(ip: string, mac: string, flags: number, nodeIp: string, ifindex: number): void {
  l.map('sn_endpoints').update(snEndpointKey.encode({vni: VNI, ip}), snEndpoint.encode({node_ip: nodeIp, ifindex, mac, flags}))
}

/** Point the VIP at a table of these backends under `table`, with their set. */
function program(table: number, backends: typeof B, size = maglevSize(3)): void {
  for (const b of B) l.map('sn_backends').delete(snBackendKey.encode({vni: VNI, vip: VIP.ip, ip: b.ip}))
  l.addService(
    VNI,
    VIP.ip,
    table,
    backends.map((b) => ({key: b.key, ip: b.ip, nodeIp: b.local ? NODE : PEER})),
    size,
  )
}

/** A frame with its L4 checksum filled in (the kernel's rewrite must keep it valid). */
function frame(o: {
  src?: string
  dst?: string
  proto: number
  sport?: number
  dport?: number
  flags?: number
  fragOff?: number
  dstMac?: string
  srcMac?: string
}): Buffer {
  const src = o.src ?? CLIENT.ip
  const dst = o.dst ?? VIP.ip
  let l4: Buffer
  if (o.proto === P.IPPROTO_TCP)
    l4 = P.tcp({srcPort: o.sport ?? 40000, dstPort: o.dport ?? 80, flags: o.flags ?? 0x02, seq: 1000}, Buffer.from('hello'))
  else if (o.proto === P.IPPROTO_UDP) l4 = P.udp({srcPort: o.sport ?? 40000, dstPort: o.dport ?? 53}, Buffer.from('hello udp'))
  else l4 = P.icmpEcho({}, Buffer.from('ping'))
  const off = o.proto === P.IPPROTO_TCP ? 16 : o.proto === P.IPPROTO_UDP ? 6 : -1
  if (off >= 0) l4.writeUInt16BE(P.l4Checksum(src, dst, o.proto, l4), off)
  return P.ethernet(
    {dst: o.dstMac ?? VIP.mac, src: o.srcMac ?? CLIENT.mac, type: P.ETH_P_IP},
    P.ipv4Packet({src, dst, protocol: o.proto, fragOff: o.fragOff}, l4),
  )
}

/** The IP packet inside what came out: past the VXLAN headers when it was encapsulated. */
function inner(out: Buffer, sent: Buffer): Buffer {
  return out.length === sent.length + P.VXLAN_OVERHEAD ? out.subarray(P.ETH_HLEN + P.VXLAN_OVERHEAD) : out.subarray(P.ETH_HLEN)
}

const addrOf = (b: Buffer, at: number): string => [...b.subarray(at, at + 4)].join('.')

/** Both checksums of an IPv4 packet verify. */
function assertChecksums(ip: Buffer): void {
  assert.equal(P.inetChecksum(ip.subarray(0, 20)), 0, 'IP header checksum')
  const proto = ip[9]!
  const l4 = ip.subarray(20, ip.readUInt16BE(2))
  if (proto === P.IPPROTO_ICMP) assert.equal(P.inetChecksum(l4), 0, 'ICMP checksum')
  else assert.equal(P.l4Checksum(addrOf(ip, 12), addrOf(ip, 16), proto, l4), 0, 'L4 checksum')
}

function run(f: Buffer): {retval: number; data: Buffer; delta: Record<string, number>} {
  const {res, delta} = l.runCounted(f, {ctx})
  return {retval: res.retval, data: res.data, delta}
}

before(() => {
  l = new Loaded(pinRootFor('lb'), 'tc_task.o', 'sn_tc_task')
  l.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex: 1})
  l.addNetwork(VNI, '10.0.1.0', 24)
  l.addDevice(1, VNI, CLIENT.ip)
  endpoint(CLIENT.ip, CLIENT.mac, 1, NODE, 1)
  endpoint(VIP.ip, VIP.mac, 2, '0.0.0.0', 0)
  endpoint(NO_SVC_VIP.ip, NO_SVC_VIP.mac, 2, '0.0.0.0', 0)
  for (const b of B) endpoint(b.ip, b.mac, (b.local ? 1 : 0) | 4, b.local ? NODE : PEER, b.local ? 1 : 0)
  program(1, B)
})

after(() => l?.close())

describe('sn_tc_task: VIPs', () => {
  it('a new flow goes to the backend the TS Maglev table names for its hash, DNAT with valid checksums (TCP, UDP)', () => {
    const size = maglevSize(3)
    const table = maglevTable(
      B.map((b) => b.key),
      size,
    )
    const seen = new Set<string>()
    for (const proto of [P.IPPROTO_TCP, P.IPPROTO_UDP]) {
      for (let sport = 41000; sport < 41030; sport++) {
        const f = frame({proto, sport})
        const r = run(f)
        const want = B[table[lbSlot(CLIENT.ip, VIP.ip, sport, proto === P.IPPROTO_TCP ? 80 : 53, proto, size)]!]!
        assert.equal(r.retval, TC_ACT_REDIRECT)
        assert.equal(r.delta.lb_new_flow, 1)
        const ip = inner(r.data, f)
        assert.equal(addrOf(ip, 16), want.ip, `sport ${sport}: C and TS pick the same backend`)
        assert.equal(addrOf(ip, 12), CLIENT.ip)
        assertChecksums(ip)
        seen.add(want.ip)
      }
    }
    assert.equal(seen.size, 3, 'all backends get flows')
  })

  it('a tracked flow keeps its backend without a new pick', () => {
    const f = frame({proto: P.IPPROTO_UDP, sport: 41000})
    const first = inner(run(f).data, f)
    const r = run(f)
    assert.equal(r.delta.lb_new_flow, undefined)
    assert.equal(addrOf(inner(r.data, f), 16), addrOf(first, 16))
  })

  it('a reply from a local backend to a local client gets the VIP back as source, checksums valid', () => {
    // Find a flow whose backend is the local one, then play the backend's side on the same device.
    let sport = 42000
    for (; ; sport++) {
      const f = frame({proto: P.IPPROTO_TCP, sport})
      if (addrOf(inner(run(f).data, f), 16) === B[0]!.ip) break
    }
    l.addDevice(1, VNI, B[0]!.ip, 1)
    try {
      const reply = frame({
        proto: P.IPPROTO_TCP,
        src: B[0]!.ip,
        dst: CLIENT.ip,
        sport: 80,
        dport: sport,
        flags: 0x12,
        srcMac: B[0]!.mac,
        dstMac: CLIENT.mac,
      })
      const r = run(reply)
      assert.equal(r.retval, TC_ACT_REDIRECT)
      assert.deepEqual(r.delta, {lb_rev_nat: 1, tc_local: 1})
      const ip = r.data.subarray(P.ETH_HLEN)
      assert.equal(addrOf(ip, 12), VIP.ip)
      assert.equal(addrOf(ip, 16), CLIENT.ip)
      assertChecksums(ip)
      // Not a flow of ours: no change.
      const other = frame({
        proto: P.IPPROTO_TCP,
        src: B[0]!.ip,
        dst: CLIENT.ip,
        sport: 81,
        dport: sport,
        srcMac: B[0]!.mac,
        dstMac: CLIENT.mac,
      })
      assert.equal(addrOf(run(other).data.subarray(P.ETH_HLEN), 12), B[0]!.ip)
    } finally {
      l.addDevice(1, VNI, CLIENT.ip)
    }
  })

  it('the VIP answers ICMP echo itself', () => {
    const f = frame({proto: P.IPPROTO_ICMP})
    const r = run(f)
    assert.equal(r.retval, TC_ACT_REDIRECT)
    assert.deepEqual(r.delta, {lb_echo: 1})
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), VIP.ip)
    assert.equal(addrOf(ip, 16), CLIENT.ip)
    assert.equal(ip[20], 0, 'echo reply')
    assert.equal(P.mac(CLIENT.mac).equals(r.data.subarray(0, 6)), true)
    assertChecksums(ip)
  })

  it('a VIP with no service entry: UDP dropped and counted, TCP answered with RST from the VIP', () => {
    const u = run(frame({proto: P.IPPROTO_UDP, dst: NO_SVC_VIP.ip, dstMac: NO_SVC_VIP.mac}))
    assert.equal(u.retval, TC_ACT_SHOT)
    assert.deepEqual(u.delta, {lb_no_backend: 1})
    const t = run(frame({proto: P.IPPROTO_TCP, dst: NO_SVC_VIP.ip, dstMac: NO_SVC_VIP.mac}))
    assert.equal(t.retval, TC_ACT_REDIRECT)
    assert.deepEqual(t.delta, {lb_no_backend: 1})
    const ip = t.data.subarray(P.ETH_HLEN)
    assert.equal(t.data.length, P.ETH_HLEN + 40)
    assert.equal(addrOf(ip, 12), NO_SVC_VIP.ip)
    assert.equal(ip[33]! & 0x04, 0x04, 'RST')
    assert.equal(ip.readUInt32BE(28), 1000 + 5 + 1, 'acknowledges the SYN and its payload')
    assertChecksums(ip)
  })

  it('a tracked flow whose backend left the set gets RST and its entry removed; new flows avoid it', () => {
    const size = maglevSize(3)
    let sport = 43000
    for (; ; sport++) {
      const f = frame({proto: P.IPPROTO_TCP, sport, flags: 0x10})
      if (addrOf(inner(run(f).data, f), 16) === B[1]!.ip) break
    }
    program(2, [B[0]!, B[2]!], size)
    try {
      const r = run(frame({proto: P.IPPROTO_TCP, sport, flags: 0x10}))
      assert.equal(r.retval, TC_ACT_REDIRECT)
      assert.deepEqual(r.delta, {lb_backend_gone: 1})
      const ip = r.data.subarray(P.ETH_HLEN)
      assert.equal(ip[33]! & 0x04, 0x04, 'RST')
      assert.equal(addrOf(ip, 12), VIP.ip)
      assertChecksums(ip)
      const key = snCtKey.encode({vni: VNI, src: CLIENT.ip, dst: VIP.ip, sport, dport: 80, proto: P.IPPROTO_TCP, dir: 0})
      assert.equal(l.map('sn_ct').lookup(key), undefined)
      // The next packet of that 5-tuple is a new flow, on a backend still there.
      const again = run(frame({proto: P.IPPROTO_TCP, sport}))
      assert.equal(again.delta.lb_new_flow, 1)
      assert.notEqual(addrOf(inner(again.data, frame({proto: P.IPPROTO_TCP, sport})), 16), B[1]!.ip)
      // A tracked flow whose backend stayed goes on through the new table.
      const kept = run(frame({proto: P.IPPROTO_UDP, sport: 41000}))
      assert.equal(kept.retval, TC_ACT_REDIRECT)
    } finally {
      program(1, B)
    }
  })

  it('fragments to a VIP are dropped and counted', () => {
    const r = run(frame({proto: P.IPPROTO_UDP, fragOff: 0x2000}))
    assert.equal(r.retval, TC_ACT_SHOT)
    assert.deepEqual(r.delta, {lb_fragment: 1})
  })
})

const TCP_FIN = 0x01
const TCP_SYN = 0x02
const TCP_RST = 0x04
const TCP_ACK = 0x10
/** The close grace of bpf/include/nat.h (SN_CT_CLOSE_GRACE_NS), and a margin. */
const GRACE_MS = 5000 + 1500

const fwdKey = (sport: number, proto = P.IPPROTO_TCP, dport = 80) =>
  snCtKey.encode({vni: VNI, src: CLIENT.ip, dst: VIP.ip, sport, dport, proto, dir: 0})
const repKey = (backend: string, sport: number, proto = P.IPPROTO_TCP, dport = 80) =>
  snCtKey.encode({vni: VNI, src: backend, dst: CLIENT.ip, sport: dport, dport: sport, proto, dir: 1})
const ct = (k: Buffer) => {
  const v = l.map('sn_ct').lookup(k)
  return v && snCt.decode(v)
}

/** A new flow (from `from` up) whose backend is the local one, B[0]. */
function localFlow(from: number, proto = P.IPPROTO_TCP): {sport: number; out: Buffer} {
  for (let sport = from; ; sport++) {
    const f = frame({proto, sport, flags: TCP_SYN})
    const out = inner(run(f).data, f)
    if (addrOf(out, 16) === B[0]!.ip) return {sport, out: Buffer.from(out)}
  }
}

/** Run a frame as the local backend B[0] sends it (its device in place of the client's). */
function asBackend<T>(fn: () => T): T {
  l.addDevice(1, VNI, B[0]!.ip, 1)
  try {
    return fn()
  } finally {
    l.addDevice(1, VNI, CLIENT.ip)
  }
}

const fromBackend = (sport: number, flags: number, proto = P.IPPROTO_TCP) =>
  frame({proto, src: B[0]!.ip, dst: CLIENT.ip, sport: 80, dport: sport, flags, srcMac: B[0]!.mac, dstMac: CLIENT.mac})

describe('sn_tc_task: TCP tracking ends with the connection, never by idling', () => {
  it('a RST from the client, or from the backend, removes both entries of the flow at once', () => {
    const a = localFlow(44000)
    assert.ok(ct(fwdKey(a.sport)) && ct(repKey(B[0]!.ip, a.sport)))
    const r = run(frame({proto: P.IPPROTO_TCP, sport: a.sport, flags: TCP_RST | TCP_ACK}))
    assert.equal(r.retval, TC_ACT_REDIRECT)
    assert.equal(addrOf(inner(r.data, frame({proto: P.IPPROTO_TCP})), 16), B[0]!.ip, 'the RST itself still goes to the backend')
    assert.equal(r.delta.lb_ct_reset, 1)
    assert.equal(ct(fwdKey(a.sport)), undefined)
    assert.equal(ct(repKey(B[0]!.ip, a.sport)), undefined)

    const b = localFlow(a.sport + 1)
    const rr = asBackend(() => run(fromBackend(b.sport, TCP_RST | TCP_ACK)))
    assert.equal(rr.delta.lb_rev_nat, 1, 'the RST itself still reaches the client from the VIP')
    assert.equal(addrOf(rr.data.subarray(P.ETH_HLEN), 12), VIP.ip)
    assert.equal(rr.delta.lb_ct_reset, 1)
    assert.equal(ct(fwdKey(b.sport)), undefined)
    assert.equal(ct(repKey(B[0]!.ip, b.sport)), undefined)
  })

  it('FIN both ways: the last ACK still translates, both entries go after the grace; an idle open flow stays', async () => {
    const idle = localFlow(45000)
    const idleUdp = frame({proto: P.IPPROTO_UDP, sport: 45500})
    run(idleUdp)
    const c = localFlow(idle.sport + 1)
    // Client FIN, backend FIN+ACK, client's last ACK.
    run(frame({proto: P.IPPROTO_TCP, sport: c.sport, flags: TCP_FIN | TCP_ACK}))
    assert.equal(ct(fwdKey(c.sport))!.flags, SN_CT_FLAGS.FIN_CLIENT, 'one side closed: still open')
    const finAck = asBackend(() => run(fromBackend(c.sport, TCP_FIN | TCP_ACK)))
    assert.equal(addrOf(finAck.data.subarray(P.ETH_HLEN), 12), VIP.ip)
    assert.equal(
      ct(fwdKey(c.sport))!.flags,
      SN_CT_FLAGS.FIN_CLIENT | SN_CT_FLAGS.FIN_BACKEND | SN_CT_FLAGS.SEEN_FIN,
      'closing: the timer is armed',
    )
    const lastAck = run(frame({proto: P.IPPROTO_TCP, sport: c.sport, flags: TCP_ACK}))
    assert.equal(lastAck.delta.lb_new_flow, undefined)
    assert.equal(addrOf(inner(lastAck.data, frame({proto: P.IPPROTO_TCP})), 16), B[0]!.ip, 'the last ACK reaches the backend')
    // A FIN the backend sends again (its ACK was lost) is still given the VIP.
    const again = asBackend(() => run(fromBackend(c.sport, TCP_FIN | TCP_ACK)))
    assert.equal(again.delta.lb_rev_nat, 1)
    const closedBefore = l.stats().lb_ct_closed
    await new Promise((r) => setTimeout(r, GRACE_MS))
    assert.equal(ct(fwdKey(c.sport)), undefined, 'forward entry reclaimed after the grace')
    assert.equal(ct(repKey(B[0]!.ip, c.sport)), undefined, 'reply entry reclaimed with it')
    assert.equal(l.stats().lb_ct_closed - closedBefore, 1n)
    // The open flows idled as long and are untouched: no timer is ever armed on them.
    assert.ok(ct(fwdKey(idle.sport)) && ct(repKey(B[0]!.ip, idle.sport)), 'an idle TCP flow keeps both entries')
    assert.ok(ct(fwdKey(45500, P.IPPROTO_UDP, 53)), 'an idle UDP flow keeps its entry')
    const hit = run(frame({proto: P.IPPROTO_TCP, sport: idle.sport, flags: TCP_ACK}))
    assert.equal(hit.delta.lb_new_flow, undefined, 'and its next packet is a tracking hit')
    assert.equal(addrOf(inner(hit.data, frame({proto: P.IPPROTO_TCP})), 16), B[0]!.ip)
  })

  it('a SYN on the port of a closing flow starts a new flow instead of riding the old one', () => {
    const c = localFlow(46000)
    run(frame({proto: P.IPPROTO_TCP, sport: c.sport, flags: TCP_FIN | TCP_ACK}))
    asBackend(() => run(fromBackend(c.sport, TCP_FIN | TCP_ACK)))
    assert.ok(ct(fwdKey(c.sport))!.flags & SN_CT_FLAGS.SEEN_FIN)
    const syn = run(frame({proto: P.IPPROTO_TCP, sport: c.sport, flags: TCP_SYN}))
    assert.equal(syn.delta.lb_new_flow, 1)
    assert.equal(ct(fwdKey(c.sport))!.flags, 0, 'a fresh entry, not closing')
  })

  it('a reply entry lost to LRU while the forward one stays is written again, so replies keep the VIP', () => {
    const c = localFlow(47000)
    l.map('sn_ct').delete(repKey(B[0]!.ip, c.sport)) // what LRU eviction does to a flow whose replies are rare
    const f = run(frame({proto: P.IPPROTO_TCP, sport: c.sport, flags: TCP_ACK}))
    assert.equal(f.delta.lb_reply_restored, 1)
    assert.equal(f.delta.lb_new_flow, undefined)
    assert.equal(ct(repKey(B[0]!.ip, c.sport))!.addr, VIP.ip)
    const reply = asBackend(() => run(fromBackend(c.sport, TCP_ACK)))
    assert.equal(reply.delta.lb_rev_nat, 1)
    assert.equal(addrOf(reply.data.subarray(P.ETH_HLEN), 12), VIP.ip)
    assertChecksums(reply.data.subarray(P.ETH_HLEN))
    // With both there, a forward packet writes nothing.
    assert.equal(run(frame({proto: P.IPPROTO_TCP, sport: c.sport, flags: TCP_ACK})).delta.lb_reply_restored, undefined)
  })

  // The address is written directly and the L4 checksum by the kernel's helper, which fails on a
  // header cut short: then nothing may have changed (the fuzzer found a source rewritten alone).
  it('a reply whose TCP header is cut short before its checksum is delivered untouched, not half translated', () => {
    const f = localFlow(52000)
    const whole = fromBackend(f.sport, TCP_ACK)
    const cut = whole.subarray(0, P.ETH_HLEN + 20 + 9)
    const r = asBackend(() => run(cut))
    assert.equal(r.retval, TC_ACT_REDIRECT)
    assert.equal(r.delta.lb_rev_nat, undefined)
    assert.deepEqual(r.data, cut, 'no byte changed')
  })
})

describe('sn_tc_task: a task that is its own backend (hairpin)', () => {
  it('the task reaches itself through the VIP and sees the VIP as its peer both ways', () => {
    const self = {key: 'task-client', ip: CLIENT.ip, mac: CLIENT.mac, local: true}
    program(3, [self])
    try {
      for (const proto of [P.IPPROTO_TCP, P.IPPROTO_UDP]) {
        const dport = proto === P.IPPROTO_TCP ? 80 : 53
        const syn = frame({proto, sport: 48000, flags: TCP_SYN})
        const r = run(syn)
        assert.equal(r.retval, TC_ACT_REDIRECT)
        assert.equal(r.delta.lb_hairpin, 1)
        assert.equal(r.delta.tc_local, 1)
        let ip = r.data.subarray(P.ETH_HLEN)
        assert.equal(addrOf(ip, 12), VIP.ip, 'from the VIP: a packet from its own address would be a martian')
        assert.equal(addrOf(ip, 16), CLIENT.ip)
        assert.equal(P.mac(CLIENT.mac).equals(r.data.subarray(0, 6)), true)
        assertChecksums(ip)
        // The task answers its peer, the VIP: back to itself, from VIP:port.
        const reply = frame({proto, src: CLIENT.ip, dst: VIP.ip, sport: dport, dport: 48000, flags: TCP_SYN | TCP_ACK})
        const rr = run(reply)
        assert.equal(rr.retval, TC_ACT_REDIRECT)
        assert.deepEqual(rr.delta, {lb_hairpin: 1, tc_local: 1})
        ip = rr.data.subarray(P.ETH_HLEN)
        assert.equal(addrOf(ip, 12), VIP.ip)
        assert.equal(addrOf(ip, 16), CLIENT.ip)
        assert.equal(ip.readUInt16BE(20), dport)
        assert.equal(ip.readUInt16BE(22), 48000)
        assertChecksums(ip)
      }
      // Closing a hairpin flow reclaims it like any other.
      run(frame({proto: P.IPPROTO_TCP, sport: 48000, flags: TCP_RST | TCP_ACK}))
      assert.equal(ct(fwdKey(48000)), undefined)
    } finally {
      program(1, B)
    }
  })
})

describe('sn_tc_task: ICMP errors from a backend', () => {
  it('port unreachable for a UDP datagram sent to the VIP reaches the client from the VIP, quoting the VIP', () => {
    const u = localFlow(49000, P.IPPROTO_UDP)
    // What the backend's stack sends: type 3 code 3, quoting the datagram as it arrived (to the backend).
    const quote = u.out.subarray(0, u.out.readUInt16BE(2))
    const msg = Buffer.concat([Buffer.from([3, 3, 0, 0, 0, 0, 0, 0]), quote])
    msg.writeUInt16BE(P.inetChecksum(msg), 2)
    const f = P.ethernet(
      {dst: CLIENT.mac, src: B[0]!.mac, type: P.ETH_P_IP},
      P.ipv4Packet({src: B[0]!.ip, dst: CLIENT.ip, protocol: P.IPPROTO_ICMP}, msg),
    )
    const r = asBackend(() => run(f))
    assert.equal(r.retval, TC_ACT_REDIRECT)
    assert.deepEqual(r.delta, {lb_rev_nat_icmp: 1, tc_local: 1})
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), VIP.ip, 'outer source')
    assert.equal(P.inetChecksum(ip.subarray(0, 20)), 0, 'outer IP checksum')
    assert.equal(P.inetChecksum(ip.subarray(20)), 0, 'ICMP checksum')
    const q = ip.subarray(28)
    assert.equal(addrOf(q, 12), CLIENT.ip)
    assert.equal(addrOf(q, 16), VIP.ip, 'the quote names the VIP the client sent to')
    assert.equal(P.inetChecksum(q.subarray(0, 20)), 0, 'quoted IP checksum')
    assert.equal(P.l4Checksum(CLIENT.ip, VIP.ip, P.IPPROTO_UDP, q.subarray(20)), 0, 'quoted UDP checksum')
    // An ICMP error about a datagram of no tracked flow is left as it is.
    const other = Buffer.from(f)
    other.writeUInt16BE(12345, P.ETH_HLEN + 28 + 20) // the quoted source port
    const o = asBackend(() => run(other))
    assert.equal(o.delta.lb_rev_nat_icmp, undefined)
    assert.equal(addrOf(o.data.subarray(P.ETH_HLEN), 12), B[0]!.ip)
  })
})

describe('sn_tc_task: a UDP flow through a VIP ends after its idle lifetime (sn_config.ct_udp_idle)', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
  const udpReply = (sport: number) =>
    frame({proto: P.IPPROTO_UDP, src: B[0]!.ip, dst: CLIENT.ip, sport: 53, dport: sport, srcMac: B[0]!.mac, dstMac: CLIENT.mac})

  it('kept alive while packets go by either way; idle past the lifetime, its reply is no longer translated and its next packet is a new flow', async () => {
    l.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex: 1, ctUdpIdle: 1})
    try {
      const u = localFlow(50000, P.IPPROTO_UDP)
      const fwd = frame({proto: P.IPPROTO_UDP, sport: u.sport})
      // Packets every 0.6 s for 2.4 s, alternately from the client and from the backend: never idle for 1 s.
      for (let i = 0; i < 4; i++) {
        await sleep(600)
        if (i % 2 === 0) {
          const r = run(fwd)
          assert.equal(r.delta.lb_new_flow, undefined, `forward packet ${i}: still the same flow`)
        } else {
          const r = asBackend(() => run(udpReply(u.sport)))
          assert.equal(r.delta.lb_rev_nat, 1, `reply ${i}: still given the VIP`)
        }
      }
      // Idle for more than the lifetime (whole seconds are compared: 2.2 s is at least 2 > 1).
      await sleep(2200)
      const late = asBackend(() => run(udpReply(u.sport)))
      assert.equal(late.delta.lb_rev_nat, undefined, 'a reply after the lifetime is not given the VIP')
      const r = run(fwd)
      assert.deepEqual(
        {expired: r.delta.lb_ct_expired, fresh: r.delta.lb_new_flow},
        {expired: 1, fresh: 1},
        'the next packet ends the old flow and starts a new one',
      )
      assert.equal(addrOf(inner(r.data, fwd), 16), B[0]!.ip, 'picked afresh: the same backend while the table is the same')
    } finally {
      l.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex: 1})
    }
  })

  // The programs read the coarse clock (a tick behind the fine one the agent writes `seen` with at an
  // upgrade): an entry seen a moment "ahead" is just seen, not 2^32 - 1 seconds idle.
  it("a flow last seen a second ahead of the programs' clock is alive both ways, not expired", () => {
    const u = localFlow(51000, P.IPPROTO_UDP)
    const ahead = Number(process.hrtime.bigint() / 1_000_000_000n) + 1
    for (const k of [fwdKey(u.sport, P.IPPROTO_UDP, 53), repKey(B[0]!.ip, u.sport, P.IPPROTO_UDP, 53)]) {
      const v = ct(k)!
      l.map('sn_ct').update(k, snCt.encode({...v, seen: ahead}))
    }
    const back = asBackend(() => run(udpReply(u.sport)))
    assert.equal(back.delta.lb_rev_nat, 1, 'the reply is given the VIP')
    const r = run(frame({proto: P.IPPROTO_UDP, sport: u.sport}))
    assert.deepEqual({expired: r.delta.lb_ct_expired, fresh: r.delta.lb_new_flow}, {expired: undefined, fresh: undefined})
  })
})
