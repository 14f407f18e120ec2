// The responder's UDP in batches (src/dns/udp-batch.ts): a thread reads the socket with recvmmsg
// and answers the questions whose answer the responder keeps, the rest go to the responder. dig
// and a raw UDP client against the real server on loopback: the thread's answers are the
// responder's bytes, they follow the name table the moment it changes, malformed datagrams are
// dropped and counted without harm, and stop() leaves no thread and no socket behind.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {createSocket, type Socket} from 'node:dgram'
import {readdirSync, readFileSync, readlinkSync} from 'node:fs'
import {after, before, test} from 'node:test'
import {promisify} from 'node:util'
import * as dns from 'dns-packet'
import type {NameTable} from '../../src/dns/names.js'
import {DnsServer} from '../../src/dns/server.js'
import {libc} from '../../src/sys/libc.js'

const ASKER = '127.0.0.1'
const run = promisify(execFile)

/** `web` with these addresses (none: `web` is a name of the cluster but not of the asker's network). */
function tableWith(web: string[]): NameTable {
  return {
    networks: new Map([
      [
        'front',
        {
          id: 'front',
          name: 'front',
          a: new Map([
            ...(web.length ? [['web', {ips: web, rotate: false, kind: 'service' as const}] as const] : []),
            ['rr', {ips: ['10.0.1.5', '10.0.1.6'], rotate: true, kind: 'service' as const}] as const,
          ]),
          ptr: new Map(),
          srv: new Map(),
        },
      ],
    ]),
    scopes: new Map([[ASKER, ['front']]]),
    known: new Set(['web', 'rr']),
    askers: new Map([[ASKER, 't']]),
  }
}

let table = tableWith(['10.0.1.2'])
/** How often the responder read the name table: a question the thread answered does not. */
let tableReads = 0
let server: DnsServer
let port: number
let client: Socket
const logs: string[] = []

async function freePort(): Promise<number> {
  const s = createSocket('udp4')
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r))
  const p = s.address().port
  await new Promise<void>((r) => s.close(() => r()))
  return p
}

async function startServer(): Promise<DnsServer> {
  const s = new DnsServer({
    addr: '127.0.0.1',
    port,
    ttl: 5,
    upstreams: [],
    names: () => (tableReads++, table),
    log: (m) => logs.push(m),
  })
  await s.start()
  return s
}

before(async () => {
  port = await freePort()
  server = await startServer()
  client = createSocket('udp4')
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', r))
})

after(async () => {
  await server.stop()
  client.close()
})

/**
 * dig's output for a question the same each time but for its id (+noedns: no cookie). Run
 * asynchronously: the responder's half of the server answers on this thread's event loop.
 */
async function digOut(args: string[]): Promise<string> {
  const {stdout} = await run('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', '+noedns', ...args])
  return stdout
}

async function dig(...args: string[]): Promise<string[]> {
  return (await digOut(['+short', ...args])).split('\n').filter(Boolean)
}

async function digStatus(...args: string[]): Promise<string | undefined> {
  return /status: ([A-Z]+)/.exec(await digOut(args))?.[1]
}

function ask(bytes: Buffer, timeoutMs = 2000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const t = setTimeout(() => (client.off('message', on), resolve(undefined)), timeoutMs)
    const on = (m: Buffer) => (clearTimeout(t), client.off('message', on), resolve(m))
    client.on('message', on)
    client.send(bytes, port, '127.0.0.1')
  })
}

const query = (name: string, id: number) =>
  dns.encode({type: 'query', id, flags: dns.RECURSION_DESIRED, questions: [{type: 'A', name, class: 'IN'}]})

test("the thread answers a question the responder answered before, with the responder's bytes and the new id", async () => {
  const first = (await ask(query('web', 1)))!
  const reads = tableReads
  const second = (await ask(query('web', 2)))!
  const third = (await ask(query('web', 3)))!
  assert.equal(tableReads, reads, 'the second and third answers did not reach the responder')
  assert.deepEqual([first.readUInt16BE(0), second.readUInt16BE(0), third.readUInt16BE(0)], [1, 2, 3])
  assert.equal(second.subarray(2).toString('hex'), first.subarray(2).toString('hex'))
  assert.equal(third.subarray(2).toString('hex'), first.subarray(2).toString('hex'))
  // dig: the same, and counted as the responder counts.
  const before = server.stats.snapshot()
  for (let i = 0; i < 3; i++) assert.deepEqual(await dig('web'), ['10.0.1.2'])
  const now = server.stats.snapshot()
  assert.deepEqual([now.queries - before.queries!, now.answered - before.answered!], [3, 3])
  // dnsrr answers are never kept: each turns, answered by the responder.
  const a = await dig('rr')
  const b = await dig('rr')
  assert.notDeepEqual(a, b)
  assert.deepEqual([...a].sort(), ['10.0.1.5', '10.0.1.6'])
})

