// The mesh source rules (src/tasks/mesh-source.ts) in a real scratch namespace laid out as a
// task's: an ingress address, a gateway-bridge address and its default route. What a connected
// UDP socket takes as its local address is asked of the kernel (python3 connect()/getsockname()).
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {after, before, test} from 'node:test'
import {MESH_SOURCE_PREF, meshSourcePorts, syncMeshSource} from '../../src/tasks/mesh-source.js'
import {addNetns, delNetns} from '../../src/sys/netns.js'

const NS = 'sn-ut-meshsrc'
const INGRESS = '10.0.0.3'
const GW = '172.18.0.2'
const GATEWAY = '172.18.0.1'
const CLIENT = '172.30.0.100'
const OVERLAY_PEER = '10.0.1.7'

const ip = (...args: string[]) => execFileSync('ip', ['-n', NS, ...args], {encoding: 'utf8'})
const rules = () =>
  (JSON.parse(ip('-j', 'rule', 'show')) as {priority: number; sport?: number}[]).filter(
    (r) => r.priority !== 0 && r.priority < 32766,
  )

/** The local address a UDP socket bound to 0.0.0.0:port takes when it connect()s to `to`. */
const localOf = (port: number, to = CLIENT) =>
  execFileSync(
    'ip',
    [
      'netns',
      'exec',
      NS,
      'python3',
      '-c',
      `import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', ${port}))\ns.connect(('${to}', 40000))\nprint(s.getsockname()[0])`,
    ],
    {encoding: 'utf8'},
  ).trim()

const src = (ports: number[]) => ({ingressIp: INGRESS, gatewayIp: GATEWAY, ports})

before(async () => {
  await delNetns(NS)
  await addNetns(NS)
  // Veth pairs with both ends inside: the route lookup is what is tested, not delivery.
  ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'p0')
  ip('link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'p1')
  ip('addr', 'add', `${INGRESS}/24`, 'dev', 'eth0')
  ip('addr', 'add', '10.0.1.3/24', 'dev', 'eth0')
  ip('addr', 'add', `${GW}/16`, 'dev', 'eth1')
  for (const d of ['lo', 'eth0', 'p0', 'eth1', 'p1']) ip('link', 'set', 'dev', d, 'up')
  ip('route', 'add', 'default', 'via', GATEWAY, 'dev', 'eth1')
})
after(() => delNetns(NS))

test('without the rules, a connected UDP socket takes the gateway-bridge address (the bug)', () => {
  assert.equal(localOf(54), GW)
})

test('with them: the ingress address on a listed port only; peers on the task networks are reached as before', async () => {
  await syncMeshSource(NS, src([54, 55]), null)
  assert.equal(localOf(54), INGRESS)
  assert.equal(localOf(55), INGRESS)
  assert.equal(localOf(56), GW, 'another port keeps the gateway-bridge address')
  assert.equal(localOf(54, OVERLAY_PEER), '10.0.1.3', 'an overlay peer: main routes it, not the default')
  assert.equal(localOf(54, '172.18.9.9'), GW, 'the bridge subnet: main routes it')
  // TCP is left alone (an accepted socket already has the SYN's destination).
  assert.match(ip('route', 'get', CLIENT, 'sport', '54', 'ipproto', 'tcp'), new RegExp(`src ${GW.replaceAll('.', '\\.')}`))
})

test('a restarted agent (nothing known) reads the rules: no duplicates, stale ports removed', async () => {
  const before = rules()
  await syncMeshSource(NS, src([54, 55]), undefined)
  assert.deepEqual(rules(), before, 'the same rules, none twice')
  await syncMeshSource(NS, src([55, 60]), undefined)
  assert.deepEqual(
    rules()
      .filter((r) => r.priority === MESH_SOURCE_PREF)
      .map((r) => Number(r.sport))
      .sort(),
    [55, 60],
  )
  assert.equal(localOf(54), GW)
  assert.equal(localOf(60), INGRESS)
})

test('no ports left: every rule and the table go', async () => {
  await syncMeshSource(NS, undefined, src([55, 60]))
  assert.deepEqual(rules(), [])
  assert.equal(ip('route', 'show', 'table', '1001').trim(), '')
  assert.equal(localOf(55), GW)
  await syncMeshSource(NS, undefined, undefined) // nothing to do, no error
})

test('which ports get a rule: UDP, ingress, and not also published in host mode', () => {
  assert.deepEqual(
    meshSourcePorts([
      {protocol: 'udp', target: 60, mode: 'ingress'},
      {protocol: 'udp', target: 54, mode: 'ingress'},
      {protocol: 'udp', target: 54, mode: 'ingress'},
      {protocol: 'tcp', target: 80, mode: 'ingress'},
      {protocol: 'udp', target: 70, mode: 'ingress'},
      {protocol: 'udp', target: 70, mode: 'host'},
      {protocol: 'udp', target: 71, mode: 'host'},
      {protocol: 'tcp', target: 60, mode: 'host'},
    ]),
    [54, 60],
  )
})
