/**
 * The cgroup socket programs of bpf/sock_mesh.c fuzzed through their syscalls: from a process
 * in a namespace and a cgroup of the fuzzer's own, where the four programs are attached and
 * their maps hold what the agent writes (encodeMesh of the published ports' socket targets and
 * the node's addresses, setSockConfig), random connect(2) (TCP and UDP) and sendto(2) to random
 * addresses and ports. Every address and port involved has a listener, so the oracle can see
 * where each socket really went: a published port on 127.0.0.0/8 or an address of the node
 * goes to one of the port's targets (the same one for every datagram of a socket), anything
 * else where it was sent; the process always sees the address and port it used (getpeername(2),
 * and recvmsg(2) of the reply).
 *
 *   node --import tsx bench/fuzz-sock.ts [--count N] [--seed S]
 */
import {spawnSync, execFileSync} from 'node:child_process'
import dgram from 'node:dgram'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {BpfObject} from '../src/bpf/object.js'
import {ensureBpffs} from '../src/bpf/pins.js'
import type {DesiredMesh, DesiredMeshPort} from '../src/dataplane/mesh.js'
import {encodeMesh} from '../src/dataplane/mesh.js'
import {attachSockMesh, setSockConfig} from '../src/dataplane/sock-mesh.js'
import {cgroup2Root} from '../src/sys/cgroup.js'
import {bpfObjectPath} from '../src/util/root.js'
import {Rng} from './fuzz-packets.js'
import * as W from './fuzz-world.js'

/** An address of the node that is no mesh address (not in sn_mesh_addrs): left alone. */
const OTHER_LOCAL = '10.99.0.7'
const DSTS = ['127.0.0.1', '127.9.9.9', W.NODE, W.SECOND, OTHER_LOCAL]
const PORTS = [8080, 8081, 9090, 53]

const port = (p: Partial<DesiredMeshPort> & Pick<DesiredMeshPort, 'port' | 'protocol' | 'target' | 'sock'>): DesiredMeshPort => ({
  mode: 'ingress',
  serviceId: 'pub',
  vni: W.INGRESS_VNI,
  addr: W.MESH_VIP,
  ifindex: 0,
  mac: '00:00:00:00:00:00',
  ...p,
})

/** The node's published ports with their socket targets, as desiredMesh gives them: a local task's gateway address, other nodes. */
export const SOCK_MESH: DesiredMesh = {
  ports: new Map(
    [
      port({
        port: 8080,
        protocol: 'tcp',
        target: 80,
        sock: [
          {addr: W.TASK_GW, port: 80},
          {addr: W.PEER, port: 8080},
          {addr: W.THIRD, port: 8080},
        ],
      }),
      port({port: 8080, protocol: 'udp', target: 53, sock: [{addr: W.TASK_GW, port: 53}]}),
      port({
        port: 9090,
        protocol: 'tcp',
        target: 80,
        mode: 'host',
        vni: 0,
        addr: W.HOST_TASK,
        sock: [{addr: W.HOST_TASK, port: 80}],
      }),
      // Published, with no task anywhere yet: no socket target.
      port({port: 53, protocol: 'udp', target: 53, sock: []}),
    ].map((p) => [`${p.port}/${p.protocol}`, p]),
  ),
  nodes: new Map(W.GOSSIP),
  ingressVni: W.INGRESS_VNI,
  addrs: [W.SECOND],
}

/** Where a socket to dst:port (protocol proto) must go, per the maps: the targets it may take, or undefined (where it was sent). */
function expectedTargets(dst: string, p: number, proto: 'tcp' | 'udp'): string[] | undefined {
  const local = dst.startsWith('127.') || dst === W.NODE || SOCK_MESH.addrs.includes(dst)
  const targets = SOCK_MESH.ports.get(`${p}/${proto}`)?.sock ?? []
  return local && targets.length ? targets.map((t) => `${t.addr}:${t.port}`) : undefined
}

export interface SockResult {
  seed: number
  ops: number
  outcomes: Record<string, number>
  mismatches: string[]
  mismatchCount: number
  seconds: number
}

