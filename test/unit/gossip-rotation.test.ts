// Key rotation: the keyring's states under directives, the manager's state
// machine (no switch before every live node acked, grace, retire), and a real
// rotation on loopback: gossip flows throughout, the old key stops opening
// once retired, a forged directive is refused, and a node that slept through
// it all comes back with the join token.
import assert from 'node:assert/strict'
import {after, describe, it} from 'node:test'
import {generateKey, Keyring} from '../../src/gossip/keyring.js'
import {applyDirective, keyHash, KeyRotation, parseDuration, signDirective, type KeyDirective} from '../../src/gossip/rotation.js'
import {generateNodeKey} from '../../src/gossip/identity.js'
import {requestJoin} from '../../src/gossip/join.js'
import {GossipLab, sendUdp, sleep, waitFor, type LabNode} from './gossip-lab.js'

const msg = Buffer.from('hello')
const signer = generateNodeKey()
const directive = (d: Omit<KeyDirective, 'sig' | 'by'>): KeyDirective => signDirective({...d, by: 'm'}, signer.privateKey)

describe('keyring under rotation directives', () => {
  it('install keeps sealing with the old key and opens both; use switches; retire drops the old', () => {
    const k0 = generateKey()
    const k1 = generateKey()
    const ring = new Keyring(k0, 0)
    const peerOld = new Keyring(k0, 0)
    const oldPacket = peerOld.seal(msg)

    assert.deepEqual(applyDirective(ring, directive({gen: 1, install: {id: 1, key: k1.toString('base64')}, retire: []})), {
      changed: true,
    })
    assert.equal(ring.primary, 0, 'installing does not switch')
    assert.deepEqual(ring.ids(), [0, 1])
    assert.deepEqual(peerOld.open(ring.seal(msg)), msg, 'a node without the new key still reads us')
    const peerNew = new Keyring(k1, 1)
    assert.deepEqual(ring.open(peerNew.seal(msg)), msg, 'we read a node that switched already')

    applyDirective(ring, directive({gen: 2, install: {id: 1, key: k1.toString('base64')}, primary: 1, retire: []}))
    assert.equal(ring.primary, 1)
    assert.equal(peerOld.open(ring.seal(msg)), undefined, 'sealed with the new key now')
    assert.deepEqual(ring.open(oldPacket), msg, 'grace: the old key still opens')

    const again = applyDirective(ring, directive({gen: 3, install: {id: 1, key: k1.toString('base64')}, primary: 1, retire: [0]}))
    assert.equal(again.changed, true)
    assert.deepEqual(ring.ids(), [1])
    assert.equal(ring.open(oldPacket), undefined, 'retired: the old key opens nothing')
    assert.equal(applyDirective(ring, directive({gen: 4, primary: 1, retire: [0]})).changed, false, 'idempotent')
  })

  it('refuses, whole, a directive that would replace the key in use, switch to a missing key or retire the one in use', () => {
    const k0 = generateKey()
    const ring = new Keyring(k0, 0)
    const before = ring.entries()
    for (const d of [
      directive({gen: 1, install: {id: 0, key: generateKey().toString('base64')}, retire: []}),
      directive({gen: 1, primary: 7, retire: []}),
      directive({gen: 1, install: {id: 1, key: generateKey().toString('base64')}, retire: [0]}),
    ]) {
      const r = applyDirective(ring, d)
      assert.equal(r.changed, false)
      assert.ok(r.refused, JSON.stringify(d))
      assert.deepEqual(ring.entries(), before, 'nothing half-applied')
      assert.equal(ring.primary, 0)
    }
  })
})

