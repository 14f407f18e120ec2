// sn_xdp_task on real devices: two nodes (namespaces joined by a veth underlay), each with the
// data path the agent makes (xdp_underlay, tc_task, xdp_task on the task's host side), tasks
// A and C on n1, B on n2. The task's own stack sends, so its frames come as the kernel makes
// them (checksums left to offload, CHECKSUM_PARTIAL), which BPF_PROG_TEST_RUN cannot make.
// What it holds: UDP of every tail length and a TCP stream from A reach B whole, encapsulated
// in XDP (xdp_encap counts them, tc_encap does not), and B's stack, which verifies every
// checksum of a frame redirected in XDP, counts no checksum error; what xdp_task must not take
// goes to tc_task unchanged and gets tc_task's verdict and counter: ARP, a task of the same
// node, a spoofed source, an address outside the network, a VIP, ICMP.
// Everything lives in namespaces this test makes (sn-bt-xt-*), deleted in `after`.

import assert from 'node:assert/strict'
import {execFileSync, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {rmSync} from 'node:fs'
import {join} from 'node:path'
import {after, before, describe, it} from 'node:test'
import {BpfMap, readCounters, type CounterName} from '../../src/bpf/index.js'
import {addNetns, delNetns, execIn, netnsPath} from '../../src/sys/netns.js'
import {REPO, pinRootFor} from './harness.js'
import type {NodeSpec} from './xdp-task-child.js'

const N1 = 'sn-bt-xt-n1'
const N2 = 'sn-bt-xt-n2'
const A = 'sn-bt-xt-a'
const B = 'sn-bt-xt-b'
const C = 'sn-bt-xt-c'
const PINS = {n1: pinRootFor('xt-n1'), n2: pinRootFor('xt-n2')}
const VNI = 100
const MTU = 1450
const task = {
  a: {ns: A, host: 'snx-a', ip: '10.77.0.2', mac: '02:42:0a:4d:00:02'},
  c: {ns: C, host: 'snx-c', ip: '10.77.0.4', mac: '02:42:0a:4d:00:04'},
  b: {ns: B, host: 'snx-b', ip: '10.77.0.3', mac: '02:42:0a:4d:00:03'},
}
const NODE1 = '172.30.9.11'
const NODE2 = '172.30.9.12'
const VIP = {ip: '10.77.0.100', mac: '02:42:0a:4d:00:64'}

const ip = (args: string[]) => execFileSync('ip', args, {stdio: ['ignore', 'ignore', 'pipe']})

function node(ns: string, pinRoot: string, spec: NodeSpec): void {
  const out = execFileSync(
    'nsenter',
    [
      `--net=${netnsPath(ns)}`,
      '--',
      process.execPath,
      '--import',
      'tsx',
      join(REPO, 'test/bpf/xdp-task-child.ts'),
      pinRoot,
      JSON.stringify(spec),
    ],
    {cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']},
  )
  assert.deepEqual(JSON.parse(out.trim()), {ok: true})
}

before(async () => {
  for (const ns of [N1, N2, A, B, C]) await delNetns(ns)
  for (const ns of [N1, N2, A, B, C]) await addNetns(ns)
  ip(['-n', N1, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', N2])
  for (const [ns, addr] of [
    [N1, NODE1],
    [N2, NODE2],
  ] as const) {
    ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0'])
    ip(['-n', ns, 'link', 'set', 'eth0', 'up'])
    // As the lab's wire: tc's frames leave with their checksums finished (bpf/README.md).
    execFileSync('ip', ['netns', 'exec', ns, 'ethtool', '-K', 'eth0', 'tx', 'off'], {stdio: 'ignore'})
    // As the agent does with its gateway bridge: the kernel's FIB lookup for BPF answers only where forwarding is on.
    execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  }
  const common = {underlay: 'eth0', vni: VNI, mtu: MTU, xdpTask: true}
  node(N1, PINS.n1, {
    ...common,
    nodeIp: NODE1,
    tasks: [task.a, task.c],
    remotes: [{ip: task.b.ip, mac: task.b.mac, nodeIp: NODE2}],
    vip: VIP,
  })
  node(N2, PINS.n2, {
    ...common,
    nodeIp: NODE2,
    tasks: [task.b],
    remotes: [
      {ip: task.a.ip, mac: task.a.mac, nodeIp: NODE1},
      {ip: task.c.ip, mac: task.c.mac, nodeIp: NODE1},
    ],
  })
})

after(async () => {
  try {
    for (const ns of [A, B, C, N1, N2]) await delNetns(ns)
  } finally {
    for (const p of Object.values(PINS)) rmSync(p, {recursive: true, force: true})
  }
})

/** n1's counters, summed over CPUs. */
const n1Counters = () => readCounters(BpfMap.openPinned(join(PINS.n1, 'maps', 'sn_stats')))

/** What `f` moved among `names` of n1's counters. */
async function moved(names: CounterName[], f: () => Promise<unknown>): Promise<Record<string, number>> {
  const before = n1Counters()
  await f()
  const after = n1Counters()
  return Object.fromEntries(names.map((n) => [n, Number(after[n] - before[n])]))
}

/** B's checksum errors, UDP and TCP (/proc/net/snmp of its namespace). */
async function csumErrors(): Promise<{udp: number; tcp: number}> {
  const snmp = await execIn(B, ['cat', '/proc/net/snmp'])
  const field = (proto: string, name: string): number => {
    const lines = snmp.split('\n').filter((l) => l.startsWith(`${proto}:`))
    const names = lines[0]!.split(/\s+/)
    const values = lines[1]!.split(/\s+/)
    return Number(values[names.indexOf(name)])
  }
  return {udp: field('Udp', 'InCsumErrors'), tcp: field('Tcp', 'InCsumErrors')}
}

/** Runs python3 `code` in `ns` in the background; its stdout once it exits. */
function pyBackground(ns: string, code: string): Promise<string> {
  const child = spawn('nsenter', [`--net=${netnsPath(ns)}`, '--', 'python3', '-c', code], {stdio: ['ignore', 'pipe', 'inherit']})
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`python3 in ${ns} exited ${code}: ${out}`))))
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function listening(ns: string, port: number, proto: 'u' | 't'): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await execIn(ns, ['ss', `-Hl${proto}n`, `sport = :${port}`])).trim() !== '') return
    await sleep(50)
  }
  throw new Error(`nothing listens on ${port} in ${ns}`)
}

