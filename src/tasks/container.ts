/**
 * A task from an image, run by runc: its bundle in the task's directory (config.json from
 * oci-spec.ts, rootfs an overlay of the image's shared, read-only root file system and a
 * writable layer of the task's own), runc's state under the node's run directory.
 *
 * runc runs detached: the container's PID 1 outlives runc and the agent, in the task's cgroup
 * (cgroupsPath) and network namespace, with the task's log as stdout and stderr. The node
 * finds it, adopts it and kills it as it does any task: by its cgroup.
 */
import {existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {RUN_DIR, STATE_ROOT} from '../sys/node-paths.js'
import {parseMountinfo, removeCgroupTree, removeIfEmpty} from '../sys/cgroup.js'
import {run} from '../sys/exec.js'
import {checkTaskId} from '../model/ids.js'
import type {UnpackedImage} from '../images/image.js'
import {ociConfig, type OciMount, taskCaps} from './oci-spec.js'
import type {ServiceMount} from '../model/container.js'
import {stateDir} from '../sys/node-paths.js'
import {buildNodeView} from './node-view.js'
import {removeNodeEtc} from './node-etc.js'
import {giveToRoot, openPathTo, type Remap} from './userns.js'

/**
 * What a service says about its containers (all optional: the image's own settings otherwise).
 * Without an image, the task is a command of the node in the view of node-view.ts.
 */
export interface ContainerOptions {
  image?: string
  /** false: its registry is reached without TLS verification (service create --tls-verify=false). */
  tlsVerify?: false
  env?: string[]
  workdir?: string
  hostname?: string
  user?: string
  capAdd?: string[]
  capDrop?: string[]
  readOnly?: boolean
  init?: boolean
  mounts?: ServiceMount[]
  /** remap: a user namespace of the task's own (userns.ts); its image is the mapped copy. */
  userns?: 'remap'
}

/**
 * The init --init puts at PID 1: Docker's docker-init is tini; its static build runs in any image.
 * Looked for on the node at each start, so a missing one is the task's error, not the agent's.
 */
const INIT_CANDIDATES = ['/usr/bin/tini-static', '/usr/bin/docker-init', '/usr/libexec/docker/docker-init']

export function taskInit(node: string): string {
  const found = INIT_CANDIDATES.find((p) => existsSync(p))
  if (!found) throw new Error(`--init: node ${node} has no static init (${INIT_CANDIDATES[0]}): install the tini package`)
  return found
}

/** runc's state directory for a node's containers. */
export const runcRoot = (node: string) => join(RUN_DIR, 'runc', node)

/** Whether the task runs as a container (runc knows it), not as a command of the node. */
export const isContainer = (node: string, taskId: string) => existsSync(join(runcRoot(node), checkTaskId(taskId), 'state.json'))

const runc = (node: string, ...args: string[]) => ['runc', '--root', runcRoot(node), ...args]

/** Runs argv in the task's container as its own process runs (user, capabilities, seccomp, cwd, env). */
export const runcExecArgv = (node: string, taskId: string, argv: string[]) => runc(node, 'exec', checkTaskId(taskId), ...argv)

/** Asynchronous: with a thousand tasks the mount table is long, and it is read at every start and stop. */
async function isMountpoint(path: string): Promise<boolean> {
  const text = await readFile('/proc/self/mountinfo', 'utf8')
  // Most tasks (commands) mount no root: a search of the text spares parsing every line of it.
  if (!text.includes(` ${escapeMountinfo(path)} `)) return false
  return parseMountinfo(text).some((m) => m.mountpoint === path)
}

/** A path as mountinfo writes it: space, tab, newline and backslash as \ooo. */
const escapeMountinfo = (p: string) => p.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`)

/**
 * The task's root: the image's root below, its own writable layer above (kept across restarts of
 * the task). The root directory of an overlay is its upper one: with a mapping, the mapped root's.
 */
async function mountRootfs(dir: string, image: UnpackedImage, remap?: Remap): Promise<string> {
  const rootfs = join(dir, 'rootfs')
  if (await isMountpoint(rootfs)) return rootfs
  const upper = join(dir, 'layer', 'upper')
  const work = join(dir, 'layer', 'work')
  for (const d of [rootfs, upper, work]) mkdirSync(d, {recursive: true, mode: 0o755})
  if (remap) await giveToRoot(upper, remap)
  await run(
    ['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${image.rootfs},upperdir=${upper},workdir=${work}`, rootfs],
    `mounting the root of the task in ${dir}`,
  )
  return rootfs
}

