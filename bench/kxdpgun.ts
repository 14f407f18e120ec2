// kxdpgun (knot-dnsutils): a DNS load generator that sends and receives through an AF_XDP socket,
// so the client's own cost per question is a ring write and a ring read, not a socket system
// call each way as dnsperf's. The DNS bench asks each server with it for the q/s it answers,
// where dnsperf's sending thread would be the limit. Here: reading its report, running it in a
// namespace (its XDP program made generic by a preloaded shim, bench/kxdpgun-skb-mode.c, why
// there), and finding a server's capacity by offering rising rates.
import {spawnSync} from 'node:child_process'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

/** What kxdpgun reports at its end (UDP mode). */
export interface KxdpgunReport {
  /** "native" or "emulated" (generic XDP). */
  mode: string
  threads: number
  sent: number
  /** Questions sent per second, as it prints it. */
  sentPps: number
  replies: number
  /** Answers received per second, as it prints it. */
  repliesPps: number
  /** Mean DNS payload size of the answers, bytes (0: none). */
  replySize: number
  /** Answers by rcode ("NOERROR", "SERVFAIL"...). */
  rcodes: Record<string, number>
  durationS: number
}

/** Reads kxdpgun's report; throws on output that is not one (an error message, a cut run). */
export function parseKxdpgun(out: string): KxdpgunReport {
  const head = /XDP threads (\d+), UDP, (\w+) mode/.exec(out)
  const sent = /total queries:\s+(\d+) \((\d+) pps\)/.exec(out)
  const replies = /total replies:\s+(\d+) \((\d+) pps\)/.exec(out)
  const duration = /^duration: ([\d.]+) s$/m.exec(out)
  if (!head || !sent || !replies || !duration)
    throw new Error(`not a kxdpgun UDP report: ${out.trim().split('\n')[0] || '(empty)'}`)
  const rcodes: Record<string, number> = {}
  for (const m of out.matchAll(/^responded (\w+):\s+(\d+)$/gm)) rcodes[m[1]!] = Number(m[2])
  return {
    mode: head[2]!,
    threads: Number(head[1]),
    sent: Number(sent[1]),
    sentPps: Number(sent[2]),
    replies: Number(replies[1]),
    repliesPps: Number(replies[2]),
    replySize: Number(/average DNS reply size: (\d+) B/.exec(out)?.[1] ?? 0),
    rcodes,
    durationS: Number(duration[1]),
  }
}

/** Why a run's answers are not the ones asked for (other rcodes, another size), or null. */
export function wrongAnswers(r: KxdpgunReport, replySize: number): string | null {
  const other = Object.entries(r.rcodes).filter(([k, n]) => k !== 'NOERROR' && n > 0)
  if (other.length) return `answers other than NOERROR: ${other.map(([k, n]) => `${k} ${n}`).join(', ')}`
  if ((r.rcodes.NOERROR ?? 0) !== r.replies) return `${r.replies} replies, ${r.rcodes.NOERROR ?? 0} NOERROR`
  if (r.replies > 0 && r.replySize !== replySize) return `answers of ${r.replySize} B, not ${replySize} B`
  return null
}

const SHIM_SRC = join(fileURLToPath(import.meta.url), '..', 'kxdpgun-skb-mode.c')

/** Builds the shim that makes kxdpgun's XDP program generic; returns the .so's path. */
export function buildSkbModeShim(dir: string): string {
  const so = join(dir, 'kxdpgun-skb-mode.so')
  const r = spawnSync('clang-14', ['-O2', '-shared', '-fPIC', '-o', so, SHIM_SRC, '-ldl'], {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`clang-14 (kxdpgun shim): ${r.stderr.trim() || r.error?.message}`)
  return so
}

export interface KxdpgunRun {
  netns: string
  /** The file of questions, one `name type` a line. */
  queries: string
  target: string
  port: number
  qps: number
  seconds: number
  /** The shim's path (buildSkbModeShim). */
  shim: string
}

/**
 * One kxdpgun run in the namespace; throws with its message when it reports nothing. The AF_XDP
 * socket of the run before can still be held by the device for a moment after its process has
 * gone ("failed to initialize XDP socket#0 (requested resource is busy)", seen 1 in ~100 runs):
 * then it is asked again, up to 3 times, a second apart.
 */
export function kxdpgun(o: KxdpgunRun): KxdpgunReport {
  for (let attempt = 1; ; attempt++) {
    try {
      return kxdpgunOnce(o)
    } catch (e) {
      if (attempt >= 3 || !(e instanceof Error) || !/resource is busy/.test(e.message)) throw e
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000)
    }
  }
}

function kxdpgunOnce(o: KxdpgunRun): KxdpgunReport {
  // -b 10 (its default batch); its one thread pinned to CPU 0 (its default affinity), for every
  // server alike.
  const r = spawnSync(
    'nsenter',
    [
      `--net=/run/netns/${o.netns}`,
      '--',
      'kxdpgun',
      '-t',
      String(o.seconds),
      '-Q',
      String(Math.round(o.qps)),
      '-p',
      String(o.port),
      '-i',
      o.queries,
      o.target,
    ],
    {encoding: 'utf8', env: {...process.env, LD_PRELOAD: o.shim}, timeout: (o.seconds + 20) * 1000},
  )
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`
  if (r.status !== 0) throw new Error(`kxdpgun (port ${o.port}): exit ${r.status ?? r.signal}: ${out.trim()}`)
  return parseKxdpgun(out)
}

/** A capacity search's steps and its answer. */
export interface Capacity {
  /** The step that answered the most per second. */
  best: KxdpgunReport
  steps: KxdpgunReport[]
  /** What ended the search: the server lost questions, or the sender could not send the rate. */
  end: 'server' | 'client' | 'steps'
}

/** A server that answers fewer than this share of the questions is past its capacity. */
export const ANSWERED_MIN = 0.95
/** A sender that sends less than this share of the rate asked is at its own limit. */
export const SENT_MIN = 0.9
export const STEP = 1.25
export const MAX_STEPS = 14

/**
 * Offers rising rates (start, start x STEP, ...) until the server answers fewer than ANSWERED_MIN
 * of the questions or the sender cannot send the rate; the capacity is the most answered per
 * second in any step. A server past its capacity loses questions at its socket and then answers
 * fewer than at its capacity, and kxdpgun's one thread, busy sending, reads its answers late: so
 * the capacity is searched for, not read off a run at an overload.
 */
export function capacity(ask: (qps: number) => KxdpgunReport, start: number): Capacity {
  const steps: KxdpgunReport[] = []
  let best: KxdpgunReport | undefined
  let end: Capacity['end'] = 'steps'
  for (let i = 0, qps = start; i < MAX_STEPS; i++, qps *= STEP) {
    const r = ask(qps)
    steps.push(r)
    if (!best || r.repliesPps > best.repliesPps) best = r
    if (r.sent === 0 || r.replies < ANSWERED_MIN * r.sent) {
      end = 'server'
      break
    }
    if (r.sentPps < SENT_MIN * qps) {
      end = 'client'
      break
    }
  }
  return {best: best!, steps, end}
}
