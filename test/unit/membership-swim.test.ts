// The SWIM + Lifeguard state machine, the real code over a simulated clock and
// network (src/membership/simnet.ts): detection, suspicion and refutation,
// incarnations, the Lifeguard multipliers, and no false suspicion at 5% loss.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {BroadcastQueue} from '../../src/membership/broadcast.js'
import {membershipConfig, type MembershipConfig} from '../../src/membership/config.js'
import {isSwimMessage, type SwimMessage} from '../../src/membership/messages.js'
import {SimClock, SimNetwork, seededRandom} from '../../src/membership/simnet.js'
import type {Liveness} from '../../src/membership/state.js'
import {Suspicion} from '../../src/membership/suspicion.js'
import {Membership, type Addr} from '../../src/membership/swim.js'

type Cluster = {clock: SimClock; net: SimNetwork; ms: Membership[]; addrs: Addr[]; ids: string[]; restart(i: number): Membership}

function cluster(n: number, o: {loss?: number; seed?: number; config?: Partial<MembershipConfig>} = {}): Cluster {
  const clock = new SimClock()
  const random = seededRandom(o.seed ?? 1)
  const net = new SimNetwork({clock, random, latencyMs: 1, jitterMs: 2, loss: o.loss ?? 0})
  const ids = Array.from({length: n}, (_, i) => `n${i}`)
  const addrs = ids.map((_, i) => SimNetwork.addrOf(i + 1))
  const roster = ids.map((id, i) => ({id, addr: addrs[i]!.addr, port: addrs[i]!.port, left: false}))
  const make = (i: number, inc: number): Membership => {
    const m = new Membership({
      self: {id: ids[i]!, ...addrs[i]!},
      incarnation: inc,
      net: net.endpoint(ids[i]!, addrs[i]!),
      clock,
      random,
      config: o.config,
    })
    m.setRoster(roster)
    net.attach(addrs[i]!, ids[i]!, m)
    m.start()
    return m
  }
  const ms = ids.map((_, i) => make(i, 1000 + i))
  return {
    clock,
    net,
    ms,
    addrs,
    ids,
    restart(i) {
      ms[i]!.stop()
      ms[i] = make(i, 5000 + i)
      return ms[i]!
    },
  }
}

const stateOf = (c: Cluster, viewer: number, of: number): Liveness | undefined => c.ms[viewer]!.get(c.ids[of]!)?.state

/** Advances in small steps until cond holds; the virtual time it took, or undefined. */
function until(c: Cluster, cond: () => boolean, maxMs: number, stepMs = 10): number | undefined {
  const start = c.clock.now()
  while (c.clock.now() - start <= maxMs) {
    if (cond()) return c.clock.now() - start
    c.clock.advance(stepMs)
  }
  return undefined
}

test('a killed member is suspected, then declared dead by every other member, within 2 s with the defaults', () => {
  const c = cluster(3)
  c.clock.advance(5000)
  assert.ok(
    c.ms.every((m) => m.list().every((x) => x.state === 'alive' && x.incarnation > 0)),
    'all alive, incarnations learnt',
  )
  c.net.setDown(c.addrs[2]!, true)
  const seen: Liveness[] = []
  c.ms[0]!.onChange((m) => m.id === 'n2' && seen.push(m.state))
  const took = until(c, () => stateOf(c, 0, 2) === 'dead' && stateOf(c, 1, 2) === 'dead', 10_000)
  assert.ok(took !== undefined, 'n2 declared dead by n0 and n1')
  assert.ok(took <= 2000, `detected in ${took} ms of simulated time`)
  assert.deepEqual(seen, ['suspect', 'dead'], 'alive -> suspect -> dead')
  assert.equal(c.ms[0]!.isDown('n2'), true)
  assert.equal(stateOf(c, 0, 1), 'alive', 'the living one stays alive')
})