/** Unmounts the task's root if mounted (after its processes are gone). */
export async function releaseRootfs(dir: string): Promise<void> {
  const rootfs = join(dir, 'rootfs')
  if (await isMountpoint(rootfs)) await run(['umount', '-l', rootfs], `unmounting ${rootfs}`)
}

/** name:x:uid:gid:... lines of the image's /etc/passwd or /etc/group. */
function dbEntry(rootfs: string, db: 'passwd' | 'group', key: string): string[] | undefined {
  let text = ''
  try {
    text = readFileSync(join(rootfs, 'etc', db), 'utf8')
  } catch {
    return undefined
  }
  return text
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === key || f[2] === key)
}

/** USER as Docker reads it: UID[:GID] or NAME[:GROUP], names from the image's own databases. */
export function imageUser(rootfs: string, spec: string): {uid: number; gid: number; additionalGids: number[]} {
  if (!spec) return {uid: 0, gid: 0, additionalGids: []}
  const [u, g] = spec.split(':') as [string, string | undefined]
  const pw = dbEntry(rootfs, 'passwd', u)
  let uid: number
  let gid: number
  if (/^\d+$/.test(u)) {
    uid = Number(u)
    gid = pw ? Number(pw[3]) : 0
  } else {
    if (!pw) throw new Error(`user ${u} is not in the image's /etc/passwd`)
    uid = Number(pw[2])
    gid = Number(pw[3])
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g)
    else {
      const gr = dbEntry(rootfs, 'group', g)
      if (!gr) throw new Error(`group ${g} is not in the image's /etc/group`)
      gid = Number(gr[2])
    }
  }
  // As Docker: the named user's supplementary groups from the image's /etc/group.
  const name = pw?.[0]
  const additionalGids: number[] = []
  if (name && g === undefined) {
    try {
      for (const l of readFileSync(join(rootfs, 'etc', 'group'), 'utf8').split('\n')) {
        const f = l.split(':')
        if (f[3]?.split(',').includes(name) && Number(f[2]) !== gid) additionalGids.push(Number(f[2]))
      }
    } catch {
      // no /etc/group: no supplementary groups
    }
  }
  return {uid, gid, additionalGids}
}

/** KEY=VALUE list with later keys replacing earlier ones, order of first appearance kept. */
export function mergeEnv(...lists: string[][]): string[] {
  const m = new Map<string, string>()
  for (const l of lists) for (const kv of l) m.set(kv.split('=')[0]!, kv)
  return [...m.values()]
}

/** A node's named volume: a directory of its own, made on first use and kept (as Docker's local driver). */
export const volumeDir = (node: string, name: string) => join(stateDir(node), 'volumes', name, '_data')

/**
 * --mount as the runtime takes it; volumes are directories of the node (an anonymous one is the
 * task's own). A volume made for a remapped task is its root's, as Docker makes it; one that exists
 * and a bind source stay as they are.
 */
async function ociMounts(node: string, dir: string, mounts: ServiceMount[], remap?: Remap): Promise<OciMount[]> {
  // swarmnet's own state and sockets are never a task's, whatever its service says.
  const own = (p: string) =>
    [STATE_ROOT, RUN_DIR].some((d) => p === d || p.startsWith(`${d}/`) || d.startsWith(`${p}/`) || p === '/')
  const out: OciMount[] = []
  for (const [i, m] of mounts.entries()) {
    if (m.type === 'tmpfs') {
      out.push({
        destination: m.target,
        type: 'tmpfs',
        source: 'tmpfs',
        options: [
          'nosuid',
          'nodev',
          ...(m.sizeBytes !== undefined ? [`size=${m.sizeBytes}`] : []),
          ...(m.mode !== undefined ? [`mode=${m.mode.toString(8)}`] : []),
        ],
      })
      continue
    }
    let source: string
    if (m.type === 'bind') {
      if (!existsSync(m.source)) throw new Error(`--mount source ${m.source} does not exist on node ${node}`)
      if (own(m.source)) throw new Error(`--mount source ${m.source} holds swarmnet's own state on node ${node}`)
      source = m.source
    } else {
      source = m.source ? volumeDir(node, m.source) : join(dir, 'volumes', String(i))
      const made = !existsSync(source)
      mkdirSync(source, {recursive: true, mode: 0o755})
      if (remap && made) await giveToRoot(source, remap)
    }
    out.push({destination: m.target, type: 'bind', source, options: ['rbind', m.readonly ? 'ro' : 'rw', 'rprivate']})
  }
  return out
}

