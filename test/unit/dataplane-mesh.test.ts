// The routing mesh's desired state: an ingress port on every node (even one with no task of
// the service: its table and endpoints come with it), a host-mode port only where its task
// runs and to that task's gateway-bridge veth, nothing for ports whose VIP has no table.
import assert from 'node:assert/strict'
import {networkInterfaces} from 'node:os'
import {test} from 'node:test'
import {formatIpv4} from '../../src/bpf/codecs.js'
import {desiredMaps, type ClusterView} from '../../src/dataplane/desired.js'
import {encodeDesired} from '../../src/dataplane/mapsync.js'
import {meshAddrs} from '../../src/dataplane/node-addrs.js'
import type {Service, Task} from '../../src/model/types.js'
import {networkRecord, nodeRecord as node} from './model-records.js'

const ingress = networkRecord('ing', '10.0.0.0/24', {name: 'ingress', vni: 4096, ingress: true})
const task = (id: string, serviceId: string, nodeId: string, ip: string, networkId = 'ing'): Task => ({
  id,
  serviceId,
  serviceName: serviceId,
  slot: 1,
  nodeId,
  desiredState: 'running',
  attachments: networkId ? [{networkId, ip, mac: '02:42:0a:00:00:05'}] : [],
  createdAt: 0,
})
const web: Service = {
  id: 'web',
  name: 'web',
  mode: {replicas: 2},
  networks: ['ing'],
  command: [],
  vips: [{networkId: 'ing', ip: '10.0.0.2'}],
  ports: [
    {protocol: 'tcp', target: 80, published: 8080, mode: 'ingress'},
    {protocol: 'udp', target: 53, published: 8053, mode: 'ingress'},
  ],
  createdAt: 0,
  updatedAt: 0,
}
const edge: Service = {
  id: 'edge',
  name: 'edge',
  mode: {replicas: 1},
  networks: [],
  command: [],
  ports: [{protocol: 'tcp', target: 80, published: 9443, mode: 'host'}],
  createdAt: 0,
  updatedAt: 0,
}
const view = (selfId: string): ClusterView => ({
  selfId,
  nodes: [node('a', '172.30.0.11'), node('b', '172.30.0.12'), node('c', '172.30.0.13')],
  networks: [ingress],
  tasks: [
    task('w1', 'web', 'a', '10.0.0.3'),
    task('w2', 'web', 'b', '10.0.0.4'),
    {...task('e1', 'edge', 'b', ''), attachments: []},
  ],
  local:
    selfId === 'a'
      ? [{taskId: 'w1', networkId: 'ing', hostIfindex: 11}]
      : selfId === 'b'
        ? [{taskId: 'w2', networkId: 'ing', hostIfindex: 21}]
        : [],
  services: [web, edge],
  statuses: new Map([
    ['w1', {state: 'running'}],
    ['w2', {state: 'running'}],
    ['e1', {state: 'running', gwIp: '172.18.0.7'}],
  ]),
  localGateways: selfId === 'b' ? [{taskId: 'e1', hostIfindex: 22}] : [],
})

test('a node with no task of the service still answers its ingress ports, through the VIP table with both backends', () => {
  const d = desiredMaps(view('c'))
  assert.deepEqual(
    [...d.mesh!.ports.values()].map((p) => `${p.port}/${p.protocol} ${p.mode} ${p.addr}:${p.target} vni ${p.vni}`).sort(),
    ['8053/udp ingress 10.0.0.2:53 vni 4096', '8080/tcp ingress 10.0.0.2:80 vni 4096'],
  )
  const s = d.services!.get('4096/10.0.0.2')!
  assert.deepEqual(
    s.backends.map((b) => `${b.ip}@${b.nodeIp}`),
    ['10.0.0.3@172.30.0.11', '10.0.0.4@172.30.0.12'],
  )
  assert.equal(d.endpoints.get('4096/10.0.0.3')?.nodeIp, '172.30.0.11', 'the backends are endpoints here too')
  assert.equal(d.mesh!.ingressVni, 4096)
  assert.deepEqual([...d.mesh!.nodes.keys()].sort(), ['172.30.0.11', '172.30.0.12', '172.30.0.13'])
  const enc = encodeDesired(d)
  assert.equal(enc.sn_mesh_ports.size, 2)
  assert.equal(enc.sn_mesh_nodes.size, 3)
})

test('a host-mode port only on the node that runs its task, to its gateway-bridge address and veth', () => {
  const onB = desiredMaps(view('b')).mesh!.ports.get('9443/tcp')
  assert.deepEqual(onB && {mode: onB.mode, addr: onB.addr, ifindex: onB.ifindex, mac: onB.mac, target: onB.target}, {
    mode: 'host',
    addr: '172.18.0.7',
    ifindex: 22,
    mac: '02:42:ac:12:00:07',
    target: 80,
  })
  assert.equal(desiredMaps(view('a')).mesh!.ports.has('9443/tcp'), false)
  assert.equal(desiredMaps(view('c')).mesh!.ports.has('9443/tcp'), false)
})

