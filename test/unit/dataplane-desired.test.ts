// What the maps should hold, derived from the store alone: the reconciler's whole decision.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {MAP_OWNERSHIP, MIRRORED, desiredMaps, planMirror, type ClusterView} from '../../src/dataplane/desired.js'
import type {Network, NodeRecord, Task} from '../../src/model/types.js'
import {networkRecord, nodeRecord} from './model-records.js'

const node = (id: string, addr: string, state: NodeRecord['state'] = 'ready'): NodeRecord => nodeRecord(id, addr, {state})
const net = (id: string, vni: number | undefined, subnet: string, driver: Network['driver'] = 'overlay'): Network =>
  networkRecord(id, subnet, {driver, scope: driver === 'overlay' ? 'swarm' : 'local', vni})
const task = (
  id: string,
  nodeId: string,
  attachments: Task['attachments'],
  desiredState: Task['desiredState'] = 'running',
): Task => ({id, serviceId: 's', serviceName: 's', slot: 1, nodeId, desiredState, attachments, createdAt: 0})

const view = (over: Partial<ClusterView> = {}): ClusterView => ({
  selfId: 'a',
  nodes: [node('a', '172.30.0.11'), node('b', '172.30.0.12')],
  networks: [net('n1', 4097, '10.0.1.0/24'), net('gw', undefined, '172.18.0.0/16', 'bridge')],
  tasks: [
    task('t1', 'a', [{networkId: 'n1', ip: '10.0.1.2', mac: '02:42:0a:00:01:02'}]),
    task('t2', 'b', [{networkId: 'n1', ip: '10.0.1.3', mac: '02:42:0a:00:01:03'}]),
  ],
  local: [{taskId: 't1', networkId: 'n1', hostIfindex: 42}],
  ...over,
})

test('overlay networks only, keyed by VNI', () => {
  const d = desiredMaps(view())
  assert.deepEqual([...d.networks], [[4097, {subnet: '10.0.1.0', prefixLen: 24, ingress: false, mtu: 1450}]])
})

test('a local endpoint points at its device, a remote one at its node', () => {
  const d = desiredMaps(view())
  assert.deepEqual(d.endpoints.get('4097/10.0.1.2'), {
    vni: 4097,
    ip: '10.0.1.2',
    nodeIp: '172.30.0.11',
    ifindex: 42,
    mac: '02:42:0a:00:01:02',
    local: true,
  })
  assert.deepEqual(d.endpoints.get('4097/10.0.1.3'), {
    vni: 4097,
    ip: '10.0.1.3',
    nodeIp: '172.30.0.12',
    ifindex: 0,
    mac: '02:42:0a:00:01:03',
    local: false,
  })
  assert.deepEqual([...d.devices], [[42, {vni: 4097, ip: '10.0.1.2'}]])
})

test('a local task whose device does not exist yet has no endpoint here', () => {
  const d = desiredMaps(view({local: []}))
  assert.equal(d.endpoints.has('4097/10.0.1.2'), false)
  assert.equal(d.devices.size, 0)
})

test('tasks being shut down, on nodes that left, or on unknown networks are left out', () => {
  const d = desiredMaps(
    view({
      nodes: [node('a', '172.30.0.11'), node('b', '172.30.0.12', 'left')],
      tasks: [
        task('t1', 'a', [{networkId: 'n1', ip: '10.0.1.2', mac: 'm'}], 'shutdown'),
        task('t2', 'b', [{networkId: 'n1', ip: '10.0.1.3', mac: 'm'}]),
        task('t3', 'a', [{networkId: 'gone', ip: '10.9.9.9', mac: 'm'}]),
      ],
    }),
  )
  assert.equal(d.endpoints.size, 0)
})

test('endpoints only of networks this node has a task on: the maps follow the node, not the cluster', () => {
  const nets = [net('n1', 4097, '10.0.1.0/24'), net('n2', 4098, '10.0.2.0/24')]
  const remoteOnly = task('t3', 'b', [{networkId: 'n2', ip: '10.0.2.3', mac: 'm'}])
  const d = desiredMaps(view({networks: nets, tasks: [...view().tasks, remoteOnly]}))
  assert.deepEqual([...d.endpoints.keys()].sort(), ['4097/10.0.1.2', '4097/10.0.1.3'])
  // A local task on n2 (even before its device exists) brings n2's remote endpoints.
  const localOnN2 = task('t4', 'a', [{networkId: 'n2', ip: '10.0.2.4', mac: 'm'}])
  const e = desiredMaps(view({networks: nets, tasks: [...view().tasks, remoteOnly, localOnN2]}))
  assert.equal(e.endpoints.has('4098/10.0.2.3'), true)
  assert.equal(e.endpoints.has('4098/10.0.2.4'), false, 'no device yet')
  // A node with no task at all programs no endpoint.
  assert.equal(desiredMaps(view({selfId: 'c', local: []})).endpoints.size, 0)
})

test('every map has one owner and one rule; the sync mirrors only the store-owned ones', () => {
  for (const [name, o] of Object.entries(MAP_OWNERSHIP)) {
    assert.ok(o.owner === 'store' || o.owner === 'datapath', name)
    if (o.owner === 'datapath') assert.equal(o.rule, 'none', `${name} is never rewritten by the agent`)
  }
  assert.deepEqual(MIRRORED, [
    'sn_networks',
    'sn_endpoints',
    'sn_devices',
    'sn_backends',
    'sn_services',
    'sn_gateways',
    'sn_mesh_ports',
    'sn_mesh_nodes',
    'sn_mesh_addrs',
    'sn_sock_targets',
    'sn_dns_names',
    'sn_dns_ptrs',
    'sn_dns_scopes',
  ])
  assert.equal(MAP_OWNERSHIP.sn_stats.owner, 'datapath')
})

test('planMirror: stale keys out first, unchanged entries not rewritten', () => {
  const b = (s: string) => Buffer.from(s, 'hex')
  const have = new Map([
    ['01', b('aa')],
    ['02', b('bb')],
    ['03', b('cc')],
  ])
  const want = new Map<string, [Buffer, Buffer]>([
    ['02', [b('02'), b('bb')]],
    ['03', [b('03'), b('dd')]],
    ['04', [b('04'), b('ee')]],
  ])
  const p = planMirror(have, want)
  assert.deepEqual(
    p.remove.map((k) => k.toString('hex')),
    ['01'],
  )
  assert.deepEqual(
    p.write.map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`),
    ['03=dd', '04=ee'],
  )
  assert.deepEqual(planMirror(new Map([['02', b('bb')]]), new Map([['02', [b('02'), b('bb')]]])), {remove: [], write: []})
})

test('endpoints of a node declared down leave the maps at once; its record is untouched', () => {
  const down = new Set(['b'])
  const d = desiredMaps(view({membership: {isDown: (id) => down.has(id)}}))
  assert.equal(d.endpoints.has('4097/10.0.1.3'), false, "b's task is no longer reachable through the maps")
  assert.equal(d.endpoints.has('4097/10.0.1.2'), true, 'the local one stays')
  down.delete('b')
  assert.equal(desiredMaps(view({membership: {isDown: (id) => down.has(id)}})).endpoints.has('4097/10.0.1.3'), true, 'back')
  // This node is never down to itself, whatever a rumour says.
  const self = desiredMaps(view({membership: {isDown: () => true}}))
  assert.equal(self.endpoints.has('4097/10.0.1.2'), true)
})
