/**
 * The task runner on one node: a network namespace per task with its veths, a cgroup, and the
 * task's process, a container run by runc (container.ts), inside them. Host ends of the veths stay
 * in the current namespace (the node's).
 */
import {taskResolvConf} from '../dns/resolv.js'
import {GWBRIDGE_GATEWAY} from './gwbridge.js'
import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join, relative} from 'node:path'
import {launch} from '../sys/exec.js'
import {checkIfname, createVeth, deleteLink, ifindexOf, ipBatch, setMtu} from '../sys/link.js'
import {
  cgroup2Root,
  cgroupOf,
  cgroupPids,
  cgroupEmptied,
  findV1NodeDirs,
  killCgroup,
  type Limits,
  nodeCgroupV2Dir,
  removeCgroupTreeAsync,
} from '../sys/cgroup.js'
import {addNetns, delNetns, listNetns, netnsExists, netnsPath} from '../sys/netns.js'
import {killProcs, noNewPrivs, nsPids, type ProcId, procId, procsInNetnsAsync, signalProc} from '../sys/proc.js'
import {type TaskUser} from './user.js'
import {taskDir, taskLogFile} from './logs.js'
import {
  type ContainerOptions,
  containerHostname,
  prepareCommandContainer,
  prepareContainer,
  releaseRootfs,
  removeContainer,
} from './container.js'
import {resolveImage} from '../images/image.js'
import {macForIp} from '../model/allocate.js'
import {checkTaskId} from '../model/ids.js'
import {GWBRIDGE_IF, GWBRIDGE_MTU} from './gwbridge.js'
import {nodeRemap} from './userns.js'
import {setSysctl} from '../sys/sysctl.js'

export interface Attachment {
  /** Host end in the node's namespace: sn-..., unique, at most 15 characters. */
  hostIf: string
  ip: string
  prefixLen: number
  mac: string
  mtu: number
}

export interface GwAttachment {
  ip: string
  prefixLen: number
  gatewayIp: string
  hostIf: string
  /** Default: derived from ip as Docker does (02:42:a:b:c:d). */
  mac?: string
  /** false: no default route through the bridge (a task only on internal networks); the bridge's subnet stays reachable. */
  defaultRoute?: boolean
}

export interface SandboxHooks {
  /**
   * Called per overlay attachment while both ends are still in the node's namespace, so the
   * data plane can attach XDP to the task side (it survives the move).
   */
  beforeMove?(hostIf: string, peerIf: string): Promise<void>
}

export interface SandboxSpec {
  node: string
  taskId: string
  /** Use taskNetnsName(node, taskId). */
  netns: string
  attachments: Attachment[]
  gw?: GwAttachment
  hooks?: SandboxHooks
}

export interface AttachedLink {
  hostIf: string
  hostIfindex: number
  /** Name inside the task: eth0, eth1, ... */
  ifname: string
}

export interface Sandbox {
  netns: string
  /** One per spec.attachments, same order. */
  attachments: AttachedLink[]
  /** The gwbridge attachment (last ethN), when spec.gw was given. */
  gw?: AttachedLink
  /** Every host end, for destroyTaskSandbox. */
  hostIfs: string[]
}

/**
 * The task's named network namespace. '.' cannot occur in a node name, so the namespaces of node
 * "n1" (sn-n1.*) and of node "n1-1" (sn-n1-1.*) never match each other's prefix.
 */
export function taskNetnsName(node: string, taskId: string): string {
  return `${taskNetnsPrefix(node)}${taskId.slice(0, 8)}`
}

export const taskNetnsPrefix = (node: string) => `sn-${node}.`

/** The namespaces of this node's tasks that exist now. */
export function listTaskNetns(node: string): string[] {
  return listNetns(taskNetnsPrefix(node)).filter((n) => /^[0-9a-f]{8}$/.test(n.slice(taskNetnsPrefix(node).length)))
}

/** The short-lived name of the task end before it moves: sn- and a hash, so it is ours and fits. */
function peerName(hostIf: string): string {
  return `sn-t${createHash('sha1').update(hostIf).digest('hex').slice(0, 11)}`
}

interface PlumbOptions {
  hostIf: string
  netns: string
  ifname: string
  mtu: number
  mac: string
  cidr: string
  beforeMove?: (hostIf: string, peerIf: string) => Promise<void>
  /** More `ip` commands for the node's namespace, run with the move (after it). */
  hostExtra?: string[][]
  /** More `ip` commands for the task's namespace, run once its end is up there. */
  nsExtra?: string[][]
}