test('a burst from two askers, in runs and interleaved: every answer its own datagram, its id, the kept bytes, in the order asked', async () => {
  // Runs of the same answer to the same asker leave the thread as one UDP_SEGMENT message: the
  // kernel must cut them back into the datagrams they were, at every change of asker or length.
  const other = createSocket('udp4')
  await new Promise<void>((r) => other.bind(0, '127.0.0.1', r))
  try {
    const edns = (id: number) =>
      dns.encode({
        type: 'query',
        id,
        flags: dns.RECURSION_DESIRED,
        questions: [{type: 'A', name: 'web', class: 'IN'}],
        additionals: [{type: 'OPT', name: '.', udpPayloadSize: 1232} as dns.Answer],
      })
    const plain = (await ask(query('web', 1)))!.subarray(2).toString('hex')
    const withOpt = (await ask(edns(1)))!.subarray(2).toString('hex')
    assert.notEqual(plain.length, withOpt.length, 'two answer lengths')
    const expect = new Map<string, Map<number, string>>([
      ['client', new Map()],
      ['other', new Map()],
    ])
    const sends: [Socket, string, Buffer][] = []
    let id = 100
    const run = (who: 'client' | 'other', n: number, opt: boolean) => {
      for (let i = 0; i < n; i++, id++) {
        sends.push([who === 'client' ? client : other, who, opt ? edns(id) : query('web', id)])
        expect.get(who)!.set(id, opt ? withOpt : plain)
      }
    }
    run('client', 16, false)
    run('client', 16, true)
    run('other', 16, false)
    run('client', 16, false)
    // Interleaved, as several sockets of one client ask: the thread puts each asker's together.
    for (let i = 0; i < 16; i++) {
      run('client', 1, i % 4 === 3)
      run('other', 1, false)
    }
    const got = new Map<string, Buffer[]>([
      ['client', []],
      ['other', []],
    ])
    const total = sends.length
    let seen = 0
    let finish = () => undefined as void
    const done = new Promise<void>((resolve) => (finish = resolve))
    const timer = setTimeout(finish, 3000)
    const on = (who: string) => (m: Buffer) => {
      got.get(who)!.push(m)
      if (++seen === total) finish()
    }
    const onClient = on('client')
    const onOther = on('other')
    client.on('message', onClient)
    other.on('message', onOther)
    const reads = tableReads
    for (const [s, , b] of sends) s.send(b, port, '127.0.0.1')
    await done
    clearTimeout(timer)
    client.off('message', onClient)
    other.off('message', onOther)
    assert.equal(tableReads, reads, 'all answered by the thread')
    for (const [who, want] of expect) {
      const answers = got.get(who)!
      assert.equal(answers.length, want.size, `${who}: one datagram per question`)
      const ids = answers.map((a) => a.readUInt16BE(0))
      assert.deepEqual(
        ids,
        [...ids].sort((a, b) => a - b),
        `${who}: its answers in the order it asked`,
      )
      for (const a of answers) {
        const i = a.readUInt16BE(0)
        assert.equal(a.subarray(2).toString('hex'), want.get(i), `${who}: the answer to ${i}`)
        want.delete(i)
      }
      assert.equal(want.size, 0, `${who}: every id answered once`)
    }
  } finally {
    other.close()
  }
})

/** The descriptor of this process's UDP socket bound to 127.0.0.1:`p` (the batch thread's, made through libc). */
function udpFd(p: number): number {
  const hex = `0100007F:${p.toString(16).toUpperCase().padStart(4, '0')}`
  const row = readFileSync('/proc/net/udp', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[1] === hex)
  assert.ok(row, `a UDP socket on 127.0.0.1:${p}`)
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === `socket:[${row[9]}]`) return Number(fd)
    } catch {
      // closed since it was listed
    }
  }
  throw new Error(`no descriptor of this process for 127.0.0.1:${p}`)
}