test('a suspected member refutes with a higher incarnation and is never declared dead', () => {
  // A long suspicion timeout so that the member is back before it runs out.
  const c = cluster(3, {config: {suspicionMult: 20}})
  c.clock.advance(3000)
  const before = c.ms[2]!.incarnation
  c.net.setDown(c.addrs[2]!, true)
  assert.ok(until(c, () => stateOf(c, 0, 2) === 'suspect', 5000) !== undefined, 'suspected while cut off')
  c.net.setDown(c.addrs[2]!, false)
  assert.ok(until(c, () => stateOf(c, 0, 2) === 'alive' && stateOf(c, 1, 2) === 'alive', 5000) !== undefined, 'alive again')
  assert.ok(c.ms[2]!.incarnation > before, 'refuted with a higher incarnation')
  assert.ok(c.ms[2]!.stats.refutations >= 1)
  assert.equal(c.ms[0]!.get('n2')!.incarnation, c.ms[2]!.incarnation, 'the others hold the new incarnation')
  assert.equal(c.ms[0]!.stats.deaths + c.ms[1]!.stats.deaths, 0)
})

test('a rumour about this node is refuted in the very answer to it', () => {
  const sent: {to: Addr; m: SwimMessage}[] = []
  const clock = new SimClock()
  const a = new Membership({
    self: {id: 'a', addr: '10.0.0.1', port: 7946},
    incarnation: 100,
    net: {send: (to, m) => sent.push({to, m})},
    clock,
  })
  a.setRoster([{id: 'b', addr: '10.0.0.2', port: 7946, left: false}])
  a.start()
  a.receive({op: 'ping', seq: 7, inc: 200, target: 'a', u: [{k: 'suspect', id: 'a', inc: 100, by: 'c'}]}, 'b', {
    addr: '10.0.0.2',
    port: 7946,
  })
  const ack = sent.find((s) => s.m.op === 'ack')
  assert.ok(ack, 'answered')
  assert.equal(ack.m.seq, 7)
  assert.equal(ack.m.inc, 101, 'incarnation raised past the rumour')
  assert.ok(
    ack.m.u.some((u) => u.k === 'alive' && u.id === 'a' && u.inc === 101),
    'the refutation rides along',
  )
  // A rumour about an older incarnation is not worth refuting again.
  a.receive({op: 'ping', seq: 8, inc: 200, target: 'a', u: [{k: 'dead', id: 'a', inc: 100}]}, 'b', {addr: '10.0.0.2', port: 7946})
  assert.equal(a.incarnation, 101)
  // A ping meant for someone else is not answered.
  const n = sent.length
  a.receive({op: 'ping', seq: 9, inc: 200, target: 'zz', u: []}, 'b', {addr: '10.0.0.2', port: 7946})
  assert.equal(sent.length, n)
  assert.equal(a.stats.misdirected, 1)
  a.stop()
})

test('incarnations order rumours: old ones are ignored, only a newer alive revives the dead', () => {
  const clock = new SimClock()
  const a = new Membership({self: {id: 'a', addr: '10.0.0.1', port: 7946}, incarnation: 1, net: {send: () => undefined}, clock})
  a.setRoster([
    {id: 'b', addr: '10.0.0.2', port: 7946, left: false},
    {id: 'c', addr: '10.0.0.3', port: 7946, left: false},
  ])
  a.start()
  const from = {addr: '10.0.0.3', port: 7946}
  const say = (u: {k: 'alive' | 'suspect' | 'dead'; id: string; inc: number; by?: string}) =>
    a.receive({op: 'ack', seq: 0, inc: 50, u: [u]}, 'c', from)
  say({k: 'alive', id: 'b', inc: 10})
  assert.equal(a.get('b')!.incarnation, 10)
  say({k: 'suspect', id: 'b', inc: 9})
  assert.equal(a.get('b')!.state, 'alive', 'a suspicion of an older incarnation is ignored')
  say({k: 'suspect', id: 'b', inc: 10})
  assert.equal(a.get('b')!.state, 'suspect', 'suspect(i) beats alive(i)')
  say({k: 'alive', id: 'b', inc: 10})
  assert.equal(a.get('b')!.state, 'suspect', 'alive(i) does not clear suspect(i)')
  say({k: 'dead', id: 'b', inc: 10})
  assert.equal(a.get('b')!.state, 'dead', 'dead(i) beats suspect(i)')
  say({k: 'suspect', id: 'b', inc: 10})
  say({k: 'alive', id: 'b', inc: 10})
  assert.equal(a.get('b')!.state, 'dead', 'nothing of the same incarnation revives the dead')
  say({k: 'alive', id: 'b', inc: 11})
  assert.equal(a.get('b')!.state, 'alive', 'a newer incarnation does')
  assert.equal(a.stats.revivals, 1)
  // Incarnation 0 is a prober that never heard from the member: it counts at the incarnation held here.
  say({k: 'suspect', id: 'b', inc: 0, by: 'c'})
  assert.equal(a.get('b')!.state, 'suspect', 'suspect(0) is suspect(the incarnation known)')
  assert.equal(a.get('b')!.incarnation, 11)
  say({k: 'dead', id: 'b', inc: 0})
  assert.equal(a.get('b')!.state, 'dead')
  say({k: 'suspect', id: 'a', inc: 0})
  assert.equal(a.incarnation, 2, 'and is refuted like any other')
  say({k: 'alive', id: 'stranger', inc: 99})
  assert.equal(a.get('stranger'), undefined, 'who is a member is the store roster, not a rumour')
  a.setRoster([
    {id: 'b', addr: '10.0.0.2', port: 7946, left: true},
    {id: 'c', addr: '10.0.0.3', port: 7946, left: false},
  ])
  say({k: 'alive', id: 'b', inc: 12})
  assert.equal(a.get('b')!.state, 'left', 'left is final')
  assert.equal(a.isDown('b'), true)
  a.stop()
})

