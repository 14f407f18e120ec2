// Garbage at a real agent's gossip port, from the lab's client host: random
// datagrams, truncated sealed packets, a replayed packet, a stale one, a
// sealed message carrying a forged entry, and over TCP random bytes, frames
// over the limit (before and after authenticating) and truncated frames. The
// node's state does not change, every drop is counted (in /info and in the
// Prometheus metrics), the node stays ready, nothing is counted as a handler
// error, and real gossip still flows afterwards.
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, test} from 'node:test'
import {AgentClient} from '../../src/agent/client.js'
import {encodeMessage, type Message} from '../../src/gossip/codec.js'
import {Keyring} from '../../src/gossip/keyring.js'
import {sealMessage} from '../../src/gossip/transport.js'
import type {GossipStats} from '../../src/gossip/stats.js'
import {nodeAddress} from '../../src/lab/topology.js'
import {readDurableState} from '../../src/store/durable.js'
import {eventually, json, ok, sh, stateOn} from './helpers.js'
import {withLab} from './lab.js'

const statsOf = async (n: string) => (await new AgentClient(n).get<{gossip: GossipStats}>('/info')).gossip
/** Every key and version n2 holds on disk. */
const onDisk = () =>
  readDurableState('/var/lib/swarmnet/n2/store')!
    .entries.map((e) => `${e.key}@${e.version.clock}/${e.version.node}`)
    .sort()
    .join('\n')

// Runs in the client's namespace: sends what the test made, UDP then TCP, one connection at a time.
const SENDER = `
const fs = require('fs'), dgram = require('dgram'), net = require('net')
const [file, host, port] = process.argv.slice(2)
const p = JSON.parse(fs.readFileSync(file, 'utf8'))
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
;(async () => {
  const u = dgram.createSocket('udp4')
  for (const d of p.udp) { await new Promise((r) => u.send(Buffer.from(d, 'base64'), +port, host, r)); await sleep(1) }
  u.close()
  for (const c of p.tcp) {
    await new Promise((resolve) => {
      const s = net.connect(+port, host, () => {
        for (const chunk of c) s.write(Buffer.from(chunk, 'base64'))
        s.end()
      })
      s.on('error', resolve)
      s.on('close', resolve)
      s.resume()
      setTimeout(() => { s.destroy(); resolve() }, 5000)
    })
  }
})()
`

