// What authenticating one gossip message costs the agent's event loop (issue 24): the sender's
// seal and the receiver's unseal of the real Transport (src/gossip/transport.ts, no sockets), for
// the two forms a message can take inside the cluster key's seal: Ed25519-signed (a peer known by
// address only, not heard from yet, or an older version) and MACed under the pair's key
// (src/gossip/pair-keys.ts: nodes that know each other). Both run on the loop, synchronously, so
// the wall time per call is the loop time per message. Two messages: a SWIM ping as the agent
// sends them (with its signed incarnation and two rumours) and an `updates` datagram near UDP_MAX.
// Forms alternate run by run; medians (min-max) over the runs.
//
//   node --import tsx bench/gossip-seal.ts [--runs 5] [--messages 2000]
import {loadavg} from 'node:os'
import {performance} from 'node:perf_hooks'
import type {Body} from '../src/gossip/codec.js'
import {encodeMessage, type Message} from '../src/gossip/codec.js'
import {generateNodeKey, signBytes, signWith, verifyBytes} from '../src/gossip/identity.js'
import {PairKeys} from '../src/gossip/pair-keys.js'
import {generateKey, Keyring} from '../src/gossip/keyring.js'
import {emptyStats} from '../src/gossip/stats.js'
import {Transport} from '../src/gossip/transport.js'
import {pct} from './percentile.js'

/** Per run: CPU µs per message of seal and of unseal, and wall µs of both. */
export type SealRow = {
  message: string
  bytes: number
  form: 'signed' | 'mac'
  sealUs: number[]
  unsealUs: number[]
  wallUs: number[]
}
/** The authentication alone, CPU µs per message (sender and receiver): Ed25519 sign + verify against HMAC + its check. */
export type AuthRow = {message: string; signedUs: number[]; macUs: number[]; gcmUs: number[]}
export type SealBench = {rows: SealRow[]; auth: AuthRow[]; runs: number; messages: number; load: number[]}

const a = generateNodeKey()
const b = generateNodeKey()

function transport(id: string, key: Buffer, privateKey: string): Transport {
  const keys: Record<string, string> = {a: a.publicKey, b: b.publicKey}
  return new Transport({
    nodeId: id,
    epoch: Date.now(),
    keyring: new Keyring(key),
    stats: emptyStats(),
    handlers: {onMessage: () => undefined, onStream: () => undefined},
    privateKey,
    senderKey: (n) => keys[n],
  })
}

function messages(): {name: string; body: Body}[] {
  const isig = signWith(a.privateKey, 'alive')
  const swim: Body = {
    t: 'swim',
    swim: {
      op: 'ping',
      seq: 123456,
      inc: Date.now(),
      target: 'b'.repeat(25),
      isig,
      u: [
        {k: 'alive', id: 'c'.repeat(25), inc: Date.now(), sig: isig},
        {k: 'suspect', id: 'd'.repeat(25), inc: Date.now(), by: 'e'.repeat(25), sig: isig},
      ],
    },
  } as Body
  const entries = Array.from({length: 4}, (_, i) => ({
    key: `taskstatus/${'f'.repeat(23)}${i}`,
    value: {
      taskId: `${'f'.repeat(23)}${i}`,
      nodeId: 'a',
      state: 'running',
      at: Date.now(),
      pid: 12345 + i,
      netns: '/run/netns/x',
    },
    version: {clock: 1000 + i, node: 'a'},
    sig: isig,
  }))
  return [
    {name: 'swim ping', body: swim},
    {name: 'updates (4 entries)', body: {t: 'updates', entries} as Body},
  ]
}

type Timing = {seal: number; unseal: number; wall: number; bytes: number}

/**
 * µs per message of the sender's seal and the receiver's unseal, n messages: the CPU time this
 * process used (the loop's thread does all of it), which a loaded machine inflates less than the
 * wall time, given beside it (that also counts the time the loop waited for a core).
 */
function once(from: Transport, to: Transport, body: Body, mac: boolean, n: number): Timing {
  const packets: Buffer[] = []
  const cpu = () => {
    const u = process.cpuUsage()
    return u.user + u.system
  }
  let [t, c] = [performance.now(), cpu()]
  for (let i = 0; i < n; i++) packets.push(from.seal(body, mac ? 'b' : undefined))
  const seal = (cpu() - c) / n
  const sealWall = ((performance.now() - t) * 1000) / n
  ;[t, c] = [performance.now(), cpu()]
  for (const p of packets) if (!to.unseal(p)) throw new Error('a bench message did not open')
  const unseal = (cpu() - c) / n
  const unsealWall = ((performance.now() - t) * 1000) / n
  return {seal, unseal, wall: sealWall + unsealWall, bytes: packets[0]!.length}
}

export function benchGossipSeal(runs = 5, n = 2000): SealBench {
  const key = generateKey()
  const ta = transport('a', key, a.privateKey)
  const tb = transport('b', key, b.privateKey)
  // Each says it reads MACs in its first message: after one each way, a's messages to b are MACed.
  tb.unseal(ta.seal({t: 'ping', n: 0}))
  ta.unseal(tb.seal({t: 'ping', n: 0}))
  const rows: SealRow[] = []
  for (const {name, body} of messages()) {
    const empty = (form: SealRow['form']): SealRow => ({message: name, bytes: 0, form, sealUs: [], unsealUs: [], wallUs: []})
    const row = {signed: empty('signed'), mac: empty('mac')}
    // Warm up both paths (JIT, the pair key's one derivation).
    once(ta, tb, body, false, 200)
    once(ta, tb, body, true, 200)
    for (let r = 0; r < runs; r++) {
      for (const form of r % 2 ? (['mac', 'signed'] as const) : (['signed', 'mac'] as const)) {
        const x = once(ta, tb, body, form === 'mac', n)
        row[form].sealUs.push(x.seal)
        row[form].unsealUs.push(x.unseal)
        row[form].wallUs.push(x.wall)
        row[form].bytes = x.bytes
      }
    }
    rows.push(row.signed, row.mac)
  }
  if (tb.stats.macReceived === 0) throw new Error('no message was MACed')
  return {rows, auth: authOnly(runs, n), runs, messages: n, load: loadavg()}
}

