// A UDP server that connect()s its socket to its client (iperf3 -u's server, QUIC and game
// servers do) behind the routing mesh, in a real 3-node lab: the mesh delivers the client's
// datagrams to the task's ingress address, so the socket's local address must be that one (the
// task's mesh source rules, src/tasks/mesh-source.ts), or every datagram after the first is
// refused. Reached from the lab's client through every node (one with the task, two without);
// a port added live gets the rule, a removed one loses it.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  state: string
}

const CLIENT_NS = 'sn-lab-client'
const CLIENT_IP = '172.30.0.100'
const NODES = {n1: '172.30.0.11', n2: '172.30.0.12', n3: '172.30.0.13'} as const
const ROUNDS = 5

// Per target port: waits for a client, connect()s to it, answers each datagram with its number
// and the client's address until "bye" (or 3 s of silence), then takes the next client.
const SERVER = `
import socket, threading
def serve(port):
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('0.0.0.0', port))
        m, peer = s.recvfrom(100)
        s.connect(peer)
        s.settimeout(3)
        n = 0
        try:
            while m != b'bye':
                n += 1
                s.send(('%d from %s' % (n, peer[0])).encode())
                m = s.recv(100)
        except OSError:
            pass
        s.close()
for p in (54, 55):
    threading.Thread(target=serve, args=(p,)).start()
`

/** ROUNDS datagrams on one socket, each sent once the previous answer came; the answers, or undefined if one did not come. */
function converse(addr: string, port: number): string[] | undefined {
  const r = inNs(
    CLIENT_NS,
    [
      process.execPath,
      '-e',
      `const s = require('node:dgram').createSocket('udp4'); const got = []; let i = 0, t;
       const next = () => {
         if (i === ${ROUNDS}) return s.send('bye', ${port}, '${addr}', () => { console.log(got.join('\\n')); s.close() });
         i++; t = setTimeout(() => { console.log(got.join('\\n')); process.exit(3) }, 1500); s.send('hi ' + i, ${port}, '${addr}');
       };
       s.on('message', (m) => { clearTimeout(t); got.push(String(m)); next() }); s.on('error', () => {}); next();`,
    ],
    10_000,
  )
  last = `exit ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`
  return r.code === 0 ? r.stdout.trim().split('\n') : undefined
}
/** The last conversation, for a failure's message. */
let last = ''
const answered = (what: string, addr: string, port: number) =>
  eventually(what, () => converse(addr, port), 20_000).catch((e: Error) => {
    throw new Error(`${e.message}; last: ${last}`)
  })

const want = Array.from({length: ROUNDS}, (_v, i) => `${i + 1} from ${CLIENT_IP}`)
const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')

describe('a connected UDP server behind the routing mesh, in a 3-node lab', {timeout: 600_000}, () => {
  withLab(['--nodes', '3'])

  test('every datagram of a client is answered through every node, and the task sees the client', async () => {
    ok('n1', ['service', 'create', '--name', 'conn', '--replicas', '1', '-p', '9054:54/udp', '--', 'python3', '-c', SERVER])
    const [t] = await allRunning('conn', 1, tasksOf, 60_000)
    // The node with the task last: the two without it go over VXLAN to it.
    const order = Object.entries(NODES).sort(([a], [b]) => Number(a === t!.node) - Number(b === t!.node))
    for (const [name, addr] of order) {
      const got = await answered(`${ROUNDS} answers through ${name} (${addr}:9054)`, addr, 9054)
      assert.deepEqual(got, want, `through ${name}`)
    }
  })

  test('publish-add: a UDP port added live answers every datagram; publish-rm closes it', async () => {
    ok('n1', ['service', 'update', 'conn', '--publish-add', '9055:55/udp'])
    for (const [name, addr] of Object.entries(NODES)) {
      const got = await answered(`${ROUNDS} answers through ${name} (${addr}:9055)`, addr, 9055)
      assert.deepEqual(got, want, `through ${name}`)
    }
    ok('n1', ['service', 'update', 'conn', '--publish-rm', '9055/udp'])
    for (const addr of Object.values(NODES))
      await eventually(`${addr}:9055 closed`, () => converse(addr, 9055) === undefined, 20_000)
    // 9054 keeps its rule.
    assert.deepEqual(converse(NODES.n1, 9054), want)
    ok('n1', ['service', 'rm', 'conn'])
  })
})
