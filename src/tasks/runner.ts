/**
 * The task runner on one node: a network namespace per task with its veths, and the task's
 * process inside it. Host ends of the veths stay in the current namespace (the node's).
 */
import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {closeSync, mkdirSync, openSync} from 'node:fs'
import {dirname} from 'node:path'
import {
  addAddress,
  addDefaultRoute,
  createVeth,
  deleteLink,
  enslave,
  ifindexOf,
  moveLink,
  setBridgePortIsolated,
  setLinkUp,
  setMac,
  setMtu,
} from '../sys/link.js'
import {addNetns, delNetns, netnsExists, netnsPids, nsenterArgv} from '../sys/netns.js'
import {isAlive as procAlive, killAll, stopProcess} from '../sys/proc.js'
import {macForIp} from '../model/allocate.js'
import {GWBRIDGE_IF, GWBRIDGE_MTU} from './gwbridge.js'

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

export function taskNetnsName(node: string, taskId: string): string {
  return `sn-${node}-${taskId.slice(0, 8)}`
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
}

/** One veth: the host end here, the task end moved into the task's namespace as `ifname`. */
export async function plumb(o: PlumbOptions): Promise<number> {
  const peer = peerName(o.hostIf)
  await createVeth(o.hostIf, peer, {mtu: o.mtu})
  if (o.beforeMove) await o.beforeMove(o.hostIf, peer)
  await moveLink(peer, o.netns, {newName: o.ifname})
  await setMac(o.ifname, o.mac, o.netns)
  await addAddress(o.ifname, o.cidr, o.netns)
  await setLinkUp(o.ifname, o.netns)
  await setLinkUp(o.hostIf)
  return ifindexOf(o.hostIf)
}

/** Creates the task's namespace and links. On failure, removes what it made and rethrows. */
export async function createTaskSandbox(spec: SandboxSpec): Promise<Sandbox> {
  const hostIfs = [...spec.attachments.map((a) => a.hostIf), ...(spec.gw ? [spec.gw.hostIf] : [])]
  if (netnsExists(spec.netns)) throw new Error(`creating sandbox for task ${spec.taskId}: netns ${spec.netns} exists`)
  try {
    await addNetns(spec.netns)
    await setLinkUp('lo', spec.netns)
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
      })
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
      })
      await enslave(g.hostIf, GWBRIDGE_IF)
      await setBridgePortIsolated(g.hostIf, true)
      await addDefaultRoute(g.gatewayIp, ifname, spec.netns)
      sandbox.gw = {hostIf: g.hostIf, hostIfindex, ifname}
    }
    return sandbox
  } catch (e) {
    await destroyTaskSandbox(spec.netns, hostIfs).catch(() => undefined)
    throw e
  }
}

/** Kills what still runs in the namespace, deletes the host ends and the namespace. Idempotent. */
export async function destroyTaskSandbox(netns: string, hostIfs: readonly string[]): Promise<void> {
  // The namespace (and so the task ends of the veths) lives on while a process holds it.
  await killAll(await netnsPids(netns))
  for (const h of hostIfs) await deleteLink(h)
  await delNetns(netns)
}

export interface TaskProcessSpec {
  netns: string
  argv: string[]
  env?: Record<string, string>
  /** stdout and stderr are appended here. */
  logFile: string
}

/**
 * Starts the task's command in its namespace, in a session of its own and not tied to us, so
 * that it outlives the agent (a restarted agent adopts it by pid). nsenter execs the command
 * (no fork for a net namespace), so the pid is the command's.
 */
export function startTaskProcess(spec: TaskProcessSpec): number {
  mkdirSync(dirname(spec.logFile), {recursive: true})
  const fd = openSync(spec.logFile, 'a')
  try {
    // Only PATH from our own environment: the agent's variables are not the task's business.
    const env = {PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...spec.env}
    const child = spawn(nsenterArgv(spec.netns, spec.argv)[0]!, nsenterArgv(spec.netns, spec.argv).slice(1), {
      detached: true,
      stdio: ['ignore', fd, fd],
      env,
    })
    child.on('error', () => undefined) // a missing nsenter shows as a dead pid to the supervisor
    child.unref()
    if (child.pid === undefined) throw new Error(`starting task in ${spec.netns}: spawn failed`)
    return child.pid
  } finally {
    closeSync(fd)
  }
}

export function isAlive(pid: number): boolean {
  return procAlive(pid)
}

/** SIGTERM, SIGKILL after 3 s. */
export function stopTask(pid: number): Promise<void> {
  return stopProcess(pid, 3000)
}
