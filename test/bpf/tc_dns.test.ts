// sn_tc_dns on crafted queries (BPF_PROG_TEST_RUN): an A question for a cluster name (or a PTR
// question for an address of the task's networks) is answered in place and sent back into the
// task, with exactly the bytes the TypeScript responder sends for the same question; everything
// else passes on untouched (TC_ACT_UNSPEC).
//
// The maps are filled by the agent's own code (buildNames -> desiredDns), and the device is
// ifindex 1 (this namespace's loopback, never modified) standing for a task's gateway-bridge veth.
import assert from 'node:assert/strict'
import {after, before, describe, it} from 'node:test'
import * as dns from 'dns-packet'
import {buildNames, type DnsView, type NameTable} from '../../src/dns/names.js'
import {desiredDns} from '../../src/dns/fastpath.js'
import {Responder} from '../../src/dns/responder.js'
import {snDnsKey, snDnsScope} from '../../src/bpf/index.js'
import {DnsStats} from '../../src/dns/stats.js'
import type {Network, Task, TaskStatus} from '../../src/model/types.js'
import {Loaded, TC_ACT_REDIRECT, pinRootFor, skbCtx} from './harness.js'
import * as P from './packets.js'
import {networkRecord, serviceRecord as svc} from '../unit/model-records.js'

const TC_ACT_UNSPEC = 0xffffffff
const DEV = 1
const RESOLVER = '172.18.0.1'
const TASK_GW = '172.18.0.7'
const TASK_MAC = '02:42:ac:12:00:07'
const BRIDGE_MAC = '02:42:ac:12:00:01'
const TTL = 5
/** A service and task whose PTR name (NAME.SLOT.TASKID) is longer than the fast path holds (131 bytes on the wire). */
const LONG_SVC = 'l'.repeat(63)
const LONG_TASK = 'x'.repeat(63)

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

function view(): DnsView {
  const running = (gwIp?: string): Pick<TaskStatus, 'state' | 'nodeId' | 'gwIp'> => ({state: 'running', nodeId: 'n1', gwIp})
  return {
    selfId: 'n1',
    nodes: [
      {id: 'n1', name: 'n1', addr: '192.168.0.1', gossipPort: 7946, role: 'manager', state: 'ready', mtu: 1500, joinedAt: 0},
    ],
    networks: [net('front', 4097, 1), net('back', 4098, 2)],
    services: [
      svc('web', ['front'], {vips: [{networkId: 'front', ip: '10.0.1.2'}]}),
      svc('rr', ['front'], {endpointMode: 'dnsrr'}),
      svc('db', ['back'], {vips: [{networkId: 'back', ip: '10.0.2.2'}]}),
      svc('cl', ['front'], {vips: [{networkId: 'front', ip: '10.0.1.3'}]}),
      svc(LONG_SVC, ['front'], {vips: [{networkId: 'front', ip: '10.0.1.4'}]}),
    ],
    tasks: [
      task('t1', 'web', 1, ['front', '10.0.1.10']),
      task('t2', 'web', 2, ['front', '10.0.1.11']),
      task('r1', 'rr', 1, ['front', '10.0.1.20']),
      task('r2', 'rr', 2, ['front', '10.0.1.21']),
      task('d1', 'db', 1, ['back', '10.0.2.10']),
      task('c1', 'cl', 1, ['front', '10.0.1.30']),
      task(LONG_TASK, LONG_SVC, 1, ['front', '10.0.1.40']),
    ],
    statuses: new Map([
      ['t1', running()],
      ['t2', running()],
      ['r1', running()],
      ['r2', running()],
      ['d1', running()],
      ['c1', running(TASK_GW)],
      [LONG_TASK, running()],
    ]),
  }
}

let l: Loaded
let table: NameTable
let responder: Responder
const ctx = skbCtx(DEV)

before(() => {
  table = buildNames(view())
  l = new Loaded(pinRootFor('tc_dns'), 'tc_dns.o', 'sn_tc_dns')
  const want = desiredDns({
    table,
    networks: view().networks,
    resolver: RESOLVER,
    ttl: TTL,
    gwIfindex: (id) => (id === 'c1' ? DEV : undefined),
  })
  for (const [k, v] of want.names.values()) l.map('sn_dns_names').update(k, v)
  for (const [k, v] of want.ptrs.values()) l.map('sn_dns_ptrs').update(k, v)
  for (const [k, v] of want.scopes.values()) l.map('sn_dns_scopes').update(k, v)
  responder = new Responder({
    names: () => table,
    ttl: TTL,
    stats: new DnsStats(),
    forwarder: {forward: async () => undefined},
  })
})

