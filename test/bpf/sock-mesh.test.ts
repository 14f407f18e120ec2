// bpf/sock_mesh.c on real sockets, without a lab: its four programs attached through pinned links
// to a cgroup of its own (below the cgroup2 root), acting for a namespace of its own (snsk<pid>,
// node address 10.99.0.1): curl and UDP clients in that cgroup and namespace reach the port's
// target, get the address they used back; the same cgroup's sockets in the root namespace are
// left alone. Everything made here is removed in `after`.
import assert from 'node:assert/strict'
import {spawn, spawnSync, execFileSync, type ChildProcess} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {ipv4Key, snSockConfig, snSockKey, snSockRevKey, snSockTargets, u32} from '../../src/bpf/codecs.js'
import {BpfObject} from '../../src/bpf/object.js'
import {BPFFS, ensureBpffs} from '../../src/bpf/pins.js'
import {cgroup2Root} from '../../src/sys/cgroup.js'
import {attachSockMesh} from '../../src/dataplane/sock-mesh.js'
import {bpfObjectPath} from '../../src/util/root.js'
import {tsxInNetns} from './netns-child.js'

const NS = `snsk${process.pid}`
const PINS = path.join(BPFFS, `snsk${process.pid}`)
let CG = ''
const NODE_IP = '10.99.0.1'
/** Another address of the node (on lo in its namespace): answers once it is in sn_mesh_addrs. */
const SECOND_IP = '10.99.0.3'
const PORT = 28080
const UPORT = 28053
let obj: BpfObject | undefined
const procs: ChildProcess[] = []

const ROOT_ONLY = (text: string) => `require('node:http').createServer((q, s) => s.end('${text}\\n'))`

/** Run argv inside our cgroup (and, with ns, inside our namespace). */
function inCgroup(argv: string[], ns = true): {code: number | null; stdout: string} {
  const cmd = [...(ns ? ['ip', 'netns', 'exec', NS] : []), ...argv].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
  const r = spawnSync('sh', ['-c', `echo $$ > ${CG}/cgroup.procs && exec ${cmd}`], {encoding: 'utf8', timeout: 10_000})
  return {code: r.status, stdout: r.stdout}
}

function listen(argv: string[]): void {
  const p = spawn(argv[0]!, argv.slice(1), {stdio: 'ignore'})
  procs.push(p)
}

async function until(what: string, fn: () => boolean): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (fn()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.fail(what)
}

before(async () => {
  ensureBpffs()
  execFileSync('ip', ['netns', 'add', NS])
  execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up'])
  execFileSync('ip', ['-n', NS, 'addr', 'add', `${NODE_IP}/32`, 'dev', 'lo'])
  execFileSync('ip', ['-n', NS, 'addr', 'add', `${SECOND_IP}/32`, 'dev', 'lo'])
  CG = path.join(cgroup2Root(), `snsk${process.pid}`)
  fs.mkdirSync(CG)
  fs.mkdirSync(PINS, {recursive: true})
  obj = BpfObject.open(bpfObjectPath('sock_mesh'), {pinRoot: PINS})
  obj.load()
  attachSockMesh(obj, path.join(PINS, 'links'), CG)
  // The namespace's cookie, as the agent reads it: from inside.
  const cookie = execFileSync(
    'ip',
    tsxInNetns(
      NS,
      '-e',
      `import('${path.resolve('src/sys/netns-cookie.ts')}').then((m) => console.log(String(m.ownNetnsCookie())))`,
    ),
    {encoding: 'utf8'},
  ).trim()
  obj.map('sn_sock_config').update(u32.encode(0), snSockConfig.encode({netns_cookie: BigInt(cookie), node_ip: NODE_IP, flags: 0}))
  obj
    .map('sn_sock_targets')
    .update(snSockKey.encode({port: PORT, proto: 6}), snSockTargets.encode([{addr: '127.0.0.2', port: PORT + 1}]))
  obj
    .map('sn_sock_targets')
    .update(snSockKey.encode({port: UPORT, proto: 17}), snSockTargets.encode([{addr: '127.0.0.2', port: UPORT + 1}]))
  // The target, inside the namespace; and the host's own listener on the published port, in the root namespace.
  listen(['ip', 'netns', 'exec', NS, process.execPath, '-e', `${ROOT_ONLY('backend')}.listen(${PORT + 1}, '127.0.0.2')`])
  listen([
    'ip',
    'netns',
    'exec',
    NS,
    process.execPath,
    '-e',
    `require('node:dgram').createSocket('udp4').on('message', function (m, r) { this.send('pong', r.port, r.address) }).bind(${UPORT + 1}, '127.0.0.2')`,
  ])
  listen([process.execPath, '-e', `${ROOT_ONLY('root host')}.listen(${PORT}, '127.0.0.1')`])
  await until(
    'listeners up',
    () => spawnSync('ip', ['netns', 'exec', NS, 'curl', '-s', `http://127.0.0.2:${PORT + 1}/`]).status === 0,
  )
  await until('root listener up', () => spawnSync('curl', ['-s', `http://127.0.0.1:${PORT}/`]).status === 0)
})

after(() => {
  for (const p of procs) p.kill()
  obj?.close()
  // Unpinning the links detaches them.
  fs.rmSync(PINS, {recursive: true, force: true})
  spawnSync('ip', ['netns', 'del', NS], {stdio: 'ignore'})
  for (let i = 0; i < 20 && CG && fs.existsSync(CG); i++) {
    try {
      fs.rmdirSync(CG)
    } catch {
      spawnSync('sleep', ['0.1'])
    }
  }
})

