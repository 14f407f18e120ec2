import assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import * as net from 'node:net'
import {after, before, describe, it} from 'node:test'
import {generateIdentity, generateNodeKey} from '../../src/gossip/identity.js'
import {requestJoin} from '../../src/gossip/join.js'
import {generateKey, Keyring} from '../../src/gossip/keyring.js'
import {generateToken, rotateToken} from '../../src/gossip/token.js'
import {encodeMessage} from '../../src/gossip/codec.js'
import {JOIN_FRAME} from '../../src/gossip/transport.js'
import type {Json} from '../../src/store/json.js'
import {freePort, GossipLab, waitFor, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()

function joinNode(id: string, addr: string, manager: LabNode, tok: string = lab.token.text) {
  return requestJoin({
    manager: `${manager.addr}:${manager.port}`,
    token: tok,
    node: {id, name: id, addr, gossipPort: 1, mtu: 1500, pubKey: generateNodeKey().publicKey},
  })
}

describe('gossip on loopback', () => {
  let m: LabNode
  let w1: LabNode
  let w2: LabNode

  before(async () => {
    m = await lab.manager()
  })

  after(() => lab.close())

  it('a joiner with the right token gets the key and the whole state', async () => {
    w1 = await lab.worker('w1', m)
    w2 = await lab.worker('w2', m)
    const keys = w2.store
      .all()
      .map((e) => e.key)
      .sort()
    assert.deepEqual(
      keys.filter((k) => !k.startsWith('node/')),
      ['cluster', 'network/ingress'],
    )
    assert.ok(keys.includes('node/w2') && keys.includes('node/m'))
    assert.deepEqual(w2.store.get('network/ingress'), m.store.get('network/ingress'))
    // w1 joined before w2: it learns of w2 by gossip.
    await waitFor('w1 learns w2', () => w1.store.get('node/w2') !== undefined, 1000)
    assert.equal(m.gossip.stats.joinsAccepted, 2)
  })

  it('a wrong token is refused and says so', async () => {
    const wrongSecret = rotateToken(lab.token).text
    await assert.rejects(joinNode('bad', '127.0.0.99', m, wrongSecret), {message: 'join refused: invalid join token'})
    const otherCluster = generateToken(generateIdentity().publicKey).text
    await assert.rejects(joinNode('bad', '127.0.0.99', m, otherCluster), {message: 'join refused: invalid join token'})
    assert.equal(m.store.get('node/bad'), undefined)
    await assert.rejects(joinNode('m', '127.0.0.99', m), {message: 'join refused: node id m is already in use'})
    assert.equal(m.gossip.stats.joinsRefused, 3)
  })

  it('an unreachable manager is a clear error with the address', async () => {
    const port = await freePort('127.0.0.1')
    await assert.rejects(
      requestJoin({
        manager: `127.0.0.1:${port}`,
        token: lab.token,
        node: {id: 'x', name: 'x', addr: '127.0.0.98', gossipPort: 1, mtu: 1500, pubKey: 'k'},
      }),
      (e: Error) => e.message.startsWith(`cannot reach the manager at 127.0.0.1:${port}:`),
    )
  })

  it('a write reaches the other two nodes within a second', async () => {
    const value: Json = {id: 'from-m', name: 'from-m', n: Math.random()}
    m.store.put('service/from-m', value)
    await waitFor(
      'service everywhere',
      () => w1.store.get('service/from-m') !== undefined && w2.store.get('service/from-m') !== undefined,
      1000,
    )
    assert.deepEqual(w1.store.get('service/from-m'), value)
    // A worker's writes (its own record, its tasks' status) travel the same way.
    m.store.put('task/t2', {id: 't2', nodeId: 'w2'})
    await waitFor('task on w2', () => w2.store.get('task/t2') !== undefined, 1000)
    const status: Json = {taskId: 't2', nodeId: 'w2', state: 'running', restarts: 0, updatedAt: 1}
    w2.store.put('taskstatus/t2', status)
    await waitFor(
      'status everywhere',
      () => m.store.get('taskstatus/t2') !== undefined && w1.store.get('taskstatus/t2') !== undefined,
      1000,
    )
    // Honest writers are never refused.
    assert.equal(m.gossip.stats.unauthorised, 0)
    m.store.delete('service/from-m')
    await waitFor(
      'delete everywhere',
      () => w1.store.get('service/from-m') === undefined && w2.store.get('service/from-m') === undefined,
      1000,
    )
  })

  it('a big update goes by TCP', async () => {
    const big = 'x'.repeat(5000)
    m.store.put('service/big', {big})
    await waitFor(
      'big everywhere',
      () => w1.store.get('service/big') !== undefined && w2.store.get('service/big') !== undefined,
      1000,
    )
  })

  it('a node that was down gets everything it missed', async () => {
    const {port, addr} = w2
    await lab.stop(w2)
    m.store.put('network/missed', {name: 'missed'})
    m.store.put('task/missed', {id: 'missed', nodeId: 'w1'})
    await waitFor('task on w1', () => w1.store.get('task/missed') !== undefined, 1000)
    w1.store.put('taskstatus/missed', {taskId: 'missed', nodeId: 'w1', state: 'running', restarts: 0, updatedAt: 1})
    m.store.delete('service/big')
    await new Promise((r) => setTimeout(r, 200))
    w2 = await lab.start('w2', addr, port, {store: lab.openStore('w2')})
    await waitFor(
      'w2 catches up',
      () =>
        w2.store.get('network/missed') !== undefined &&
        w2.store.get('taskstatus/missed') !== undefined &&
        w2.store.get('service/big') === undefined,
      3000,
    )
    // The same keys and versions; the order entries arrived in (by the epidemic or by push-pull) does not matter.
    const sorted = (d: object) => JSON.stringify(Object.entries(d).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    await waitFor('same digest', () => sorted(w2.store.digest()) === sorted(m.store.digest()), 3000)
  })

  it('garbage and wrongly keyed packets are dropped and counted, nothing crashes', async () => {
    const before = {...m.gossip.stats}
    const udp = dgram.createSocket('udp4')
    const send = (b: Buffer) => new Promise<void>((r) => udp.send(b, m.port, m.addr, () => r()))
    await send(Buffer.from('garbage'))
    await send(Buffer.from([1, 0, 1, 2, 3]))
    await send(
      new Keyring(generateKey()).seal(
        encodeMessage({
          t: 'updates',
          from: 'evil',
          epoch: 1,
          seq: 1,
          ts: Date.now(),
          entries: [{key: 'network/evil', value: 1, version: {clock: 1e9, node: 'evil'}}],
        }),
      ),
    )
    await send(new Keyring(lab.clusterKey).seal(Buffer.from('{"t":"updates","from":"x","entries":[{"key":5}]}')))
    await new Promise<void>((r) => udp.close(() => r()))
    // TCP too: a bad frame, a frame that says it is huge, and a join frame of junk.
    for (const bytes of [
      Buffer.from([0, 0, 0, 3, 9, 9, 9]),
      Buffer.from([0xff, 0xff, 0xff, 0xff]),
      Buffer.from([0, 0, 0, 2, JOIN_FRAME, 0x7b]),
    ]) {
      const s = net.connect(m.port, m.addr)
      s.resume()
      await new Promise<void>((r) => s.once('connect', () => r()))
      s.end(bytes)
      await new Promise<void>((r) => {
        s.once('close', () => r())
        s.on('error', () => r())
      })
    }
    await waitFor(
      'counted',
      () => m.gossip.stats.malformed >= before.malformed + 4 && m.gossip.stats.decryptFailed >= before.decryptFailed + 1,
      1000,
    )
    assert.equal(m.store.get('network/evil'), undefined)
    assert.equal(m.gossip.stats.joinsRefused, before.joinsRefused + 1)
    // Still working.
    m.store.put('service/after-garbage', 1)
    await waitFor('still gossiping', () => w2.store.get('service/after-garbage') === 1, 1000)
  })
})
