// What one anti-entropy round costs (issue 24): two real gossip nodes on loopback in this process,
// stores of N entries that agree (or differ by a few keys), and push-pulls one after another:
// by summaries (src/store/summary.ts: the buckets first, digests only where they differ) and by
// whole digests (as with an agent of the version before them, `summaries: false`). Both nodes'
// work is on this process's one loop, so CPU time per exchange is what the two agents' loops pay
// together; the longest stretch the loop was held meanwhile is the worse of the two sides. Modes
// alternate run by run; medians (min-max) over the runs.
//
//   node --import tsx bench/gossip-pushpull.ts [--entries 10000] [--runs 5] [--rounds 10]
import {mkdtempSync, rmSync} from 'node:fs'
import {loadavg, tmpdir} from 'node:os'
import {join} from 'node:path'
import {monitorEventLoopDelay} from 'node:perf_hooks'
import {pathToFileURL} from 'node:url'
import {Gossip} from '../src/gossip/gossip.js'
import {certifyNode, generateIdentity, generateNodeKey, type KeyPair} from '../src/gossip/identity.js'
import {generateKey} from '../src/gossip/keyring.js'
import type {NodeRecord} from '../src/model/types.js'
import {Store} from '../src/store/store.js'
import {pct} from './percentile.js'

export type PushPullRow = {mode: 'summaries' | 'digests'; differing: number; cpuMs: number[]; maxHeldMs: number[]; kb: number[]}
export type PushPullBench = {entries: number; runs: number; rounds: number; rows: PushPullRow[]; load: number[]}

type Node = {id: string; store: Store; gossip: Gossip; key: KeyPair; addr: string}

async function pair(root: string, entries: number, summaries: boolean): Promise<{m: Node; w: Node}> {
  const identity = generateIdentity()
  const clusterKey = generateKey()
  const make = (id: string, addr: string, role: 'manager' | 'worker') => {
    const key = generateNodeKey()
    const store = new Store(join(root, id), id, {reapIntervalMs: 0}).open()
    const gossip = new Gossip({
      store,
      nodeId: id,
      bindAddr: addr,
      port: 0,
      key: clusterKey,
      identity: identity.publicKey,
      nodeKey: key,
      pushPullIntervalMs: 3_600_000,
      summaries,
    })
    const rec = (port: number): NodeRecord => ({
      id,
      name: id,
      addr,
      gossipPort: port,
      role,
      state: 'ready',
      mtu: 1500,
      joinedAt: 1,
      pubKey: key.publicKey,
      cert: certifyNode(identity, id, key.publicKey, role),
    })
    return {id, store, gossip, key, addr, rec}
  }
  const m = make('m', '127.0.0.1', 'manager')
  const w = make('w', '127.0.0.2', 'worker')
  const mp = await m.gossip.start()
  const wp = await w.gossip.start()
  m.store.put('node/m', m.rec(mp))
  m.store.put('node/w', w.rec(wp))
  for (let i = 0; i < entries; i++) {
    const id = i.toString(16).padStart(24, '0')
    m.store.put(`taskstatus/${id}`, {taskId: id, nodeId: 'w', state: 'running', at: 1_700_000_000_000 + i, pid: 1000 + i})
  }
  await m.store.sync()
  w.store.merge(m.store.all())
  await w.store.sync()
  return {m, w}
}

/** One run: `rounds` push-pulls from w to m, `differing` keys changed on m (not spread) before each. */
async function run(root: string, entries: number, rounds: number, mode: PushPullRow['mode'], differing: number) {
  const {m, w} = await pair(root, entries, mode === 'summaries')
  try {
    const peer = {id: 'm', addr: m.addr, port: m.gossip.port}
    // The first exchange by whole digests (neither has heard the other), the second tells each what the other reads.
    await w.gossip.pushPull(peer)
    await w.gossip.pushPull(peer)
    const h = monitorEventLoopDelay({resolution: 1})
    let cpu = 0
    let max = 0
    let bytes = 0
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < differing; i++) {
        const e = m.store.entry(`taskstatus/${((r * 7 + i * 131) % entries).toString(16).padStart(24, '0')}`)!
        // Changed on m alone, as an update the epidemic has not brought to w yet.
        m.store.put(e.key, {...(e.value as object), at: Date.now()})
      }
      m.gossip.fanout.stop()
      await m.store.sync()
      const b0 = m.gossip.stats.bytesSent + w.gossip.stats.bytesSent
      h.reset()
      h.enable()
      const c0 = process.cpuUsage()
      if (!(await w.gossip.pushPull(peer))) throw new Error('a push-pull failed')
      // m merges w's closing updates after w is done: let it.
      await new Promise((r) => setTimeout(r, 20))
      const c = process.cpuUsage(c0)
      h.disable()
      cpu += (c.user + c.system) / 1000
      max = Math.max(max, h.max / 1e6)
      bytes += m.gossip.stats.bytesSent + w.gossip.stats.bytesSent - b0
    }
    return {cpuMs: cpu / rounds, maxHeldMs: max, kb: bytes / rounds / 1024}
  } finally {
    await w.gossip.stop()
    await m.gossip.stop()
    w.store.close()
    m.store.close()
  }
}

export async function benchGossipPushPull(
  opts: {entries?: number; runs?: number; rounds?: number; modes?: PushPullRow['mode'][]} = {},
): Promise<PushPullBench> {
  const entries = opts.entries ?? 10_000
  const runs = opts.runs ?? 5
  const rounds = opts.rounds ?? 10
  const rows: PushPullRow[] = []
  for (const differing of [0, 10])
    for (const mode of opts.modes ?? (['summaries', 'digests'] as const))
      rows.push({mode, differing, cpuMs: [], maxHeldMs: [], kb: []})
  const root = mkdtempSync(join(tmpdir(), 'swarmnet-pushpull-'))
  try {
    for (let i = 0; i < runs; i++) {
      const order = i % 2 === 0 ? rows : [...rows].reverse()
      for (const row of order) {
        const r = await run(join(root, `${i}-${row.mode}-${row.differing}`), entries, rounds, row.mode, row.differing)
        row.cpuMs.push(r.cpuMs)
        row.maxHeldMs.push(r.maxHeldMs)
        row.kb.push(r.kb)
      }
    }
  } finally {
    rmSync(root, {recursive: true, force: true})
  }
  return {entries, runs, rounds, rows, load: loadavg()}
}

export function formatGossipPushPull(b: PushPullBench): string {
  const f = (xs: number[]) => `${pct(xs, 50).toFixed(1)} (${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)})`
  return [
    `push-pull between two nodes of ${b.entries} entries, ${b.runs} runs x ${b.rounds} exchanges (load ${b.load.map((l) => l.toFixed(1)).join(' ')}):`,
    ...b.rows.map(
      (r) =>
        `  ${r.mode.padEnd(9)} ${String(r.differing).padStart(2)} keys differing: CPU ${f(r.cpuMs)} ms per exchange (both sides), loop held at most ${f(r.maxHeldMs)} ms, ${f(r.kb)} KiB sent`,
    ),
  ].join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`)
    return i > 0 ? Number(process.argv[i + 1]) : undefined
  }
  const only = process.argv.indexOf('--mode')
  const modes = only > 0 ? [process.argv[only + 1] as PushPullRow['mode']] : undefined
  const b = await benchGossipPushPull({entries: arg('entries'), runs: arg('runs'), rounds: arg('rounds'), modes})
  console.log(formatGossipPushPull(b))
}