describe('the manager side of a rotation', () => {
  const setup = (peers: string[]) => {
    let now = 1_000_000
    const ring = new Keyring(generateKey(), 0)
    const sent: {to: string; d: KeyDirective}[] = []
    let persisted = 0
    const live = new Set(peers)
    const rot = new KeyRotation({
      ring,
      selfId: 'm',
      privateKey: signer.privateKey,
      peers: () => [...live].map((id) => ({id})),
      send: (to, d) => sent.push({to, d}),
      persist: () => persisted++,
      graceMs: 10_000,
      resendMs: 500,
      now: () => now,
    })
    // A node's ack, holding the bytes the manager made under the new key's id (`hash`, `keyId` to say otherwise).
    const ack = (id: string, gen: number, hash = keyHash(ring.key(rot.status().newId!)), keyId = rot.status().newId!) =>
      rot.onAck(id, gen, keyId, hash)
    return {ring, sent, rot, live, ack, advance: (ms: number) => (now += ms), persisted: () => persisted}
  }

  it('installs, waits for every live node, seals with the new key, then retires the old after the grace', () => {
    const t = setup(['a', 'b'])
    const {newId, oldId} = t.rot.start()
    assert.equal(oldId, 0)
    assert.equal(newId, 1)
    assert.deepEqual(t.ring.ids(), [0, 1])
    assert.equal(t.ring.primary, 0, 'not in use before the nodes have it')
    assert.equal(t.persisted(), 1, 'the new key is on disk before it is sent')
    assert.deepEqual(
      t.sent.map((s) => s.to),
      ['a', 'b'],
    )
    const install = t.sent[0]!.d
    assert.equal(install.primary, undefined)
    assert.equal(install.install?.id, 1)

    t.ack('a', install.gen)
    assert.equal(t.rot.status().phase, 'install')
    assert.deepEqual(t.rot.status().waitingFor, ['b'])
    t.sent.length = 0
    t.rot.tick()
    assert.equal(t.sent.length, 0, 'not resent before resendMs')
    t.advance(600)
    t.rot.tick()
    assert.deepEqual(
      t.sent.map((s) => s.to),
      ['b'],
      'resent only to the one that has not acked',
    )
    t.ack('b', install.gen - 1)
    assert.equal(t.rot.status().phase, 'install', 'an ack of another generation counts for nothing')
    t.ack('b', install.gen)
    assert.equal(t.rot.status().phase, 'use')
    assert.equal(t.ring.primary, 1)
    assert.deepEqual(t.ring.ids(), [0, 1], 'old key kept for the grace period')

    t.advance(9_000)
    t.rot.tick()
    assert.equal(t.rot.status().phase, 'use')
    t.advance(1_100)
    t.rot.tick()
    assert.equal(t.rot.status().phase, 'retire')
    assert.deepEqual(t.ring.ids(), [1])
    const retire = t.sent.at(-1)!.d
    assert.deepEqual(retire.retire, [0])
    t.ack('a', retire.gen)
    t.ack('b', retire.gen)
    assert.equal(t.rot.status().phase, 'idle')
    assert.equal(t.rot.rotations, 1)
    assert.throws(() => (t.rot.start(), t.rot.start()), /already under way/)
  })

  it('an ack naming other bytes under the new id counts for nothing (two rotations at once picked the same id)', () => {
    const t = setup(['a', 'b'])
    t.rot.start()
    const gen = t.sent[0]!.d.gen
    t.ack('a', gen)
    // b installed key 1 from another manager's rotation (other bytes), and acks what it holds.
    t.ack('b', gen, keyHash(generateKey()))
    assert.equal(t.rot.status().phase, 'install', 'not sealing with a key b does not hold')
    assert.deepEqual(t.rot.status().waitingFor, ['b'])
    // The right bytes named under another id (b holds them as key 7): not the key being rotated to.
    t.ack('b', gen, undefined, 7)
    assert.deepEqual(t.rot.status().waitingFor, ['b'])
    t.ack('b', gen)
    assert.equal(t.rot.status().phase, 'use')
  })

  it('a node that goes down does not hold the rotation up', () => {
    const t = setup(['a', 'b'])
    t.rot.start()
    t.ack('a', t.sent[0]!.d.gen)
    assert.equal(t.rot.status().phase, 'install')
    t.live.delete('b')
    t.rot.tick()
    assert.equal(t.rot.status().phase, 'use')
  })

  it('after a restart with two keys held, keeps the primary and retires the other', () => {
    const t = setup([])
    t.ring.install(1, generateKey())
    t.rot.resume()
    assert.equal(t.rot.status().phase, 'use')
    t.advance(10_001)
    t.rot.tick()
    assert.deepEqual(t.ring.ids(), [0])
  })
})

describe('parseDuration', () => {
  it('reads what a person types, refuses the rest in one line', () => {
    assert.equal(parseDuration('12h', 'x'), 43_200_000)
    assert.equal(parseDuration('30m', 'x'), 1_800_000)
    assert.equal(parseDuration('45s', 'x'), 45_000)
    assert.equal(parseDuration('0', 'x'), 0)
    for (const bad of ['', '12', '-1h', '1.5h', 'h', '12 hours', '--grace', '9999d']) {
      assert.throws(
        () => parseDuration(bad, '--grace'),
        (e: Error) => /--grace/.test(e.message) && !e.message.includes('\n'),
        bad,
      )
    }
  })
})