test('Lifeguard: the suspicion timeout shrinks on a log scale with independent confirmations only', () => {
  assert.equal(Suspicion.timeout(0, 3, 1000, 6000), 6000)
  assert.equal(Suspicion.timeout(3, 3, 1000, 6000), 1000)
  const one = Suspicion.timeout(1, 3, 1000, 6000)
  const two = Suspicion.timeout(2, 3, 1000, 6000)
  assert.ok(6000 > one && one > two && two > 1000, `${one} ${two}`)
  assert.equal(one, Math.floor(6000 - 5000 * (Math.log(2) / Math.log(4))))

  const clock = new SimClock()
  let fired = -1
  const s = new Suspicion(clock, 'x', 3, 1000, 6000, () => (fired = clock.now()))
  assert.equal(s.confirm('x'), false, 'the one who raised it does not confirm it')
  clock.advance(100)
  assert.equal(s.confirm('y'), true)
  assert.equal(s.confirm('y'), false, 'the same confirmer twice counts once')
  assert.equal(s.confirm('z'), true)
  assert.equal(s.confirm('w'), true)
  assert.equal(s.confirm('v'), false, 'no more than k')
  clock.advance(5000)
  assert.equal(fired, 1000, 'k confirmations: the minimum, counted from the start')
})

test('Lifeguard: a node that hears nothing raises its health score and probes less, instead of accusing at full speed', () => {
  const c = cluster(5, {seed: 3})
  c.clock.advance(3000)
  const probes = (i: number) => c.ms[i]!.stats.probes
  const [p0, p1] = [probes(0), probes(1)]
  c.net.setDeaf(c.addrs[0]!, true)
  c.clock.advance(20_000)
  assert.ok(c.ms[0]!.awareness.score >= 4, `score ${c.ms[0]!.awareness.score}`)
  assert.equal(c.ms[1]!.awareness.score, 0, 'a healthy node stays at 0')
  const slow = probes(0) - p0
  const healthy = probes(1) - p1
  assert.ok(slow * 3 < healthy, `deaf node probed ${slow} times, a healthy one ${healthy}`)
  c.net.setDeaf(c.addrs[0]!, false)
  c.clock.advance(60_000)
  assert.equal(c.ms[0]!.awareness.score, 0, 'good probes bring it back down')
})

test('no false suspicion at 5% loss (3 and 8 nodes, 10 simulated minutes each)', () => {
  for (const n of [3, 8]) {
    const c = cluster(n, {loss: 0.05, seed: 42 + n})
    c.clock.advance(600_000)
    const suspicions = c.ms.reduce((s, m) => s + m.stats.suspicions, 0)
    const failed = c.ms.reduce((s, m) => s + m.stats.failedProbes, 0)
    assert.ok(c.net.dropped > 500, `loss was applied (${c.net.dropped} dropped)`)
    assert.equal(suspicions, 0, `${n} nodes: ${suspicions} suspicions, ${failed} failed probes`)
    assert.ok(c.ms.every((m) => m.list().every((x) => x.state === 'alive')))
  }
})