/**
 * One veth: the host end here, the task end moved into the task's namespace as `ifname`.
 * Three `ip` processes whatever the extras: make the pair, move and raise, configure inside.
 */
export async function plumb(o: PlumbOptions): Promise<number> {
  const peer = peerName(o.hostIf)
  checkIfname(o.ifname)
  await createVeth(o.hostIf, peer, {mtu: o.mtu, peerMac: o.mac})
  if (o.beforeMove) await o.beforeMove(o.hostIf, peer)
  await ipBatch(
    undefined,
    [
      ['link', 'set', 'dev', peer, 'netns', o.netns, 'name', o.ifname],
      ['link', 'set', 'dev', o.hostIf, 'up'],
      ...(o.hostExtra ?? []),
    ],
    `moving ${peer} into ${o.netns} as ${o.ifname}`,
  )
  await ipBatch(
    o.netns,
    [['addr', 'replace', o.cidr, 'dev', o.ifname], ['link', 'set', 'dev', o.ifname, 'up'], ...(o.nsExtra ?? [])],
    `setting up ${o.ifname} (${o.cidr}) in ${o.netns}`,
  )
  return ifindexOf(o.hostIf)
}

/** Creates the task's namespace and links. On failure, removes what it made and rethrows. */
export async function createTaskSandbox(spec: SandboxSpec): Promise<Sandbox> {
  const hostIfs = [...spec.attachments.map((a) => a.hostIf), ...(spec.gw ? [spec.gw.hostIf] : [])]
  if (netnsExists(spec.netns)) throw new Error(`creating sandbox for task ${spec.taskId}: netns ${spec.netns} exists`)
  try {
    await addNetns(spec.netns)
    // Loopback goes up with the first link's batch; alone only when the task has no link.
    let lo: string[][] = [['link', 'set', 'dev', 'lo', 'up']]
    const attachments: AttachedLink[] = []
    for (const [i, a] of spec.attachments.entries()) {
      const ifname = `eth${i}`
      const hostIfindex = await plumb({
        hostIf: a.hostIf,
        netns: spec.netns,
        ifname,
        mtu: a.mtu,
        mac: a.mac,
        cidr: `${a.ip}/${a.prefixLen}`,
        ...(spec.hooks?.beforeMove ? {beforeMove: spec.hooks.beforeMove} : {}),
        nsExtra: lo,
      })
      lo = []
      attachments.push({hostIf: a.hostIf, hostIfindex, ifname})
    }
    const sandbox: Sandbox = {netns: spec.netns, attachments, hostIfs}
    if (spec.gw) {
      const g = spec.gw
      const ifname = `eth${spec.attachments.length}`
      const hostIfindex = await plumb({
        hostIf: g.hostIf,
        netns: spec.netns,
        ifname,
        mtu: GWBRIDGE_MTU,
        mac: g.mac ?? macForIp(g.ip),
        cidr: `${g.ip}/${g.prefixLen}`,
        // XDP delivers host-mode published ports straight into this veth: its task end needs NAPI too.
        ...(spec.hooks?.beforeMove ? {beforeMove: spec.hooks.beforeMove} : {}),
        // Isolated bridge ports reach the bridge itself but not each other (Docker's icc=false).
        hostExtra: [
          ['link', 'set', 'dev', g.hostIf, 'master', GWBRIDGE_IF],
          ['link', 'set', 'dev', g.hostIf, 'type', 'bridge_slave', 'isolated', 'on'],
        ],
        nsExtra: [
          ...lo,
          ...(g.defaultRoute !== false ? [['route', 'replace', 'default', 'via', g.gatewayIp, 'dev', ifname]] : []),
        ],
      })
      lo = []
      sandbox.gw = {hostIf: g.hostIf, hostIfindex, ifname}
    }
    await ipBatch(spec.netns, lo, `setting lo up in ${spec.netns}`)
    return sandbox
  } catch (e) {
    await destroyTaskSandbox(spec.netns, hostIfs).catch(() => undefined)
    throw e
  }
}

