import assert from 'node:assert/strict'
import * as net from 'node:net'
import {after, before, describe, it} from 'node:test'
import {JOIN_FRAME} from '../../src/gossip/transport.js'
import {certifyNode, generateIdentity, generateNodeKey, signWith} from '../../src/gossip/identity.js'
import type {Entry} from '../../src/store/entry.js'
import {requestJoin} from '../../src/gossip/join.js'
import type {NodeRecord} from '../../src/model/types.js'
import {GossipLab, sealAs, sendUdp, signedEntry, sleep, waitFor, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()

describe('gossip: each writer writes only what is its own', () => {
  let m: LabNode
  let w1: LabNode
  let w2: LabNode
  let seq = 0

  before(async () => {
    m = await lab.manager()
    w1 = await lab.worker('w1', m)
    w2 = await lab.worker('w2', m)
    await waitFor('w1 knows w2', () => w1.store.get('node/w2') !== undefined, 2000)
  })

  after(() => lab.close())

  /** Sends entries to the manager as any cluster member can: sealed with the cluster key, signed by w2 (which relays them). */
  async function sendToManager(entries: Entry[]) {
    const now = Date.now()
    await sendUdp(
      sealAs(lab.clusterKey, {t: 'updates', from: 'w2', epoch: now, seq: ++seq, ts: now, entries}, lab.keys.get('w2')!),
      m,
    )
  }

  it('a worker holding the cluster key cannot write desired state', async () => {
    const before = m.gossip.stats.unauthorised
    // Through its own store and gossip, as a modified agent would.
    w1.store.put('service/evil', {id: 'evil'})
    w1.store.put('network/evil', {id: 'evil'})
    w1.store.put('newkind/evil', {id: 'evil'})
    await sleep(300)
    await m.gossip.pushPull({id: 'w1', addr: w1.addr, port: w1.port})
    assert.equal(m.store.get('service/evil'), undefined)
    assert.equal(m.store.get('network/evil'), undefined)
    assert.equal(w2.store.get('service/evil'), undefined)
    assert.equal(m.store.get('newkind/evil'), undefined)
    assert.ok(m.gossip.stats.unauthorised >= before + 3)
    // A kind this version does not know yet is taken from the manager (a newer one may add kinds).
    m.store.put('newkind/x', {id: 'x'})
    await waitFor('w2 takes it', () => w2.store.get('newkind/x') !== undefined, 1000)
    assert.match(m.gossip.lastRefusal ?? '', /only a manager writes/)
    // w1 would offer them at every push-pull (every 300 ms here), each refused and counted: the
    // tests below count exactly what they send.
    w1.store.forget(['service/evil', 'network/evil', 'newkind/evil'])
  })

  it("an entry that names the manager as writer but is not signed with the manager's key is refused", async () => {
    const before = m.gossip.stats.unauthorised
    // Signed by w1 (a certified node), claiming to be m's write.
    const forged = signedEntry(lab, 'w1', {
      key: 'service/forged',
      value: {id: 'forged'},
      version: {clock: m.store.clock + 5, node: 'm'},
    })
    const unsigned = {key: 'service/unsigned', value: {id: 'u'}, version: {clock: m.store.clock + 5, node: 'm'}}
    await sendToManager([forged, unsigned])
    await waitFor('refused', () => m.gossip.stats.unauthorised === before + 2, 1000)
    assert.equal(m.store.get('service/forged'), undefined)
    assert.equal(m.store.get('service/unsigned'), undefined)
  })

  it('a node key without a certificate from the cluster identity writes nothing', async () => {
    const ghost = generateNodeKey()
    lab.keys.set('ghost', ghost)
    const rec: NodeRecord = {
      id: 'ghost',
      name: 'ghost',
      addr: '127.0.0.77',
      gossipPort: 1,
      role: 'manager',
      state: 'ready',
      mtu: 1500,
      joinedAt: 1,
      pubKey: ghost.publicKey,
      // Certified by another cluster's identity.
      cert: certifyNode(generateIdentity(), 'ghost', ghost.publicKey, 'manager'),
    }
    const before = m.gossip.stats.unauthorised
    const c = m.store.clock
    await sendToManager([
      signedEntry(lab, 'ghost', {key: 'node/ghost', value: rec, version: {clock: c + 1, node: 'ghost'}}),
      signedEntry(lab, 'ghost', {key: 'service/ghost', value: {id: 'g'}, version: {clock: c + 2, node: 'ghost'}}),
    ])
    await waitFor('refused', () => m.gossip.stats.unauthorised === before + 2, 1000)
    assert.equal(m.store.get('node/ghost'), undefined)
    assert.equal(m.store.get('service/ghost'), undefined)
  })

  it("a worker writes its own node record, not another's, and cannot make itself a manager", async () => {
    const own = m.store.get<NodeRecord>('node/w1') as NodeRecord
    const other = m.store.get<NodeRecord>('node/w2') as NodeRecord
    const before = m.gossip.stats.unauthorised
    const c = m.store.clock
    await sendToManager([
      signedEntry(lab, 'w1', {key: 'node/w2', value: {...other, addr: '127.0.0.200'}, version: {clock: c + 1, node: 'w1'}}),
      signedEntry(lab, 'w1', {key: 'node/w1', value: {...own, role: 'manager'}, version: {clock: c + 2, node: 'w1'}}),
      // Moving onto w2's address would take its traffic.
      signedEntry(lab, 'w1', {key: 'node/w1', value: {...own, addr: other.addr}, version: {clock: c + 3, node: 'w1'}}),
    ])
    await waitFor('refused', () => m.gossip.stats.unauthorised === before + 3, 1000)
    assert.equal(m.store.get<NodeRecord>('node/w1')?.addr, own.addr)
    assert.equal(m.store.get<NodeRecord>('node/w2')?.addr, other.addr)
    assert.equal(m.store.get<NodeRecord>('node/w1')?.role, 'worker')
    // Its own record, unchanged role: taken.
    w1.store.put('node/w1', {...(w1.store.get<NodeRecord>('node/w1') as NodeRecord), mtu: 1450})
    await waitFor('own record taken', () => m.store.get<NodeRecord>('node/w1')?.mtu === 1450, 2000)
  })

  it("a worker cannot set its own or another node's availability or labels (nodespec/): a manager can", async () => {
    const before = m.gossip.stats.unauthorised
    const c = m.store.clock
    await sendToManager([
      // Undraining itself, or labelling itself into a service's constraint.
      signedEntry(lab, 'w1', {
        key: 'nodespec/w1',
        value: {id: 'w1', availability: 'active', labels: {gpu: 'yes'}},
        version: {clock: c + 1, node: 'w1'},
      }),
      signedEntry(lab, 'w1', {
        key: 'nodespec/w2',
        value: {id: 'w2', availability: 'drain', labels: {}},
        version: {clock: c + 2, node: 'w1'},
      }),
    ])
    await waitFor('refused', () => m.gossip.stats.unauthorised === before + 2, 1000)
    assert.equal(m.store.get('nodespec/w1'), undefined)
    assert.equal(m.store.get('nodespec/w2'), undefined)
    assert.match(m.gossip.lastRefusal ?? '', /only a manager writes nodespec\//)
    m.store.put('nodespec/w1', {id: 'w1', availability: 'drain', labels: {zone: 'a'}})
    await waitFor("w2 takes the manager's", () => w2.store.get('nodespec/w1') !== undefined, 2000)
  })

  it('a worker writes the status of its own tasks only', async () => {
    m.store.put('task/a', {id: 'a', nodeId: 'w1'})
    m.store.put('task/b', {id: 'b', nodeId: 'w2'})
    await waitFor('tasks on w1', () => w1.store.get('task/b') !== undefined, 1000)
    const before = m.gossip.stats.unauthorised
    w1.store.put('taskstatus/a', {taskId: 'a', nodeId: 'w1', state: 'running', restarts: 0, updatedAt: 1})
    w1.store.put('taskstatus/b', {taskId: 'b', nodeId: 'w1', state: 'failed', restarts: 0, updatedAt: 1})
    await waitFor('own status taken', () => m.store.get('taskstatus/a') !== undefined, 1000)
    await sleep(200)
    assert.equal(m.store.get('taskstatus/b'), undefined)
    assert.ok(m.gossip.stats.unauthorised > before)
    // w2's real status of b is taken; w1 then cannot overwrite or delete it.
    w2.store.put('taskstatus/b', {taskId: 'b', nodeId: 'w2', state: 'running', restarts: 0, updatedAt: 2})
    await waitFor('w2 status taken', () => m.store.get('taskstatus/b') !== undefined, 2000)
    const c = m.store.clock
    await sendToManager([
      signedEntry(lab, 'w1', {key: 'taskstatus/b', value: null, version: {clock: c + 3, node: 'w1'}, deletedAt: Date.now()}),
    ])
    await sleep(200)
    assert.deepEqual(m.store.get<{nodeId: string}>('taskstatus/b')?.nodeId, 'w2')
  })

  it('attachments are written by the manager; their status only by the node whose namespace it is', async () => {
    const before = m.gossip.stats.unauthorised
    w1.store.put('attachment/evil', {id: 'evil', nodeId: 'w1'})
    await sleep(300)
    await m.gossip.pushPull({id: 'w1', addr: w1.addr, port: w1.port})
    assert.equal(m.store.get('attachment/evil'), undefined)
    assert.ok(m.gossip.stats.unauthorised > before)
    m.store.put('attachment/x', {id: 'x', nodeId: 'w1'})
    await waitFor('attachment reaches the workers', () => w2.store.get('attachment/x') !== undefined, 2000)
    w2.store.put('attachmentstatus/x', {id: 'x', nodeId: 'w2', state: 'gone', updatedAt: 1})
    await waitFor("w2's refused", () => /attachment(status\/)? ?x (is not on|belongs to)/.test(m.gossip.lastRefusal ?? ''), 3000)
    assert.equal(m.store.get('attachmentstatus/x'), undefined)
    w1.store.put('attachmentstatus/x', {id: 'x', nodeId: 'w1', state: 'gone', updatedAt: 2})
    await waitFor("w1's status taken", () => m.store.get<{nodeId: string}>('attachmentstatus/x')?.nodeId === 'w1', 2000)
  })

  it("a node's drain acknowledgements are its own: another's, a manager's included, are refused", async () => {
    const before = m.gossip.stats.unauthorised
    const tasks = ['0123456789abcdef01234567']
    // w1 saying w2's maps left a task out would end a stop w2's maps never made.
    w1.store.put('drained/w2', {tasks})
    await sleep(300)
    await m.gossip.pushPull({id: 'w1', addr: w1.addr, port: w1.port})
    assert.equal(m.store.get('drained/w2'), undefined)
    assert.ok(m.gossip.stats.unauthorised > before)
    assert.match(m.gossip.lastRefusal ?? '', /node w1 may not write drained\/w2/)
    m.store.put('drained/w1', {tasks})
    await sleep(300)
    await m.gossip.pushPull({id: 'w2', addr: w2.addr, port: w2.port})
    assert.equal(w2.store.get('drained/w1'), undefined, "the manager's word for w1 is refused too")
    w2.store.put('drained/w2', {tasks})
    await waitFor("w2's own record taken", () => m.store.get('drained/w2') !== undefined, 2000)
    assert.deepEqual(m.store.get('drained/w2'), {tasks})
    w1.store.forget(['drained/w2'])
    m.store.forget(['drained/w1'])
  })

  it("a join cannot take over a live node's id or address", async () => {
    const join = (id: string, addr: string) =>
      requestJoin({
        manager: {addr: m.addr, port: m.port},
        token: lab.token,
        node: {id, name: id, addr, gossipPort: 1, mtu: 1500, pubKey: generateNodeKey().publicKey},
      })
    const w1rec = m.store.get<NodeRecord>('node/w1') as NodeRecord
    await assert.rejects(join('w1', '127.0.0.150'), {message: 'join refused: node id w1 is already in use'})
    await assert.rejects(join('new', w1rec.addr), {message: `join refused: address ${w1rec.addr} is already in use by node w1`})
    assert.deepEqual(m.store.get('node/w1'), w1rec)
    assert.equal(m.store.get('node/new'), undefined)
  })
})

describe('join: the manager proves the identity, not just names it', () => {
  it('a host with the public identity but not its private key is refused before the joiner says anything', async () => {
    const lab2 = new GossipLab()
    const impostorKey = generateIdentity()
    let proofSeen = false
    const frames: Buffer[] = []
    const server = net.createServer((s) => {
      let buf = Buffer.alloc(0)
      s.on('error', () => undefined)
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c])
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const f = buf.subarray(4, 4 + buf.readUInt32BE(0))
          buf = buf.subarray(4 + f.length)
          frames.push(f)
          const x = JSON.parse(f.subarray(1).toString()) as {t: string; cnonce?: string}
          if (x.t === 'proof') proofSeen = true
          if (x.t !== 'hello') continue
          // Everything public is right; the signature cannot be.
          const challenge = Buffer.concat([
            Buffer.from([JOIN_FRAME]),
            Buffer.from(
              JSON.stringify({
                t: 'challenge',
                nonce: Buffer.alloc(32, 7).toString('base64'),
                identity: lab2.identity.publicKey,
                sig: signWith(impostorKey.privateKey, 'anything'),
              }),
            ),
          ])
          const head = Buffer.alloc(4)
          head.writeUInt32BE(challenge.length)
          s.write(Buffer.concat([head, challenge]))
        }
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as net.AddressInfo).port
    try {
      await assert.rejects(
        requestJoin({
          manager: {addr: '127.0.0.1', port},
          token: lab2.token,
          node: {id: 'j', name: 'j', addr: '127.0.0.3', gossipPort: 1, mtu: 1500, pubKey: generateNodeKey().publicKey},
          timeoutMs: 2000,
        }),
        /could not prove it holds the identity/,
      )
      await sleep(100)
      assert.equal(proofSeen, false, 'the joiner sent nothing about itself')
      assert.equal(frames.length, 1)
    } finally {
      await new Promise<void>((r) => server.close(() => r()))
      await lab2.close()
    }
  })
})
