// Published ports never take the node's own replies (issue 19, hole 4), in a real 1-node lab.
// The mesh answers every packet to a published port of the node's address, so a connection
// the node itself makes from such a port would lose its replies to the mesh: the agent reserves
// published ports in the node's own ip_local_reserved_ports (the kernel then never picks them as
// source ports), and the mesh takes a TCP packet of no flow it knows only when it is a SYN.
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {describe, test} from 'node:test'
import {eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  state: string
}

const N1 = 'sn-lab-n1'
const CLIENT_NS = 'sn-lab-client'
const CLIENT_IP = '172.30.0.100'
const NODE_IP = '172.30.0.11'
const TCP_PORT = 40000
const UDP_PORT = 40001
const RESERVED = '/proc/sys/net/ipv4/ip_local_reserved_ports'

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')
const reservedIn = (ns: string) => inNs(ns, ['cat', RESERVED]).stdout.trim()
const UDP_ECHO = `require('node:dgram').createSocket('udp4').on('message', function (m, r) { this.send('echo', r.port, r.address) }).bind(53)`

/** A TCP server and a UDP echo on the lab's client (the outside world the node talks to). */
function startClientServers(): ChildProcess {
  const js = `
    require('net').createServer((c) => c.end('hello ' + c.remotePort)).listen(7100, '${CLIENT_IP}');
    require('dgram').createSocket('udp4').on('message', function (m, r) { this.send('echo', r.port, r.address) }).bind(7101, '${CLIENT_IP}', () => console.log('ready'));`
  return spawn('nsenter', [`--net=/run/netns/${CLIENT_NS}`, '--', process.execPath, '-e', js], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
}

describe("published ports and the node's own connections, in a 1-node lab", {timeout: 600_000}, () => {
  let servers: ChildProcess | undefined
  withLab(['--nodes', '1'], {beforeDown: () => servers?.kill()})

  test('published ports are reserved in the node, never in the root namespace, and released when unpublished', async () => {
    const rootBefore = readFileSync(RESERVED, 'utf8')
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '1', '--publish', `published=${TCP_PORT},target=80`])
    ok('n1', ['service', 'create', '--name', 'echo', '-p', `${UDP_PORT}:53/udp`, '--', process.execPath, '-e', UDP_ECHO])
    await allRunning('web', 1, tasksOf, 60_000)
    await allRunning('echo', 1, tasksOf, 60_000)
    await eventually('both ports reserved in n1', () => reservedIn(N1) === `${TCP_PORT}-${UDP_PORT}`, 15_000)
    assert.equal(readFileSync(RESERVED, 'utf8'), rootBefore, "the root namespace's reserved ports changed")
    // The mesh itself still answers the published port from outside.
    await eventually(
      'whoami through the mesh',
      () => /Hostname: web\.1/.test(inNs(CLIENT_NS, ['curl', '-sS', '-m', '2', `http://${NODE_IP}:${TCP_PORT}/`]).stdout),
      30_000,
    )
  })

  test("the node's own UDP sockets never get a published port as source: every answer comes back", async () => {
    servers = startClientServers()
    let out = ''
    servers.stdout!.on('data', (b: Buffer) => (out += b.toString()))
    await eventually('the servers on the client', () => /ready/.test(out), 15_000)
    // Two ephemeral ports, one of them published: without the reservation the kernel picks it about
    // half the time, and the answer to that socket goes to the echo service instead.
    const range = inNs(N1, ['cat', '/proc/sys/net/ipv4/ip_local_port_range']).stdout.trim()
    assert.equal(inNs(N1, ['sh', '-c', `echo ${UDP_PORT} ${UDP_PORT + 1} > /proc/sys/net/ipv4/ip_local_port_range`]).code, 0)
    try {
      const js = `
        const dgram = require('dgram');
        (async () => {
          const got = [];
          for (let i = 0; i < 12; i++) {
            const s = dgram.createSocket('udp4');
            got.push(await new Promise((res) => {
              const t = setTimeout(() => res('lost from ' + s.address().port), 1500);
              s.on('message', (m) => { clearTimeout(t); res(String(m) + ' from ' + s.address().port) });
              s.send('hi', 7101, '${CLIENT_IP}');
            }));
            s.close();
          }
          console.log(got.join('\\n'));
        })()`
      const r = inNs(N1, [process.execPath, '-e', js], 60_000)
      assert.equal(r.code, 0, r.stderr)
      const lines = r.stdout.trim().split('\n')
      assert.equal(lines.length, 12)
      for (const l of lines) assert.equal(l, `echo from ${UDP_PORT + 1}`)
    } finally {
      inNs(N1, ['sh', '-c', `echo ${range.replace(/\s+/, ' ')} > /proc/sys/net/ipv4/ip_local_port_range`])
    }
  })

  test('a TCP connection the node makes from a published port gets its answers (only a SYN is the mesh’s)', () => {
    // Bound to the port on purpose (a reservation only keeps the kernel from choosing it itself).
    const js = `
      const c = require('net').connect({port: 7100, host: '${CLIENT_IP}', localPort: ${TCP_PORT}});
      let got = ''; c.on('data', (d) => (got += d));
      c.on('end', () => { console.log(got); process.exit(0) });
      c.on('error', (e) => { console.log('error ' + e.message); process.exit(1) });
      setTimeout(() => { console.log('timeout'); process.exit(2) }, 5000);`
    const r = inNs(N1, [process.execPath, '-e', js], 30_000)
    assert.equal(r.stdout.trim(), `hello ${TCP_PORT}`, r.stderr)
    // And the mesh still takes new connections to that port.
    assert.match(inNs(CLIENT_NS, ['curl', '-sS', '-m', '2', `http://${NODE_IP}:${TCP_PORT}/`]).stdout, /Hostname: web\.1/)
  })

  test('unpublished ports are released', async () => {
    ok('n1', ['service', 'rm', 'echo'])
    await eventually('40001 released', () => reservedIn(N1) === `${TCP_PORT}`, 30_000)
    ok('n1', ['service', 'rm', 'web'])
    await eventually('40000 released', () => reservedIn(N1) === '', 30_000)
  })
})
