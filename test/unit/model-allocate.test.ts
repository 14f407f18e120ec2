import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {
  allocateIp,
  checkSubnet,
  gatewayFor,
  macForIp,
  nextSubnet,
  nextVni,
  placeTasks,
  taskMtu,
} from '../../src/model/allocate.js'
import {planNetwork} from '../../src/model/network.js'
import type {ClusterSpec, Network, Task} from '../../src/model/types.js'

describe('allocate', () => {
  it('VNIs from 4096 up, filling gaps', () => {
    assert.equal(nextVni([]), 4096)
    assert.equal(nextVni([4096, 4097]), 4098)
    assert.equal(nextVni([4096, 4098]), 4097)
    assert.equal(nextVni([1, 2]), 4096)
  })

  it('subnets: first free /24 of the pool, skipping used and overlapping ones', () => {
    assert.equal(nextSubnet('10.0.0.0/8', 24, []), '10.0.0.0/24')
    assert.equal(nextSubnet('10.0.0.0/8', 24, ['10.0.0.0/24', '10.0.1.0/24']), '10.0.2.0/24')
    assert.equal(nextSubnet('10.0.0.0/8', 24, ['10.0.0.0/16']), '10.1.0.0/24')
    assert.equal(nextSubnet('10.0.0.0/8', 24, ['10.0.0.0/24', '10.0.1.128/25']), '10.0.2.0/24')
    assert.equal(nextSubnet('10.0.0.0/8', 24, ['192.168.0.0/16', '10.0.1.0/24']), '10.0.0.0/24')
    assert.throws(() => nextSubnet('10.0.0.0/23', 24, ['10.0.0.0/24', '10.0.1.0/24']), /pool 10.0.0.0\/23 has no free \/24/)
    assert.throws(() => nextSubnet('10.0.0.0/8', 4, []), /invalid subnet size/)
  })

  it('checkSubnet refuses overlaps naming the other network, and bad CIDRs', () => {
    const existing = [{name: 'front', subnet: '10.0.0.0/16'}]
    assert.equal(checkSubnet('10.1.0.0/24', existing), '10.1.0.0/24')
    assert.throws(
      () => checkSubnet('10.0.3.0/24', existing),
      /subnet 10.0.3.0\/24 overlaps with network 'front' \(10.0.0.0\/16\)/,
    )
    assert.throws(() => checkSubnet('10.0.0.0/33', existing), /prefix must be 0-32/)
    assert.throws(() => checkSubnet('10.9.0.0/31', []), /too small/)
  })

  it('IPs skip the network, the gateway and the broadcast; exhaustion is an error', () => {
    const gw = gatewayFor('10.0.0.0/24')
    assert.equal(gw, '10.0.0.1')
    assert.equal(allocateIp('10.0.0.0/24', gw, []), '10.0.0.2')
    assert.equal(allocateIp('10.0.0.0/24', gw, ['10.0.0.2', '10.0.0.3']), '10.0.0.4')
    assert.equal(allocateIp('10.0.0.0/29', '10.0.0.1', ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']), '10.0.0.6')
    assert.throws(
      () => allocateIp('10.0.0.0/29', '10.0.0.1', ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']),
      /no free address left in 10.0.0.0\/29/,
    )
    assert.equal(allocateIp('10.0.0.0/30', '10.0.0.2', []), '10.0.0.1')
  })

  it('macForIp follows Docker', () => {
    assert.equal(macForIp('10.0.0.2'), '02:42:0a:00:00:02')
    assert.equal(macForIp('192.168.255.1'), '02:42:c0:a8:ff:01')
  })

  it("task MTU is the network's, 1450 (1500 - VXLAN) for a network without one", () => {
    assert.equal(taskMtu({mtu: 8950}), 8950)
    assert.equal(taskMtu({}), 1450)
  })
})

describe('placement', () => {
  const nodes = [{id: 'a'}, {id: 'b'}, {id: 'c'}]
  const task = (id: string, slot: number, nodeId: string, serviceId = 's'): Task => ({
    id,
    serviceId,
    serviceName: 'web',
    slot,
    nodeId,
    desiredState: 'running',
    attachments: [],
    createdAt: 0,
  })

  it('spreads replicas evenly', () => {
    const p = placeTasks({id: 's', mode: {replicas: 5}}, nodes, [])
    assert.deepEqual(
      p.map((x) => x.slot),
      [1, 2, 3, 4, 5],
    )
    const per = new Map<string, number>()
    for (const x of p) per.set(x.nodeId, (per.get(x.nodeId) ?? 0) + 1)
    assert.deepEqual([...per.values()].sort(), [1, 2, 2])
  })

  it('is stable: existing tasks stay; new slots go to the least loaded', () => {
    const existing = [task('t1', 1, 'c'), task('t2', 2, 'c'), task('other', 1, 'a', 'x')]
    const p = placeTasks({id: 's', mode: {replicas: 3}}, nodes, existing)
    assert.deepEqual(p[0], {slot: 1, nodeId: 'c', taskId: 't1'})
    assert.deepEqual(p[1], {slot: 2, nodeId: 'c', taskId: 't2'})
    assert.equal(p[2]?.nodeId, 'a')
    // Same input, same answer: every manager agrees.
    assert.deepEqual(placeTasks({id: 's', mode: {replicas: 3}}, nodes, existing), p)
  })

  it('moves tasks off dead nodes and drops slots above the replica count', () => {
    const existing = [task('t1', 1, 'dead'), task('t2', 2, 'b'), task('t3', 3, 'a')]
    const p = placeTasks({id: 's', mode: {replicas: 2}}, nodes, existing)
    assert.deepEqual(p, [
      {slot: 1, nodeId: 'a'},
      {slot: 2, nodeId: 'b', taskId: 't2'},
    ])
  })

  it('global: one per live node, keeping existing tasks', () => {
    const p = placeTasks({id: 's', mode: {global: true}}, nodes, [task('g', 0, 'b')])
    assert.deepEqual(p, [
      {slot: 0, nodeId: 'a'},
      {slot: 0, nodeId: 'b', taskId: 'g'},
      {slot: 0, nodeId: 'c'},
    ])
  })
})

describe('planNetwork', () => {
  const cluster: ClusterSpec = {id: 'c', createdAt: 0, dataPathPort: 4789, defaultAddrPool: '10.0.0.0/8', subnetSize: 24}

  it('assigns VNIs and pool subnets, refuses duplicates and overlaps', () => {
    const nets: Network[] = []
    const ingress = planNetwork({id: 'n0', name: 'ingress', ingress: true, createdAt: 1}, cluster, nets)
    assert.equal(ingress.vni, 4096)
    assert.equal(ingress.subnet, '10.0.0.0/24')
    assert.equal(ingress.gateway, '10.0.0.1')
    assert.equal(ingress.scope, 'swarm')
    nets.push(ingress)
    const custom = planNetwork({id: 'n1', name: 'back', subnet: '10.0.1.0/24', createdAt: 1}, cluster, nets)
    nets.push(custom)
    const next = planNetwork({id: 'n2', name: 'front', createdAt: 1}, cluster, nets)
    assert.equal(next.subnet, '10.0.2.0/24')
    assert.equal(next.vni, 4098)
    assert.throws(
      () => planNetwork({id: 'n3', name: 'back', createdAt: 1}, cluster, nets),
      /network with name 'back' already exists/,
    )
    assert.throws(
      () => planNetwork({id: 'n3', name: 'x', subnet: '10.0.1.128/25', createdAt: 1}, cluster, nets),
      /overlaps with network 'back'/,
    )
    assert.throws(() => planNetwork({id: 'n3', name: 'x', subnet: '10.0.300.0/24', createdAt: 1}, cluster, nets), /invalid CIDR/)
    assert.throws(
      () => planNetwork({id: 'n3', name: 'in2', ingress: true, createdAt: 1}, cluster, nets),
      /ingress network already exists/,
    )
    const br = planNetwork({id: 'n4', name: 'swarmnet_gwbridge', driver: 'bridge', createdAt: 1}, cluster, nets)
    assert.equal(br.vni, undefined)
    assert.equal(br.scope, 'local')
  })
})
