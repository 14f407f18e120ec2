// A task being stopped gracefully (its record says shutdown, its node still runs it): out of
// the Maglev table and the service's count, so no new flow goes to it, but still in the VIP's
// backend set and the endpoints, so the flows it has go on (moby#38841: there, it kept getting
// new ones). Its DNS names go at the same moment.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {desiredMaps, type ClusterView} from '../../src/dataplane/desired.js'
import {encodeDesired} from '../../src/dataplane/mapsync.js'
import {buildNames} from '../../src/dns/names.js'
import type {Service, Task} from '../../src/model/types.js'
import {networkRecord, nodeRecord as node} from './model-records.js'

const net = networkRecord('n1', '10.0.1.0/24')
const task = (id: string, nodeId: string, ip: string, slot: number, desiredState: Task['desiredState'] = 'running'): Task => ({
  id,
  serviceId: 'web',
  serviceName: 'web',
  slot,
  nodeId,
  desiredState,
  attachments: [{networkId: 'n1', ip, mac: '02:42:0a:00:01:01'}],
  createdAt: 0,
})
const svc: Service = {
  id: 'web',
  name: 'web',
  mode: {replicas: 1},
  networks: ['n1'],
  command: [],
  vips: [{networkId: 'n1', ip: '10.0.1.100'}],
  createdAt: 0,
  updatedAt: 0,
}
const view = (w2: Task['desiredState']): ClusterView => ({
  selfId: 'a',
  nodes: [node('a', '172.30.0.11'), node('b', '172.30.0.12')],
  networks: [net],
  tasks: [task('w1', 'a', '10.0.1.5', 1), task('w2', 'b', '10.0.1.6', 2, w2)],
  local: [{taskId: 'w1', networkId: 'n1', hostIfindex: 41}],
  services: [svc],
  statuses: new Map([
    ['w1', {state: 'running' as const}],
    ['w2', {state: 'running' as const}],
  ]),
})

test('a draining task: no table slot and no count, but in the backend set and the endpoints with the backend flag', () => {
  const before = desiredMaps(view('running')).services!.get('4097/10.0.1.100')!
  assert.deepEqual(
    before.backends.map((b) => b.key),
    ['w1', 'w2'],
  )
  const d = desiredMaps(view('shutdown'))
  const s = d.services!.get('4097/10.0.1.100')!
  assert.deepEqual(
    s.backends.map((b) => b.key),
    ['w1'],
  )
  assert.deepEqual(
    s.draining?.map((b) => [b.key, b.ip]),
    [['w2', '10.0.1.6']],
  )
  assert.notEqual(s.tableId, before.tableId, 'a new table, without it')
  assert.equal(d.endpoints.get('4097/10.0.1.6')?.backend, true, 'its replies still get the VIP back')
  const enc = encodeDesired(d)
  assert.equal(enc.sn_backends.size, 2, 'both in the set: the draining one keeps its established flows')
  const [, value] = [...enc.sn_services.values()][0]!
  assert.equal(value.readUInt16LE(8), 1, 'count: one backend for new flows')
})

test('a task whose node has stopped it (status gone) leaves the set and the endpoints', () => {
  const v = view('shutdown')
  v.statuses = new Map([['w1', {state: 'running' as const}]])
  const d = desiredMaps(v)
  assert.equal(d.services!.get('4097/10.0.1.100')!.draining, undefined)
  assert.equal(d.endpoints.get('4097/10.0.1.6'), undefined)
})

test('DNS: tasks.web and the VIP service name leave a draining task out', () => {
  const v = view('shutdown')
  const statuses = new Map([...v.statuses!].map(([k, st]) => [k, {...st, nodeId: k === 'w1' ? 'a' : 'b'}]))
  const names = buildNames({...v, services: [svc], statuses})
  assert.deepEqual(names.networks.get('n1')?.a.get('tasks.web')?.ips, ['10.0.1.5'])
  assert.equal(names.networks.get('n1')?.a.get('web.2'), undefined)
})

test("the node of a draining task keeps its network's maps, though it runs no other task there", () => {
  const v = {...view('shutdown'), selfId: 'b', local: [{taskId: 'w2', networkId: 'n1', hostIfindex: 42}]}
  const d = desiredMaps(v)
  assert.equal(d.devices.get(42)?.backend, true)
  assert.equal(d.endpoints.get('4097/10.0.1.6')?.local, true)
  assert.ok(d.services!.get('4097/10.0.1.100')?.draining)
})

test("an address a replacement on another node got while this node still sees the old task draining: the replacement's, in the endpoints and the backend set", () => {
  // The store's changes come in any order: the old task (on b) still draining here, its
  // replacement w3 (on a third node, c) already running with the address it freed.
  const base = view('shutdown')
  for (const order of ['old first', 'new first']) {
    const w3 = task('w3', 'c', '10.0.1.6', 2)
    const tasks = order === 'old first' ? [...base.tasks, w3] : [w3, ...base.tasks]
    const v: ClusterView = {
      ...base,
      nodes: [...base.nodes, node('c', '172.30.0.13')],
      tasks,
      statuses: new Map([...base.statuses!, ['w3', {state: 'running' as const}]]),
    }
    const d = desiredMaps(v)
    assert.equal(d.endpoints.get('4097/10.0.1.6')?.nodeIp, '172.30.0.13', `${order}: the endpoint is the running task's`)
    const s = d.services!.get('4097/10.0.1.100')!
    assert.deepEqual(
      s.backends.map((b) => [b.key, b.nodeIp]),
      [
        ['w1', '172.30.0.11'],
        ['w3', '172.30.0.13'],
      ],
    )
    assert.equal(s.draining, undefined, `${order}: the old task is no backend entry of its own`)
    const enc = encodeDesired(d)
    assert.equal(enc.sn_backends.size, 2)
  }
})
