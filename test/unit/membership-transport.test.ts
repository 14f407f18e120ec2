// Failure detection over the real sealed transport on loopback: three gossip
// nodes (a manager and two workers that joined through the real handshake),
// each with its Membership fed by its own store's node records. A stopped node
// is declared down by the others; membership messages are sealed, fresh and
// checked like every other, and garbage is counted, never a crash.
import assert from 'node:assert/strict'
import {after, test} from 'node:test'
import type {SwimMessage} from '../../src/membership/messages.js'
import {Membership} from '../../src/membership/swim.js'
import type {NodeRecord} from '../../src/model/types.js'
import {prefixOf} from '../../src/store/keys.js'
import {GossipLab, sealAs, sendUdp, sleep, waitFor, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()
const members = new Map<string, Membership>()
after(async () => {
  for (const m of members.values()) m.stop()
  await lab.close()
})

function attach(n: LabNode): Membership {
  const m = new Membership({
    self: {id: n.id, addr: n.addr, port: n.port},
    incarnation: n.gossip.epoch,
    // As the agent wires it: pings answered by the gossip UDP thread (src/gossip/udp-thread.ts).
    net: {send: (to, msg, id) => n.gossip.sendSwim(to, msg, id), answerWith: (self) => n.gossip.swimAnswer(self)},
  })
  n.gossip.onSwim = (msg, from, addr, acked) => m.receive(msg, from, addr, acked)
  const roster = () =>
    m.setRoster(
      n.store
        .values<NodeRecord>(prefixOf('node'))
        .map((r) => ({id: r.id, addr: r.addr, port: r.gossipPort, left: r.state === 'left'})),
    )
  roster()
  n.store.onChange((k) => k.startsWith('node/') && roster())
  m.start()
  members.set(n.id, m)
  return m
}

test('over the sealed UDP transport: members learn each other, a stopped node is declared down by the others', async () => {
  const m = await lab.manager('m')
  const w1 = await lab.worker('w1', m)
  const w2 = await lab.worker('w2', m)
  const [mm, m1, m2] = [attach(m), attach(w1), attach(w2)]
  await waitFor(
    'every node sees the two others alive at their boot incarnation',
    () => [mm, m1, m2].every((x) => x.list().length === 2 && x.list().every((y) => y.state === 'alive' && y.incarnation > 0)),
    10_000,
  )
  assert.equal(mm.get('w1')!.incarnation, w1.gossip.epoch)
  assert.ok(mm.get('w1')!.lastHeard > 0, 'heard from directly')
  assert.equal(m.gossip.stats.malformed, 0)
  // A sender's first message goes to the main thread, which tells the UDP thread its key; then that thread answers.
  await waitFor('pings answered by the UDP thread', () => [m, w1, w2].every((n) => n.gossip.stats.swimAckedOffLoop > 0), 5000)

  const t0 = Date.now()
  m2.stop()
  await lab.stop(w2)
  await waitFor('w2 down on m and w1', () => mm.isDown('w2') && m1.isDown('w2'), 15_000)
  console.log(`# w2 declared down on both others ${Date.now() - t0} ms after it stopped`)
  await sleep(500)
  assert.equal(mm.get('w1')!.state, 'alive', 'no false accusation of the living')
  assert.equal(m1.get('m')!.state, 'alive')
})

test('sealed membership messages that are malformed, or not sealed with the key, are counted and change nothing', async () => {
  const m = [...lab.running].find((n) => n.id === 'm')!
  const mm = members.get('m')!
  const before = {...m.gossip.stats}
  const header = {from: 'w1', epoch: 1, seq: 1, ts: Date.now()}
  const bad = {t: 'swim', ...header, swim: {op: 'ack', seq: 1, inc: 1, u: [{k: 'dead', id: 'w1', inc: 9e15}], x: 1}}
  await sendUdp(sealAs(lab.clusterKey, bad as never, lab.keys.get('w1')!), {addr: m.addr, port: m.port})
  const forged: SwimMessage = {op: 'ack', seq: 1, inc: 1, u: [{k: 'dead', id: 'w1', inc: 9e15}]}
  await sendUdp(sealAs(Buffer.alloc(32, 7), {t: 'swim', ...header, seq: 2, swim: forged}, lab.keys.get('w1')!), {
    addr: m.addr,
    port: m.port,
  })
  await sendUdp(Buffer.from('garbage'), {addr: m.addr, port: m.port})
  await waitFor(
    'counted',
    () => m.gossip.stats.malformed >= before.malformed + 2 && m.gossip.stats.decryptFailed > before.decryptFailed,
    5000,
  )
  assert.equal(m.gossip.stats.handlerErrors, 0)
  assert.equal(mm.get('w1')!.state, 'alive', 'nothing of it was believed')
})