describe('sock_mesh: cgroup connect/sendmsg/recvmsg/getpeername (real sockets)', () => {
  it('TCP to 127.0.0.1:P and to the node address:P in the node namespace reaches the target', () => {
    for (const addr of ['127.0.0.1', '127.9.9.9', NODE_IP]) {
      const r = inCgroup(['curl', '-sS', '-m', '2', `http://${addr}:${PORT}/`])
      assert.equal(r.stdout, 'backend\n', `via ${addr}`)
    }
  })

  it('the peer name is what the process connected to', () => {
    const r = inCgroup([
      process.execPath,
      '-e',
      `const s = require('node:net').connect(${PORT}, '127.0.0.1', () => { console.log(s.remoteAddress + ':' + s.remotePort); s.destroy() })`,
    ])
    assert.equal(r.stdout.trim(), `127.0.0.1:${PORT}`)
  })

  it('UDP: the answer comes back from the address and port it was sent to', () => {
    const r = inCgroup([
      process.execPath,
      '-e',
      `const s = require('node:dgram').createSocket('udp4'); const t = setTimeout(() => process.exit(3), 1500);
       s.on('message', (m, r) => { console.log(String(m) + ' via ' + r.address + ':' + r.port); clearTimeout(t); s.close() }); s.send('ping', ${UPORT}, '127.0.0.1')`,
    ])
    assert.equal(r.stdout.trim(), `pong via 127.0.0.1:${UPORT}`)
  })

  it('an unconnected UDP socket sending the same way again leaves its sn_sock_rev entry as it is; another way rewrites it', async () => {
    // One socket, told where to send by a line on its stdin; it prints each answer as it gets it.
    const client = spawn(
      'sh',
      [
        '-c',
        `echo $$ > ${CG}/cgroup.procs && exec ip netns exec ${NS} ${process.execPath} -e "$0"`,
        `const s = require('node:dgram').createSocket('udp4');
         s.on('message', (m, r) => console.log(String(m) + ' via ' + r.address + ':' + r.port));
         const rl = require('node:readline').createInterface({input: process.stdin});
         rl.on('line', (to) => s.send('ping', ${UPORT}, to)); rl.on('close', () => s.close())`,
      ],
      {stdio: ['pipe', 'pipe', 'inherit']},
    )
    procs.push(client)
    let out = ''
    client.stdout!.on('data', (b: Buffer) => (out += b.toString()))
    const sendVia = async (to: string) => {
      const had = out.length
      client.stdin!.write(`${to}\n`)
      await until(`an answer to the datagram sent to ${to}`, () => out.length > had && out.endsWith('\n'))
      assert.equal(out.slice(had).trim(), `pong via ${to}:${UPORT}`)
    }
    const rev = obj!.map('sn_sock_rev')
    const ours = (k: Buffer) => {
      const d = snSockRevKey.decode(k)
      return d.addr === '127.0.0.2' && d.port === UPORT + 1 && d.proto === 17
    }
    const before = new Set(
      rev
        .entries()
        .filter(([k]) => ours(k))
        .map(([k]) => k.toString('hex')),
    )
    try {
      await sendVia('127.0.0.1')
      const mine = rev.entries().filter(([k]) => ours(k) && !before.has(k.toString('hex')))
      assert.equal(mine.length, 1, "the socket's entry, written by its first datagram")
      const key = mine[0]![0]
      // The value's pad is never read: a mark there shows whether the program wrote the entry again.
      const marked = Buffer.from(mine[0]![1])
      marked.writeUInt16BE(0xbeef, 6)
      rev.update(key, marked)
      await sendVia('127.0.0.1')
      assert.equal(rev.lookup(key)?.toString('hex'), marked.toString('hex'), 'the same way again: not written')
      // Another address of the node to the same target: the entry must say so, or the answer comes from the old one.
      await sendVia(NODE_IP)
      assert.equal(rev.lookup(key)?.readUInt16BE(6), 0, 'a different way: written anew')
      await sendVia('127.0.0.1')
    } finally {
      client.stdin!.end()
    }
  })

  it('a port not in sn_sock_targets, and another address, are left alone', () => {
    assert.notEqual(inCgroup(['curl', '-sS', '-m', '2', `http://127.0.0.1:${PORT + 2}/`]).code, 0)
    assert.notEqual(inCgroup(['curl', '-sS', '-m', '2', `http://10.99.0.2:${PORT}/`]).code, 0)
  })

  it('another address of the node reaches the target once it is in sn_mesh_addrs, and no more once it is out', () => {
    const curl = () => inCgroup(['curl', '-sS', '-m', '2', `http://${SECOND_IP}:${PORT}/`])
    assert.notEqual(curl().code, 0, 'not a mesh address yet: the kernel has no listener there')
    obj!.map('sn_mesh_addrs').update(ipv4Key.encode(SECOND_IP), u32.encode(0))
    try {
      assert.equal(curl().stdout, 'backend\n')
      const r = inCgroup([
        process.execPath,
        '-e',
        `const s = require('node:dgram').createSocket('udp4'); const t = setTimeout(() => process.exit(3), 1500);
         s.on('message', (m, r) => { console.log(String(m) + ' via ' + r.address + ':' + r.port); clearTimeout(t); s.close() }); s.send('ping', ${UPORT}, '${SECOND_IP}')`,
      ])
      assert.equal(r.stdout.trim(), `pong via ${SECOND_IP}:${UPORT}`)
    } finally {
      obj!.map('sn_mesh_addrs').delete(ipv4Key.encode(SECOND_IP))
    }
    assert.notEqual(curl().code, 0, 'out of sn_mesh_addrs: left alone again')
  })

  it("the same cgroup's sockets in another namespace (the host's) are untouched", () => {
    assert.equal(inCgroup(['curl', '-sS', '-m', '2', `http://127.0.0.1:${PORT}/`], false).stdout, 'root host\n')
  })
})