test('a kernel that refuses UDP_SEGMENT: the thread says so once and sends the same answers one by one', async () => {
  // SO_NO_CHECK (no UDP checksum) makes the kernel refuse a segmented send with EINVAL, as a route
  // without checksum offload does with EIO.
  const on = Buffer.alloc(4)
  on.writeInt32LE(1)
  assert.equal(libc().setsockopt(udpFd(port), 1 /* SOL_SOCKET */, 11 /* SO_NO_CHECK */, on, 4), 0)
  const want = (await ask(query('web', 1)))!.subarray(2).toString('hex')
  const ids = Array.from({length: 48}, (_, i) => 500 + i)
  const got: Buffer[] = []
  let finish = () => undefined as void
  const done = new Promise<void>((resolve) => (finish = resolve))
  const timer = setTimeout(finish, 3000)
  const onMessage = (m: Buffer) => (got.push(m), got.length === ids.length && finish())
  client.on('message', onMessage)
  for (const id of ids) client.send(query('web', id), port, '127.0.0.1')
  await done
  clearTimeout(timer)
  client.off('message', onMessage)
  assert.deepEqual(
    got.map((a) => a.readUInt16BE(0)).sort((a, b) => a - b),
    ids,
    'every question answered once',
  )
  for (const a of got) assert.equal(a.subarray(2).toString('hex'), want)
  assert.equal(logs.filter((m) => /UDP_SEGMENT refused/.test(m)).length, 1, logs.join('\n'))
})

/** `front` (127.0.0.1's network: web 10.0.1.2) and `back` (127.0.0.2's: web 10.0.2.9, db 10.0.2.7). */
function twoNetworks(): NameTable {
  const t = tableWith(['10.0.1.2'])
  t.networks.set('back', {
    id: 'back',
    name: 'back',
    a: new Map([
      ['web', {ips: ['10.0.2.9'], rotate: false, kind: 'service' as const}],
      ['db', {ips: ['10.0.2.7'], rotate: false, kind: 'service' as const}],
    ]),
    ptr: new Map(),
    srv: new Map(),
  })
  t.scopes.set('127.0.0.2', ['back'])
  t.known.add('db')
  t.askers.set('127.0.0.2', 't2')
  return t
}

test("two askers on two networks, the same question bytes: each gets its own network's answer from the thread, never the other's", async () => {
  table = twoNetworks()
  server.invalidate()
  const other = createSocket('udp4')
  await new Promise<void>((r) => other.bind(0, '127.0.0.2', r))
  try {
    const askFrom = (s: Socket, bytes: Buffer) =>
      new Promise<dns.Packet>((resolve, reject) => {
        const t = setTimeout(() => (s.off('message', on), reject(new Error('no answer'))), 2000)
        const on = (m: Buffer) => (clearTimeout(t), s.off('message', on), resolve(dns.decode(m)))
        s.on('message', on)
        s.send(bytes, port, '127.0.0.1')
      })
    const ips = (p: dns.Packet) => (p.answers ?? []).map((x) => (x as dns.StringAnswer).data)
    // Asked in turn, three times each: the second and third are the thread's kept answers.
    let reads = 0
    for (let i = 0; i < 3; i++) {
      if (i === 1) reads = tableReads
      for (const name of ['web', 'db']) {
        const a = await askFrom(client, query(name, 40 + i))
        const b = await askFrom(other, query(name, 40 + i))
        assert.deepEqual(ips(a), name === 'web' ? ['10.0.1.2'] : [], `front asking ${name}`)
        // The rcode (the flags' low 4 bits): 0 NOERROR, 3 NXDOMAIN.
        assert.equal((a.flags ?? 0) & 0xf, name === 'web' ? 0 : 3, `front asking ${name}`)
        assert.deepEqual(ips(b), name === 'web' ? ['10.0.2.9'] : ['10.0.2.7'], `back asking ${name}`)
      }
    }
    assert.equal(tableReads, reads, 'the repeated questions were answered by the thread')
  } finally {
    other.close()
    table = tableWith(['10.0.1.2'])
    server.invalidate()
  }
})