/** Kills what still runs in the namespace, deletes the host ends and the namespace. Idempotent. */
export async function destroyTaskSandbox(netns: string, hostIfs: readonly string[]): Promise<void> {
  // The namespace (and so the task ends of the veths) lives on while a process holds it.
  const left = await killProcs(await procsInNetnsAsync(netnsPath(netns)))
  if (left.length > 0) throw new Error(`removing ${netns}: process ${left.map((p) => p.pid).join(', ')} did not die`)
  for (const h of hostIfs) await deleteLink(h)
  await delNetns(netns)
}

export interface TaskProcessSpec {
  node: string
  taskId: string
  netns: string
  /** The task's name: its hostname, and its name in /etc/hosts. */
  name: string
  /** Its addresses, for /etc/hosts. */
  ips: string[]
  argv: string[]
  env?: Record<string, string>
  /** The task's directory on the node: its log, hosts and resolv.conf. */
  dir: string
  /** A command's user, resolved on the node (resolveUser); root when absent. An image's is in container.user. */
  user?: TaskUser
  limits?: Limits
  /** --image and the flags that go with it (an image's task), or only those flags (a command's). */
  container?: ContainerOptions
}

/** The cgroup v2 directory of a task: under one parent per node (nodeCgroupDirs), which holds all its tasks. */
export const taskCgroup = (node: string, taskId: string) => join(nodeCgroupV2Dir(node), checkTaskId(taskId))

/** Docker's lines of /etc/hosts before a container's own: localhost, and the IPv6 names. */
const HOSTS_HEAD = [
  '127.0.0.1\tlocalhost',
  '::1\tlocalhost ip6-localhost ip6-loopback',
  'fe00::0\tip6-localnet',
  'ff00::0\tip6-mcastprefix',
  'ff02::1\tip6-allnodes',
  'ff02::2\tip6-allrouters',
]

/** The task's hostname: --hostname; else an image's task has its id's first 12 digits (as Docker), a command's its name. */
function hostnameOf(spec: TaskProcessSpec): string {
  if (spec.container?.hostname) return spec.container.hostname
  return spec.container?.image ? containerHostname(spec.taskId) : spec.name
}

/** The task's own hosts and resolv.conf, in its directory (asynchronous: written at every start). */
async function writeTaskFiles(spec: TaskProcessSpec): Promise<{hosts: string; resolv: string}> {
  await mkdir(spec.dir, {recursive: true, mode: 0o700})
  const hosts = join(spec.dir, 'hosts')
  const resolv = join(spec.dir, 'resolv.conf')
  // As Docker writes it: the hostname on each of the task's addresses, with the task's name beside
  // it when they differ (a name other tasks know it by).
  const host = hostnameOf(spec)
  const name = host === spec.name || spec.container?.hostname !== undefined ? host : `${host} ${spec.name}`
  const lines = [...HOSTS_HEAD, ...spec.ips.map((ip) => `${ip}\t${name}`)]
  await writeFile(hosts, `${lines.join('\n')}\n`, {mode: 0o644})
  await writeFile(resolv, taskResolvConf(await nodeResolvConf(), GWBRIDGE_GATEWAY), {mode: 0o644})
  return {hosts, resolv}
}

const nodeResolvConf = () => readFile('/etc/resolv.conf', 'utf8').catch(() => '')

