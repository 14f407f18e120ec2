// The responder on real sockets (loopback, ephemeral ports): wire handling, EDNS0, truncation,
// TCP, malformed queries, forwarding with TCP fallback and a cache, SERVFAIL when no upstream answers.
import assert from 'node:assert/strict'
import {createSocket, type Socket} from 'node:dgram'
import {connect, createServer, type Server} from 'node:net'
import {after, before, test} from 'node:test'
import * as dns from 'dns-packet'
import {Responder} from '../../src/dns/responder.js'
import {DnsServer} from '../../src/dns/server.js'
import {DnsStats} from '../../src/dns/stats.js'
import type {NameTable} from '../../src/dns/names.js'

const ASKER = '127.0.0.1'
const many = Array.from({length: 60}, (_, i) => `10.0.1.${i + 10}`)
const table: NameTable = {
  networks: new Map([
    [
      'front',
      {
        id: 'front',
        name: 'front',
        a: new Map([
          ['web', {ips: ['10.0.1.2'], rotate: false, kind: 'service' as const}],
          ['tasks.web', {ips: many, rotate: false, kind: 'tasks' as const}],
          ['rr', {ips: ['10.0.1.5', '10.0.1.6'], rotate: true, kind: 'service' as const}],
        ]),
        ptr: new Map([['10.0.1.2', 'web']]),
        srv: new Map([
          [
            'web',
            {
              ports: [{protocol: 'tcp' as const, target: 80, published: 8080, mode: 'ingress' as const}],
              targets: [{name: 'web', ip: '10.0.1.2'}],
            },
          ],
          [
            'rr',
            {
              ports: [{protocol: 'tcp' as const, target: 90, published: 9000, mode: 'ingress' as const}],
              targets: [
                {name: 'rr.1', ip: '10.0.1.5'},
                {name: 'rr.2', ip: '10.0.1.6'},
              ],
            },
          ],
        ]),
      },
    ],
  ]),
  scopes: new Map([[ASKER, ['front']]]),
  known: new Set(['web', 'tasks.web', 'rr', 'db']),
  askers: new Map([[ASKER, 't']]),
}

let server: DnsServer
let port: number
let upstream: Socket
let upstreamTcp: Server
let upstreamSeen = 0
let silent = false
let client: Socket

before(async () => {
  // The upstream: UDP answers big.example truncated (TC, no records), TCP answers it whole.
  upstream = createSocket('udp4')
  upstream.on('message', (m, r) => {
    upstreamSeen++
    if (silent) return
    const q = dns.decode(m)
    const name = q.questions![0]!.name
    const big = name === 'big.example'
    const res = dns.encode({
      type: 'response',
      id: q.id,
      flags: (big ? dns.TRUNCATED_RESPONSE : 0) | dns.RECURSION_AVAILABLE,
      questions: q.questions,
      answers: big ? [] : [{type: 'A', name, ttl: 60, data: '192.0.2.7'}],
    })
    upstream.send(res, r.port, r.address)
  })
  await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', r))
  const upPort = upstream.address().port
  upstreamTcp = createServer((c) => {
    c.on('data', (d: Buffer) => {
      const q = dns.decode(d.subarray(2))
      const res = dns.streamEncode({
        type: 'response',
        id: q.id,
        flags: dns.RECURSION_AVAILABLE,
        questions: q.questions,
        answers: Array.from({length: 3}, (_, i) => ({
          type: 'A' as const,
          name: 'big.example',
          ttl: 60,
          data: `192.0.2.${i + 1}`,
        })),
      })
      c.end(res)
    })
  })
  await new Promise<void>((r) => upstreamTcp.listen(upPort, '127.0.0.1', r))
  // Port 0 is not possible for two sockets sharing one number, so pick one the OS gives and reuse it for TCP.
  const probe = createSocket('udp4')
  await new Promise<void>((r) => probe.bind(0, '127.0.0.1', r))
  port = probe.address().port
  probe.close()
  server = new DnsServer({
    addr: '127.0.0.1',
    port,
    ttl: 3,
    upstreams: [{host: '127.0.0.1', port: upPort}],
    names: () => table,
    log: () => undefined,
  })
  await server.start()
  client = createSocket('udp4')
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', r))
})

after(() => {
  server.stop()
  upstream.close()
  upstreamTcp.close()
  client.close()
})

/** What dns-packet decodes, as these tests read it (its types leave rcode and record data out of the union). */
interface Decoded {
  id: number
  rcode: string
  flag_aa: boolean
  flag_rd: boolean
  flag_tc: boolean
  questions: {name: string}[]
  answers: {name: string; type: string; ttl: number; data: unknown}[]
  additionals: {type: string; name: string; ttl?: number; data?: unknown; udpPayloadSize?: number}[]
}
const dec = (b: Buffer) => dns.decode(b) as unknown as Decoded

