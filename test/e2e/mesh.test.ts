// The routing mesh through the data plane, in a real 3-node lab: the lab's client
// (sn-lab-client, 172.30.0.100) reaches published ports on every node's address, including
// a node that runs no task of the service, and the task sees the client's own address;
// UDP and host mode; what is not published stays closed; publish-add / publish-rm and
// service rm change what answers on every node.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {parseExposition, sumOf} from '../../src/metrics/parse.js'
import {eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  state: string
}
interface Port {
  published: number
  target: number
  protocol: string
  mode: string
}

const CLIENT_NS = 'sn-lab-client'
const CLIENT_IP = '172.30.0.100'
const NODES = {n1: '172.30.0.11', n2: '172.30.0.12', n3: '172.30.0.13'} as const
type NodeName = keyof typeof NODES

const curl = (addr: string, port: number) => inNs(CLIENT_NS, ['curl', '-sS', '-m', '2', `http://${addr}:${port}/`], 10_000)

/** whoami's answer through the mesh, or undefined while it does not come. */
function whoami(addr: string, port: number): {host: string; remote: string} | undefined {
  const r = curl(addr, port)
  if (r.code !== 0) return undefined
  const host = /Hostname: (\S+)/.exec(r.stdout)?.[1]
  const remote = /RemoteAddr: (\S+):\d+/.exec(r.stdout)?.[1]
  return host && remote ? {host, remote} : undefined
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')
const running = (svc: string, n: number) => allRunning(svc, n, tasksOf, 60_000)

/** Refused or timed out: nothing answers on that port. */
function closed(addr: string, port: number): boolean {
  return curl(addr, port).code !== 0
}

// A UDP echo that answers with the address it saw the datagram come from.
const UDP_ECHO = `require('node:dgram').createSocket('udp4').on('message', function (m, r) { this.send('from ' + r.address, r.port, r.address) }).bind(53)`
const udpAsk = (addr: string, port: number) =>
  inNs(
    CLIENT_NS,
    [
      process.execPath,
      '-e',
      `const s = require('node:dgram').createSocket('udp4'); const t = setTimeout(() => process.exit(3), 1500);
       s.on('message', (m, r) => { console.log(String(m) + ' via ' + r.address + ':' + r.port); clearTimeout(t); s.close() }); s.send('hi', ${port}, '${addr}')`,
    ],
    10_000,
  )

describe('the routing mesh, in a 3-node lab', {timeout: 600_000}, () => {
  withLab(['--nodes', '3'])

  test('a 2-replica whoami published on 8080 answers on all 3 nodes (one runs no task), and sees the client itself', async () => {
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '2', '--publish', 'published=8080,target=80'])
    const tasks = await running('web', 2)
    const withTask = new Set(tasks.map((t) => t.node))
    const idle = (Object.keys(NODES) as NodeName[]).filter((n) => !withTask.has(n))
    assert.equal(idle.length, 1, `one node runs no task of web: ${JSON.stringify(tasks)}`)
    for (const [name, addr] of Object.entries(NODES)) {
      const w = await eventually(`whoami through ${name} (${addr}:8080)`, () => whoami(addr, 8080), 15_000)
      assert.equal(w.remote, CLIENT_IP, `through ${name}: the task sees the client's own address`)
      assert.match(w.host, /^web\.[12]$/)
    }
    // Many connections through the idle node reach both tasks (Maglev over the ingress VIP).
    const seen = new Set<string>()
    let conns = 1
    for (; conns <= 30 && seen.size < 2; conns++) seen.add(whoami(NODES[idle[0]!], 8080)?.host ?? 'none')
    assert.deepEqual([...seen].sort(), ['web.1', 'web.2'])
    // Per published port counters are in the maps: the idle node counted packets and new flows on 8080/tcp.
    const stats = json<{maps: {entries: {key: {port: number; proto: number}; value: {packets: number; new_flows: number}}[]}[]}>(
      undefined,
      ['inspect', 'maps', '--host', idle[0]!, '--map', 'sn_mesh_stats'],
    ).maps[0]!.entries.find((e) => e.key.port === 8080 && e.key.proto === 6)
    assert.ok(stats && Number(stats.value.packets) > 0 && Number(stats.value.new_flows) >= conns, JSON.stringify(stats))
    // ... and the idle node's Prometheus endpoint names them by port, protocol and service.
    const scraped = parseExposition(
      inNs(`sn-lab-${idle[0]!}`, ['curl', '-sf', '-m', '5', 'http://127.0.0.1:9323/metrics']).stdout,
    )
    const labels = {port: '8080', protocol: 'tcp', service: 'web'}
    assert.ok(sumOf(scraped, 'swarmnet_published_port_packets_total', labels) > 0, 'packets to 8080/tcp in /metrics')
    assert.ok(sumOf(scraped, 'swarmnet_published_port_bytes_total', labels) > 0, 'bytes to 8080/tcp in /metrics')
    assert.ok(sumOf(scraped, 'swarmnet_published_port_new_flows_total', labels) >= conns, 'new flows on 8080/tcp in /metrics')
  })

  test('a port that is not published is not reachable on any node', () => {
    for (const addr of Object.values(NODES)) assert.ok(closed(addr, 8081), `${addr}:8081 answered`)
  })

  test('an allocated port (published omitted) lies in 30000-32767 and answers on every node', async () => {
    ok('n1', ['service', 'create', '--name', 'auto', '--publish', 'target=80'])
    const ports = json<{ports: Port[]}>('n1', ['service', 'inspect', 'auto']).ports
    assert.equal(ports.length, 1)
    const p = ports[0]!.published
    assert.ok(p >= 30000 && p <= 32767, `allocated ${p}`)
    await running('auto', 1)
    for (const addr of Object.values(NODES)) {
      const w = await eventually(`auto through ${addr}:${p}`, () => whoami(addr, p), 15_000)
      assert.equal(w.remote, CLIENT_IP)
    }
    ok('n1', ['service', 'rm', 'auto'])
  })

  test('a UDP port answers on every node, and the task sees the client', async () => {
    ok('n1', [
      'service',
      'create',
      '--name',
      'echo',
      '--replicas',
      '1',
      '-p',
      '9053:53/udp',
      '--',
      process.execPath,
      '-e',
      UDP_ECHO,
    ])
    await running('echo', 1)
    for (const addr of Object.values(NODES)) {
      const r = await eventually(
        `UDP echo through ${addr}:9053`,
        () => {
          const x = udpAsk(addr, 9053)
          return x.code === 0 ? x : undefined
        },
        15_000,
      )
      // The answer comes from the address and port the client asked (an unconnected socket would take any).
      assert.equal(r.stdout.trim(), `from ${CLIENT_IP} via ${addr}:9053`)
    }
    ok('n1', ['service', 'rm', 'echo'])
  })

  test('mode=host answers only on the node that runs the task, straight to it', async () => {
    ok('n1', ['service', 'create', '--name', 'hostweb', '--replicas', '1', '--publish', 'published=8090,target=80,mode=host'])
    const [t] = await running('hostweb', 1)
    const here = NODES[t!.node as NodeName]
    const w = await eventually(`hostweb on ${t!.node}`, () => whoami(here, 8090), 15_000)
    assert.equal(w.host, 'hostweb.1')
    assert.equal(w.remote, CLIENT_IP)
    for (const [name, addr] of Object.entries(NODES)) {
      if (name !== t!.node) assert.ok(closed(addr, 8090), `${name} has no task of hostweb but answered on 8090`)
    }
    ok('n1', ['service', 'rm', 'hostweb'])
  })

  test('publish-add and publish-rm on the live service: the new port answers everywhere, the removed one closes, 8080 stays', async () => {
    ok('n1', ['service', 'update', 'web', '--publish-add', '8085:80'])
    for (const addr of Object.values(NODES)) await eventually(`web on ${addr}:8085`, () => whoami(addr, 8085), 15_000)
    ok('n1', ['service', 'update', 'web', '--publish-rm', '8085'])
    for (const addr of Object.values(NODES)) await eventually(`${addr}:8085 closed`, () => closed(addr, 8085), 15_000)
    for (const addr of Object.values(NODES)) assert.equal(whoami(addr, 8080)?.remote, CLIENT_IP)
  })

  test('service rm closes the port on every node', async () => {
    ok('n1', ['service', 'rm', 'web'])
    for (const addr of Object.values(NODES)) await eventually(`${addr}:8080 closed`, () => closed(addr, 8080), 15_000)
  })
})
