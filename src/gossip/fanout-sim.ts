import {SimClock, seededRandom} from '../membership/simnet.js'
import type {Entry} from '../store/entry.js'
import {Fanout} from './fanout.js'

/**
 * The dissemination of store updates (fanout.ts, the code the agent runs) for
 * many nodes in one process on virtual time, over a simulated network with
 * latency and loss: for the unit tests and the 1,000-node benchmark. Each node
 * holds the latest version of each key it has seen and spreads what is new to
 * it, as gossip.ts does; push-pull is left out, so what arrives is the
 * epidemic's doing alone.
 */
export type FanoutSimOptions = {
  nodes: number
  /** Updates, each written by node `writer` at virtual time `at` (ms). */
  updates: {writer: number; at: number; bytes?: number}[]
  loss?: number
  seed?: number
  fanout?: number
  intervalMs?: number
  retransmitMult?: number
  /** How long to run (virtual ms). */
  runMs?: number
}

export type FanoutSimResult = {
  /** Per update: the virtual ms after its write at which each node held it (undefined: never). */
  arrivals: (number | undefined)[][]
  /** Per update, per node: how many times that node sent the update (one peer each). */
  sends: number[][]
  /** Per update, per node: the distinct peers that node sent it to. */
  recipients: number[][]
  /** Sealed bytes all nodes sent, as on the wire (JSON plus the envelope and header). */
  bytes: number
  messages: number
  runMs: number
}

/** What the sealed envelope and message header add around the entries (as in simnet.ts). */
const OVERHEAD = 60 + 64

export function simulateFanout(o: FanoutSimOptions): FanoutSimResult {
  const clock = new SimClock()
  const random = seededRandom(o.seed ?? 1)
  const n = o.nodes
  const held: Map<string, number>[] = Array.from({length: n}, () => new Map())
  const arrivals = o.updates.map(() => Array<number | undefined>(n).fill(undefined))
  const sends = o.updates.map(() => Array<number>(n).fill(0))
  const recipients = o.updates.map(() => Array.from({length: n}, () => new Set<number>()))
  const writtenAt = o.updates.map((u) => u.at)
  let bytes = 0
  let messages = 0
  const ids = Array.from({length: n}, (_, i) => i)
  const fanouts: Fanout<number>[] = []

  const receive = (i: number, entries: Entry[]): void => {
    for (const e of entries) {
      const u = Number(e.key.slice('update/'.length))
      if ((held[i]!.get(e.key) ?? -1) >= e.version.clock) continue
      held[i]!.set(e.key, e.version.clock)
      arrivals[u]![i] ??= clock.now() - writtenAt[u]!
      fanouts[i]!.add(e)
    }
  }

  for (let i = 0; i < n; i++) {
    const others = ids.filter((j) => j !== i)
    fanouts.push(
      new Fanout<number>({
        clock,
        random,
        peers: () => others,
        fanout: o.fanout,
        intervalMs: o.intervalMs,
        retransmitMult: o.retransmitMult,
        send: (to, entries) => {
          const wire = JSON.stringify(entries)
          bytes += wire.length + OVERHEAD
          messages++
          for (const e of entries) {
            const u = Number(e.key.slice('update/'.length))
            sends[u]![i]!++
            recipients[u]![i]!.add(to)
          }
          if (random() < (o.loss ?? 0)) return
          const copy = JSON.parse(wire) as Entry[]
          clock.after(1 + random() * 4, () => receive(to, copy))
        },
      }),
    )
  }
  o.updates.forEach((u, k) => {
    clock.after(u.at, () => {
      const e: Entry = {
        key: `update/${k}`,
        value: {pad: 'x'.repeat(u.bytes ?? 200)},
        version: {clock: 1, node: `node-${u.writer}`},
      }
      held[u.writer]!.set(e.key, 1)
      arrivals[k]![u.writer] = 0
      fanouts[u.writer]!.add(e)
    })
  })
  const runMs = o.runMs ?? 10_000
  clock.advance(runMs)
  for (const f of fanouts) f.stop()
  return {arrivals, sends, recipients: recipients.map((r) => r.map((s) => s.size)), bytes, messages, runMs}
}

/** The ms by which the given share of nodes held the update (undefined: never). */
export function timeTo(arrivals: (number | undefined)[], share: number): number | undefined {
  const got = arrivals.filter((x): x is number => x !== undefined).sort((a, b) => a - b)
  const need = Math.ceil(share * arrivals.length)
  return got.length >= need ? got[need - 1] : undefined
}
