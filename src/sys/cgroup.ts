/**
 * Control groups, on pure cgroup v2 hosts and on hybrid ones (v1 controllers, plus a cgroup2
 * mount without controllers). cgroup2 is the handle on a set of processes: membership is
 * inherited across fork, and cgroup.kill ends all of them, also those forked meanwhile.
 * Resource limits go to v2 controllers where the host has them, else to the v1 ones.
 */
import {existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync} from 'node:fs'
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

/** This process's cgroup in a v1 hierarchy (e.g. "/process_api/abc"), from /proc/self/cgroup. */
function ownV1Path(controller: string): string {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, ctls, path] = line.split(':')
    if (ctls?.split(',').includes(controller)) return path ?? '/'
  }
  return '/'
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
  return {v2: join(cgroup2Root(), 'swarmnet', node), ...(memory ? {memory} : {}), ...(cpu ? {cpu} : {})}
}

export interface Limits {
  memoryBytes?: number
  nanoCpus?: number
}

/** The directories a task's cgroup consists of: v2 always, v1 ones only when limits go there. */
export interface TaskCgroup {
  v2: string
  v1: string[]
}

const CPU_PERIOD_US = 100_000

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

const controllersOf = (dir: string) => readText(join(dir, 'cgroup.controllers')).trim().split(/\s+/).filter(Boolean)

/** mkdir -p, and on v2 enable ctls for the children of each level on the way down. */
function makePath(root: string, rel: string[], enable: string[]): string {
  let dir = root
  for (const part of rel) {
    if (enable.length > 0) {
      const have = controllersOf(dir)
      const on = readText(join(dir, 'cgroup.subtree_control')).trim().split(/\s+/)
      const add = enable.filter((c) => have.includes(c) && !on.includes(c))
      if (add.length > 0) writeFileSync(join(dir, 'cgroup.subtree_control'), add.map((c) => `+${c}`).join(' '))
    }
    dir = join(dir, part)
    mkdirSync(dir, {recursive: true}) // a racing creator is fine: it exists either way
  }
  return dir
}

/**
 * Creates the task's cgroup(s) and sets the limits. Where v2 has the memory (cpu) controller,
 * the limit goes there; else to the v1 memory (cpu) hierarchy; with neither, it is refused.
 */
export function createTaskCgroup(node: string, taskId: string, limits: Limits = {}): TaskCgroup {
  const root = cgroup2Root()
  const dirs = nodeCgroupDirs(node)
  const rootCtls = controllersOf(root)
  const want: string[] = []
  if (limits.memoryBytes !== undefined && rootCtls.includes('memory')) want.push('memory')
  if (limits.nanoCpus !== undefined && rootCtls.includes('cpu')) want.push('cpu')
  const v2 = makePath(root, ['swarmnet', node, taskId], want)
  const v1: string[] = []
  if (limits.memoryBytes !== undefined) {
    if (want.includes('memory')) writeFileSync(join(v2, 'memory.max'), String(limits.memoryBytes))
    else if (dirs.memory) {
      const d = makeV1(dirs.memory, taskId)
      writeFileSync(join(d, 'memory.limit_in_bytes'), String(limits.memoryBytes))
      v1.push(d)
    } else throw new Error('--limit-memory needs the memory controller (cgroup v2 or v1), which this host does not have')
  }
  if (limits.nanoCpus !== undefined) {
    const quota = Math.max(1000, Math.round((limits.nanoCpus / 1e9) * CPU_PERIOD_US))
    if (want.includes('cpu')) writeFileSync(join(v2, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`)
    else if (dirs.cpu) {
      const d = makeV1(dirs.cpu, taskId)
      writeFileSync(join(d, 'cpu.cfs_period_us'), String(CPU_PERIOD_US))
      writeFileSync(join(d, 'cpu.cfs_quota_us'), String(quota))
      v1.push(d)
    } else throw new Error('--limit-cpu needs the cpu controller (cgroup v2 or v1), which this host does not have')
  }
  return {v2, v1}
}

function makeV1(nodeDir: string, taskId: string): string {
  const d = join(nodeDir, taskId)
  mkdirSync(d, {recursive: true})
  return d
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Kills every process in dir and below (cgroup.kill: forks racing with it die too) and waits
 * until the cgroup is empty. Resolves false if something was still there after timeoutMs.
 */
export async function killCgroup(dir: string, timeoutMs = 5000): Promise<boolean> {
  if (!existsSync(dir)) return true
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (cgroupPids(dir).length === 0) return true
    writeFileSync(join(dir, 'cgroup.kill'), '1')
    if (Date.now() > deadline) return false
    await sleep(20)
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
