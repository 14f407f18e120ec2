// What the maps should hold, derived from the store alone: the reconciler's whole decision.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {desiredMaps, type ClusterView} from '../../src/dataplane/desired.js'
import type {Network, NodeRecord, Task} from '../../src/model/types.js'

const node = (id: string, addr: string, state: NodeRecord['state'] = 'ready'): NodeRecord => ({
  id,
  name: id,
  addr,
  gossipPort: 7946,
  role: 'worker',
  state,
  mtu: 1500,
  joinedAt: 0,
})
const net = (id: string, vni: number | undefined, subnet: string, driver: Network['driver'] = 'overlay'): Network => ({
  id,
  name: id,
  driver,
  scope: driver === 'overlay' ? 'swarm' : 'local',
  vni,
  subnet,
  gateway: '',
  attachable: false,
  ingress: false,
  createdAt: 0,
})
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