test('a service added or removed: the first answer after invalidate() is from the new table, never the kept one', async () => {
  for (let i = 0; i < 3; i++) assert.deepEqual(await dig('web'), ['10.0.1.2'])
  // Removed from the asker's network (still a name of the cluster): NXDOMAIN at once.
  table = tableWith([])
  server.invalidate()
  assert.equal(await digStatus('web'), 'NXDOMAIN')
  const nx = server.stats.snapshot().nxdomain
  assert.equal(await digStatus('web'), 'NXDOMAIN')
  assert.equal(server.stats.snapshot().nxdomain, nx + 1, 'an NXDOMAIN from the thread is counted')
  // Added again, with another address, and scaled: each answer follows the change right away.
  table = tableWith(['10.0.1.3'])
  server.invalidate()
  assert.deepEqual(await dig('web'), ['10.0.1.3'])
  assert.deepEqual(await dig('web'), ['10.0.1.3'])
  table = tableWith(['10.0.1.3', '10.0.1.4'])
  server.invalidate()
  assert.deepEqual(await dig('web'), ['10.0.1.3', '10.0.1.4'])
  // The raw client too, whose question the thread had kept before the changes.
  const r = dns.decode((await ask(query('web', 9)))!)
  assert.deepEqual(
    r.answers!.map((x) => (x as dns.StringAnswer).data),
    ['10.0.1.3', '10.0.1.4'],
  )
  table = tableWith(['10.0.1.2'])
  server.invalidate()
})

test('malformed datagrams are dropped or FORMERR, counted, and both paths keep answering', async () => {
  assert.deepEqual(await dig('web'), ['10.0.1.2'])
  const before = server.stats.snapshot().malformed
  // Too short for a header; a response (QR set: answering could loop); longer than any question
  // the thread takes (4096 bytes): dropped by the thread, no answer.
  const resp = query('web', 7)
  resp.writeUInt16BE(resp.readUInt16BE(2) | 0x8000, 2)
  for (const b of [Buffer.from([1, 2, 3]), resp, Buffer.alloc(5000, 0x41)]) assert.equal(await ask(b, 300), undefined)
  assert.equal(server.stats.snapshot().malformed - before, 3)
  // A header with a name that runs off the end: the responder's FORMERR.
  const cut = Buffer.concat([query('web', 8).subarray(0, 12), Buffer.from([0x3f, 0x41])])
  assert.equal((await ask(cut))!.readUInt16BE(2) & 0xf, 1)
  // Random bytes (a seeded generator, so a failure can be replayed): never a crash.
  let seed = 25
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed)
  for (let i = 0; i < 300; i++) {
    const b = Buffer.alloc(rand() % 600)
    for (let j = 0; j < b.length; j++) b[j] = rand() & 0xff
    client.send(b, port, '127.0.0.1')
  }
  await new Promise((r) => setTimeout(r, 300))
  assert.deepEqual(await dig('web'), ['10.0.1.2'])
  assert.equal((await dig('rr')).length, 2)
  assert.equal(logs.filter((m) => /thread/.test(m)).join('\n'), '', 'the thread never failed')
})

test('stop() ends the thread and closes the socket: the port is free, no thread or descriptor left', async () => {
  const threads = () => readdirSync('/proc/self/task').length
  const fds = () => readdirSync('/proc/self/fd').length
  const [t0, f0] = [threads(), fds()]
  const otherPort = await freePort()
  const other = new DnsServer({
    addr: '127.0.0.1',
    port: otherPort,
    ttl: 5,
    upstreams: [],
    names: () => table,
    log: () => undefined,
  })
  await other.start()
  assert.ok(threads() > t0, 'the batch thread runs')
  // Questions in flight while it stops.
  const q = query('web', 11)
  for (let i = 0; i < 200; i++) client.send(q, otherPort, '127.0.0.1')
  await other.stop()
  // The worker's OS thread is joined shortly after its exit event.
  for (let i = 0; i < 50 && threads() > t0; i++) await new Promise((r) => setTimeout(r, 20))
  assert.equal(threads(), t0)
  assert.equal(fds(), f0)
  // And the address can be bound again, by anyone.
  const again = createSocket('udp4')
  await new Promise<void>((resolve, reject) => {
    again.once('error', reject)
    again.bind(otherPort, '127.0.0.1', () => resolve())
  })
  again.close()
  // The shared server still answers.
  assert.deepEqual(await dig('web'), ['10.0.1.2'])
})
