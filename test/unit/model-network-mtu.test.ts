// One MTU per network, stored in the network record: the same on every node,
// whatever each node's underlay, and what the data plane and the tasks use.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {desiredMaps} from '../../src/dataplane/desired.js'
import {taskMtu} from '../../src/model/allocate.js'
import {planNetwork} from '../../src/model/network.js'
import type {Network, NodeRecord} from '../../src/model/types.js'
import {clusterSpec, nodeRecord} from './model-records.js'

const cluster = clusterSpec()

describe('network MTU', () => {
  it('defaults to 1450 (1500 - VXLAN) and keeps what --mtu gave', () => {
    assert.equal(planNetwork({id: 'a', name: 'a', createdAt: 1}, cluster, []).mtu, 1450)
    assert.equal(planNetwork({id: 'b', name: 'b', mtu: 8950, createdAt: 1}, cluster, []).mtu, 8950)
    assert.equal(planNetwork({id: 'c', name: 'c', mtu: 576, createdAt: 1}, cluster, []).mtu, 576)
  })

  it('refuses an MTU out of range or not an integer, with one clear line', () => {
    for (const mtu of [575, 8951, 1400.5, 0, -1, Number.NaN]) {
      assert.throws(
        () => planNetwork({id: 'x', name: 'x', mtu, createdAt: 1}, cluster, []),
        /^UserError: invalid MTU .*: use an integer from 576 to 8950$/,
        String(mtu),
      )
    }
    assert.throws(
      () => planNetwork({id: 'x', name: 'x', driver: 'bridge', mtu: 1400, createdAt: 1}, cluster, []),
      /--mtu is for overlay networks/,
    )
  })

  it('is the same on every node: the map value and the task MTU follow the network, not the underlay', () => {
    const net = planNetwork({id: 'n1', name: 'n1', mtu: 1400, createdAt: 1}, cluster, [])
    const node = (id: string, mtu: number): NodeRecord => nodeRecord(id, id === 'a' ? '172.30.0.11' : '172.30.0.12', {mtu})
    // Two nodes whose underlays differ: each computes the same value.
    for (const selfId of ['a', 'b']) {
      const d = desiredMaps({selfId, nodes: [node('a', 1500), node('b', 9000)], networks: [net], tasks: [], local: []})
      assert.equal(d.networks.get(net.vni!)?.mtu, 1400)
    }
    assert.equal(taskMtu(net), 1400)
    const old: Network = {...net}
    delete old.mtu // stored before networks had an MTU
    assert.equal(taskMtu(old), 1450)
  })
})
