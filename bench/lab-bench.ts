// What the lab benches (mesh.ts, vip-lab.ts, throughput.ts) use to drive a lab from outside: the
// swarmnet CLI as a user runs it, iperf3 in a namespace, the data plane's counters on a node, a
// measurement that may fail, and taking the lab down at the end.
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {run} from '../src/sys/exec.js'
import {execIn} from '../src/sys/netns.js'
import {inCgroupsArgv} from '../src/sys/cgroup.js'

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'run.js')

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** `swarmnet ARGS` against the lab node `host` (none: the lab commands themselves), its stdout. */
export function cli(args: string[], host?: string, timeoutMs = 120_000): Promise<string> {
  const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1'}
  if (host) env.SWARMNET_HOST = host
  else delete env.SWARMNET_HOST
  return run([process.execPath, BIN, ...args], `swarmnet ${args.slice(0, 2).join(' ')}`, {env, timeoutMs})
}

/** Takes the lab down; a failure is logged, not thrown (it runs in a finally). */
export async function labDown(log: (s: string) => void): Promise<void> {
  log('lab down')
  await cli(['lab', 'down'], undefined, 120_000).catch((e) =>
    log(`lab down failed: ${e instanceof Error ? e.message : String(e)}`),
  )
}

export interface IperfJson {
  error?: string
  end?: {
    cpu_utilization_percent?: {host_total?: number; remote_total?: number}
    sum?: {seconds?: number; packets?: number; lost_packets?: number; bits_per_second?: number}
    sum_sent?: {seconds?: number; bytes?: number; bits_per_second?: number; retransmits?: number; packets?: number}
    sum_received?: {seconds?: number; bytes?: number; bits_per_second?: number; packets?: number; lost_packets?: number}
  }
}

/**
 * `iperf3 --json ARGS` as a client in namespace `ns`, its report; with `cgroup`, inside that cgroup
 * too (a task's: its sockets then meet the task's cgroup programs, as the task's own would).
 */
export async function iperf(ns: string, args: string[], seconds: number, cgroup?: string): Promise<IperfJson> {
  let last: unknown
  // The server may not be listening yet (or still closing the previous test): retry a little.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const argv = ['iperf3', '--json', ...args]
      const out = await execIn(ns, cgroup ? inCgroupsArgv([cgroup], argv) : argv, `iperf3 in ${ns}`, {
        timeoutMs: (seconds + 30) * 1000,
      })
      const j = JSON.parse(out) as IperfJson
      if (j.error) throw new Error(j.error)
      return j
    } catch (e) {
      last = e
      // iperf3 --json prints its error as JSON on stdout and exits 1.
      await sleep(1000)
    }
  }
  throw new Error(`iperf3 ${args.join(' ')} in ${ns}: ${last instanceof Error ? last.message : String(last)}`)
}

export type Stats = Record<string, number>

/** Node `node`'s sn_stats counters, summed over CPUs, by name. */
export async function snStats(node: string): Promise<Stats> {
  const out = JSON.parse(await cli(['inspect', 'maps', '--map', 'sn_stats', '--json', '--host', node])) as {
    maps: {entries: {value: Record<string, number | string>}[]}[]
  }
  const v = out.maps[0]?.entries[0]?.value ?? {}
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, Number(x)]))
}

/**
 * Runs one measurement into `into`; a failed one is reported as such (NaN and a line in `notes`),
 * never as a number. A second's pause after each lets the paths settle.
 */
export function measurer(notes: string[]): (what: string, into: number[], f: () => Promise<number>) => Promise<void> {
  return async (what, into, f) => {
    try {
      into.push(await f())
    } catch (e) {
      into.push(NaN)
      notes.push(`${what}: ${(e as Error).message}`)
    }
    await sleep(1000)
  }
}
