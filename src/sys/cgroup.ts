/**
 * Control groups, on pure cgroup v2 hosts and on hybrid ones (v1 controllers, plus a cgroup2
 * mount without controllers). cgroup2 is the handle on a set of processes: membership is
 * inherited across fork, and cgroup.kill ends all of them, also those forked meanwhile.
 * Resource limits go to v2 controllers where the host has them, else to the v1 ones.
 */
import {existsSync, readdirSync, readFileSync, rmdirSync, statSync, watch, type FSWatcher} from 'node:fs'
import {readdir, readFile, rmdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

export interface CgroupMounts {
  /** Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts). */
  v2?: string
  /** v1 hierarchies by controller, only those we use. */
  v1: {memory?: string; cpu?: string}
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))

export function parseMountinfo(text: string): {root: string; mountpoint: string; fstype: string; superOptions: string}[] {
  const out = []
  for (const line of text.split('\n')) {
    if (!line) continue
    const [pre, post] = line.split(' - ')
    if (!pre || !post) continue
    const f = pre.split(' ')
    const g = post.split(' ')
    out.push({root: unescape(f[3] ?? ''), mountpoint: unescape(f[4] ?? ''), fstype: g[0] ?? '', superOptions: g[2] ?? ''})
  }
  return out
}

let cached: CgroupMounts | undefined

export function cgroupMounts(): CgroupMounts {
  if (cached) return cached
  const mounts = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'))
  const v2 = mounts.find((m) => m.fstype === 'cgroup2')?.mountpoint
  const v1 = (ctl: string) => mounts.find((m) => m.fstype === 'cgroup' && m.superOptions.split(',').includes(ctl))?.mountpoint
  const memory = v1('memory')
  const cpu = v1('cpu')
  cached = {...(v2 ? {v2} : {}), v1: {...(memory ? {memory} : {}), ...(cpu ? {cpu} : {})}}
  return cached
}

/** The v2 root swarmnet uses; one line saying what is missing when there is none. */
export function cgroup2Root(): string {
  const v2 = cgroupMounts().v2
  if (!v2)
    throw new Error('tasks need a cgroup2 mount (none in /proc/self/mountinfo): mount -t cgroup2 none /sys/fs/cgroup/unified')
  return v2
}

const ownV1Paths = new Map<string, string>()

/**
 * This process's cgroup in a v1 hierarchy (e.g. "/process_api/abc"), from /proc/self/cgroup;
 * read once per controller: it is asked at every task start and stop, and a process's tasks
 * stay below where it started.
 */
function ownV1Path(controller: string): string {
  const known = ownV1Paths.get(controller)
  if (known !== undefined) return known
  let path = '/'
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, ctls, p] = line.split(':')
    if (ctls?.split(',').includes(controller)) {
      path = p ?? '/'
      break
    }
  }
  ownV1Paths.set(controller, path)
  return path
}

/**
 * Directory that holds swarmnet's cgroups of a node:
 * v2: <cg2>/swarmnet/<node>; v1: below the agent's own v1 cgroup, so whoever accounts for the
 * agent (a service manager, a job system) keeps accounting for its tasks.
 */
export function nodeCgroupDirs(node: string): {v2: string; memory?: string; cpu?: string} {
  const m = cgroupMounts()
  const v1 = (ctl: 'memory' | 'cpu') => (m.v1[ctl] ? join(m.v1[ctl], ownV1Path(ctl), 'swarmnet', node) : undefined)
  const memory = v1('memory')
  const cpu = v1('cpu')
  return {v2: nodeCgroupV2Dir(node), ...(memory ? {memory} : {}), ...(cpu ? {cpu} : {})}
}

/**
 * nodeCgroupDirs(node).v2 alone: without the v1 paths, which read /proc/self/cgroup (asked per
 * task on every map sync, that read held the agent's event loop ~0.3 s per 300-task start).
 */
export function nodeCgroupV2Dir(node: string): string {
  return join(cgroup2Root(), 'swarmnet', node)
}

/** A task's limits, which runc sets in its cgroup (v2 where the host has the controller, else v1). */
export interface Limits {
  memoryBytes?: number
  nanoCpus?: number
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

/** Pids in a cgroup and its descendants. */
export function cgroupPids(dir: string): number[] {
  if (!existsSync(dir)) return []
  const pids = readText(join(dir, 'cgroup.procs')).split('\n').filter(Boolean).map(Number)
  for (const sub of subdirs(dir)) pids.push(...cgroupPids(join(dir, sub)))
  return pids
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, {withFileTypes: true})
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
  } catch {
    return []
  }
}

/** The cgroup2 path of a process relative to the v2 mount ("/swarmnet/n1/abc"), or undefined. */
export function cgroupOf(pid: number): string | undefined {
  for (const line of readText(`/proc/${pid}/cgroup`).split('\n')) {
    if (line.startsWith('0::')) return line.slice(3)
  }
  return undefined
}

/**
 * Whether a process is in the cgroup2 dir or below: one asynchronous read of its cgroup.events
 * ("populated 1"), where cgroupPids reads cgroup.procs at every level on the event loop. A cgroup
 * that is gone is empty. For the agent's waits, which poll it.
 */