/** A task's PID 1 as the node sees it: in the task's cgroup, pid 1 of its own namespace, set up. */
function findTaskInit(cgroup: string): ProcId | undefined {
  for (const pid of cgroupPids(cgroup)) {
    const ns = nsPids(pid)
    if (ns.length >= 2 && ns[ns.length - 1] === 1 && noNewPrivs(pid)) return procId(pid)
  }
  return undefined
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Starts the task as a container run by runc (container.ts): from its image, or a command of the
 * node in the allow-list view of node-view.ts. runc runs detached, so the task outlives the agent
 * (a restarted agent adopts it by pid and cgroup). Resolves to the task's PID 1 once it runs.
 */
export async function startTaskProcess(spec: TaskProcessSpec): Promise<ProcId> {
  const files = await writeTaskFiles(spec)
  // The cgroup (and its limits) is runc's to make, at this place.
  const cg = taskCgroup(spec.node, spec.taskId)
  // Whatever an earlier run left in the cgroup goes first: the task is one set of processes.
  if (!(await killCgroup(cg))) throw new Error(`starting task ${spec.taskId}: its old processes did not die`)
  const log = taskLogFile(spec.dir)
  const cgroupsPath = `/${relative(cgroup2Root(), cg)}`
  const image = spec.container?.image
  const remap = spec.container?.userns === 'remap' ? nodeRemap() : undefined
  // Ports below 1024 need CAP_NET_BIND_SERVICE in the network namespace's owner, the node's user
  // namespace, which a remapped root lacks: the task's namespace lets anyone bind them (Docker
  // sets this for every container since 20.10).
  if (remap) await setSysctl('net.ipv4.ip_unprivileged_port_start', '0', spec.netns)
  const argv = image
    ? await prepareContainer({
        node: spec.node,
        taskId: spec.taskId,
        dir: spec.dir,
        netnsPath: netnsPath(spec.netns),
        cgroupsPath,
        name: spec.name,
        command: spec.argv,
        extraEnv: spec.env ?? {},
        opts: spec.container!,
        image: await resolveImage(spec.node, image, {tlsVerify: spec.container!.tlsVerify !== false, ...(remap ? {remap} : {})}),
        ...(remap ? {remap} : {}),
        files,
        ...(spec.limits ? {limits: spec.limits} : {}),
      })
    : await prepareCommandContainer({
        node: spec.node,
        taskId: spec.taskId,
        dir: spec.dir,
        netnsPath: netnsPath(spec.netns),
        cgroupsPath,
        hostname: hostnameOf(spec),
        argv: spec.argv,
        // Only PATH from our own environment: the agent's variables are not the task's business.
        env: Object.entries({
          PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
          HOME: spec.user && spec.user.uid !== 0 ? '/' : '/root',
          HOSTNAME: hostnameOf(spec),
          ...spec.env,
        }).map(([k, v]) => `${k}=${v}`),
        ...(spec.user ? {user: spec.user} : {}),
        opts: spec.container ?? {},
        files,
        ...(spec.limits ? {limits: spec.limits} : {}),
      })
  // Started by the agent's spawner (src/sys/exec.ts): its output to the task's log, in a session of its own.
  let exited = false
  let notStarted: string | undefined
  void launch({argv, env: {PATH: process.env.PATH ?? ''}, logFile: log, detached: true}).then((r) => {
    exited = true
    notStarted = r.error?.message
  })
  const deadline = Date.now() + 15_000
  for (;;) {
    const init = findTaskInit(cg)
    if (init) return init
    if (exited || Date.now() > deadline) {
      await killCgroup(cg)
      const why = notStarted ?? lastLine(log)
      throw new Error(`starting task ${spec.taskId}: ${exited ? 'the runtime failed' : 'timed out'}${why ? `: ${why}` : ''}`)
    }
    await sleep(exited ? 0 : 20)
  }
}

function lastLine(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n')
    return lines[lines.length - 1]?.trim() ?? ''
  } catch {
    return ''
  }
}

/**
 * The task's PID 1 if pid is it: alive with the same start time, or (after an agent restart,
 * when only the pid is known) alive in the task's cgroup. Nothing else is ever signalled.
 */
export function verifyTaskPid(node: string, taskId: string, pid: number, startTime?: number): ProcId | undefined {
  const id = procId(pid)
  if (!id) return undefined
  if (startTime !== undefined) return id.startTime === startTime ? id : undefined
  const cg = cgroupOf(pid)
  return cg !== undefined && join(cgroup2Root(), cg) === taskCgroup(node, taskId) ? id : undefined
}

/**
 * Stops a task: SIGTERM to its PID 1 (when given, and proven ours), then after graceMs
 * cgroup.kill for whatever is left, the command's children included; then removes its cgroups.
 * Throws if something survived.
 */
export async function stopTaskProcess(
  node: string,
  taskId: string,
  init?: ProcId,
  graceMs = 3000,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<void> {
  const cg = taskCgroup(node, taskId)
  if (init && signalProc(init, signal)) {
    await cgroupEmptied(cg, graceMs)
  }
  if (!(await killCgroup(cg)))
    throw new Error(`stopping task ${taskId}: processes ${cgroupPids(cg).join(', ')} survived cgroup.kill`)
  await removeContainer(node, taskId)
  await releaseRootfs(taskDir(node, taskId))
  await removeTaskCgroups(node, taskId)
}

/** rmdir the task's v2 cgroup and its v1 ones (wherever an agent of this node put them). */
export async function removeTaskCgroups(node: string, taskId: string): Promise<void> {
  await removeCgroupTreeAsync(taskCgroup(node, taskId))
  for (const d of findV1NodeDirs(node)) await removeCgroupTreeAsync(join(d, taskId))
}
