import assert from 'node:assert/strict'
import {after, describe, it} from 'node:test'
import {Fanout} from '../../src/gossip/fanout.js'
import {simulateFanout, timeTo} from '../../src/gossip/fanout-sim.js'
import {Gossip} from '../../src/gossip/gossip.js'
import type {Addr} from '../../src/gossip/transport.js'
import type {Body} from '../../src/gossip/codec.js'
import {GossipLab, waitFor, type LabNode} from './gossip-lab.js'

describe('bounded dissemination of store updates (simulated network)', () => {
  it('in 50 nodes no writer sends an update to every node, each node sends it a bounded number of times, and it reaches them all', () => {
    const n = 50
    const updates = Array.from({length: 20}, (_, i) => ({writer: (i * 7) % n, at: 100 + i * 30}))
    const r = simulateFanout({nodes: n, updates, loss: 0.01, seed: 11, runMs: 5_000})
    const limit = Fanout.limit(4, n)
    assert.equal(limit, 8)
    let reached = 0
    r.arrivals.forEach((a, u) => {
      const w = updates[u]!.writer
      // The writer tells a few, not everyone: 8 sends at most, so at most 8 of its 49 peers.
      assert.ok(r.recipients[u]![w]! <= limit && r.recipients[u]![w]! < n - 1, `update ${u}: writer told ${r.recipients[u]![w]}`)
      for (const s of r.sends[u]!) assert.ok(s <= limit, `update ${u}: a node sent it ${s} times`)
      reached += a.filter((x) => x !== undefined && x <= 2_000).length
    })
    // The epidemic alone (push-pull is off here) reaches nearly all within 2 s; push-pull mends the rest.
    assert.ok(reached / (n * updates.length) >= 0.99, `reached ${reached} of ${n * updates.length}`)
  })

  it('at 1,000 nodes one update reaches every node with each node sending it 16 times at most', () => {
    const r = simulateFanout({nodes: 1000, updates: [{writer: 3, at: 100}], loss: 0.01, seed: 5, runMs: 5_000})
    assert.ok(timeTo(r.arrivals[0]!, 0.999) !== undefined)
    assert.equal(Math.max(...r.sends[0]!), Fanout.limit(4, 1000))
    assert.equal(Fanout.limit(4, 1000), 16)
  })

  it('with no more peers than the fan-out, the first round is everyone', () => {
    const r = simulateFanout({nodes: 4, updates: [{writer: 0, at: 100}], seed: 3, runMs: 1_000})
    assert.equal(r.recipients[0]![0], 3)
    // Batch window (50 ms) plus at most 5 ms of simulated latency: as fast as sending to all.
    for (const t of r.arrivals[0]!) assert.ok(t !== undefined && t <= 55, `arrived after ${t} ms`)
  })

  it('push-pull runs at its interval up to 32 nodes and less often beyond', () => {
    assert.equal(Gossip.pushPullInterval(1000, 3), 1000)
    assert.equal(Gossip.pushPullInterval(1000, 32), 1000)
    assert.equal(Gossip.pushPullInterval(1000, 64), 2000)
    assert.equal(Gossip.pushPullInterval(1000, 1000), 6000)
  })

  it('a round asked for while one waits for the disk resolves only once what was queued is sent', async () => {
    const sent: string[] = []
    let release: (() => void) | undefined
    const f = new Fanout<number>({
      clock: {now: () => 0, after: () => () => {}},
      random: () => 0,
      peers: () => [1],
      send: (_to, es) => sent.push(...es.map((e) => e.key)),
      ready: () => new Promise<void>((r) => (release = r)),
    })
    f.add({key: 'a', value: 1, version: {clock: 1, node: 'n'}})
    const first = f.round()
    f.add({key: 'b', value: 1, version: {clock: 2, node: 'n'}})
    let done = false
    const second = f.round().then(() => (done = true))
    await new Promise((r) => setImmediate(r))
    assert.equal(done, false)
    release!()
    await first
    // The second round waits for the disk again before it sends.
    await new Promise((r) => setImmediate(r))
    release!()
    await second
    assert.ok(sent.includes('a') && sent.includes('b'), `sent ${sent.join(',')}`)
    f.stop()
  })

  it('refuses a fan-out that is not a whole number >= 1', () => {
    assert.throws(
      () =>
        new Fanout({
          clock: {now: () => 0, after: () => () => {}},
          random: Math.random,
          peers: () => [],
          send: () => {},
          fanout: 0,
        }),
      /gossip fanout must be a whole number >= 1, not 0/,
    )
  })
})

describe('bounded dissemination on loopback: 50 real gossip nodes', () => {
  const lab = new GossipLab()
  after(() => lab.close())

  it('the writer sends a write to a few nodes, not to each of the 49 others, and all 50 have it', async () => {
    const n = 50
    const m = await lab.manager()
    const nodes: LabNode[] = [m]
    for (let i = 1; i < n; i++) nodes.push(await lab.worker(`w${i}`, m))
    // Every node knows every other (its peers) before the write.
    await waitFor('every node knows all 50', () => nodes.every((x) => x.store.values('node/').length === n), 20_000)
    // Who sent the write to whom: the real sends, recorded on their way out.
    const told = new Map<string, Set<string>>()
    for (const x of nodes) {
      const send = x.gossip.transport.send.bind(x.gossip.transport)
      x.gossip.transport.send = (to: Addr, msg: Body) => {
        if (msg.t === 'updates' && msg.entries.some((e) => e.key === 'service/fan')) {
          if (!told.has(x.id)) told.set(x.id, new Set())
          told.get(x.id)!.add(`${to.addr}:${to.port}`)
        }
        return send(to, msg)
      }
    }
    m.store.put('service/fan', {id: 'fan', name: 'fan'})
    await waitFor('the write on all 50', () => nodes.every((x) => x.store.get('service/fan') !== undefined), 10_000)
    const byWriter = told.get(m.id)?.size ?? 0
    assert.ok(byWriter >= 1 && byWriter <= Fanout.limit(4, n), `the writer sent it to ${byWriter} nodes`)
    assert.ok(byWriter < n - 1)
    // Others spread it on: the epidemic, not the writer, reached the rest.
    assert.ok(told.size > 1, 'nobody but the writer sent it')
    for (const [id, to] of told) assert.ok(to.size <= Fanout.limit(4, n), `${id} sent it to ${to.size} nodes`)
  })
})