export async function cgroupPopulated(dir: string): Promise<boolean> {
  let events: string
  try {
    events = await readFile(join(dir, 'cgroup.events'), 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(dir)) return false
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${dir} has no cgroup.events: not a cgroup2 directory`)
    throw e
  }
  const line = events.split('\n').find((l) => l.startsWith('populated '))
  if (line === undefined) throw new Error(`${dir}/cgroup.events has no populated line: not a cgroup2 directory`)
  return line !== 'populated 0'
}

/** How often cgroupEmptied reads cgroup.events when no notification came (one can be missed: an overflow). */
const EMPTIED_POLL_MS = 250

/**
 * Resolves true once the cgroup at dir (and below) holds no process, false if it still does
 * after timeoutMs. The kernel notifies a change of cgroup.events (inotify), so the wait reads
 * the file when it changed rather than every few ms: hundreds of tasks stopping at once each
 * polling it held the agent's event loop (a file read is four calls back to the loop).
 */
export async function cgroupEmptied(dir: string, timeoutMs: number): Promise<boolean> {
  if (!(await cgroupPopulated(dir))) return true
  if (timeoutMs <= 0) return false
  return new Promise<boolean>((resolve, reject) => {
    let done = false
    let watcher: FSWatcher | undefined
    const finish = (v: boolean | Error) => {
      if (done) return
      done = true
      watcher?.close()
      clearTimeout(deadline)
      clearInterval(poll)
      if (v instanceof Error) reject(v)
      else resolve(v)
    }
    const check = () => void cgroupPopulated(dir).then((p) => !p && finish(true), finish)
    const deadline = setTimeout(() => finish(false), timeoutMs)
    const poll = setInterval(check, EMPTIED_POLL_MS)
    try {
      watcher = watch(join(dir, 'cgroup.events'), {persistent: false}, check)
      watcher.on('error', () => watcher?.close()) // the cgroup went (rmdir): the poll says empty
    } catch {
      // no inotify (or the cgroup went meanwhile): the poll alone
    }
    check() // emptied between the first read and the watch
  })
}

/**
 * Kills every process in dir and below (cgroup.kill: forks racing with it die too) and waits
 * until the cgroup is empty. Resolves false if something was still there after timeoutMs.
 */
export async function killCgroup(dir: string, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (!(await cgroupPopulated(dir))) return true
    try {
      await writeFile(join(dir, 'cgroup.kill'), '1')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true // removed meanwhile: empty
      throw e
    }
    // A process dies of SIGKILL at once, unless in the kernel (uninterruptible): then it is killed
    // again after the wait, as are forks that raced with the kill.
    if (await cgroupEmptied(dir, Math.min(500, deadline - Date.now()))) return true
    if (Date.now() > deadline) return false
  }
}

/** rmdir dir and everything below it, deepest first (cgroupfs has no recursive remove). */
export function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return
  for (const sub of subdirs(dir)) removeCgroupTree(join(dir, sub))
  try {
    rmdirSync(dir)
  } catch (e) {
    // Removed meanwhile by someone else: that is the outcome we want.
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
}

/**
 * removeCgroupTree on libuv's threads: an rmdir on cgroupfs waits for the kernel to take the
 * cgroup offline, and an agent removing many tasks at once held its event loop with them.
 */
export async function removeCgroupTreeAsync(dir: string): Promise<void> {
  let subs: string[]
  try {
    subs = (await readdir(dir, {withFileTypes: true})).filter((e) => e.isDirectory()).map((e) => e.name)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw e
  }
  for (const sub of subs) await removeCgroupTreeAsync(join(dir, sub))
  try {
    await rmdir(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
}

/**
 * Every v1 directory named swarmnet/<node> in the memory and cpu hierarchies, at most a few
 * levels deep: where agents started from different cgroups put their tasks' v1 cgroups.
 */
export function findV1NodeDirs(node: string, depth = 4): string[] {
  const m = cgroupMounts()
  const found: string[] = []
  const walk = (dir: string, left: number) => {
    const d = join(dir, 'swarmnet', node)
    if (existsSync(d) && statSync(d).isDirectory()) found.push(d)
    if (left === 0) return
    for (const sub of subdirs(dir)) if (sub !== 'swarmnet') walk(join(dir, sub), left - 1)
  }
  for (const root of [m.v1.memory, m.v1.cpu]) if (root) walk(root, depth)
  return [...new Set(found)]
}

/** rmdir a cgroup that others may still use (swarmnet/, shared by nodes): only when nothing is below it. */
export function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EBUSY') throw e
  }
}

/** Joins the cgroups given before `--` (cgroup.procs files), then execs the rest. */
const JOIN_CGROUPS = `set -e
while [ "$1" != -- ]; do echo $$ > "$1"; shift; done
shift
exec "$@"`

/** argv that runs argv inside the given cgroup directories from its first instruction on. */
export function inCgroupsArgv(cgroups: readonly string[], argv: readonly string[]): string[] {
  return ['sh', '-c', JOIN_CGROUPS, 'sn-join', ...cgroups.map((d) => `${d}/cgroup.procs`), '--', ...argv]
}
