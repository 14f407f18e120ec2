import assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Gossip} from '../../src/gossip/gossip.js'
import {generateIdentity} from '../../src/gossip/identity.js'
import {requestJoin} from '../../src/gossip/join.js'
import {generateKey, Keyring} from '../../src/gossip/keyring.js'
import {generateToken, rotateToken} from '../../src/gossip/token.js'
import {encodeMessage} from '../../src/gossip/codec.js'
import {JOIN_FRAME} from '../../src/gossip/transport.js'
import type {Json} from '../../src/store/json.js'
import {Store} from '../../src/store/store.js'
import type {NodeRecord} from '../../src/model/types.js'

// Everything here talks to 127.0.0.1 only.
const HOST = '127.0.0.1'
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmnet-gossip-'))
const identity = generateIdentity()
const token = generateToken(identity.publicKey)
const clusterKey = generateKey()

type Node = {id: string; store: Store; gossip: Gossip; port: number}
const running = new Set<Node>()

/** A port free for both TCP and UDP right now (the joiner must name its port before binding). */
async function freePort(): Promise<number> {
  for (;;) {
    const srv = net.createServer()
    await new Promise<void>((r) => srv.listen(0, HOST, r))
    const port = (srv.address() as net.AddressInfo).port
    const udp = dgram.createSocket('udp4')
    const ok = await new Promise<boolean>((r) => {
      udp.once('error', () => r(false))
      udp.bind(port, HOST, () => r(true))
    })
    await new Promise<void>((r) => srv.close(() => r()))
    if (ok) {
      await new Promise<void>((r) => udp.close(() => r()))
      return port
    }
  }
}

function openStore(id: string): Store {
  return new Store(path.join(root, id), id, {reapIntervalMs: 0}).open()
}

async function startNode(id: string, port: number, key: Buffer, manager = false): Promise<Node> {
  const store = openStore(id)
  const gossip = new Gossip({
    store,
    nodeId: id,
    bindAddr: HOST,
    port,
    key,
    pushPullIntervalMs: 300,
    join: manager ? {identity: identity.publicKey, tokens: () => [{token, role: 'worker'}]} : undefined,
  })
  const bound = await gossip.start()
  const node = {id, store, gossip, port: bound}
  running.add(node)
  return node
}

async function stopNode(n: Node): Promise<void> {
  running.delete(n)
  await n.gossip.stop()
  n.store.close()
}