function ask(bytes: Buffer, timeoutMs = 3000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const t = setTimeout(() => (client.off('message', on), resolve(undefined)), timeoutMs)
    const on = (m: Buffer) => (clearTimeout(t), client.off('message', on), resolve(m))
    client.on('message', on)
    client.send(bytes, port, '127.0.0.1')
  })
}

const query = (name: string, type: dns.RecordType = 'A', edns?: number) =>
  dns.encode({
    type: 'query',
    id: 4242,
    flags: dns.RECURSION_DESIRED,
    questions: [{type, name, class: 'IN'}],
    ...(edns ? {additionals: [{type: 'OPT', name: '.', udpPayloadSize: edns} as unknown as dns.Answer]} : {}),
  })

test('a service name: its VIP, authoritative, with the TTL asked for and the id and question echoed', async () => {
  const r = dec((await ask(query('Web')))!)
  assert.equal(r.id, 4242)
  assert.equal(r.rcode, 'NOERROR')
  assert.equal(r.flag_aa, true)
  assert.equal(r.flag_rd, true)
  assert.deepEqual(
    r.answers!.map((a) => [a.name, a.type, a.ttl, a.data]),
    [['Web', 'A', 3, '10.0.1.2']],
  )
})

test('NXDOMAIN for a cluster name out of scope; AAAA of a known name is NOERROR and empty; PTR', async () => {
  assert.equal(dec((await ask(query('db')))!).rcode, 'NXDOMAIN')
  const aaaa = dec((await ask(query('web', 'AAAA')))!)
  assert.equal(aaaa.rcode, 'NOERROR')
  assert.equal(aaaa.answers!.length, 0)
  const ptr = dec((await ask(query('2.1.0.10.in-addr.arpa', 'PTR')))!)
  assert.equal(ptr.answers![0]!.data, 'web')
})

test('dnsrr answers turn', async () => {
  const a = dec((await ask(query('rr')))!).answers!.map((x) => x.data)
  const b = dec((await ask(query('rr')))!).answers!.map((x) => x.data)
  assert.deepEqual(new Set(a), new Set(['10.0.1.5', '10.0.1.6']))
  assert.notDeepEqual(a, b)
})

test("SRV: records with the target port, the targets' A records in the additional section; unknown port empty", async () => {
  const r = dec((await ask(query('_8080._tcp.web', 'SRV')))!)
  assert.equal(r.rcode, 'NOERROR')
  assert.equal(r.flag_aa, true)
  assert.deepEqual(
    r.answers.map((a) => [a.type, a.name, a.ttl, a.data]),
    [['SRV', '_8080._tcp.web', 3, {priority: 0, weight: 0, port: 80, target: 'web'}]],
  )
  assert.deepEqual(
    r.additionals.map((a) => [a.type, a.name, a.data]),
    [['A', 'web', '10.0.1.2']],
  )
  const rr = dec((await ask(query('_90._tcp.rr', 'SRV', 1232)))!)
  assert.deepEqual(
    rr.answers.map((a) => (a.data as {target: string; port: number}).target + ':' + (a.data as {port: number}).port),
    ['rr.1:90', 'rr.2:90'],
  )
  assert.deepEqual(
    rr.additionals.map((a) => [a.type, a.name, a.data ?? a.udpPayloadSize]),
    [
      ['A', 'rr.1', '10.0.1.5'],
      ['A', 'rr.2', '10.0.1.6'],
      ['OPT', '.', 1232],
    ],
  )
  const none = dec((await ask(query('_81._tcp.web', 'SRV')))!)
  assert.equal(none.rcode, 'NOERROR')
  assert.equal(none.answers.length, 0)
  assert.equal(dec((await ask(query('_80._tcp.db', 'SRV')))!).rcode, 'NXDOMAIN')
})

test('too big for 512 bytes: TC and no answers; with EDNS0 4096 it fits, with our OPT; over TCP it fits', async () => {
  const small = dec((await ask(query('tasks.web')))!)
  assert.equal(small.flag_tc, true)
  assert.equal(small.answers!.length, 0)
  const big = (await ask(query('tasks.web', 'A', 4096)))!
  const d = dec(big)
  assert.equal(d.flag_tc, false)
  assert.equal(d.answers!.length, 60)
  assert.ok(big.length > 512)
  assert.equal(d.additionals.find((a) => a.type === 'OPT')!.udpPayloadSize, 1232)
  // EDNS0 asking for less than 512 is read as 512.
  assert.equal(dec((await ask(query('tasks.web', 'A', 100)))!).flag_tc, true)
  const viaTcp = await askTcp(query('tasks.web'))
  assert.equal(dec(viaTcp).answers!.length, 60)
})