describe('a rotation on loopback', () => {
  const lab = new GossipLab()
  after(() => lab.close())

  const rotationOf = (m: LabNode, peers: () => {id: string}[], graceMs: number) => {
    const rot = new KeyRotation({
      ring: m.gossip.keyring,
      selfId: m.id,
      privateKey: m.nodeKey.privateKey,
      peers,
      send: (id, d) => m.gossip.sendKeys(id, d),
      persist: () => undefined,
      graceMs,
      resendMs: 100,
      retireWaitMs: 2_000,
    })
    m.gossip.rotation = rot
    const timer = setInterval(() => rot.tick(), 50)
    return {rot, stop: () => clearInterval(timer)}
  }

  it('every node switches, gossip keeps flowing, the old key stops opening; a sleeper rejoins with the token', async () => {
    const m = await lab.manager()
    const a = await lab.worker('a', m)
    const b = await lab.worker('b', m)
    const c = await lab.worker('c', m)
    await waitFor('c known to all', () => [a, b].every((n) => n.store.get('node/c') !== undefined), 5_000)
    const oldPacket = m.gossip.transport.seal({t: 'ping', n: 1})

    // c goes down before the rotation and stays down across it.
    const cPort = c.port
    await lab.stop(c)
    const live = [a, b]
    const {rot, stop} = rotationOf(m, () => live.map((n) => ({id: n.id})), 500)

    // Traffic throughout: a write every 20 ms from the manager.
    let writes = 0
    const traffic = setInterval(
      () => m.store.put(`network/t${writes++}`, {id: `t${writes}`, name: 'x', vni: 5000, subnet: '10.9.0.0/24'}),
      20,
    )
    try {
      rot.start()
      await rot.until('use', 'retire')
      assert.equal(m.gossip.keyring.primary, 1, 'the manager seals with the new key once every live node holds it')
      await waitFor('a and b seal with the new key', () => live.every((n) => n.gossip.keyring.primary === 1), 2_000)
      await waitFor('rotation done', () => !rot.busy, 10_000)
      for (const n of [m, ...live]) assert.deepEqual(n.gossip.keyring.ids(), [1], `${n.id} holds the new key only`)
    } finally {
      clearInterval(traffic)
      stop()
    }
    const last = `network/t${writes - 1}`
    await waitFor('every write reached a and b', () => live.every((n) => n.store.get(last) !== undefined), 5_000)
    for (const n of live) for (let i = 0; i < writes; i++) assert.ok(n.store.get(`network/t${i}`), `${n.id} got write ${i}`)

    // The old key opens nothing now.
    const before = a.gossip.stats.decryptFailed
    await sendUdp(oldPacket, {addr: a.addr, port: a.port})
    await waitFor('old-key packet dropped', () => a.gossip.stats.decryptFailed === before + 1, 2_000)

    // c comes back with its old key: nobody can read it, it can read nobody.
    const cStore = lab.openStore('c')
    const c2 = await lab.start('c', c.addr, cPort, {store: cStore})
    m.store.put('network/after', {id: 'after', name: 'after', vni: 5001, subnet: '10.9.1.0/24'})
    await sleep(600)
    assert.equal(c2.store.get('network/after'), undefined, 'a node with the retired key gets nothing')
    await lab.stop(c2)

    // ... until it joins again with the token, under its own id and node key.
    const nodeKey = lab.keys.get('c')!
    const join = {
      manager: {addr: m.addr, port: m.port},
      token: lab.token,
      node: {id: 'c', name: 'c', addr: c.addr, gossipPort: cPort, mtu: 1500, pubKey: nodeKey.publicKey},
    }
    await assert.rejects(requestJoin(join), /already in use/, 'without proof of its node key, the id stays taken')
    const r = await requestJoin({...join, rejoinKey: nodeKey.privateKey})
    assert.equal(r.keyId, 1)
    assert.deepEqual(r.key, m.gossip.keyring.primaryKey())
    assert.equal(m.gossip.stats.rejoins, 1)
    const c3Store = lab.openStore('c')
    c3Store.merge(r.entries)
    assert.ok(c3Store.get('network/after'), 'the rejoin hands over the state')
    const c3 = await lab.start('c', c.addr, cPort, {store: c3Store, gossip: {key: new Keyring(r.key, r.keyId)}})
    m.store.put('network/later', {id: 'later', name: 'later', vni: 5002, subnet: '10.9.2.0/24'})
    await waitFor('c gets what the manager writes after it rejoined', () => c3.store.get('network/later') !== undefined, 5_000)
  })

  it('a directive not signed by a certified manager is refused and changes nothing', async () => {
    const m = lab.running.values().next().value as LabNode
    const a = [...lab.running].find((n) => n.id === 'a')!
    const b = [...lab.running].find((n) => n.id === 'b')!
    const forged = signDirective(
      {gen: Date.now() * 2, install: {id: 9, key: generateKey().toString('base64')}, primary: 9, retire: [], by: 'a'},
      a.nodeKey.privateKey,
    )
    const before = b.gossip.stats.unauthorised
    const sealed = a.gossip.transport.seal({t: 'keys', keys: forged})
    await sendUdp(sealed, {addr: b.addr, port: b.port})
    await waitFor('refused', () => b.gossip.stats.unauthorised === before + 1, 2_000)
    assert.deepEqual(b.gossip.keyring.ids(), [1])
    assert.match(b.gossip.lastRefusal ?? '', /not signed by a certified manager/)
    // Same bytes claiming the manager's name: the signature does not verify.
    const claimed = {...forged, by: m.id}
    await sendUdp(a.gossip.transport.seal({t: 'keys', keys: claimed}), {addr: b.addr, port: b.port})
    await waitFor('refused', () => b.gossip.stats.unauthorised === before + 2, 2_000)
    assert.deepEqual(b.gossip.keyring.ids(), [1])
  })
})