/** Payload bytes of a datagram of `n` bytes: a pattern that differs by position, so a lost or moved byte shows. */
const pattern = (n: number, seed: number) => Buffer.from(Array.from({length: n}, (_, i) => (i * 7 + seed) & 0xff))

// Every tail length (1-3 bytes after the last whole word), every piece the checksum sums in
// (512, 256, ... 4), and the largest datagram the network's MTU takes.
const UDP_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 18, 63, 64, 255, 511, 512, 513, 1000, 1023, 1371, MTU - 28]

describe('sn_xdp_task', () => {
  it('encapsulates UDP of every length in XDP, whole, with checksums B verifies', async () => {
    // The neighbours first (tc_task answers A's ARP; the echo is ICMP, tc's), so every datagram below leaves by XDP.
    await execIn(A, ['ping', '-c', '1', '-W', '2', task.b.ip])
    const errs = await csumErrors()
    let got = ''
    const delta = await moved(['xdp_encap', 'tc_encap'], async () => {
      const recv = pyBackground(
        B,
        [
          'import socket, hashlib, json',
          's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
          "s.bind(('0.0.0.0', 9999))",
          's.settimeout(3)',
          'seen = []',
          'try:',
          `    while len(seen) < ${UDP_SIZES.length}:`,
          '        d, a = s.recvfrom(65535)',
          '        seen.append([len(d), hashlib.sha256(d).hexdigest(), a[0]])',
          'except socket.timeout:',
          '    pass',
          'print(json.dumps(seen))',
        ].join('\n'),
      )
      await listening(B, 9999, 'u')
      await execIn(A, [
        'python3',
        '-c',
        [
          'import socket, time',
          's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
          `for n in ${JSON.stringify(UDP_SIZES)}:`,
          `    s.sendto(bytes((i * 7 + n) & 0xff for i in range(n)), ('${task.b.ip}', 9999))`,
          '    time.sleep(0.01)',
        ].join('\n'),
      ])
      got = await recv
    })
    const seen = JSON.parse(got) as [number, string, string][]
    assert.deepEqual(
      seen.map(([n, h, from]) => [n, h, from]),
      UDP_SIZES.map((n) => [n, createHash('sha256').update(pattern(n, n)).digest('hex'), task.a.ip]),
    )
    assert.equal(delta.xdp_encap, UDP_SIZES.length, 'each datagram encapsulated in XDP')
    assert.equal(delta.tc_encap, 0, 'none left to tc')
    assert.deepEqual(await csumErrors(), errs, 'B counted no checksum error')
  })

  it('encapsulates a TCP stream in XDP: 4 MB reach B byte for byte', async () => {
    const errs = await csumErrors()
    const size = 4 << 20
    let got = ''
    const delta = await moved(['xdp_encap', 'tc_encap'], async () => {
      const recv = pyBackground(
        B,
        [
          'import socket, hashlib',
          's = socket.socket()',
          's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
          "s.bind(('0.0.0.0', 9998))",
          's.listen(1)',
          's.settimeout(10)',
          'c, a = s.accept()',
          'h = hashlib.sha256()',
          'n = 0',
          'while True:',
          '    d = c.recv(65536)',
          '    if not d:',
          '        break',
          '    h.update(d)',
          '    n += len(d)',
          'print(n, h.hexdigest())',
        ].join('\n'),
      )
      await listening(B, 9998, 't')
      await execIn(A, [
        'python3',
        '-c',
        [
          'import socket',
          `data = bytes((i * 7 + 1) & 0xff for i in range(${size}))`,
          `s = socket.create_connection(('${task.b.ip}', 9998), timeout=10)`,
          's.sendall(data)',
          's.close()',
        ].join('\n'),
      ])
      got = (await recv).trim()
    })
    assert.equal(got, `${size} ${createHash('sha256').update(pattern(size, 1)).digest('hex')}`)
    assert.ok(delta.xdp_encap! >= size / MTU, `xdp_encap +${delta.xdp_encap} for ${size} bytes`)
    assert.equal(delta.tc_encap, 0, 'none left to tc')
    assert.deepEqual(await csumErrors(), errs, 'B counted no checksum error')
  })

  it('passes to tc_task what is not its own: ICMP and a task of this node (delivered), spoofed, outside the network, a VIP (refused)', async () => {
    const names: CounterName[] = [
      'xdp_encap',
      'tc_encap',
      'tc_local',
      'tc_drop_other',
      'tc_no_endpoint',
      'lb_no_backend',
      'tc_arp_reply',
    ]
    // A task of this node: ARP and the echoes by tc (redirect_peer), none by XDP.
    let d = await moved(names, async () => {
      assert.match(await execIn(A, ['ping', '-c', '3', '-i', '0.05', '-W', '2', task.c.ip]), /3 received/)
    })
    assert.equal(d.xdp_encap, 0)
    assert.equal(d.tc_local, 6, 'three echoes to C, three replies to A')
    assert.ok(d.tc_arp_reply! >= 1, 'A asked for C')
    // ICMP to B: tc encapsulates it.
    d = await moved(names, async () => {
      assert.match(await execIn(A, ['ping', '-c', '3', '-i', '0.05', '-W', '2', task.b.ip]), /3 received/)
    })
    assert.equal(d.xdp_encap, 0)
    assert.equal(d.tc_encap, 3)
    const send = (dst: string, src?: string) =>
      execIn(A, [
        'python3',
        '-c',
        [
          'import socket',
          's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
          ...(src ? [`s.bind(('${src}', 0))`] : []),
          `for i in range(5): s.sendto(b'x' * 64, ('${dst}', 9997))`,
        ].join('\n'),
      ])
    // A source that is not A's: A takes a second address on its interface.
    await execIn(A, ['ip', 'addr', 'add', '10.77.0.50/24', 'dev', 'eth0'])
    d = await moved(names, () => send(task.b.ip, '10.77.0.50'))
    assert.equal(d.xdp_encap, 0)
    assert.equal(d.tc_encap, 0)
    assert.equal(d.tc_drop_other, 5, 'tc_task drops the spoofed datagrams')
    // An address of no endpoint (its MAC given by hand: tc_task answers ARP for endpoints only).
    await execIn(A, ['ip', 'neigh', 'replace', '10.77.0.99', 'lladdr', '02:42:0a:4d:00:63', 'dev', 'eth0'])
    d = await moved(names, () => send('10.77.0.99'))
    assert.equal(d.xdp_encap, 0)
    assert.equal(d.tc_no_endpoint, 5)
    // A VIP with no service behind it: tc_task's load balancer refuses it.
    d = await moved(names, () => send(VIP.ip))
    assert.equal(d.xdp_encap, 0)
    assert.equal(d.lb_no_backend, 5)
  })
})