/**
 * A container's hostname without --hostname: its id's first 12 digits, as Docker's. Not the task's
 * name: a dotted name (site.1) makes resolvers take "1" as the search domain, so short names fail.
 */
export const containerHostname = (taskId: string) => taskId.slice(0, 12)

export interface ContainerLaunch {
  node: string
  taskId: string
  /** The task's directory: bundle, writable layer, hosts, resolv.conf, hostname. */
  dir: string
  netnsPath: string
  /** The task's cgroup relative to each hierarchy's root. */
  cgroupsPath: string
  name: string
  /** Command from the service: replaces the image's CMD (its ENTRYPOINT stays), as Docker's. */
  command: string[]
  extraEnv: Record<string, string>
  opts: ContainerOptions
  /** With opts.userns, the copy with this mapping. */
  image: UnpackedImage
  /** opts.userns's mapping (the node's, userns.ts). */
  remap?: Remap
  files: {hosts: string; resolv: string}
  limits?: {memoryBytes?: number; nanoCpus?: number}
}

/** Writes the bundle and returns the command line that starts the container detached. */
export async function prepareContainer(c: ContainerLaunch): Promise<string[]> {
  await removeContainer(c.node, c.taskId)
  if (c.opts.userns === 'remap' && !c.remap) throw new Error('--userns remap: no mapping given')
  const remap = c.opts.userns === 'remap' ? c.remap : undefined
  const rootfs = await mountRootfs(c.dir, c.image, remap)
  // The mapped root resolves the task's root and files by path: it must get through to them.
  if (remap) await openPathTo(c.dir, STATE_ROOT, remap)
  const cfg = c.image.config
  const args = [...cfg.entrypoint, ...(c.command.length > 0 ? c.command : cfg.cmd)]
  if (args.length === 0) throw new Error(`image ${c.opts.image ?? ''} has no command: give one after --`)
  const hostname = c.opts.hostname ?? containerHostname(c.taskId)
  const hostnameFile = join(c.dir, 'hostname')
  writeFileSync(hostnameFile, `${hostname}\n`, {mode: 0o644})
  const user = imageUser(rootfs, c.opts.user ?? cfg.user)
  const env = mergeEnv(
    ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    cfg.env,
    [`HOSTNAME=${hostname}`, ...Object.entries(c.extraEnv).map(([k, v]) => `${k}=${v}`)],
    c.opts.env ?? [],
  )
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.uid === 0 ? '/root' : '/'}`)
  const config = ociConfig({
    rootfs,
    readonlyRootfs: c.opts.readOnly ?? false,
    args,
    env,
    cwd: c.opts.workdir ?? cfg.workdir,
    ...user,
    hostname,
    caps: taskCaps(c.opts.capAdd, c.opts.capDrop),
    netnsPath: c.netnsPath,
    cgroupsPath: c.cgroupsPath,
    ...(c.limits ? {limits: c.limits} : {}),
    files: {...c.files, hostname: hostnameFile},
    ...(c.opts.init ? {init: taskInit(c.node)} : {}),
    ...(c.opts.mounts ? {mounts: await ociMounts(c.node, c.dir, c.opts.mounts, remap)} : {}),
    ...(remap ? {userns: remap} : {}),
  })
  return writeBundle(c.node, c.taskId, c.dir, config)
}

async function writeBundle(node: string, taskId: string, dir: string, config: Record<string, unknown>): Promise<string[]> {
  const bundle = join(dir, 'bundle')
  await mkdir(bundle, {recursive: true, mode: 0o700})
  await writeFile(join(bundle, 'config.json'), JSON.stringify(config, null, 1))
  await mkdir(runcRoot(node), {recursive: true, mode: 0o700})
  return runc(node, 'run', '--detach', '--bundle', bundle, checkTaskId(taskId))
}

export interface CommandLaunch {
  node: string
  taskId: string
  dir: string
  netnsPath: string
  cgroupsPath: string
  /** The task's hostname (its name, SERVICE.SLOT, unless --hostname). */
  hostname: string
  argv: string[]
  /** KEY=VALUE, in order (later ones win). */
  env: string[]
  /** Resolved on the node (resolveUser); root when absent. */
  user?: {uid: number; gid: number; groups?: number[]}
  opts: ContainerOptions
  files: {hosts: string; resolv: string}
  limits?: {memoryBytes?: number; nanoCpus?: number}
}

/**
 * A command of the node as a container: the same runtime, defaults and flags as an image's, its
 * root the allow-list view of the node (node-view.ts), read-only. Returns runc's command line.
 */
export async function prepareCommandContainer(c: CommandLaunch): Promise<string[]> {
  // Refused where the service is made (model/container.ts); a spec from elsewhere is refused here too.
  if (c.opts.userns === 'remap')
    throw new Error(
      "--userns remap needs --image: a command task runs the node's own files, which its remapped root would not own",
    )
  await removeContainer(c.node, c.taskId)
  // A root an image's task mounted here (the service ran an image before) goes before the view is made.
  await releaseRootfs(c.dir)
  const view = await buildNodeView(c.node, c.dir)
  const hostnameFile = join(c.dir, 'hostname')
  await writeFile(hostnameFile, `${c.hostname}\n`, {mode: 0o644})
  const uid = c.user?.uid ?? 0
  const env = mergeEnv(c.env, c.opts.env ?? [])
  const config = ociConfig({
    rootfs: view.rootfs,
    readonlyRootfs: true,
    args: c.argv,
    env,
    cwd: c.opts.workdir ?? '/',
    uid,
    gid: c.user?.gid ?? 0,
    ...(c.user?.groups?.length ? {additionalGids: c.user.groups} : {}),
    hostname: c.hostname,
    caps: taskCaps(c.opts.capAdd, c.opts.capDrop),
    netnsPath: c.netnsPath,
    cgroupsPath: c.cgroupsPath,
    ...(c.limits ? {limits: c.limits} : {}),
    files: {...c.files, hostname: hostnameFile},
    baseMounts: [view.etc],
    ...(c.opts.init ? {init: taskInit(c.node)} : {}),
    // --read-only: the task's /tmp and /run are read-only too (its --mount tmpfs are what it may write).
    mounts: [
      ...view.mounts.map((m) => (c.opts.readOnly && m.type === 'tmpfs' ? {...m, options: [...(m.options ?? []), 'ro']} : m)),
      ...(c.opts.mounts ? await ociMounts(c.node, c.dir, c.opts.mounts) : []),
    ],
  })
  return writeBundle(c.node, c.taskId, c.dir, config)
}

/** runc forgets the container (its processes are killed first) and removes its cgroups. Idempotent. */
export async function removeContainer(node: string, taskId: string): Promise<void> {
  if (!existsSync(join(runcRoot(node), checkTaskId(taskId)))) return
  await run(runc(node, 'delete', '--force', taskId), `removing container ${taskId}`).catch(() => undefined)
  // A state directory runc could not read (a kill in the middle of its create) goes too.
  rmSync(join(runcRoot(node), taskId), {recursive: true, force: true})
}

/**
 * Every container of a node, its runc state and its tasks' roots (leave, lab down), after its
 * processes were killed: nothing mounted is left under the node's state directory.
 */
export async function removeNodeContainers(node: string): Promise<void> {
  let ids: string[] = []
  try {
    ids = readdirSync(runcRoot(node))
  } catch {
    // no containers ran here
  }
  for (const id of ids) if (/^[0-9a-f]{24}$/.test(id)) await removeContainer(node, id)
  rmSync(runcRoot(node), {recursive: true, force: true})
  removeIfEmpty(join(RUN_DIR, 'runc'))
  await removeNodeEtc(node)
  // runc makes the node's level in every v1 hierarchy (hybrid hosts); the tasks' levels went with runc delete.
  for (const m of parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((x) => x.fstype === 'cgroup')) {
    const d = join(m.mountpoint, 'swarmnet', node)
    try {
      if (existsSync(d)) removeCgroupTree(d)
      removeIfEmpty(join(m.mountpoint, 'swarmnet'))
    } catch {
      // still in use (a process of the node's agent itself): left for lab down
    }
  }
  // Only the task roots this code mounted (tasks/<id>/rootfs): a mount someone else made under the
  // node's state is not ours to take away, and lab down says so instead.
  const ours = new RegExp(`^${join(stateDir(node), 'tasks').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[0-9a-f]{24}/rootfs$`)
  const mounted = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => ours.test(m.mountpoint))
  for (const m of mounted.reverse()) await run(['umount', '-l', m.mountpoint], `unmounting ${m.mountpoint}`)
}