after(() => l?.close())

function query(
  name: string,
  o: {
    type?: dns.RecordType
    cls?: dns.RecordClass
    rd?: boolean
    edns?: boolean
    cookie?: boolean
    options?: {code: number; data: Buffer}[]
  } = {},
): Buffer {
  const options = o.options ?? (o.cookie ? [{code: 10, data: Buffer.alloc(8, 7)}] : [])
  const opt = {type: 'OPT', name: '.', udpPayloadSize: 4096, options}
  return dns.encode({
    type: 'query',
    id: 0xbeef,
    flags: o.rd === false ? 0 : dns.RECURSION_DESIRED,
    questions: [{type: o.type ?? 'A', name, class: o.cls ?? 'IN'}],
    ...(o.edns || o.cookie || o.options ? {additionals: [opt as unknown as dns.Answer]} : {}),
  })
}

function frame(payload: Buffer, o: {dst?: string; dport?: number; proto?: number} = {}): Buffer {
  const l4 =
    o.proto === P.IPPROTO_TCP
      ? P.tcp({srcPort: 40000, dstPort: 53, flags: 0x18}, payload)
      : P.udp({srcPort: 40000, dstPort: o.dport ?? 53}, payload)
  return P.ethernet(
    {dst: BRIDGE_MAC, src: TASK_MAC, type: P.ETH_P_IP},
    P.ipv4Packet({src: TASK_GW, dst: o.dst ?? RESOLVER, protocol: o.proto ?? P.IPPROTO_UDP}, l4),
  )
}

function passes(f: Buffer, what: string, c = ctx): void {
  const {res, delta} = l.runCounted(f, {ctx: c})
  assert.equal(res.retval >>> 0, TC_ACT_UNSPEC, `${what}: verdict ${res.retval}`)
  assert.deepEqual(delta, {}, what)
  assert.deepEqual(res.data, f, `${what}: the frame must leave untouched`)
}

/** Runs the query through the program: it must be answered; returns the DNS payload sent back. */
function answered(q: Buffer): Buffer {
  const f = frame(q)
  const {res, delta} = l.runCounted(f, {ctx})
  assert.equal(res.retval, TC_ACT_REDIRECT)
  assert.deepEqual(delta, {dns_fast_answer: 1})
  const out = res.data
  // Ethernet, IPv4 and UDP turned around, lengths and header checksum right.
  assert.equal(P.mac(TASK_MAC).compare(out.subarray(0, 6)), 0)
  assert.equal(P.mac(BRIDGE_MAC).compare(out.subarray(6, 12)), 0)
  const ip = out.subarray(14, 34)
  assert.equal(P.inetChecksum(ip), 0, 'IPv4 header checksum')
  assert.equal(ip.readUInt16BE(2), out.length - 14)
  assert.deepEqual([...ip.subarray(12, 16)], [...P.ipv4(RESOLVER)])
  assert.deepEqual([...ip.subarray(16, 20)], [...P.ipv4(TASK_GW)])
  assert.equal(out.readUInt16BE(34), 53)
  assert.equal(out.readUInt16BE(36), 40000)
  assert.equal(out.readUInt16BE(38), out.length - 34)
  return out.subarray(42)
}

