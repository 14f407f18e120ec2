// The routing mesh from the node itself (bpf/sock_mesh.c), in a real 3-node lab: inside each
// node's network namespace, `curl 127.0.0.1:P` and `curl <node address>:P` reach the service,
// on the node that runs its task and on the two that do not; a UDP client there gets its answer
// back from the address and port it sent to; the host's own connections to 127.0.0.1:P (the root
// namespace, which shares the lab's cgroups and so runs every node's programs) are left alone;
// `lab down` detaches the programs from the root cgroup.
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {after, describe, test} from 'node:test'
import {cgroupMounts} from '../../src/sys/cgroup.js'
import {eventually, inNs, json, ok, sh} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  state: string
}

const NODES = {n1: '172.30.0.11', n2: '172.30.0.12', n3: '172.30.0.13'} as const
type NodeName = keyof typeof NODES
const WEB = 28080
const ECHO = 29053

const curlIn = (node: NodeName, addr: string, port: number) =>
  inNs(`sn-lab-${node}`, ['curl', '-sS', '-m', '2', `http://${addr}:${port}/`], 10_000)

function hostname(node: NodeName, addr: string, port: number): string | undefined {
  const r = curlIn(node, addr, port)
  return r.code === 0 ? /Hostname: (\S+)/.exec(r.stdout)?.[1] : undefined
}

// A UDP echo that answers with the address it saw the datagram come from.
const UDP_ECHO = `require('node:dgram').createSocket('udp4').on('message', function (m, r) { this.send('from ' + r.address, r.port, r.address) }).bind(53)`
const udpAskIn = (node: NodeName, addr: string, port: number) =>
  inNs(
    `sn-lab-${node}`,
    [
      process.execPath,
      '-e',
      `const s = require('node:dgram').createSocket('udp4'); const t = setTimeout(() => process.exit(3), 1500);
       s.on('message', (m, r) => { console.log('via ' + r.address + ':' + r.port); clearTimeout(t); s.close() }); s.send('hi', ${port}, '${addr}')`,
    ],
    10_000,
  )

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')
const running = (svc: string, n: number) => allRunning(svc, n, tasksOf, 60_000)

/** Programs attached to the cgroup2 root whose names are ours. */
function sockProgsOnRoot(): string[] {
  const root = cgroupMounts().v2!
  return sh(['bpftool', 'cgroup', 'show', root])
    .stdout.split('\n')
    .filter((l) => /sn_sock_/.test(l))
}

describe('the routing mesh from the node itself, in a 3-node lab', {timeout: 600_000}, () => {
  let rootListener: ChildProcess | undefined
  withLab(['--nodes', '3'], {beforeDown: () => rootListener?.kill()})
  after(() => {
    assert.deepEqual(sockProgsOnRoot(), [], 'lab down detaches the node-local mesh programs from the root cgroup')
  })

  test('each node attached its own four programs to the cgroup2 root', () => {
    // 3 nodes x connect4, sendmsg4, recvmsg4, getpeername4.
    assert.equal(sockProgsOnRoot().length, 12, sockProgsOnRoot().join('\n'))
  })

  test('curl 127.0.0.1:P and the node address:P from inside every node reach the service (with and without a task there)', async () => {
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '1', '--publish', `published=${WEB},target=80`])
    const [t] = await running('web', 1)
    const withTask = t!.node as NodeName
    assert.ok(withTask in NODES)
    for (const node of Object.keys(NODES) as NodeName[]) {
      for (const addr of ['127.0.0.1', NODES[node]]) {
        const host = await eventually(`web from inside ${node} on ${addr}:${WEB}`, () => hostname(node, addr, WEB), 15_000)
        assert.equal(host, 'web.1', `${node} (${node === withTask ? 'runs the task' : 'no task'}) via ${addr}`)
      }
    }
    // What is not published is left to the kernel: nothing listens there.
    for (const node of Object.keys(NODES) as NodeName[]) assert.notEqual(curlIn(node, '127.0.0.1', WEB + 1).code, 0)
  })

  test("the host's own 127.0.0.1:P (root namespace) is untouched while the lab publishes P", async () => {
    rootListener = spawn(
      process.execPath,
      ['-e', `require('node:http').createServer((q, s) => s.end('root host\\n')).listen(${WEB}, '127.0.0.1')`],
      {stdio: 'ignore'},
    )
    const r = await eventually(
      'the root namespace listener',
      () => {
        const x = sh(['curl', '-sS', '-m', '2', `http://127.0.0.1:${WEB}/`])
        return x.code === 0 ? x : undefined
      },
      10_000,
    )
    assert.equal(r.stdout, 'root host\n')
    // ... and the nodes still reach the service, not the host's listener.
    assert.equal(hostname('n1', '127.0.0.1', WEB), 'web.1')
    rootListener.kill()
    rootListener = undefined
  })

  test('UDP from inside every node: the answer comes back from the address and port it was sent to', async () => {
    ok('n1', [
      'service',
      'create',
      '--name',
      'echo',
      '--replicas',
      '1',
      '-p',
      `${ECHO}:53/udp`,
      '--',
      process.execPath,
      '-e',
      UDP_ECHO,
    ])
    await running('echo', 1)
    for (const node of Object.keys(NODES) as NodeName[]) {
      for (const addr of ['127.0.0.1', NODES[node]]) {
        const r = await eventually(
          `UDP echo from inside ${node} on ${addr}:${ECHO}`,
          () => {
            const x = udpAskIn(node, addr, ECHO)
            return x.code === 0 ? x : undefined
          },
          15_000,
        )
        assert.equal(r.stdout.trim(), `via ${addr}:${ECHO}`, `${node} via ${addr}`)
      }
    }
  })

  test('service rm: the node-local port closes too', async () => {
    ok('n1', ['service', 'rm', 'web'])
    for (const node of Object.keys(NODES) as NodeName[]) {
      await eventually(`${node} 127.0.0.1:${WEB} closed`, () => curlIn(node, '127.0.0.1', WEB).code !== 0, 15_000)
    }
  })
})