/** What the two forms differ by: the signature and its check, or the MAC and its check, on the same JSON. */
function authOnly(runs: number, n: number): AuthRow[] {
  const pa = new PairKeys('a', a.privateKey)
  const pb = new PairKeys('b', b.privateKey)
  const cpu = () => {
    const u = process.cpuUsage()
    return u.user + u.system
  }
  return messages().map(({name, body}) => {
    const json = encodeMessage({...body, from: 'a', epoch: Date.now(), seq: 1, ts: Date.now(), mac: 1} as Message)
    const signed = () => {
      if (!verifyBytes(a.publicKey, json, signBytes(a.privateKey, json))) throw new Error('no')
    }
    const mac = () => {
      if (!pb.check('a', a.publicKey, json, pa.mac('b', b.publicKey, json)!)) throw new Error('no')
    }
    // The cluster key's seal and open, which both forms pay (the rest of the crypto per message).
    const ring = new Keyring(generateKey())
    const gcm = () => {
      if (!ring.open(ring.seal(json))) throw new Error('no')
    }
    const row: AuthRow = {message: name, signedUs: [], macUs: [], gcmUs: []}
    for (let i = 0; i < 200; i++) {
      signed()
      mac()
      gcm()
    }
    for (let r = 0; r < runs; r++) {
      for (const [f, xs] of [
        [signed, row.signedUs],
        [mac, row.macUs],
        [gcm, row.gcmUs],
      ] as const) {
        const c = cpu()
        for (let i = 0; i < n; i++) f()
        xs.push((cpu() - c) / n)
      }
    }
    return row
  })
}

const med = (xs: number[]) => pct(xs, 50)
const span = (xs: number[]) => `${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}`

export function formatGossipSeal(r: SealBench): string {
  const lines = [
    `${r.runs} runs of ${r.messages} messages per form, alternating; load ${r.load.map((x) => x.toFixed(1)).join(' ')}; CPU us per message on the event loop's thread, median (min-max); wall: seal + unseal`,
    `${'message'.padEnd(20)} ${'form'.padEnd(7)} ${'bytes'.padStart(5)}  ${'seal'.padEnd(20)} ${'unseal'.padEnd(20)} ${'both'.padEnd(20)} wall`,
  ]
  const both = (x: SealRow) => x.sealUs.map((s, i) => s + (x.unsealUs[i] as number))
  for (const x of r.rows) {
    const cell = (xs: number[]) => `${med(xs).toFixed(1).padStart(6)} (${span(xs)})`.padEnd(20)
    lines.push(
      `${x.message.padEnd(20)} ${x.form.padEnd(7)} ${String(x.bytes).padStart(5)}  ${cell(x.sealUs)} ${cell(x.unsealUs)} ${cell(both(x))} ${med(x.wallUs).toFixed(1)}`,
    )
  }
  for (const x of r.auth) {
    const [s, m, g] = [med(x.signedUs), med(x.macUs), med(x.gcmUs)]
    lines.push(
      `${x.message}: crypto per message (AES-GCM seal + open ${g.toFixed(1)} (${span(x.gcmUs)}) with either): ${(s + g).toFixed(1)} signed, ${(m + g).toFixed(1)} MACed: ${((s + g) / (m + g)).toFixed(1)}x`,
    )
    lines.push(
      `${x.message}: the authentication alone, Ed25519 sign + verify ${med(x.signedUs).toFixed(1)} (${span(x.signedUs)}), HMAC + check ${med(x.macUs).toFixed(1)} (${span(x.macUs)}): ${(med(x.signedUs) / med(x.macUs)).toFixed(1)}x`,
    )
  }
  for (let i = 0; i + 1 < r.rows.length; i += 2) {
    const s = r.rows[i] as SealRow
    const m = r.rows[i + 1] as SealRow
    lines.push(
      `${s.message}: signed / MACed, seal + unseal: ${(med(both(s)) / med(both(m))).toFixed(1)}x CPU, ${(med(s.wallUs) / med(m.wallUs)).toFixed(1)}x wall`,
    )
  }
  return lines.join('\n')
}

export function sealJson(r: SealBench): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of r.rows) {
    const k = `${x.message.split(' ')[0]}${x.form === 'mac' ? 'Mac' : 'Signed'}`
    out[`${k}SealUs`] = Number(med(x.sealUs).toFixed(2))
    out[`${k}UnsealUs`] = Number(med(x.unsealUs).toFixed(2))
  }
  for (const x of r.auth) {
    const k = x.message.split(' ')[0]
    out[`${k}AuthSignedUs`] = Number(med(x.signedUs).toFixed(2))
    out[`${k}AuthMacUs`] = Number(med(x.macUs).toFixed(2))
    out[`${k}GcmUs`] = Number(med(x.gcmUs).toFixed(2))
  }
  return out
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string, d: number) => {
    const i = process.argv.indexOf(name)
    const v = i >= 0 ? Number(process.argv[i + 1]) : d
    if (!Number.isInteger(v) || v < 1) {
      console.error(`${name} must be a positive integer`)
      process.exit(2)
    }
    return v
  }
  const r = benchGossipSeal(arg('--runs', 5), arg('--messages', 2000))
  console.log(formatGossipSeal(r))
  console.log(JSON.stringify(sealJson(r)))
}