test('malformed queries are dropped or FORMERR, counted, and the server keeps answering', async () => {
  const before = server.stats.malformed
  assert.equal(await ask(Buffer.from([1, 2, 3]), 300), undefined)
  const garbage = Buffer.concat([query('web').subarray(0, 12), Buffer.from([0x3f, 0x41])])
  const f = (await ask(garbage))!
  assert.equal(f.readUInt16BE(0), 4242)
  assert.equal(f.readUInt16BE(2) & 0xf, 1)
  // A compression pointer that points at itself.
  const loop = Buffer.concat([query('web').subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])])
  assert.equal((await ask(loop))!.readUInt16BE(2) & 0xf, 1)
  // A response sent to us is never answered (no loops between two resolvers).
  const resp = Buffer.from(query('web'))
  resp.writeUInt16BE(resp.readUInt16BE(2) | 0x8000, 2)
  assert.equal(await ask(resp, 300), undefined)
  assert.equal(server.stats.malformed - before, 4)
  assert.equal(dec((await ask(query('web')))!).answers!.length, 1)
})

test('other names are forwarded; a truncated upstream answer is asked again over TCP; answers are cached', async () => {
  const seen = upstreamSeen
  const r = dec((await ask(query('ext.example')))!)
  assert.equal(r.id, 4242)
  assert.equal(r.answers![0]!.data, '192.0.2.7')
  const again = dec((await ask(query('ext.example')))!)
  assert.equal(again.answers![0]!.data, '192.0.2.7')
  assert.equal(upstreamSeen, seen + 1)
  assert.ok(server.stats.cacheHits >= 1)
  const big = dec((await ask(query('big.example', 'A', 4096)))!)
  assert.equal(big.answers!.length, 3)
})

test('no upstream answers: SERVFAIL within 2 s', async () => {
  silent = true
  try {
    const t0 = Date.now()
    const r = dec((await ask(query('gone.example'), 5000))!)
    const took = Date.now() - t0
    assert.equal(r.rcode, 'SERVFAIL')
    assert.equal(r.questions![0]!.name, 'gone.example')
    assert.ok(took < 2000, `SERVFAIL after ${took} ms`)
  } finally {
    silent = false
  }
})

function askTcp(q: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = connect({host: '127.0.0.1', port})
    let buf = Buffer.alloc(0)
    c.on('error', reject)
    c.on('connect', () => {
      const l = Buffer.alloc(2)
      l.writeUInt16BE(q.length)
      c.write(Buffer.concat([l, q]))
    })
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        c.destroy()
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)))
      }
    })
  })
}

test('an answer is made once per name table: asked again, the same bytes with the new id, counted each time', () => {
  const tableWith = (vip: string): NameTable => ({
    networks: new Map([
      [
        'n1',
        {
          id: 'n1',
          name: 'front',
          a: new Map([
            ['web', {ips: [vip], rotate: false, kind: 'service' as const}],
            ['rr', {ips: ['10.0.1.20', '10.0.1.21'], rotate: true, kind: 'service' as const}],
          ]),
          ptr: new Map(),
          srv: new Map(),
        },
      ],
    ]),
    scopes: new Map([[ASKER, ['n1']]]),
    known: new Set(['web', 'rr', 'gone']),
    askers: new Map(),
  })
  let current = tableWith('10.0.9.1')
  const stats = new DnsStats()
  const r = new Responder({names: () => current, ttl: 3, stats, forwarder: {forward: async () => undefined}})
  const withId = (q: Buffer, id: number) => (q.writeUInt16BE(id, 0), q)
  const answer = (q: Buffer) => r.answer(q, ASKER, false) as Buffer
  const first = answer(withId(query('web'), 1))
  const second = answer(withId(query('web'), 2))
  assert.equal(dec(second).id, 2)
  assert.equal(first.subarray(2).toString('hex'), second.subarray(2).toString('hex'))
  assert.equal(dec(answer(query('gone'))).rcode, 'NXDOMAIN')
  assert.equal(dec(answer(query('gone'))).rcode, 'NXDOMAIN')
  assert.deepEqual([stats.queries, stats.answered, stats.nxdomain], [4, 4, 2])
  // The store changed: the name table is a new object, and the next answer is made from it.
  current = tableWith('10.0.9.2')
  assert.deepEqual(
    dec(answer(query('web'))).answers.map((a) => a.data),
    ['10.0.9.2'],
  )
  // dnsrr answers are never kept: each turns.
  const a = dec(answer(query('rr'))).answers.map((x) => x.data)
  const b = dec(answer(query('rr'))).answers.map((x) => x.data)
  assert.notDeepEqual(a, b)
})
