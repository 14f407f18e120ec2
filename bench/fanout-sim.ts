// Store updates at 1,000 nodes: the project's own dissemination code
// (src/gossip/fanout.ts: 3 random live peers per round, each entry sent
// 4 * ceil(log10(n + 1)) times by each node that spreads it) for every node,
// in one process over a simulated network (1-5 ms latency, loss) on virtual
// time (src/gossip/fanout-sim.ts), without push-pull. Prints how fast updates
// reach every node, how many peers each writer told, and the bytes each node
// sends per second under a steady write rate. Numbers, not assertions.
import {Fanout} from '../src/gossip/fanout.js'
import {simulateFanout, timeTo} from '../src/gossip/fanout-sim.js'

export type FanoutSimResult = {
  nodes: number
  loss: number
  updates: number
  writesPerSec: number
  entryBytes: number
  to999Ms: number | undefined
  to100Ms: number | undefined
  /** Updates some node never got from the epidemic (push-pull's to mend). */
  missed: number
  writerPeersMax: number
  sendsPerNodeMax: number
  bytesPerNodePerSec: number
}

export function benchFanout(
  o: {nodes?: number; loss?: number; seed?: number; updates?: number; writesPerSec?: number} = {},
): FanoutSimResult {
  const nodes = o.nodes ?? 1000
  const loss = o.loss ?? 0.01
  const count = o.updates ?? 20
  const writesPerSec = o.writesPerSec ?? 10
  const entryBytes = 300
  const gap = 1000 / writesPerSec
  const updates = Array.from({length: count}, (_, i) => ({writer: (i * 37) % nodes, at: 100 + i * gap, bytes: entryBytes}))
  const runMs = 100 + count * gap + 5_000
  const r = simulateFanout({nodes, updates, loss, seed: o.seed ?? 7, runMs})
  const t999 = r.arrivals.map((a) => timeTo(a, 0.999))
  const t100 = r.arrivals.map((a) => timeTo(a, 1))
  const worst = (xs: (number | undefined)[]) => (xs.some((x) => x === undefined) ? undefined : Math.max(...(xs as number[])))
  return {
    nodes,
    loss,
    updates: count,
    writesPerSec,
    entryBytes,
    to999Ms: worst(t999),
    to100Ms: worst(t100.filter((x) => x !== undefined)),
    missed: t100.filter((x) => x === undefined).length,
    writerPeersMax: Math.max(...r.recipients.map((rc, u) => rc[updates[u]!.writer]!)),
    sendsPerNodeMax: Math.max(...r.sends.flat()),
    // Over the time the updates were being written and spread (the run minus its idle tail is not subtracted: a lower bound of the peak).
    bytesPerNodePerSec: r.bytes / nodes / ((count * gap + 1000) / 1000),
  }
}

export function formatFanout(r: FanoutSimResult): string {
  const ms = (x: number | undefined) => (x === undefined ? 'not within 5 s' : `${Math.round(x)} ms`)
  return [
    `${r.nodes} nodes, simulated network: 1-5 ms latency, ${r.loss * 100}% loss; the real src/gossip/fanout.ts on virtual time, no push-pull`,
    `${r.updates} store updates of ${r.entryBytes} B, ${r.writesPerSec}/s, from different writers`,
    `slowest update to 99.9% of nodes       ${ms(r.to999Ms)}   (goal <= 2000 ms)`,
    `slowest update to 100% of nodes        ${ms(r.to100Ms)}   (goal <= 2000 ms; of those that reached all)`,
    `updates some node missed (push-pull's)  ${r.missed} of ${r.updates}`,
    `peers a writer sent an update to, max   ${r.writerPeersMax} of ${r.nodes - 1}`,
    `sends of one update by one node, max    ${r.sendsPerNodeMax}   (bound ${Fanout.limit(4, r.nodes)})`,
    `bytes sent per node per second          ${Math.round(r.bytesPerNodePerSec)} B/s   (goal <= 50 kB/s)`,
  ].join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const t = Date.now()
  console.log(formatFanout(benchFanout()))
  console.log(`(${((Date.now() - t) / 1000).toFixed(1)} s of CPU time for the simulation)`)
}
