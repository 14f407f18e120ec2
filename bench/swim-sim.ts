// The failure detector at 1,000 nodes: the project's own Membership code
// (src/membership/swim.ts), every node an instance, in one process over a
// simulated network (src/membership/simnet.ts) with latency and loss, on
// virtual time. Prints how fast an update reaches everyone, how fast a killed
// node is declared dead everywhere, the false suspicions at 5% loss and the
// bytes each node sends per second. Numbers, not assertions.
import {SimClock, SimNetwork, seededRandom} from '../src/membership/simnet.js'
import {Membership} from '../src/membership/swim.js'

export type SwimSimResult = {
  nodes: number
  loss: number
  updateTo999Ms: number | undefined
  updateTo100Ms: number | undefined
  detectTo999Ms: number | undefined
  detectTo100Ms: number | undefined
  falseSuspicions5pct: number
  falseSuspicionSeconds: number
  bytesPerNodePerSec: number
}

type Sim = {clock: SimClock; net: SimNetwork; ms: Membership[]; ids: string[]}

function build(n: number, loss: number, seed: number): Sim {
  const clock = new SimClock()
  const random = seededRandom(seed)
  const net = new SimNetwork({clock, random, latencyMs: 1, jitterMs: 4, loss})
  const ids = Array.from({length: n}, (_, i) => `node-${i}`)
  const addrs = ids.map((_, i) => SimNetwork.addrOf(i + 1))
  const roster = ids.map((id, i) => ({id, addr: addrs[i]!.addr, port: addrs[i]!.port, left: false}))
  const ms = ids.map((id, i) => {
    const m = new Membership({self: {id, ...addrs[i]!}, incarnation: 1000 + i, net: net.endpoint(id, addrs[i]!), clock, random})
    m.setRoster(roster)
    net.attach(addrs[i]!, id, m)
    m.start()
    return m
  })
  return {clock, net, ms, ids}
}

/** Advances until the share of the others for which cond holds reaches each fraction; ms for each. */
function spread(
  s: Sim,
  skip: number,
  cond: (m: Membership) => boolean,
  fractions: number[],
  maxMs: number,
): (number | undefined)[] {
  const t0 = s.clock.now()
  const out: (number | undefined)[] = fractions.map(() => undefined)
  const others = s.ms.filter((_, i) => i !== skip)
  while (s.clock.now() - t0 <= maxMs && out.some((x) => x === undefined)) {
    s.clock.advance(10)
    const have = others.filter(cond).length / others.length
    fractions.forEach((f, i) => {
      if (out[i] === undefined && have >= f) out[i] = s.clock.now() - t0
    })
  }
  return out
}

export function benchSwim(o: {nodes?: number; loss?: number; seed?: number; quietSeconds?: number} = {}): SwimSimResult {
  const n = o.nodes ?? 1000
  const loss = o.loss ?? 0.01
  const s = build(n, loss, o.seed ?? 7)
  // Every node learns every other's boot incarnation first.
  s.clock.advance(30_000)

  // One update: a node refutes a rumour about itself; its new incarnation must reach everyone.
  const x = 17
  const target = s.ms[x]!
  const inc = target.incarnation
  target.receive(
    {op: 'ack', seq: 0, inc: 1000, u: [{k: 'suspect', id: s.ids[x]!, inc, by: s.ids[0]!}]},
    s.ids[0]!,
    SimNetwork.addrOf(1),
  )
  const [u999, u100] = spread(s, x, (m) => (m.get(s.ids[x]!)?.incarnation ?? 0) > inc, [0.999, 1], 60_000)

  // A node killed: how long until it is dead in every view.
  const k = 500
  const bytes0 = s.net.bytes
  const t0 = s.clock.now()
  s.net.setDown(SimNetwork.addrOf(k + 1), true)
  const [d999, d100] = spread(s, k, (m) => m.get(s.ids[k]!)?.state === 'dead', [0.999, 1], 60_000)
  const bytesPerNodePerSec = (s.net.bytes - bytes0) / n / ((s.clock.now() - t0) / 1000)

  // No one dies, 5% of all datagrams are lost: nobody should be suspected.
  const quiet = build(n, 0.05, (o.seed ?? 7) + 1)
  quiet.clock.advance((o.quietSeconds ?? 60) * 1000)
  const falseSuspicions = quiet.ms.reduce((t, m) => t + m.stats.suspicions, 0)
  for (const m of [...s.ms, ...quiet.ms]) m.stop()
  return {
    nodes: n,
    loss,
    updateTo999Ms: u999,
    updateTo100Ms: u100,
    detectTo999Ms: d999,
    detectTo100Ms: d100,
    falseSuspicions5pct: falseSuspicions,
    falseSuspicionSeconds: o.quietSeconds ?? 60,
    bytesPerNodePerSec,
  }
}

export function formatSwim(r: SwimSimResult): string {
  const ms = (x: number | undefined) => (x === undefined ? 'not within 60 s' : `${x} ms`)
  return [
    `${r.nodes} nodes, simulated network: 1-5 ms latency, ${r.loss * 100}% loss; the real src/membership code on virtual time`,
    `one update reaches 99.9% of nodes      ${ms(r.updateTo999Ms)}   (goal <= 2000 ms)`,
    `one update reaches 100% of nodes       ${ms(r.updateTo100Ms)}   (goal <= 2000 ms)`,
    `killed node dead in 99.9% of views     ${ms(r.detectTo999Ms)}`,
    `killed node dead in every view         ${ms(r.detectTo100Ms)}   (goal <= 3000 ms)`,
    `false suspicions, 5% loss, ${r.falseSuspicionSeconds} s          ${r.falseSuspicions5pct}   (goal 0)`,
    `bytes sent per node per second         ${Math.round(r.bytesPerNodePerSec)} B/s   (goal <= 50 kB/s)`,
  ].join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const t = Date.now()
  console.log(formatSwim(benchSwim()))
  console.log(`(${((Date.now() - t) / 1000).toFixed(1)} s of CPU time for the simulation)`)
}
