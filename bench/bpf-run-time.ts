// What a lab node's BPF programs cost while traffic runs: the kernel's own run-time statistics
// (run count and nanoseconds per program, as `kernel.bpf_stats_enabled` gives them), read for
// the programs behind the node's pinned links, and the node's sn_stats counters, both straight
// from the pins (no CLI, so a snapshot around each iperf3 measurement costs milliseconds).
//
// The statistics are turned on with BPF_ENABLE_STATS rather than the sysctl: they stay on while
// the returned handle is open and go off by themselves when the bench ends, however it ends.
import {readdirSync} from 'node:fs'
import {join} from 'node:path'
import {readCounters} from '../src/bpf/counters.js'
import {errnoError} from '../src/bpf/errors.js'
import {libbpf} from '../src/bpf/libbpf.js'
import {linkInfoByFd} from '../src/bpf/links.js'
import {BpfMap} from '../src/bpf/map.js'
import {objInfoByFd} from '../src/bpf/obj-info.js'
import {nodePinDir} from '../src/bpf/pins.js'
import {layoutPinDir} from '../src/bpf/upgrade.js'
import {libc} from '../src/sys/libc.js'

/** enum bpf_stats_type */
const BPF_STATS_RUN_TIME = 0

/** Turns the run-time statistics on until close() (the kernel counts handles: others may hold one too). */
export function enableBpfStats(): {close(): void} {
  const fd = libbpf().bpf_enable_stats(BPF_STATS_RUN_TIME)
  if (fd < 0) throw errnoError('BPF_ENABLE_STATS', fd)
  let open = true
  return {
    close() {
      if (open) libc().close(fd)
      open = false
    },
  }
}

export interface ProgRunTime {
  name: string
  runs: number
  ns: number
}

/** Each program behind one of `node`'s pinned links, by program id: its name, runs and run time so far. */
export function progRunTimes(node: string): Map<number, ProgRunTime> {
  const out = new Map<number, ProgRunTime>()
  const dir = join(nodePinDir(node), 'links')
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return out
  }
  for (const name of names) {
    const lfd = libbpf().bpf_obj_get(join(dir, name))
    if (lfd < 0) continue // a link removed meanwhile (a task gone)
    let progId: number
    try {
      progId = linkInfoByFd(lfd).progId
    } finally {
      libc().close(lfd)
    }
    if (!progId || out.has(progId)) continue
    const pfd = libbpf().bpf_prog_get_fd_by_id(progId)
    if (pfd < 0) continue
    try {
      // struct bpf_prog_info: name[16] at 64, run_time_ns at 192, run_cnt at 200 (linux/bpf.h).
      const info = objInfoByFd(pfd, 'bpf_prog_info', 'read program info')
      const raw = info.subarray(64, 80)
      const end = raw.indexOf(0)
      out.set(progId, {
        name: raw.subarray(0, end < 0 ? 16 : end).toString('utf8'),
        ns: Number(info.readBigUInt64LE(192)),
        runs: Number(info.readBigUInt64LE(200)),
      })
    } finally {
      libc().close(pfd)
    }
  }
  return out
}

/** Runs and ns between two snapshots, by program name (programs of one name summed); idle ones left out. */
export function runTimeDelta(a: Map<number, ProgRunTime>, b: Map<number, ProgRunTime>): Map<string, {runs: number; ns: number}> {
  const out = new Map<string, {runs: number; ns: number}>()
  for (const [id, p] of b) {
    const q = a.get(id)
    const runs = p.runs - (q?.runs ?? 0)
    const ns = p.ns - (q?.ns ?? 0)
    if (runs === 0) continue
    const cur = out.get(p.name) ?? {runs: 0, ns: 0}
    out.set(p.name, {runs: cur.runs + runs, ns: cur.ns + ns})
  }
  return out
}

/** `node`'s sn_stats counters (summed over CPUs) by name, from the pin. */
export function nodeCounters(node: string): Record<string, number> {
  const map = BpfMap.openPinned(join(layoutPinDir(node), 'sn_stats'))
  try {
    return Object.fromEntries(Object.entries(readCounters(map)).map(([k, v]) => [k, Number(v)]))
  } finally {
    map.close()
  }
}

/** The counters that moved between two readings, as "name+N". */
export function counterDelta(a: Record<string, number>, b: Record<string, number>, keep: (name: string) => boolean): string {
  return (
    Object.keys(b)
      .filter((k) => keep(k) && (b[k] ?? 0) !== (a[k] ?? 0))
      .map((k) => `${k}+${(b[k] ?? 0) - (a[k] ?? 0)}`)
      .join(' ') || 'none moved'
  )
}

/** The 1-minute load average now. */
export async function loadAverage(): Promise<number> {
  const {readFile} = await import('node:fs/promises')
  return Number((await readFile('/proc/loadavg', 'utf8')).split(' ')[0])
}
