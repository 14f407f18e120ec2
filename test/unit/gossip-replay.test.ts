import assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import {after, before, describe, it} from 'node:test'
import {MAX_SKEW_MS} from '../../src/gossip/freshness.js'
import {MAX_CLOCK_JUMP, type Peer} from '../../src/gossip/gossip.js'
import {generateNodeKey} from '../../src/gossip/identity.js'
import {Keyring} from '../../src/gossip/keyring.js'
import type {NodeRecord} from '../../src/model/types.js'
import {readOpened} from '../../src/gossip/transport.js'
import {GossipLab, sealAs, sendUdp, signedEntry, sleep, waitFor, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()

describe('gossip refuses replayed and stale packets', () => {
  let m: LabNode
  let w: LabNode
  // The manager's datagrams to the worker go through this socket, which
  // passes them on and keeps a copy, as a wiretap on the underlay would.
  const tap = dgram.createSocket('udp4')
  const captured: Buffer[] = []
  const tapAddr = lab.newAddr()

  before(async () => {
    await new Promise<void>((r) => tap.bind(0, tapAddr, r))
    tap.on('message', (b) => {
      captured.push(b)
      if (w) tap.send(b, w.port, w.addr)
    })
    const store = lab.openStore('m')
    const tapPeer: Peer = {id: 'w', addr: tapAddr, port: tap.address().port}
    const peers = (): Peer[] =>
      store
        .values<NodeRecord>('node/')
        .filter((n) => n.id !== 'm')
        .map((n) => (n.id === 'w' ? tapPeer : {id: n.id, addr: n.addr, port: n.gossipPort}))
    m = await lab.manager('m', {store, gossip: {peers}})
    // Tombstones on the worker are reaped 50 ms after the delete.
    w = await lab.worker('w', m, {store: {tombstoneTtlMs: 50}})
  })

  after(async () => {
    await new Promise<void>((r) => tap.close(() => r()))
    await lab.close()
  })

  /** The captured datagram that carried `key` (opened with the cluster key, as the test knows it). */
  function datagramWith(key: string): Buffer | undefined {
    const ring = new Keyring(lab.clusterKey)
    return captured.find((b) => {
      const plain = ring.open(b)
      const msg = plain ? readOpened(plain)?.m : undefined
      return msg?.t === 'updates' && msg.entries.some((e) => e.key === key && e.value !== null)
    })
  }

  it('an updates datagram played back after the delete was reaped does not bring the service back', async () => {
    m.store.put('service/web', {id: 'web', name: 'web'})
    await waitFor('w has web', () => w.store.get('service/web') !== undefined, 1000)
    await waitFor('the tap saw the update', () => datagramWith('service/web') !== undefined, 1000)
    const old = datagramWith('service/web') as Buffer

    m.store.delete('service/web')
    await waitFor('w has the tombstone', () => w.store.entry('service/web')?.value === null, 1000)
    await sleep(100)
    assert.ok(w.store.reap() >= 1)
    assert.equal(w.store.entry('service/web'), undefined)

    const before = w.gossip.stats.replayed
    await sendUdp(old, w)
    await sleep(300)
    assert.equal(w.store.get('service/web'), undefined, 'the deleted service stays deleted')
    assert.equal(w.gossip.stats.replayed, before + 1)
  })

  it('after the receiver restarts, a capture older than the clock window is refused as stale', async () => {
    const old = datagramWith('service/web')
    assert.ok(old)
    const {addr, port} = w
    await lab.stop(w)
    // The same node, started again later: its window of sequence numbers is gone.
    const later = () => Date.now() + MAX_SKEW_MS + 1000
    w = await lab.start('w', addr, port, {store: lab.openStore('w', {tombstoneTtlMs: 50}), gossip: {now: later}})
    await sendUdp(old, w)
    await sleep(300)
    assert.equal(w.store.get('service/web'), undefined)
    assert.ok(w.gossip.stats.stale >= 1)
    assert.equal(w.gossip.stats.replayed, 0)
  })

  it('a restarted sender is heard again (its new epoch resets the window)', async () => {
    const {addr, port} = w
    await lab.stop(w)
    w = await lab.start('w', addr, port, {store: lab.openStore('w', {tombstoneTtlMs: 50})})
    // Restart the manager too: its sequence numbers start again at 1, in a new epoch.
    const mPort = m.port
    const store = m.store
    await lab.stop(m)
    m = await lab.start('m', m.addr, mPort, {manager: true, store: lab.openStore('m')})
    assert.notEqual(store, m.store)
    m.store.put('service/after', {id: 'after'})
    await waitFor('w hears the restarted m', () => w.store.get('service/after') !== undefined, 2000)
  })

  it("a member stamping another node's id in the header cannot make that node's packets stale", async () => {
    const now = Date.now()
    const fake = {t: 'ping' as const, from: 'm', epoch: now + 10 ** 9, seq: 2 ** 40, ts: now, n: 1}
    const badSender = w.gossip.stats.badSender
    // Signed with a key that is not m's (a member holds only its own): refused before freshness sees it.
    await sendUdp(sealAs(lab.clusterKey, fake, generateNodeKey()), w)
    await waitFor('refused', () => w.gossip.stats.badSender === badSender + 1, 1000)
    const stale = w.gossip.stats.stale
    m.store.put('service/still-heard', {id: 'still-heard'})
    await waitFor('w hears m', () => w.store.get('service/still-heard') !== undefined, 1000)
    assert.equal(w.gossip.stats.stale, stale)
  })

  it('an entry whose Lamport clock jumps more than MAX_CLOCK_JUMP ahead is refused and counted', async () => {
    const before = w.store.clock
    const far = signedEntry(lab, 'm', {
      key: 'service/far',
      value: {id: 'far'},
      version: {clock: Number.MAX_SAFE_INTEGER, node: 'm'},
    })
    const near = signedEntry(lab, 'm', {
      key: 'service/near',
      value: {id: 'near'},
      version: {clock: before + 1000, node: 'm'},
    })
    const now = Date.now()
    await sendUdp(
      sealAs(lab.clusterKey, {t: 'updates', from: 'm', epoch: now, seq: 1, ts: now, entries: [far, near]}, lab.keys.get('m')!),
      w,
    )
    await waitFor('near merged', () => w.store.get('service/near') !== undefined, 1000)
    assert.equal(w.store.get('service/far'), undefined)
    assert.equal(w.gossip.stats.clockJumps, 1)
    assert.ok(w.store.clock < before + MAX_CLOCK_JUMP, `clock ${w.store.clock} stays near ${before}`)
    // The clock still advances: the worker's next write is a safe integer that its peers take.
    w.store.put('node/w', {...(w.store.get<NodeRecord>('node/w') as NodeRecord), mtu: 1400})
    await waitFor('m has the new mtu', () => m.store.get<NodeRecord>('node/w')?.mtu === 1400, 2000)
  })
})
