// bpf/sock_lb.c and bpf/sock_lb_end.c on real sockets, without a lab: the four programs attached
// through pinned links to a cgroup of our own (standing in for a task's), sn_sock_lb_tasks naming
// that cgroup as a task on network 4097, a VIP of 4097 with two backends on lo of a namespace of
// our own, and a VIP of another network. Clients in the cgroup and namespace reach a backend, see
// the VIP as their peer (TCP getpeername, UDP recvfrom), are spread over both backends; a process
// of another cgroup, and a VIP of a network the task is not on, are left alone; a connected socket
// whose backend left the VIP's set is ended by the iterator. Everything made here goes in `after`.
import assert from 'node:assert/strict'
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {
  snBackend,
  snBackendKey,
  snMaglevChunk,
  snMaglevKey,
  snService,
  snServiceKey,
  snSockLbTask,
  u32,
  u64,
} from '../../src/bpf/codecs.js'
import {readCounters} from '../../src/bpf/counters.js'
import {BpfObject} from '../../src/bpf/object.js'
import {BPFFS, ensureBpffs} from '../../src/bpf/pins.js'
import {cgroup2Root} from '../../src/sys/cgroup.js'
import {attachSockLb, cgroupId, SockLbEnder, SOCK_LB_PROGS} from '../../src/dataplane/sock-lb.js'
import {objInfoByFd} from '../../src/bpf/obj-info.js'
import {enableBpfStats} from '../../bench/bpf-run-time.js'
import {bpfObjectPath} from '../../src/util/root.js'

const NS = `snsl${process.pid}`
const PINS = path.join(BPFFS, `snsl${process.pid}`)
let CG = ''
let OTHER = ''
const VNI = 4097
const TASK_IP = '10.98.0.1'
const B1 = '10.98.0.2'
const B2 = '10.98.0.3'
const VIP = '10.98.1.1'
const OTHER_VIP = '10.98.2.1' // a VIP of network 4098, which the task is not on
const PORT = 28180
const UPORT = 28153
let obj: BpfObject | undefined
let ender: SockLbEnder | undefined
const procs: ChildProcess[] = []