async function inside(count: number, seed: number, cgroup: string): Promise<SockResult> {
  const started = Date.now()
  // This process is in the cgroup already (fuzzSock put it there); `ip netns exec` mounted a
  // sysfs of its own, without the cgroup2 mount the attach needs: mounted again, in this
  // process's own mount namespace.
  if (!fs.existsSync(cgroup)) execFileSync('mount', ['-t', 'cgroup2', 'none', path.dirname(cgroup)])
  ensureBpffs()
  const pins = `/sys/fs/bpf/swarmnet-fuzz-sock-${process.pid}`
  fs.mkdirSync(pins, {recursive: true})
  const obj = BpfObject.open(bpfObjectPath('sock_mesh'), {pinRoot: pins})
  const closers: Array<() => void> = []
  const res: SockResult = {seed, ops: 0, outcomes: {}, mismatches: [], mismatchCount: 0, seconds: 0}
  try {
    obj.load()
    attachSockMesh(obj, path.join(pins, 'links'), cgroup)
    setSockConfig(obj.map('sn_sock_config'), W.NODE)
    const enc = encodeMesh(SOCK_MESH)
    for (const [k, v] of enc.sn_sock_targets.values()) obj.map('sn_sock_targets').update(k, v)
    for (const [k, v] of enc.sn_mesh_addrs.values()) obj.map('sn_mesh_addrs').update(k, v)

    // A listener on every address and port a socket may reach: where it was sent, and every target.
    const endpoints = new Set<string>()
    for (const d of DSTS) for (const p of PORTS) endpoints.add(`${d}:${p}`)
    for (const mp of SOCK_MESH.ports.values()) for (const t of mp.sock) endpoints.add(`${t.addr}:${t.port}`)
    const arrivedUdp = new Map<string, string>() // op id -> where it arrived
    const arrivedTcp = new Map<string, string>()
    const listening: Array<Promise<void>> = []
    for (const e of endpoints) {
      const [addr, p] = [e.slice(0, e.lastIndexOf(':')), Number(e.slice(e.lastIndexOf(':') + 1))]
      const u = dgram.createSocket('udp4')
      u.on('message', (m, rinfo) => {
        arrivedUdp.set(String(m), e)
        u.send(m, rinfo.port, rinfo.address)
      })
      listening.push(new Promise((ok) => u.bind(p, addr, () => ok())))
      closers.push(() => u.close())
      const s = net.createServer((c) => {
        c.once('data', (m) => {
          arrivedTcp.set(String(m), e)
          c.end()
        })
        c.on('error', () => {})
      })
      listening.push(new Promise((ok) => s.listen(p, addr, () => ok())))
      closers.push(() => s.close())
    }
    await Promise.all(listening)

    const r = new Rng(seed)
    const problem = (kind: string, s: string) => {
      res.mismatchCount++
      if (res.mismatches.length < 20) res.mismatches.push(`${kind}: ${s}`)
    }
    const wait = (ms: number) => new Promise((ok) => setTimeout(ok, ms))
    const until = async (f: () => boolean) => {
      for (let i = 0; i < 200 && !f(); i++) await wait(i < 20 ? 1 : 10)
      return f()
    }

    const one = async (id: number): Promise<void> => {
      const kind = r.pick(['sendto', 'sendto', 'udp-connect', 'tcp-connect'] as const)
      const dst = r.pick(DSTS)
      const p = r.chance(0.8) ? r.pick(PORTS) : 8080
      const proto = kind === 'tcp-connect' ? 'tcp' : 'udp'
      const targets = expectedTargets(dst, p, proto)
      const label = `${kind} ${targets ? 'redirected' : 'left alone'}`
      res.outcomes[label] = (res.outcomes[label] ?? 0) + 1
      res.ops++
      const tag = `op${id}`
      const what = `${kind} to ${dst}:${p}`
      const where = (at: string | undefined) =>
        targets
          ? at && targets.includes(at)
            ? undefined
            : `reached ${at ?? 'nothing'}, expected one of ${targets.join(' ')}`
          : at === `${dst}:${p}`
            ? undefined
            : `reached ${at ?? 'nothing'}, expected ${dst}:${p}`
      if (proto === 'udp') {
        const s = dgram.createSocket('udp4')
        let reply: dgram.RemoteInfo | undefined
        s.on('message', (_m, ri) => (reply = ri))
        try {
          await new Promise<void>((ok) => s.bind(0, ok))
          let peer: string | undefined
          if (kind === 'udp-connect') {
            await new Promise<void>((ok, no) => {
              s.once('error', no)
              s.connect(p, dst, () => ok())
            })
            const ra = s.remoteAddress()
            peer = `${ra.address}:${ra.port}`
            // Two datagrams on one socket: both must go the same way.
            s.send(`${tag}a`)
            s.send(`${tag}b`)
          } else {
            s.send(`${tag}a`, p, dst)
            s.send(`${tag}b`, p, dst)
          }
          await until(() => arrivedUdp.has(`${tag}a`) && arrivedUdp.has(`${tag}b`) && reply !== undefined)
          const a = arrivedUdp.get(`${tag}a`)
          const bad = where(a)
          if (bad) problem(label, `${what}: ${bad}`)
          else if (arrivedUdp.get(`${tag}b`) !== a)
            problem(label, `${what}: a socket's datagrams went to ${a} and ${arrivedUdp.get(`${tag}b`)}`)
          if (!reply || `${reply.address}:${reply.port}` !== `${dst}:${p}`)
            problem(label, `${what}: the reply came from ${reply ? `${reply.address}:${reply.port}` : 'nowhere'}`)
          if (peer !== undefined && peer !== `${dst}:${p}`) problem(label, `${what}: getpeername says ${peer}`)
        } finally {
          arrivedUdp.delete(`${tag}a`)
          arrivedUdp.delete(`${tag}b`)
          s.close()
        }
        return
      }
      const c = net.connect({port: p, host: dst})
      try {
        const peer = await new Promise<string>((ok, no) => {
          c.once('connect', () => ok(`${c.remoteAddress}:${c.remotePort}`))
          c.once('error', no)
        })
        c.write(tag)
        await until(() => arrivedTcp.has(tag))
        const bad = where(arrivedTcp.get(tag))
        if (bad) problem(label, `${what}: ${bad}`)
        if (peer !== `${dst}:${p}`) problem(label, `${what}: getpeername says ${peer}`)
      } catch (e) {
        problem(label, `${what}: ${(e as Error).message}`)
      } finally {
        arrivedTcp.delete(tag)
        c.destroy()
      }
    }

    // A few sockets at a time: ops run side by side as a busy node's processes do.
    for (let i = 0; i < count;) {
      const batch: Array<Promise<void>> = []
      for (let k = 0; k < 16 && i < count; k++, i++) batch.push(one(i))
      await Promise.all(batch)
    }
    res.seconds = (Date.now() - started) / 1000
    return res
  } finally {
    for (const c of closers) c()
    obj.close()
    // Unpinning the links detaches them.
    fs.rmSync(pins, {recursive: true, force: true})
  }
}

