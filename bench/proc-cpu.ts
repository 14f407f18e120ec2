// CPU time from /proc, for the benches that account for the whole machine over a timed span:
// a process's (its threads' run time, ns precision) and the machine's (all cores, busy and idle).
import {readFileSync, readdirSync} from 'node:fs'

/**
 * CPU time a process's threads have run, ms: the sum of /proc/<pid>/task/<tid>/schedstat (run
 * time in ns). /proc/<pid>/stat's utime + stime count in 10 ms ticks, too coarse for a member
 * that runs ~100 ms in a timed span. A thread that exits between two reads takes its time with
 * it: the etcd members' Go threads and node's live as long as the process. NaN once it is gone.
 */
export function threadsCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN
  try {
    let ns = 0
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
      } catch {
        // The thread ended between the listing and the read.
      }
    }
    return ns / 1e6
  } catch {
    return NaN
  }
}

/**
 * A process's threads' run time, ms: its main thread's (tid = pid: for node, JavaScript and the
 * event loop) and the others' (node names them all 'node': V8's workers, the optimizing compiler
 * and concurrent GC, and libuv's thread pool, file writes and fdatasync). NaN once it is gone.
 */
export function mainThreadCpuMs(pid: number | undefined): {main: number; others: number} {
  if (pid === undefined) return {main: NaN, others: NaN}
  const main = (() => {
    try {
      return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6
    } catch {
      return NaN
    }
  })()
  return {main, others: threadsCpuMs(pid) - main}
}

/** The machine's CPU counters (/proc/stat's first line), ms over all cores: busy and all. */
export type MachineCpu = {busyMs: number; totalMs: number; cores: number}

export function machineCpu(): MachineCpu {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n')
  // user nice system idle iowait irq softirq steal (guest time is already in user), in USER_HZ (100/s).
  const f = lines[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
  const idle = f[3]! + f[4]!
  const total = f.reduce((a, b) => a + b, 0)
  const cores = lines.filter((l) => /^cpu\d/.test(l)).length
  return {busyMs: (total - idle) * 10, totalMs: total * 10, cores}
}

/** Between two readings: the busy share of all cores (0-1), the busy ms and all the cores' ms. */
export function machineBusy(a: MachineCpu, b: MachineCpu): {share: number; busyMs: number; totalMs: number} {
  const busy = b.busyMs - a.busyMs
  const total = b.totalMs - a.totalMs
  return {share: total > 0 ? busy / total : NaN, busyMs: busy, totalMs: total}
}
