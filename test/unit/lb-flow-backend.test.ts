// Source ports for flows that a VIP's Maglev table sends to each backend in turn: what the demo
// uses to send 6 requests over three tasks. The table is built as the agent builds it; each port
// is checked with the data path's own flow hash (lbSlot, held to the BPF code by test/bpf/lb).
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {backendOf, portsInTurn} from '../../src/lb/flow-backend.js'
import {lbSlot} from '../../src/lb/hash.js'
import {maglevSize, maglevTable} from '../../src/lb/maglev.js'

const backends = ['10.0.1.3', '10.0.1.4', '10.0.1.5']
const size = maglevSize(backends.length)
const table = [...maglevTable(backends, size)].map((i) => backends[i]!)
const SRC = '10.0.1.7'
const VIP = '10.0.1.2'

describe('flow-backend', () => {
  it('backendOf is the slot the flow hash picks', () => {
    for (const sport of [40000, 40001, 51234])
      assert.equal(backendOf(table, SRC, sport, VIP, 80), table[lbSlot(SRC, VIP, sport, 80, 6, size)])
  })

  it('portsInTurn: rounds x backends ascending ports, each reaching the backends in turn', () => {
    const ports = portsInTurn(table, SRC, VIP, 80, backends, 2)
    assert.equal(ports.length, 6)
    assert.deepEqual(
      ports.map((p) => backendOf(table, SRC, p, VIP, 80)),
      [...backends, ...backends],
    )
    assert.ok(
      ports.every((p, i) => p >= 40000 && (i === 0 || p > ports[i - 1]!)),
      `ascending from 40000: ${ports}`,
    )
  })

  it('a backend the table does not hold: one line naming it', () => {
    assert.throws(
      () => portsInTurn(table, SRC, VIP, 80, ['10.0.1.9'], 1),
      /^Error: no source port from 40000 sends a flow to 10\.0\.1\.9 through 10\.0\.1\.2$/,
    )
  })
})