test('a dead node that restarts, and a partition that heals, are alive again everywhere', () => {
  const c = cluster(4, {seed: 9})
  c.clock.advance(3000)
  c.net.setDown(c.addrs[3]!, true)
  assert.ok(until(c, () => [0, 1, 2].every((v) => stateOf(c, v, 3) === 'dead'), 10_000) !== undefined)
  c.net.setDown(c.addrs[3]!, false)
  c.restart(3)
  assert.ok(until(c, () => [0, 1, 2].every((v) => stateOf(c, v, 3) === 'alive'), 5000) !== undefined, 'restart: alive')
  assert.equal(c.ms[0]!.get('n3')!.incarnation, 5003, 'at its new boot incarnation')

  // Partition {0,1} | {2,3} for 10 s: each side declares the other dead, then it heals.
  const side = (i: number) => (i < 2 ? 0 : 1)
  for (let i = 0; i < 4; i++) c.net.setDown(c.addrs[i]!, false)
  const cut = (on: boolean) => {
    c.net.partition = on
      ? (a, b) => side(c.addrs.findIndex((x) => x.addr === a.addr)) !== side(c.addrs.findIndex((x) => x.addr === b.addr))
      : undefined
  }
  cut(true)
  c.clock.advance(10_000)
  assert.equal(stateOf(c, 0, 2), 'dead')
  assert.equal(stateOf(c, 3, 1), 'dead')
  assert.equal(stateOf(c, 0, 1), 'alive')
  cut(false)
  const healed = until(c, () => c.ms.every((m) => m.list().every((x) => x.state === 'alive')), 20_000)
  assert.ok(healed !== undefined, 'one state again: everyone alive in every view')
})

test('updates are piggybacked a bounded number of times: mult * ceil(log10(n + 1))', () => {
  assert.equal(BroadcastQueue.limit(4, 3), 4)
  assert.equal(BroadcastQueue.limit(4, 1000), 16)
  const q = new BroadcastQueue(4)
  q.push({k: 'alive', id: 'x', inc: 1})
  let sent = 0
  for (let i = 0; i < 100; i++) sent += q.take(8, 1000).length
  assert.equal(sent, 16)
  q.push({k: 'alive', id: 'y', inc: 1})
  q.push({k: 'dead', id: 'y', inc: 1})
  assert.deepEqual(q.take(8, 3), [{k: 'dead', id: 'y', inc: 1}], 'the newer rumour replaces the older')
})

test('malformed membership messages are refused field by field; bad timers are refused in one line', () => {
  assert.equal(isSwimMessage({op: 'ping', seq: 1, inc: 1, target: 'a', u: []}), true)
  for (const bad of [
    null,
    [],
    {op: 'ping', seq: 1, inc: 1, u: []},
    {op: 'ping', seq: -1, inc: 1, target: 'a', u: []},
    {op: 'ack', seq: 1, inc: 1.5, u: []},
    {op: 'ack', seq: 1, inc: 1, u: [{k: 'zombie', id: 'a', inc: 1}]},
    {op: 'ack', seq: 1, inc: 1, u: [{k: 'alive', id: '', inc: 1}]},
    {op: 'ack', seq: 1, inc: 1, u: new Array(65).fill({k: 'alive', id: 'a', inc: 1})},
    {op: 'ping-req', seq: 1, inc: 1, target: 'a', addr: 'evil', port: 7946, u: []},
    {op: 'ping-req', seq: 1, inc: 1, target: 'a', addr: '10.0.0.1', port: 70000, u: []},
    {op: 'nack', seq: 1, inc: 1, u: [], extra: 1},
  ])
    assert.equal(isSwimMessage(bad), false, JSON.stringify(bad))
  assert.throws(() => membershipConfig({probeIntervalMs: 100, probeTimeoutMs: 100}), /probeTimeoutMs \(100\) must be below/)
  assert.throws(() => membershipConfig({pingAttempts: 0}), /pingAttempts must be a whole number >= 1/)
})