const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`
/** argv run inside cgroup `cg` and our namespace. */
const inside = (cg: string, argv: string[]) => [
  'sh',
  '-c',
  `echo $$ > ${cg}/cgroup.procs && exec ip netns exec ${NS} ${argv.map(q).join(' ')}`,
]

function run(cg: string, script: string): {code: number | null; stdout: string; stderr: string} {
  const [cmd, ...args] = inside(cg, [process.execPath, '-e', script])
  const r = spawnSync(cmd!, args, {encoding: 'utf8', timeout: 10_000})
  return {code: r.status, stdout: r.stdout, stderr: r.stderr}
}

/** Connects to addr:PORT, prints the backend's name and the peer name. */
const tcpClient = (addr: string) =>
  `const s = require('node:net').connect(${PORT}, '${addr}'); s.setTimeout(2000, () => process.exit(3));
   s.on('error', (e) => { console.log('error ' + e.code); process.exit(2) });
   s.once('data', (d) => { console.log(String(d).trim() + ' ' + s.remoteAddress + ':' + s.remotePort); s.destroy() })`

async function until(what: string, fn: () => boolean, tries = 50): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (fn()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.fail(what)
}

function setBackends(backends: string[]): void {
  const m = obj!.map.bind(obj!)
  m('sn_maglev').update(
    snMaglevKey.encode({table: 7, chunk: 0}),
    snMaglevChunk.encode(Array.from({length: 7}, (_, i) => backends[i % backends.length]!)),
  )
  m('sn_services').update(
    snServiceKey.encode({vni: VNI, vip: VIP}),
    snService.encode({table: 7, size: 7, count: backends.length, flags: 0}),
  )
  for (const b of [B1, B2]) {
    const k = snBackendKey.encode({vni: VNI, vip: VIP, ip: b})
    if (backends.includes(b)) m('sn_backends').update(k, snBackend.encode({node_ip: '10.99.0.1', flags: 0}))
    else m('sn_backends').delete(k)
  }
}

before(async () => {
  ensureBpffs()
  spawnSync('ip', ['netns', 'add', NS])
  spawnSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up'])
  for (const a of [TASK_IP, B1, B2]) spawnSync('ip', ['-n', NS, 'addr', 'add', `${a}/32`, 'dev', 'lo'])
  CG = path.join(cgroup2Root(), `snsl${process.pid}`)
  OTHER = path.join(cgroup2Root(), `snsl${process.pid}-other`)
  fs.mkdirSync(CG)
  fs.mkdirSync(OTHER)
  fs.mkdirSync(PINS, {recursive: true})
  obj = BpfObject.open(bpfObjectPath('sock_lb'), {pinRoot: PINS})
  obj.load()
  attachSockLb(obj, path.join(PINS, 'links'), CG)
  ender = SockLbEnder.open(bpfObjectPath('sock_lb_end'), PINS, path.join(PINS, 'links'))
  obj.map('sn_sock_lb_tasks').update(u64.encode(cgroupId(CG)!), snSockLbTask.encode([{vni: VNI, ip: TASK_IP}]))
  setBackends([B1, B2])
  obj.map('sn_maglev').update(snMaglevKey.encode({table: 8, chunk: 0}), snMaglevChunk.encode([B1]))
  obj
    .map('sn_services')
    .update(snServiceKey.encode({vni: 4098, vip: OTHER_VIP}), snService.encode({table: 8, size: 1, count: 1, flags: 0}))
  for (const [name, ip] of [
    ['b1', B1],
    ['b2', B2],
  ] as const) {
    // A backend that says its name and keeps the connection open; a UDP one that answers with it.
    const p = spawn(
      'ip',
      [
        'netns',
        'exec',
        NS,
        process.execPath,
        '-e',
        `require('node:net').createServer((c) => { c.on('error', () => {}); c.write('${name}\\n') }).listen(${PORT}, '${ip}')`,
      ],
      {stdio: 'ignore'},
    )
    const u = spawn(
      'ip',
      [
        'netns',
        'exec',
        NS,
        process.execPath,
        '-e',
        `require('node:dgram').createSocket('udp4').on('message', function (m, r) { this.send('${name}', r.port, r.address) }).bind(${UPORT}, '${ip}')`,
      ],
      {stdio: 'ignore'},
    )
    procs.push(p, u)
  }
  await until(
    'backends up',
    () =>
      spawnSync('ip', ['netns', 'exec', NS, 'sh', '-c', `ss -ltn | grep -q ${B2}:${PORT} && ss -lun | grep -q ${B2}:${UPORT}`])
        .status === 0,
  )
})

after(() => {
  for (const p of procs) p.kill('SIGKILL')
  ender?.close()
  obj?.close()
  fs.rmSync(PINS, {recursive: true, force: true}) // unpinning the links detaches them
  spawnSync('ip', ['netns', 'del', NS], {stdio: 'ignore'})
  for (const dir of [CG, OTHER])
    for (let i = 0; i < 30 && dir && fs.existsSync(dir); i++) {
      try {
        fs.rmdirSync(dir)
      } catch {
        spawnSync('sleep', ['0.1'])
      }
    }
})

describe('sock_lb: load balancing at connect() for a task cgroup (real sockets)', () => {
  it("TCP to the VIP reaches a backend, and the socket's peer name is the VIP", () => {
    const r = run(CG, tcpClient(VIP))
    assert.match(r.stdout.trim(), new RegExp(`^b[12] ${VIP.replace(/\./g, '\\.')}:${PORT}$`), r.stderr)
  })

  it('connections are spread over both backends, each counted', () => {
    const before = readCounters(obj!.map('sn_stats')).sock_lb_connect
    const seen = new Set<string>()
    for (let i = 0; i < 12; i++) seen.add(run(CG, tcpClient(VIP)).stdout.trim().split(' ')[0]!)
    assert.deepEqual([...seen].sort(), ['b1', 'b2'])
    assert.equal(readCounters(obj!.map('sn_stats')).sock_lb_connect - before, 12n)
  })

  it('unconnected UDP (sendto the VIP): balanced over the backends, each answer from the VIP', () => {
    const before = readCounters(obj!.map('sn_stats')).sock_lb_send
    const r = run(
      CG,
      `const dgram = require('node:dgram'); const got = []; let n = 0; const t = setTimeout(() => process.exit(3), 5000);
       for (let i = 0; i < 16; i++) { const s = dgram.createSocket('udp4');
         s.on('message', (m, r) => { got.push(String(m) + ' ' + r.address + ':' + r.port); s.close(); if (++n === 16) { clearTimeout(t); console.log(got.join('\\n')) } });
         s.send('ping', ${UPORT}, '${VIP}') }`,
    )
    const lines = r.stdout.trim().split('\n')
    assert.equal(lines.length, 16, r.stderr)
    assert.deepEqual([...new Set(lines.map((l) => l.split(' ')[0]))].sort(), ['b1', 'b2'])
    for (const l of lines) assert.equal(l.split(' ')[1], `${VIP}:${UPORT}`)
    assert.equal(readCounters(obj!.map('sn_stats')).sock_lb_send - before, 16n)
  })

  it('a connected socket is balanced once, at connect(): its sends run no socket program (bpf_stats)', () => {
    // The kernel runs sendmsg4 only for a datagram with an address (udp_sendmsg: !connected), and
    // no sock_addr hook on a TCP send: what makes the per-packet cost of load balancing 0 for
    // TCP and connected UDP (bench/vip-lab.ts measures it in the lab too).
    const stats = enableBpfStats()
    try {
      // struct bpf_prog_info: run_cnt at 200.
      const runs = () =>
        Object.fromEntries(
          Object.entries(SOCK_LB_PROGS).map(([hook, name]) => [
            hook,
            Number(objInfoByFd(obj!.program(name).fd, 'bpf_prog_info', name).readBigUInt64LE(200)),
          ]),
        )
      const delta = (a: Record<string, number>, b: Record<string, number>) =>
        Object.fromEntries(Object.keys(a).map((k) => [k, b[k]! - a[k]!]))
      let before = runs()
      // 200 datagrams on a connected socket; the backend's first answer shows they reach it.
      // (recvmsg4 is not counted here: libuv asks every received datagram's address, so it
      // runs on each answer, as on any task's datagram read with its address.)
      const u = run(
        CG,
        `const s = require('node:dgram').createSocket('udp4'); setTimeout(() => process.exit(3), 5000);
         s.connect(${UPORT}, '${VIP}', () => { for (let i = 0; i < 200; i++) s.send('x');
           s.on('message', (m) => { console.log(String(m)); process.exit(0) }) })`,
      )
      assert.match(u.stdout.trim(), /^b[12]/, u.stderr)
      const udp = delta(before, runs())
      assert.equal(udp.connect4, 1, JSON.stringify(udp))
      assert.equal(udp.sendmsg4, 0, JSON.stringify(udp))
      before = runs()
      const t = run(
        CG,
        `const s = require('node:net').connect(${PORT}, '${VIP}'); setTimeout(() => process.exit(3), 5000);
         s.once('data', (d) => { for (let i = 0; i < 200; i++) s.write('x'.repeat(100)); s.end(() => { console.log(String(d).trim()); process.exit(0) }) })`,
      )
      assert.match(t.stdout.trim(), /^b[12]$/, t.stderr)
      assert.deepEqual(delta(before, runs()), {connect4: 1, sendmsg4: 0, recvmsg4: 0, getpeername4: 0})
    } finally {
      stats.close()
    }
  })

  it("a VIP of a network the task is not on, and another cgroup's socket, are left alone", () => {
    assert.match(run(CG, tcpClient(OTHER_VIP)).stdout, /^error ENETUNREACH/)
    assert.match(run(OTHER, tcpClient(VIP)).stdout, /^error ENETUNREACH/)
  })

  it('a connected socket whose backend left the set is ended (ECONNABORTED), the others stay', async () => {
    // Sixteen connections held open (eight could all hash to one backend: ~1 run in 128); each
    // line: its index and backend, then later its end.
    const [cmd, ...args] = inside(CG, [
      process.execPath,
      '-e',
      `for (let i = 0; i < 16; i++) { const s = require('node:net').connect(${PORT}, '${VIP}');
         s.once('data', (d) => console.log(i + ' ' + String(d).trim())); s.on('error', (e) => console.log(i + ' ' + e.code)); }
       setTimeout(() => process.exit(0), 20000)`,
    ])
    const client = spawn(cmd!, args, {stdio: ['ignore', 'pipe', 'ignore']})
    procs.push(client)
    let out = ''
    client.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    const lines = () => out.trim().split('\n').filter(Boolean)
    await until('sixteen connections up', () => lines().length === 16)
    const on = new Map(lines().map((l) => l.split(' ') as [string, string]))
    assert.ok([...on.values()].includes('b1') && [...on.values()].includes('b2'), out)
    const before = readCounters(obj!.map('sn_stats')).sock_lb_ended
    setBackends([B2])
    await ender!.run([NS])
    const gone = [...on].filter(([, b]) => b === 'b1').map(([i]) => i)
    await until('the connections to b1 ended', () => gone.every((i) => lines().includes(`${i} ECONNABORTED`)), 30)
    assert.equal(readCounters(obj!.map('sn_stats')).sock_lb_ended - before, BigInt(gone.length))
    assert.equal(lines().length, 16 + gone.length, `only those to b1: ${out}`)
    setBackends([B1, B2])
  })
})