/** The socket fuzzer in a namespace and a cgroup of its own, both removed after (also when it fails). */
export function fuzzSock(opts: {count: number; seed?: number}): SockResult {
  const seed = opts.seed ?? Date.now() & 0x7fffffff
  const ns = `sn-fzs${process.pid}`
  const cg = path.join(cgroup2Root(), `sn-fzs${process.pid}`)
  try {
    execFileSync('ip', ['netns', 'add', ns])
    const ip = (...args: string[]) => execFileSync('ip', ['-n', ns, ...args])
    ip('link', 'set', 'lo', 'up')
    // The node's addresses, a local address that answers no published port, and the targets.
    for (const a of [W.NODE, W.SECOND, OTHER_LOCAL, W.TASK_GW, W.HOST_TASK, W.PEER, W.THIRD])
      ip('addr', 'add', `${a}/32`, 'dev', 'lo')
    fs.mkdirSync(cg)
    // Into the cgroup first, then into the namespace: the child's sockets are both's.
    const argv = ['ip', 'netns', 'exec', ns, process.execPath, '--import', 'tsx', new URL(import.meta.url).pathname, '--inside']
    argv.push('--count', String(opts.count), '--seed', String(seed), '--cgroup', path.join('/sys/fs/cgroup', path.basename(cg)))
    const r = spawnSync('sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec "$@"`, 'sh', ...argv], {
      encoding: 'utf8',
      env: {...process.env, NODE_TEST_CONTEXT: undefined},
      maxBuffer: 64 << 20,
    })
    const line = r.stdout.split('\n').find((l) => l.startsWith('{'))
    if (!line) throw new Error(`the socket fuzzer failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`)
    return JSON.parse(line) as SockResult
  } finally {
    spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
    for (let i = 0; i < 20 && fs.existsSync(cg); i++) {
      try {
        fs.rmdirSync(cg)
      } catch {
        spawnSync('sleep', ['0.1'])
      }
    }
  }
}

export function formatSock(res: SockResult): string[] {
  return [
    `fuzz (socket programs): seed ${res.seed}, ${res.ops} connect/sendto operations (a UDP one: two datagrams and the reply) in ${res.seconds.toFixed(0)} s`,
    ...Object.entries(res.outcomes)
      .sort()
      .map(([k, n]) => `  sock_mesh ${k.padEnd(34)} ${n}`),
    res.mismatchCount
      ? `MISMATCHES (${res.mismatchCount}, the first):\n${res.mismatches.join('\n')}`
      : 'no mismatches: every socket went where the maps say, and saw the address it used',
  ]
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i > 0 ? process.argv[i + 1] : undefined
  }
  const count = Number(arg('--count') ?? 20_000)
  if (process.argv.includes('--inside')) {
    const res = await inside(count, Number(arg('--seed')), arg('--cgroup')!)
    console.log(JSON.stringify(res))
    process.exit(0)
  } else {
    const res = fuzzSock({count, seed: arg('--seed') ? Number(arg('--seed')) : undefined})
    for (const l of formatSock(res)) console.log(l)
    process.exit(res.mismatchCount ? 1 : 0)
  }
}