test('without an ingress port nothing is published and the ingress network is not programmed on a node without a task', () => {
  const v = view('c')
  v.services = [{...web, ports: []}]
  const d = desiredMaps(v)
  assert.equal(d.mesh!.ports.size, 0)
  assert.equal(d.services!.size, 0)
  assert.equal(d.endpoints.size, 0)
})

test('an ingress port whose service has no VIP on the ingress network is left out, not pointed at nothing', () => {
  const v = view('c')
  v.services = [{...web, vips: []}]
  assert.equal(desiredMaps(v).mesh!.ports.size, 0)
})

test("a node's own sockets (sn_sock_targets): a local task through the gateway bridge, else the nodes that run one on the published port", () => {
  const v = view('a')
  // w1 on a has a gateway-bridge address; w2 on b too.
  const statuses = new Map([
    ['w1', {state: 'running' as const, gwIp: '172.18.0.3'}],
    ['w2', {state: 'running' as const, gwIp: '172.18.0.9'}],
    ['e1', {state: 'running' as const, gwIp: '172.18.0.7'}],
  ])
  const onA = desiredMaps({...v, statuses}).mesh!.ports
  assert.deepEqual(onA.get('8080/tcp')!.sock, [{addr: '172.18.0.3', port: 80}], 'a runs w1: straight to it')
  assert.deepEqual(onA.get('8053/udp')!.sock, [{addr: '172.18.0.3', port: 53}])
  const onC = desiredMaps({...view('c'), statuses}).mesh!.ports
  assert.deepEqual(
    onC.get('8080/tcp')!.sock,
    [
      {addr: '172.30.0.11', port: 8080},
      {addr: '172.30.0.12', port: 8080},
    ],
    'c runs none: the nodes that do, on the published port',
  )
  const onB = desiredMaps({...view('b'), statuses}).mesh!.ports
  assert.deepEqual(onB.get('9443/tcp')!.sock, [{addr: '172.18.0.7', port: 80}], 'host mode: the local task')
  assert.equal(encodeDesired(desiredMaps({...view('c'), statuses})).sn_sock_targets.size, 2)
  // A task not running is no target; with none anywhere the port has no entry (the socket is left alone).
  const stopped = new Map([...statuses].map(([k, s]) => [k, {...s, state: 'failed' as const}]))
  assert.deepEqual(desiredMaps({...view('c'), statuses: stopped}).mesh!.ports.get('8080/tcp')!.sock, [])
  assert.equal(encodeDesired(desiredMaps({...view('c'), statuses: stopped})).sn_sock_targets.size, 0)
})

test("every address of the node but loopback's and the gateway bridge's answers published ports (sn_mesh_addrs), with or without a service", () => {
  const ifaces = {
    lo: [
      {address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8'},
      {
        address: '10.9.9.9',
        netmask: '255.255.255.255',
        family: 'IPv4',
        mac: '00:00:00:00:00:00',
        internal: true,
        cidr: '10.9.9.9/32',
      },
    ],
    eth0: [
      {
        address: '172.30.0.21',
        netmask: '255.255.255.0',
        family: 'IPv4',
        mac: '02:00:00:00:00:01',
        internal: false,
        cidr: '172.30.0.21/24',
      },
      {
        address: '172.30.0.11',
        netmask: '255.255.255.0',
        family: 'IPv4',
        mac: '02:00:00:00:00:01',
        internal: false,
        cidr: '172.30.0.11/24',
      },
      {
        address: 'fe80::1',
        netmask: 'ffff:ffff:ffff:ffff::',
        family: 'IPv6',
        mac: '02:00:00:00:00:01',
        internal: false,
        cidr: 'fe80::1/64',
        scopeid: 2,
      },
    ],
    'sn-gwbridge': [
      {
        address: '172.18.0.1',
        netmask: '255.255.0.0',
        family: 'IPv4',
        mac: '02:42:ac:12:00:01',
        internal: false,
        cidr: '172.18.0.1/16',
      },
    ],
  } as const satisfies ReturnType<typeof networkInterfaces>
  const addrs = meshAddrs(['sn-gwbridge'], ifaces)
  assert.deepEqual(addrs, ['10.9.9.9', '172.30.0.11', '172.30.0.21'])
  const enc = encodeDesired(desiredMaps({...view('c'), localAddrs: addrs}))
  assert.deepEqual([...enc.sn_mesh_addrs.values()].map(([k]) => formatIpv4(k)).sort(), addrs)
  // No service at all: the addresses are there already, so a port published later answers on them at once.
  const bare = encodeDesired(desiredMaps({...view('c'), services: [], tasks: [], localAddrs: addrs}))
  assert.equal(bare.sn_mesh_addrs.size, 3)
  assert.equal(encodeDesired(desiredMaps(view('c'))).sn_mesh_addrs.size, 0)
})
