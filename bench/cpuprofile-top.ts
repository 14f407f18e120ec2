/**
 * What held an agent's event loop: reads a .cpuprofile (SWARMNET_AGENT_CPU_PROF, or
 * `bench/lab-scale.ts --cpu-prof DIR`), finds the stretches in which the main thread never went
 * idle for at least --min-ms (20 ms: a SWIM probe waits 120 ms, the loop goal is 50 ms) and sums,
 * within those stretches only, the time each function was on top of the stack (self) and
 * anywhere on it (total).
 *
 *   node --import tsx bench/cpuprofile-top.ts FILE [--min-ms 20] [--top 25]
 */
import {readFileSync} from 'node:fs'
import {basename} from 'node:path'
import {pathToFileURL} from 'node:url'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
  columnNumber: number
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}
export interface CpuProfileJson {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface HolderRow {
  /** function (file:line) */
  site: string
  selfMs: number
  totalMs: number
}

export interface LoopHolders {
  /** The profile's length and the time the thread was not idle in it, ms. */
  profileMs: number
  busyMs: number
  /** Stretches of at least minMs without idle: their count, sum and the longest. */
  stretches: number
  stretchMs: number
  longestMs: number
  top: HolderRow[]
}

/** V8's pseudo-frames: (idle) is the loop waiting; (program) and (garbage collector) are work. */
const IDLE = '(idle)'

function siteOf(f: CallFrame): string {
  const name = f.functionName || '(anonymous)'
  if (!f.url) return name
  // file:///…/src/bpf/links.ts -> src/bpf/links.ts (1-based line, as editors count)
  const m = /\/((?:src|bench|commands|test|node_modules)\/.*)$/.exec(f.url)
  const file = m ? m[1] : basename(f.url)
  return `${name} (${file}:${f.lineNumber + 1})`
}

export function loopHolders(p: CpuProfileJson, minMs = 20, topN = 25): LoopHolders {
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // A sample lasts until the next one (timeDeltas[i] is the gap before sample i), in µs.
  const dur = (i: number) => p.timeDeltas[i + 1] ?? 0
  const idle = (i: number) => byId.get(p.samples[i]!)?.callFrame.functionName === IDLE
  const self = new Map<string, number>()
  const total = new Map<string, number>()
  let busyUs = 0
  let stretches = 0
  let stretchUs = 0
  let longestUs = 0
  const count = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const d = dur(i)
      const seen = new Set<string>()
      let id: number | undefined = p.samples[i]
      let leaf = true
      while (id !== undefined) {
        const node = byId.get(id)
        if (!node || node.callFrame.functionName === '(root)') break
        const s = siteOf(node.callFrame)
        if (leaf) self.set(s, (self.get(s) ?? 0) + d)
        leaf = false
        // Recursion counts once per sample in total.
        if (!seen.has(s)) total.set(s, (total.get(s) ?? 0) + d)
        seen.add(s)
        id = parent.get(id)
      }
    }
  }
  let start = -1
  let runUs = 0
  const close = (end: number) => {
    if (start >= 0 && runUs >= minMs * 1000) {
      stretches++
      stretchUs += runUs
      longestUs = Math.max(longestUs, runUs)
      count(start, end)
    }
    start = -1
    runUs = 0
  }
  for (let i = 0; i < p.samples.length; i++) {
    if (idle(i)) {
      close(i)
      continue
    }
    if (start < 0) start = i
    runUs += dur(i)
    busyUs += dur(i)
  }
  close(p.samples.length)
  const top = [...total.keys()]
    .map((site) => ({site, selfMs: (self.get(site) ?? 0) / 1000, totalMs: (total.get(site) ?? 0) / 1000}))
    .sort((a, b) => b.selfMs + b.totalMs - (a.selfMs + a.totalMs))
    .slice(0, topN)
  return {
    profileMs: (p.endTime - p.startTime) / 1000,
    busyMs: busyUs / 1000,
    stretches,
    stretchMs: stretchUs / 1000,
    longestMs: longestUs / 1000,
    top,
  }
}

export function formatHolders(h: LoopHolders, minMs = 20): string[] {
  const pct = (ms: number) => (h.stretchMs > 0 ? ((100 * ms) / h.stretchMs).toFixed(1) : '0.0')
  return [
    `profile ${(h.profileMs / 1000).toFixed(1)} s, loop busy ${(h.busyMs / 1000).toFixed(1)} s; ${h.stretches} stretches of >= ${minMs} ms busy: ${(h.stretchMs / 1000).toFixed(1)} s in all, longest ${h.longestMs.toFixed(0)} ms`,
    `   self ms  self%   total ms total%  function (file:line), within those stretches`,
    ...h.top.map(
      (r) =>
        `${r.selfMs.toFixed(0).padStart(9)} ${pct(r.selfMs).padStart(6)} ${r.totalMs.toFixed(0).padStart(10)} ${pct(r.totalMs).padStart(6)}  ${r.site}`,
    ),
  ]
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2]
  const arg = (flag: string, dflt: number) => {
    const i = process.argv.indexOf(flag)
    return i >= 0 ? Number(process.argv[i + 1]) : dflt
  }
  if (!file || file.startsWith('--')) {
    console.error('usage: cpuprofile-top.ts FILE.cpuprofile [--min-ms 20] [--top 25]')
    process.exit(2)
  }
  const minMs = arg('--min-ms', 20)
  let profile: CpuProfileJson
  try {
    profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfileJson
  } catch (e) {
    console.error(`cpuprofile-top: cannot read ${file}: ${(e as Error).message}`)
    process.exit(1)
  }
  for (const line of formatHolders(loopHolders(profile, minMs, arg('--top', 25)), minMs)) console.log(line)
}