async function waitFor(what: string, ok: () => boolean, ms: number): Promise<number> {
  const t0 = Date.now()
  while (!ok()) {
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
  return Date.now() - t0
}

function joinNode(id: string, port: number, managerPort: number, tok: string = token.text) {
  return requestJoin({
    manager: `${HOST}:${managerPort}`,
    token: tok,
    node: {id, name: id, addr: HOST, gossipPort: port, mtu: 1500},
  })
}

describe('gossip on 127.0.0.1', () => {
  let m: Node
  let w1: Node
  let w2: Node

  before(async () => {
    m = await startNode('m', 0, clusterKey, true)
    const rec: NodeRecord = {
      id: 'm',
      name: 'm',
      addr: HOST,
      gossipPort: m.port,
      role: 'manager',
      state: 'ready',
      mtu: 1500,
      joinedAt: 1,
    }
    m.store.put('node/m', rec)
    m.store.put('cluster', {id: 'c1', createdAt: 1, dataPathPort: 4789, defaultAddrPool: '10.0.0.0/8', subnetSize: 24})
    m.store.put('network/ingress', {id: 'ingress', name: 'ingress', vni: 4096, subnet: '10.0.0.0/24'})
  })

  after(async () => {
    for (const n of [...running]) await stopNode(n)
    fs.rmSync(root, {recursive: true, force: true})
  })

  it('a joiner with the right token gets the key and the whole state', async () => {
    for (const id of ['w1', 'w2']) {
      const port = await freePort()
      const r = await joinNode(id, port, m.port)
      assert.deepEqual(r.key, clusterKey)
      assert.equal(r.role, 'worker')
      const keys = r.entries.map((e) => e.key).sort()
      assert.deepEqual(
        keys.filter((k) => !k.startsWith('node/')),
        ['cluster', 'network/ingress'],
      )
      assert.ok(keys.includes(`node/${id}`) && keys.includes('node/m'))
      const s = openStore(id)
      s.merge(r.entries)
      s.close()
      const n = await startNode(id, port, r.key)
      if (id === 'w1') w1 = n
      else w2 = n
    }
    assert.deepEqual(w2.store.get('network/ingress'), m.store.get('network/ingress'))
    // w1 joined before w2: it learns of w2 by gossip.
    await waitFor('w1 learns w2', () => w1.store.get('node/w2') !== undefined, 1000)
    assert.equal(m.gossip.stats.joinsAccepted, 2)
  })

  it('a wrong token is refused and says so', async () => {
    const wrongSecret = rotateToken(token).text
    await assert.rejects(joinNode('bad', 1, m.port, wrongSecret), {message: 'join refused: invalid join token'})
    const otherCluster = generateToken(generateIdentity().publicKey).text
    await assert.rejects(joinNode('bad', 1, m.port, otherCluster), {message: 'join refused: invalid join token'})
    assert.equal(m.store.get('node/bad'), undefined)
    await assert.rejects(joinNode('m', 1, m.port), {message: 'join refused: node id m is already in use'})
    assert.equal(m.gossip.stats.joinsRefused, 3)
  })

  it('an unreachable manager is a clear error with the address', async () => {
    const port = await freePort()
    await assert.rejects(joinNode('x', 1, port), (e: Error) =>
      e.message.startsWith(`cannot reach the manager at ${HOST}:${port}:`),
    )
  })

  it('a put on one node reaches the other two within a second', async () => {
    for (const [src, a, b] of [
      [m, w1, w2],
      [w1, m, w2],
      [w2, w1, m],
    ] as const) {
      const key = `service/from-${src.id}`
      const value: Json = {name: src.id, n: Math.random()}
      src.store.put(key, value)
      await waitFor(`${key} everywhere`, () => a.store.get(key) !== undefined && b.store.get(key) !== undefined, 1000)
      assert.deepEqual(a.store.get(key), value)
      assert.deepEqual(b.store.get(key), value)
    }
    w1.store.delete('service/from-m')
    await waitFor(
      'delete everywhere',
      () => m.store.get('service/from-m') === undefined && w2.store.get('service/from-m') === undefined,
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
    const port = w2.port
    await stopNode(w2)
    m.store.put('network/missed', {name: 'missed'})
    w1.store.put('task/missed', {id: 't'})
    w1.store.delete('service/from-w1')
    await new Promise((r) => setTimeout(r, 200))
    w2 = await startNode('w2', port, clusterKey)
    await waitFor(
      'w2 catches up',
      () =>
        w2.store.get('network/missed') !== undefined &&
        w2.store.get('task/missed') !== undefined &&
        w2.store.get('service/from-w1') === undefined,
      2000,
    )
    assert.deepEqual(w2.store.digest(), m.store.digest())
  })

  it('garbage and wrongly keyed packets are dropped and counted, nothing crashes', async () => {
    const before = {...m.gossip.stats}
    const udp = dgram.createSocket('udp4')
    const send = (b: Buffer) => new Promise<void>((r) => udp.send(b, m.port, HOST, () => r()))
    await send(Buffer.from('garbage'))
    await send(Buffer.from([1, 0, 1, 2, 3]))
    await send(
      new Keyring(generateKey()).seal(
        encodeMessage({
          t: 'updates',
          from: 'evil',
          entries: [{key: 'network/evil', value: 1, version: {clock: 1e9, node: 'evil'}}],
        }),
      ),
    )
    await send(new Keyring(clusterKey).seal(Buffer.from('{"t":"updates","from":"x","entries":[{"key":5}]}')))
    await new Promise<void>((r) => udp.close(() => r()))
    // TCP too: a bad frame, a frame that says it is huge, and a join frame of junk.
    for (const bytes of [
      Buffer.from([0, 0, 0, 3, 9, 9, 9]),
      Buffer.from([0xff, 0xff, 0xff, 0xff]),
      Buffer.from([0, 0, 0, 2, JOIN_FRAME, 0x7b]),
    ]) {
      const s = net.connect(m.port, HOST)
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
    w2.store.put('service/after-garbage', 1)
    await waitFor('still gossiping', () => m.store.get('service/after-garbage') === 1, 1000)
  })
})
