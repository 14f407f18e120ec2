import assert from 'node:assert/strict'
import * as net from 'node:net'
import {after, before, describe, it} from 'node:test'
import {FrameReader, MAX_FRAME, MAX_UNAUTHENTICATED_FRAME} from '../../src/gossip/frame.js'
import {MAX_CONNS, MAX_CONNS_PER_ADDR} from '../../src/gossip/transport.js'
import {GossipLab, sealAs, signedEntry, waitFor, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()

function frameOf(payload: Buffer): Buffer {
  const head = Buffer.alloc(4)
  head.writeUInt32BE(payload.length)
  return Buffer.concat([head, payload])
}

/** Connects from `from` (a loopback address of our own) and resolves once connected. */
async function connect(to: LabNode, from: string): Promise<net.Socket> {
  const s = net.connect({host: to.addr, port: to.port, localAddress: from})
  s.on('error', () => undefined)
  await new Promise<void>((r) => s.once('connect', () => r()))
  return s
}

function closed(s: net.Socket): Promise<void> {
  return new Promise((r) => {
    if (s.destroyed || s.readableEnded) r()
    s.once('close', () => r())
  })
}

describe('gossip TCP before and after authentication', () => {
  let m: LabNode
  let w: LabNode

  before(async () => {
    m = await lab.manager()
    w = await lab.worker('w', m)
  })

  after(() => lab.close())

  it('a length prefix over 64 KiB before authentication closes the connection', async () => {
    const before = w.gossip.stats.malformed
    const s = await connect(w, lab.newAddr())
    s.resume()
    const head = Buffer.alloc(4)
    head.writeUInt32BE(MAX_UNAUTHENTICATED_FRAME + 1)
    s.write(head)
    await waitFor('closed by the agent', () => s.destroyed || s.readableEnded, 2000)
    assert.equal(w.gossip.stats.malformed, before + 1)
  })

  it(`the ${MAX_CONNS_PER_ADDR + 1}th connection from one address is refused`, async () => {
    const from = lab.newAddr()
    const before = w.gossip.stats.connsRefused
    const held: net.Socket[] = []
    try {
      for (let i = 0; i < MAX_CONNS_PER_ADDR; i++) held.push(await connect(w, from))
      const extra = await connect(w, from)
      held.push(extra)
      await closed(extra)
      assert.equal(w.gossip.stats.connsRefused, before + 1)
      assert.ok(held.slice(0, MAX_CONNS_PER_ADDR).every((s) => !s.destroyed && !s.readableEnded))
      // Another address is still served.
      const other = await connect(w, lab.newAddr())
      held.push(other)
      await new Promise((r) => setTimeout(r, 100))
      assert.ok(!other.destroyed && !other.readableEnded)
      assert.equal(w.gossip.stats.connsRefused, before + 1)
    } finally {
      for (const s of held) s.destroy()
    }
  })

  it(`past ${MAX_CONNS} connections in all, the next one is refused whatever its address`, async () => {
    const before = w.gossip.stats.connsRefused
    const held: net.Socket[] = []
    try {
      for (let a = 0; held.length < MAX_CONNS; a++) {
        const from = `127.0.1.${a + 1}`
        for (let i = 0; i < MAX_CONNS_PER_ADDR && held.length < MAX_CONNS; i++) held.push(await connect(w, from))
      }
      const extra = await connect(w, '127.0.2.1')
      held.push(extra)
      await closed(extra)
      assert.equal(w.gossip.stats.connsRefused, before + 1)
    } finally {
      for (const s of held) s.destroy()
    }
    // Once the agent has seen them close, connections are served again.
    let served = false
    for (let i = 0; i < 50 && !served; i++) {
      await new Promise((r) => setTimeout(r, 100))
      const s = net.connect({host: w.addr, port: w.port, localAddress: '127.0.2.2'})
      s.on('error', () => undefined)
      served = await new Promise<boolean>((r) => {
        s.once('connect', () => setTimeout(() => r(!s.destroyed && !s.readableEnded), 100))
        setTimeout(() => r(false), 1000)
      })
      s.destroy()
    }
    assert.ok(served)
  })

  it('a 10 MiB frame sent in small pieces after the authenticating frame arrives whole', async () => {
    const value = {id: 'huge', blob: 'z'.repeat(10 * 1024 * 1024)}
    const e = signedEntry(lab, 'm', {key: 'service/huge', value, version: {clock: m.store.clock + 1, node: 'm'}})
    const now = Date.now()
    const h = {from: 'm', epoch: now, ts: now}
    const bytes = Buffer.concat([
      frameOf(sealAs(lab.clusterKey, {t: 'open', ...h, seq: 1}, lab.keys.get('m')!)),
      frameOf(sealAs(lab.clusterKey, {t: 'updates', ...h, seq: 2, entries: [e]}, lab.keys.get('m')!)),
    ])
    assert.ok(bytes.length > MAX_UNAUTHENTICATED_FRAME * 100)
    const s = await connect(w, lab.newAddr())
    s.setNoDelay(true)
    s.resume()
    for (let i = 0; i < bytes.length; i += 4096) {
      if (!s.write(bytes.subarray(i, i + 4096))) await new Promise((r) => s.once('drain', r))
    }
    s.end()
    await waitFor('merged', () => w.store.get('service/huge') !== undefined, 20_000)
    assert.deepEqual(w.store.get('service/huge'), value)
    s.destroy()
  })

  it('frame reassembly is linear: 10 MiB in 64-byte chunks, every byte in place', {timeout: 60_000}, () => {
    // The old reader copied everything held on every chunk: 10 MiB in 64-byte
    // chunks is ~800 GB of copying, which never finishes within the timeout.
    const payload = Buffer.alloc(10 * 1024 * 1024)
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE(i, i)
    const stream = Buffer.concat([frameOf(payload), frameOf(Buffer.from('next'))])
    const r = new FrameReader(MAX_FRAME)
    const out: Buffer[] = []
    for (let i = 0; i < stream.length; i += 64) {
      r.append(stream.subarray(i, i + 64))
      for (let f = r.next(); f; f = r.next()) out.push(f)
    }
    assert.equal(out.length, 2)
    assert.ok((out[0] as Buffer).equals(payload))
    assert.equal((out[1] as Buffer).toString(), 'next')
    assert.equal(r.buffered, 0)
  })
})