describe('sn_tc_dns: the DNS fast path', () => {
  it('answers A of a service name with its VIP: the same bytes as the TypeScript responder', async () => {
    for (const q of [
      query('web'),
      query('WeB'),
      query('web.'),
      query('web', {rd: false}),
      query('web', {edns: true}),
      query('tasks.web'),
      query('tasks.web', {edns: true}),
      // dig's default: a client cookie; and a client cookie with a server's, the longest there is.
      query('web', {cookie: true}),
      query('tasks.web', {options: [{code: 10, data: Buffer.alloc(40, 9)}]}),
      query('web.2.t2'),
      query('cl'),
    ]) {
      const fast = answered(q)
      const slow = await responder.answer(q, TASK_GW, false)
      assert.ok(slow)
      assert.equal(fast.toString('hex'), slow.toString('hex'), `the answers to ${dns.decode(q).questions![0]!.name} differ`)
      const d = dns.decode(fast)
      assert.equal(d.id, 0xbeef)
    }
    const d = dns.decode(answered(query('tasks.web'))) as unknown as {answers: {data: string; ttl: number}[]}
    assert.deepEqual(
      d.answers.map((a) => [a.data, a.ttl]),
      [
        ['10.0.1.10', TTL],
        ['10.0.1.11', TTL],
      ],
    )
  })

  it("answers a dnsrr name with every running task, from a random one round: a turn of the responder's answer", async () => {
    const q = query('rr')
    const slow = (await responder.answer(q, TASK_GW, false))!
    const records = (b: Buffer) => (dns.decode(b) as unknown as {answers: {data: string}[]}).answers.map((a) => a.data)
    const want = records(slow)
    assert.equal(want.length, 2)
    const orders = new Set<string>()
    for (let i = 0; i < 32; i++) {
      const fast = answered(q)
      const got = records(fast)
      // Everything but the order of the records is the responder's, byte for byte.
      assert.equal(fast.length, slow.length)
      assert.equal(fast.subarray(0, 12).toString('hex'), slow.subarray(0, 12).toString('hex'))
      assert.ok(
        got.every((_, k) => got[k] === want[(k + want.indexOf(got[0]!)) % want.length]),
        `${got.join(',')} is not a turn of ${want.join(',')}`,
      )
      orders.add(got.join(','))
    }
    assert.equal(orders.size, 2, 'both starting addresses seen in 32 answers')
  })

  it("answers AAAA of a name of the task's networks NOERROR and empty, and a name only other networks have NXDOMAIN: the responder's bytes", async () => {
    const cases: [Buffer, number, number][] = [
      [query('web', {type: 'AAAA'}), 0, 0],
      [query('WEB.', {type: 'AAAA', edns: true}), 0, 1],
      [query('tasks.rr', {type: 'AAAA', cookie: true}), 0, 1],
      [query('rr', {type: 'AAAA', rd: false}), 0, 0],
      // A name of the cluster on no network of the asking task: NXDOMAIN, whatever the type.
      [query('db'), 3, 0],
      [query('DB', {type: 'AAAA'}), 3, 0],
      [query('tasks.db', {edns: true}), 3, 1],
      [query('db.1.d1', {cookie: true}), 3, 1],
    ]
    for (const [q, rcode, arcount] of cases) {
      const fast = answered(q)
      const slow = await responder.answer(q, TASK_GW, false)
      assert.ok(slow)
      const what = `${dns.decode(q).questions![0]!.type} ${dns.decode(q).questions![0]!.name}`
      assert.equal(fast.toString('hex'), slow.toString('hex'), `the answers to ${what} differ`)
      assert.equal(fast.readUInt16BE(2) & 0xf, rcode, what)
      assert.equal(fast.readUInt16BE(6), 0, `${what}: no answer records`)
      assert.equal(fast.readUInt16BE(10), arcount, `${what}: our OPT when asked with one`)
    }
  })

  it("answers PTR of a VIP's and a task's address with the responder's name, TTL and bytes, in any case", async () => {
    const cases: [Buffer, string][] = [
      [query('2.1.0.10.in-addr.arpa', {type: 'PTR'}), 'web'],
      [query('2.1.0.10.IN-ADDR.Arpa.', {type: 'PTR'}), 'web'],
      [query('10.1.0.10.in-addr.arpa', {type: 'PTR', edns: true}), 'web.1.t1'],
      [query('11.1.0.10.in-addr.arpa', {type: 'PTR', cookie: true}), 'web.2.t2'],
      [query('3.1.0.10.in-addr.arpa', {type: 'PTR', rd: false}), 'cl'],
      [query('30.1.0.10.In-Addr.ARPA', {type: 'PTR', options: [{code: 10, data: Buffer.alloc(40, 9)}]}), 'cl.1.c1'],
      // The VIP of a service whose name is the longest a label may be: 64 bytes on the wire.
      [query('4.1.0.10.in-addr.arpa', {type: 'PTR'}), LONG_SVC],
    ]
    for (const [q, name] of cases) {
      const fast = answered(q)
      const slow = await responder.answer(q, TASK_GW, false)
      assert.ok(slow)
      const what = dns.decode(q).questions![0]!.name
      assert.equal(fast.toString('hex'), slow.toString('hex'), `the answers to PTR ${what} differ`)
      const d = dns.decode(fast) as unknown as {rcode: string; answers: {type: string; name: string; data: string; ttl: number}[]}
      assert.equal(d.rcode, 'NOERROR')
      assert.deepEqual(
        d.answers.map((a) => [a.type, a.name, a.data, a.ttl]),
        [['PTR', what, name, TTL]],
        what,
      )
      // The question as asked (its case too), the record's owner a pointer to it.
      assert.equal(dns.decode(fast).questions![0]!.name, what)
      assert.equal(fast.readUInt16BE(12 + fast.indexOf(0, 12) - 12 + 1 + 4), 0xc00c)
    }
  })

  it('passes PTR questions it cannot answer as the responder does: unknown and out-of-scope addresses, names too long, malformed reverse names', () => {
    const ptr = (name: string, o: Parameters<typeof query>[1] = {}) => frame(query(name, {type: 'PTR', ...o}))
    // The responder forwards these (no network of the task has the address): never answered here.
    passes(ptr('99.1.0.10.in-addr.arpa'), 'an address no task or VIP has')
    passes(ptr('2.2.0.10.in-addr.arpa'), "a VIP of a network the task is not on (db's)")
    passes(ptr('10.2.0.10.in-addr.arpa'), 'a task of a network the task is not on')
    passes(ptr('1.0.0.127.in-addr.arpa'), 'loopback')
    // Held by the slow path: its name is longer than the map holds.
    passes(ptr('40.1.0.10.in-addr.arpa'), 'a task whose name is longer than 128 bytes')
    // Not a reverse name as the responder reads one (reverseIp): never a wrong address.
    for (const name of [
      '02.1.0.10.in-addr.arpa',
      '2.01.0.10.in-addr.arpa',
      '2.1.00.10.in-addr.arpa',
      '2.1.0.010.in-addr.arpa',
      '256.1.0.10.in-addr.arpa',
      '2.1.0.1000.in-addr.arpa',
      '1.2.1.0.10.in-addr.arpa',
      '1.0.10.in-addr.arpa',
      'x.1.0.10.in-addr.arpa',
      '2.1.0.1a.in-addr.arpa',
      '2.1.0.10.in-addr.arpa.com',
      '2.1.0.10.in-addr.arpb',
      '2.1.0.10.inaddr.arpa',
      '2.1.0.10.in-addr',
      '2.1.0.10.ip6.arpa',
      '2.1.0.10',
      'in-addr.arpa',
      'web',
    ])
      passes(ptr(name), name)
    passes(ptr('2.1.0.10.in-addr.arpa', {cls: 'CH'}), 'class CH')
    passes(frame(query('2.1.0.10.in-addr.arpa')), 'a reverse name asked for A')
    passes(ptr('2.1.0.10.in-addr.arpa', {options: [{code: 3, data: Buffer.alloc(0)}]}), 'EDNS0 with NSID')
    // The name's end as a compression pointer (to "in-addr.arpa" of a name that is not there).
    const q = query('2.1.0.10.in-addr.arpa', {type: 'PTR'})
    const cut = Buffer.concat([q.subarray(0, 12 + 9), Buffer.from([0xc0, 12 + 9]), q.subarray(q.length - 4)])
    passes(frame(cut), 'a compression pointer after the address')
    // A byte of the suffix changed into another letter, a digit changed into a letter: not ours.
    for (const at of [12 + 9 + 1, 12 + 9 + 8, 12 + 1]) {
      const b = Buffer.from(q)
      b[at] = 'z'.charCodeAt(0)
      passes(frame(b), `byte ${at} changed`)
    }
  })

  it('passes what it does not answer: other types and classes, unknown names, tasks it does not know the networks of', () => {
    passes(frame(query('web', {type: 'PTR'})), 'PTR of a name that is not a reverse one')
    passes(frame(query('web', {type: 'TXT'})), 'TXT')
    passes(frame(query('web', {type: 'NS'})), 'NS')
    passes(frame(query('web', {cls: 'CH'})), 'class CH')
    passes(frame(query('db', {cls: 'CH'})), 'class CH of an out-of-scope name')
    passes(frame(query('example.com')), 'an unknown name')
    passes(frame(query('example.com', {type: 'AAAA'})), 'AAAA of an unknown name (forwarded)')
    passes(frame(query('_80._tcp.web')), 'an SRV name asked for A')
    passes(frame(query('2.1.0.10.in-addr.arpa', {type: 'AAAA'})), 'a reverse name asked for AAAA')
    passes(frame(query('web', {options: [{code: 65001, data: Buffer.from([0])}]})), 'EDNS0 with another option')
    passes(frame(query('web', {options: [{code: 3, data: Buffer.alloc(0)}]})), 'EDNS0 with NSID')
    passes(frame(query('web', {options: [{code: 10, data: Buffer.alloc(7)}]})), 'a cookie too short')
    passes(frame(query('web', {options: [{code: 10, data: Buffer.alloc(41)}]})), 'a cookie too long')
    const two = [
      {code: 10, data: Buffer.alloc(8, 1)},
      {code: 12, data: Buffer.alloc(4)},
    ]
    passes(frame(query('web', {options: two})), 'a cookie and padding')
  })

  it('passes malformed and odd questions: compression pointers, long names, bad bytes, non-DNS UDP, TCP', () => {
    const q = query('web')
    // The question's name as a pointer to itself.
    const ptr = Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])])
    passes(frame(ptr), 'a compression pointer')
    const long = query(`${'a'.repeat(40)}.${'b'.repeat(40)}`)
    passes(frame(long), 'a name longer than 64 bytes')
    const bad = query('we b')
    passes(frame(bad), 'a name with a space')
    passes(frame(Buffer.from('GET / HTTP/1.1\r\n\r\n')), 'non-DNS UDP to port 53')
    passes(frame(Buffer.from([1, 2, 3])), 'a short datagram')
    const resp = Buffer.from(q)
    resp[2]! |= 0x80
    passes(frame(resp), 'a response')
    const two = Buffer.from(q)
    two.writeUInt16BE(2, 4)
    passes(frame(two), 'two questions')
    passes(frame(Buffer.concat([q, Buffer.from([0])])), 'trailing bytes')
    passes(frame(q, {proto: P.IPPROTO_TCP}), 'TCP')
    passes(frame(q, {dst: '172.18.0.9'}), 'to another address')
    passes(frame(q, {dport: 5353}), 'to another port')
    passes(frame(q), 'from a device that is no task gateway device', skbCtx(2))
  })

  it('passes everything from a task the fast path was not given the networks of (one without a VNI): never NXDOMAIN there', () => {
    const v = view()
    // The asking task also on a network the fast path has no VNI for: the responder may find names there.
    const nets = [...v.networks, networkRecord('novni', '10.0.3.0/24', {vni: undefined, gateway: '10.0.3.1'})]
    const c1 = v.tasks.find((t) => t.id === 'c1')!
    c1.attachments.push({networkId: 'novni', ip: '10.0.3.30', mac: '02:42:00:00:00:03'})
    const want = desiredDns({
      table: buildNames({...v, networks: nets}),
      networks: nets,
      resolver: RESOLVER,
      ttl: TTL,
      gwIfindex: (id) => (id === 'c1' ? 3 : undefined),
    })
    const [k, val] = [...want.scopes.values()][0]!
    assert.equal(snDnsScope.decode(val).count, 0)
    l.map('sn_dns_scopes').update(k, val)
    try {
      for (const [q, what] of [
        [query('db'), 'an out-of-scope name'],
        [query('web', {type: 'AAAA'}), 'AAAA'],
        [query('web'), 'A'],
      ] as const)
        passes(frame(q), what, skbCtx(3))
    } finally {
      l.map('sn_dns_scopes').delete(k)
    }
  })

  it('writes no name that reads as an SRV or a reverse question: those the responder does not look up as names', () => {
    const v = view()
    v.attachments = [
      {
        id: 'x1',
        name: '_80._tcp.web',
        networkId: 'back',
        nodeId: 'n1',
        netns: '/run/netns/x1',
        ip: '10.0.2.50',
        mac: '02:42:00:00:00:09',
        createdAt: 0,
      },
    ]
    v.attachmentStatus = () => ({state: 'attached'})
    const t = buildNames(v)
    assert.ok(t.known.has('_80._tcp.web'))
    const want = desiredDns({table: t, networks: v.networks, resolver: RESOLVER, ttl: TTL, gwIfindex: () => DEV})
    for (const [k] of want.names.values()) {
      const name = Buffer.from(snDnsKey.decode(k).name, 'hex')
      assert.ok(!name.includes(Buffer.from('_tcp')), `${name.toString('latin1')} written`)
    }
  })
})
