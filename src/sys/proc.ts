import {readdirSync, readFileSync, readlinkSync, statSync} from 'node:fs'
import {readdir, readlink} from 'node:fs/promises'
import {forEachLimited} from '../util/pool.js'

/** The process id a pid file holds; undefined when the file is missing or holds no positive integer. */
export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/** State and start time (clock ticks since boot) from /proc/<pid>/stat, or undefined if gone. */
export function procStat(pid: number): {state: string; startTime: number; ppid: number} | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name may contain spaces and parentheses; fields resume after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return {state: rest[0] ?? '?', startTime: Number(rest[19]), ppid: Number(rest[1])}
}

/**
 * True while pid runs. A zombie counts as dead: after an agent restart nobody reaps its
 * old children until init does. startTime, when given, guards against a reused pid.
 */
export function isAlive(pid: number, startTime?: number): boolean {
  const st = procStat(pid)
  if (!st || st.state === 'Z' || st.state === 'X') return false
  return startTime === undefined || st.startTime === startTime
}

/**
 * Whether some process has this pid: one kill(pid, 0), no file to open and read. A zombie and a
 * reused pid pass it too, so a caller that must know confirms with isAlive now and then.
 */
export function pidExists(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false // kill(0 or -1, 0) asks about groups
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * A process as it was when we found it: pid and start time together name one process for good
 * (a reused pid has a later start time), so signalling through a ProcId never hits a stranger.
 */
export interface ProcId {
  pid: number
  startTime: number
}

export function procId(pid: number): ProcId | undefined {
  const st = procStat(pid)
  return st && st.state !== 'Z' && st.state !== 'X' ? {pid, startTime: st.startTime} : undefined
}

/**
 * Sends sig if the pid is still the process we found; false if it is gone or another one.
 * (Node has no pidfd; the start time is read again right before the signal.)
 */
export function signalProc(p: ProcId, sig: NodeJS.Signals): boolean {
  if (!isAlive(p.pid, p.startTime)) return false
  try {
    process.kill(p.pid, sig)
    return true
  } catch {
    return false
  }
}

/** The "NSpid:" line of /proc/<pid>/status: its pid in each pid namespace, outermost first. */
export function nsPids(pid: number): number[] {
  return statusField(pid, 'NSpid')?.split(/\s+/).map(Number) ?? []
}

/** Whether the process has no_new_privs set (runc sets it right before it execs the task). */
export function noNewPrivs(pid: number): boolean {
  return statusField(pid, 'NoNewPrivs') === '1'
}

function statusField(pid: number, name: string): string | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const line = text.split('\n').find((l) => l.startsWith(`${name}:`))
  return line?.slice(name.length + 1).trim()
}

/** Processes whose network namespace is the one at nsPath (what `ip netns pids` does). */
export function procsInNetns(nsPath: string): ProcId[] {
  let target: string
  try {
    // readlink of a namespace file gives "net:[inode]", the same text /proc/<pid>/ns/net shows.
    target = `net:[${statSync(nsPath).ino}]`
  } catch {
    return []
  }
  const out: ProcId[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      if (readlinkSync(`/proc/${name}/ns/net`) !== target) continue
    } catch {
      continue
    }
    const id = procId(Number(name))
    if (id) out.push(id)
  }
  return out
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone (or was never ours). */
export async function stopProcess(p: ProcId, graceMs = 3000): Promise<void> {
  if (!signalProc(p, 'SIGTERM')) return
  const deadline = Date.now() + graceMs
  while (isAlive(p.pid, p.startTime) && Date.now() < deadline) await sleep(50)
  if (!signalProc(p, 'SIGKILL')) return
  while (isAlive(p.pid, p.startTime)) await sleep(20)
}

/** SIGKILL each process that is still the one found; resolves to those still alive after timeoutMs. */
export async function killProcs(procs: readonly ProcId[], timeoutMs = 3000): Promise<ProcId[]> {
  for (const p of procs) signalProc(p, 'SIGKILL')
  const deadline = Date.now() + timeoutMs
  const alive = () => procs.filter((p) => isAlive(p.pid, p.startTime))
  while (alive().length > 0 && Date.now() < deadline) await sleep(20)
  return alive()
}

/** At most this many readlinks queued on libuv's threads by one walk, so other file work still gets a turn. */
const WALK_PARALLEL = 16

/** /proc/<pid>/ns/net of every process: "net:[inode]" -> pids. */
async function walkNetns(): Promise<Map<string, number[]>> {
  const byNs = new Map<string, number[]>()
  const pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n))
  await forEachLimited(pids, WALK_PARALLEL, async (name) => {
    try {
      const ns = await readlink(`/proc/${name}/ns/net`)
      const list = byNs.get(ns)
      if (list) list.push(Number(name))
      else byNs.set(ns, [Number(name)])
    } catch {
      // gone meanwhile, or a kernel thread: in no namespace of ours
    }
  })
  return byNs
}

/** The walk the next callers share; undefined once it has begun (later callers need a later one). */
let queuedWalk: Promise<Map<string, number[]>> | undefined
let lastWalk: Promise<unknown> = Promise.resolve()

/**
 * procsInNetns off the event loop: the walk over /proc runs on libuv's threads, and callers that
 * ask while one walk runs share the next one (an agent removing many tasks at once walks /proc a
 * few times, not once per task, and never over a thousand processes in one stretch of its loop).
 * Every caller's walk begins after its call, so a process that entered the namespace before the
 * call is found, as with procsInNetns.
 */
export async function procsInNetnsAsync(nsPath: string): Promise<ProcId[]> {
  let target: string
  try {
    target = `net:[${statSync(nsPath).ino}]`
  } catch {
    return []
  }
  let walk = queuedWalk
  if (!walk) {
    walk = lastWalk.then(() => {
      queuedWalk = undefined
      return walkNetns()
    })
    queuedWalk = walk
    lastWalk = walk.catch(() => undefined)
  }
  const byNs = await walk
  return (byNs.get(target) ?? []).flatMap((pid) => {
    const id = procId(pid)
    return id ? [id] : []
  })
}