describe('garbage at the gossip port changes nothing and is counted', {timeout: 600_000}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmnet-garbage-'))
  withLab(['--nodes', '2'], {beforeDown: () => rmSync(dir, {recursive: true, force: true})})

  test('random, truncated, replayed, stale and forged packets, and bad TCP frames, at n2:7946', async () => {
    ok('n1', ['network', 'create', 'g1'])
    await eventually('g1 on n2', () => json<{name: string}[]>('n2', ['network', 'ls']).some((n) => n.name === 'g1'))
    await new Promise((r) => setTimeout(r, 1500))
    const stateBefore = onDisk()
    const before = await statsOf('n2')

    // What a member holds (the test runs as root, like an agent): the cluster key, to make packets that open, and
    // n1's node key, to sign them as n1 does (under an epoch of their own: n1's own window is not touched).
    const cfg = JSON.parse(readFileSync('/var/lib/swarmnet/n1/node.json', 'utf8')) as {
      nodeId: string
      key: string
      keyId: number
      nodeKey: {privateKey: string}
    }
    const ring = new Keyring(Buffer.from(cfg.key, 'base64'), cfg.keyId)
    let seq = 1
    const epoch = Date.now()
    const sealed = (body: object, ts = Date.now()) =>
      sealMessage(ring, cfg.nodeKey.privateKey, {...body, from: cfg.nodeId, epoch, seq: seq++, ts} as Message)

    const udp: Buffer[] = []
    let expectMalformed = 0
    let expectDecrypt = 0
    for (let i = 0; i < 200; i++) {
      const b = randomBytes(1 + Math.floor(Math.random() * 1400))
      if (i % 2 === 0) {
        b[0] = 2 + (b[0]! % 250) // not our envelope version
        expectMalformed++
      } else {
        b[0] = 1 // looks like an envelope: does not open
        expectDecrypt++
      }
      udp.push(b)
    }
    const whole = sealed({t: 'updates', entries: []})
    for (let i = 0; i < 100; i++) {
      udp.push(whole.subarray(0, 1 + Math.floor(Math.random() * (whole.length - 1))))
      expectDecrypt++
    }
    // A forged entry (signed by nobody) in a message that opens: refused; the same packet again: replayed.
    const forged = sealed({
      t: 'updates',
      entries: [{key: 'network/forged', value: {id: 'forged', name: 'forged'}, version: {clock: 1e9, node: cfg.nodeId}}],
    })
    udp.push(forged, forged, forged)
    // Sealed ten minutes ago: stale.
    udp.push(sealed({t: 'ping', n: 1}, Date.now() - 600_000))
    // Sealed with the cluster key but signed by no member's key (a sender nobody certified): refused before freshness.
    udp.push(
      ring.seal(
        Buffer.concat([
          Buffer.alloc(64),
          encodeMessage({t: 'ping', n: 1, from: 'garbage-sender', epoch, seq: seq++, ts: Date.now()} as Message),
        ]),
      ),
    )

    const tcp: Buffer[][] = []
    for (let i = 0; i < 10; i++) tcp.push([randomBytes(1 + Math.floor(Math.random() * 3000))])
    const u32 = (n: number) => {
      const b = Buffer.alloc(4)
      b.writeUInt32BE(n)
      return b
    }
    for (let i = 0; i < 3; i++) tcp.push([u32(0xffffff00), randomBytes(100)]) // over the 64 KiB unauthenticated limit
    for (let i = 0; i < 3; i++) tcp.push([u32(1000), randomBytes(10)]) // truncated
    const open = sealed({t: 'open'})
    for (let i = 0; i < 2; i++) tcp.push([u32(open.length), open, u32(30 * 1024 * 1024), randomBytes(100)]) // over 20 MiB after the open
    const file = join(dir, 'packets.json')
    writeFileSync(
      file,
      JSON.stringify({udp: udp.map((b) => b.toString('base64')), tcp: tcp.map((c) => c.map((b) => b.toString('base64')))}),
    )
    const sender = join(dir, 'send.cjs')
    writeFileSync(sender, SENDER)
    const r = sh(
      ['nsenter', '--net=/run/netns/sn-lab-client', '--', process.execPath, sender, file, nodeAddress(2), '7946'],
      {},
      120_000,
    )
    assert.equal(r.code, 0, r.stderr)

    // UDP over a lab link can lose a datagram under load: at least all but a few of each kind.
    for (let i = 0; i < 50 && (await statsOf('n2')).decryptFailed - before.decryptFailed < expectDecrypt - 5; i++)
      await new Promise((r) => setTimeout(r, 200))
    const after = await statsOf('n2')
    const delta = (k: keyof GossipStats) => after[k] - before[k]
    console.log(
      `# sent ${udp.length} datagrams and ${tcp.length} connections: malformed +${delta('malformed')}, decryptFailed +${delta('decryptFailed')}, replayed +${delta('replayed')}, badSender +${delta('badSender')}, stale +${delta('stale')}, unauthorised +${delta('unauthorised')}, handlerErrors +${delta('handlerErrors')}`,
    )
    assert.ok(delta('decryptFailed') >= expectDecrypt - 5, `decryptFailed +${delta('decryptFailed')} of ${expectDecrypt}`)
    // Random UDP with another version byte, plus the 8 bad TCP frames (oversized, truncated, oversized after open); random TCP adds some.
    assert.ok(
      delta('malformed') >= expectMalformed - 5 + 8,
      `malformed +${delta('malformed')} of at least ${expectMalformed + 8}`,
    )
    assert.ok(delta('replayed') >= 1, 'the forged packet played again is refused as replayed')
    assert.ok(delta('badSender') >= 1, "the packet no member's key signed is refused")
    assert.ok(delta('stale') >= 1, 'the old packet is refused as stale')
    assert.ok(delta('unauthorised') >= 1, 'the forged entry is refused')
    assert.equal(delta('handlerErrors'), 0)
    assert.equal(onDisk(), stateBefore, "n2's state is unchanged")
    assert.ok(!json<{name: string}[]>('n2', ['network', 'ls']).some((n) => n.name === 'forged'))

    // The same counts in the metrics.
    const metrics = (await new AgentClient('n2').get<{text: string}>('/metrics')).text
    const metric = (reason: string) =>
      Number(new RegExp(`^swarmnet_gossip_messages_dropped_total\\{reason="${reason}"[^}]*\\} (\\d+)`, 'm').exec(metrics)?.[1])
    assert.ok(metric('malformed') >= after.malformed, metrics)
    assert.ok(metric('decrypt_failed') >= after.decryptFailed)
    assert.ok(metric('replayed') >= 1)

    // Still a member in good standing, and real gossip still flows both ways.
    assert.equal(await stateOn('n1', 'n2'), 'ready')
    assert.equal(await stateOn('n2', 'n1'), 'ready')
    ok('n1', ['network', 'create', 'g2'])
    await eventually('g2 on n2', () => json<{name: string}[]>('n2', ['network', 'ls']).some((n) => n.name === 'g2'))
  })
})
