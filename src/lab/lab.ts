/**
 * A whole cluster on one host: nodes and an outside client in network namespaces, joined by a
 * bridge in a switch namespace. Nothing is created in the root namespace.
 */
import {spawn} from 'node:child_process'
import {existsSync, readdirSync, rmSync} from 'node:fs'
import {constants} from 'node:os'
import {dirname, join} from 'node:path'
import {addAddress, createBridge, createVeth, deleteLink, enslave, listAddresses, listLinks, setLinkUp} from '../sys/link.js'
import {cgroupMounts, cgroupPids, findV1NodeDirs, killCgroup, removeCgroupTree, removeIfEmpty} from '../sys/cgroup.js'
import {execIn, addNetns, delNetns, listNetns, netnsExists, netnsPath, nsenterArgv} from '../sys/netns.js'
import {isAlive, killProcs, procsInNetns, readPidFile} from '../sys/proc.js'
import {bpfObjectPath} from '../util/root.js'
import {removeNodeContainers} from '../tasks/container.js'
import {enableIpForward, setSysctl} from '../sys/sysctl.js'
import {type LabNode, type LabState, readLabState, removeLabState, writeLabState} from './state.js'
import * as T from './topology.js'
import {makeLabPki, planLabEtcd, removeLabEtcd, startLabEtcd} from './etcd.js'

export {readLabState, type LabNode, type LabState} from './state.js'

export class LabAlreadyUpError extends Error {
  constructor(detail: string) {
    super(`a lab is already up (${detail}); run \`swarmnet lab down\` first`)
    this.name = 'LabAlreadyUpError'
  }
}

export interface LabUpOptions {
  nodes: number
  /** Runs `swarmnet init` / `join` in the node's namespace; called in order, n1 first. */
  startNode: (node: LabNode, index: number, state: LabState) => Promise<void>
  /** Desired state in etcd: a cluster of this many members in the first nodes' namespaces, before any node starts. */
  etcdMembers?: number
  /** Managers: the first this many nodes (more than one needs etcd). */
  managers?: number
  /** Progress, e.g. for listr2 or a log. */
  onStep?: (what: string) => void
}

function plan(nodes: number): LabState {
  return {
    version: 1,
    createdAt: new Date().toISOString(),
    subnet: T.UNDERLAY_SUBNET,
    switch: {netns: T.SWITCH_NETNS, bridge: T.SWITCH_BRIDGE},
    client: {name: T.CLIENT, netns: T.CLIENT_NETNS, address: T.CLIENT_ADDRESS, port: T.CLIENT_PORT},
    nodes: Array.from({length: nodes}, (_, i) => {
      const name = T.nodeName(i + 1)
      return {
        name,
        index: i + 1,
        netns: T.nodeNetns(name),
        address: T.nodeAddress(i + 1),
        prefixLen: T.UNDERLAY_PREFIX,
        underlayIf: T.UNDERLAY_IF,
        port: T.nodePort(name),
      }
    }),
  }
}

/** A host on the switch: its own namespace, eth0 with an address, and a port on the bridge. */
async function plugHost(netns: string, port: string, cidr: string): Promise<void> {
  await addNetns(netns)
  await setLinkUp('lo', netns)
  await createVeth(port, T.UNDERLAY_IF, {ns: T.SWITCH_NETNS, peerNs: netns, mtu: T.UNDERLAY_MTU})
  await enslave(port, T.SWITCH_BRIDGE, T.SWITCH_NETNS)
  await setLinkUp(port, T.SWITCH_NETNS)
  await addAddress(T.UNDERLAY_IF, cidr, netns)
  await setLinkUp(T.UNDERLAY_IF, netns)
  // A veth hands a packet over with its checksum still to be done (CHECKSUM_PARTIAL), and
  // that state does not survive an XDP redirect on the far side. A physical NIC finishes
  // checksums on transmit; with tx offload off the lab's wire does the same, in software.
  await execIn(netns, ['ethtool', '-K', T.UNDERLAY_IF, 'tx', 'off'], `turning off tx checksum offload on ${T.UNDERLAY_IF}`)
  // A NIC sends what XDP hands back (XDP_TX, the routing mesh's path); a veth takes such frames
  // only when its far end runs NAPI, which an XDP program turns on: the switch's port gets the
  // one that passes everything. (Not GRO: merged frames would reach the hosts' XDP, as no NIC
  // hands them to XDP.) A netlink attachment, gone with the switch's namespace.
  await execIn(
    T.SWITCH_NETNS,
    ['ip', 'link', 'set', 'dev', port, 'xdpdrv', 'obj', bpfObjectPath('xdp_task_peer'), 'sec', 'xdp'],
    `attaching XDP to ${port}`,
  )
}

/**
 * Builds the lab and starts its nodes. The state file is written before anything is created,
 * so a failure half way leaves a lab that `lab down` removes (and that one can inspect).
 */
export async function labUp(opts: LabUpOptions): Promise<LabState> {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > T.MAX_NODES) {
    throw new Error(`lab up: nodes must be 1..${T.MAX_NODES}, not ${opts.nodes}`)
  }
  const managers = opts.managers ?? 1
  if (!Number.isInteger(managers) || managers < 1 || managers > opts.nodes)
    throw new Error(`lab up: managers must be 1..${opts.nodes}, not ${managers}`)
  if (managers > 1 && !opts.etcdMembers) throw new Error('lab up: several managers keep desired state in etcd: add --store etcd')
  const existing = readLabState()
  if (existing) throw new LabAlreadyUpError(`${existing.nodes.length} nodes: ${existing.nodes.map((n) => n.name).join(', ')}`)
  const leftovers = listNetns(T.LAB_PREFIX)
  if (leftovers.length > 0) throw new LabAlreadyUpError(`namespaces ${leftovers.join(', ')} exist`)

  const state = plan(opts.nodes)
  if (opts.etcdMembers) state.etcd = planLabEtcd(state.nodes, opts.etcdMembers)
  if (managers > 1) state.managers = managers
  const step = opts.onStep ?? (() => undefined)
  writeLabState(state)
  try {
    step(`switch ${T.SWITCH_NETNS}`)
    await addNetns(T.SWITCH_NETNS)
    await setLinkUp('lo', T.SWITCH_NETNS)
    await createBridge(T.SWITCH_BRIDGE, T.SWITCH_NETNS)
    await setLinkUp(T.SWITCH_BRIDGE, T.SWITCH_NETNS)
    // The switch is the wire: a real one does not run the hosts' netfilter on what it forwards.
    // With br_netfilter loaded (Docker loads it) every lab frame would pay its bridge hooks here,
    // on the sending CPU (~0.3 us a packet), for both data planes alike.
    for (const k of ['call-iptables', 'call-ip6tables', 'call-arptables']) {
      await setSysctl(`net.bridge.bridge-nf-${k}`, '0', T.SWITCH_NETNS).catch(() => undefined) // no br_netfilter: nothing to undo
    }

    step(`client ${T.CLIENT_ADDRESS}`)
    await plugHost(T.CLIENT_NETNS, T.CLIENT_PORT, `${T.CLIENT_ADDRESS}/${T.UNDERLAY_PREFIX}`)

    for (const n of state.nodes) {
      step(`node ${n.name} ${n.address}`)
      await plugHost(n.netns, n.port, `${n.address}/${n.prefixLen}`)
      await enableIpForward(n.netns)
    }
    if (state.etcd) {
      step(`etcd: ${state.etcd.members.length} members with TLS`)
      await makeLabPki(state.etcd)
      await startLabEtcd(state.etcd)
    }
    for (const [i, n] of state.nodes.entries()) {
      step(`start ${n.name}`)
      await opts.startNode(n, i, state)
    }
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e)
    throw new Error(`lab up: ${msg} (the partial lab is left for inspection; \`swarmnet lab down\` removes it)`)
  }
  return state
}

/** Task namespaces of lab nodes: sn-<node>.<8 hex>, and sn-<node>-<8 hex> as older versions named them. */
const TASK_NETNS_RE = /^sn-(n[0-9]+)[.-][0-9a-f]{8}$/

/** Node names from the state file, the namespaces and the cgroups that exist (the file may be gone). */
function knownNodes(state: LabState | undefined): string[] {
  const names = new Set(state?.nodes.map((n) => n.name) ?? [])
  for (const ns of listNetns(T.LAB_PREFIX)) names.add(ns.slice(T.LAB_PREFIX.length))
  for (const ns of listNetns('sn-n')) {
    const m = TASK_NETNS_RE.exec(ns)
    if (m) names.add(m[1]!)
  }
  for (const n of labCgroupNodes()) names.add(n)
  return [...names].filter((n) => T.NODE_NAME_RE.test(n)).sort()
}

function labCgroupNodes(): string[] {
  const root = cgroupMounts().v2
  if (!root) return []
  try {
    return readdirSync(join(root, 'swarmnet')).filter((n) => T.NODE_NAME_RE.test(n))
  } catch {
    return []
  }
}

function rmPath(path: string, removed: string[]): void {
  if (!existsSync(path)) return
  rmSync(path, {recursive: true, force: true})
  removed.push(path)
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Removes everything the lab and its nodes made. Idempotent, best effort: one failure does not
 * stop the rest, and what could not be removed is reported together at the end (an error).
 * Resolves to what was removed.
 *
 * Processes go first, and all of them whatever they were doing: each node's cgroup subtree is
 * killed (its agent if lab up started it, its tasks, their launchers and helpers, also those
 * forked meanwhile), then whatever else runs in the lab's namespaces (an agent started by
 * hand), again until nothing is left, so nothing creates a namespace behind our back. Only
 * then are the namespaces listed and removed, by exact name.
 */
export async function labDown(onStep: (what: string) => void = () => undefined): Promise<string[]> {
  const removed: string[] = []
  const errors: string[] = []
  const attempt = async (f: () => Promise<void> | void) => {
    try {
      await f()
    } catch (e) {
      errors.push(e instanceof Error ? e.message : String(e))
    }
  }
  const state = readLabState()
  const nodes = knownNodes(state)
  const cg2 = cgroupMounts().v2
  const nodeCgroups = cg2 ? nodes.map((n) => join(cg2, 'swarmnet', n)) : []
  const ourNetns = () => {
    const task = listNetns('sn-n').filter((n) => TASK_NETNS_RE.test(n))
    const lab = listNetns(T.LAB_PREFIX)
    // Tasks first, the switch last, so nothing is left pointing into a namespace already gone.
    return [...task, ...lab.filter((n) => n !== T.SWITCH_NETNS), ...lab.filter((n) => n === T.SWITCH_NETNS)]
  }

  const killed = new Set<number>()
  onStep('stopping agents and tasks')
  for (let quiet = 0, round = 0; quiet < 2 && round < 50; round++) {
    let found = 0
    for (const cg of nodeCgroups) {
      const pids = cgroupPids(cg)
      found += pids.length
      for (const p of pids) killed.add(p)
      await attempt(async () => {
        if (!(await killCgroup(cg))) throw new Error(`processes ${cgroupPids(cg).join(', ')} in ${cg} survived cgroup.kill`)
      })
    }
    const strays = ourNetns().flatMap((ns) => procsInNetns(netnsPath(ns)))
    found += strays.length
    for (const p of strays) killed.add(p.pid)
    const left = await killProcs(strays)
    if (left.length > 0) errors.push(`processes ${left.map((p) => p.pid).join(', ')} did not die`)
    quiet = found === 0 ? quiet + 1 : 0
    // A helper the killed agent had started (ip netns add, a launcher) may finish right after.
    if (found > 0 || quiet === 1) await sleep(50)
  }
  removed.push(...[...killed].sort((a, b) => a - b).map((p) => `process ${p}`))

  onStep('removing containers')
  for (const node of nodes) await attempt(() => removeNodeContainers(node))
  onStep('removing cgroups')
  for (const cg of nodeCgroups) {
    await attempt(() => {
      if (!existsSync(cg)) return
      removeCgroupTree(cg)
      removed.push(`cgroup ${cg}`)
    })
  }
  for (const node of nodes) {
    for (const d of findV1NodeDirs(node)) {
      await attempt(() => {
        removeCgroupTree(d)
        removed.push(`cgroup ${d}`)
        removeIfEmpty(dirname(d))
      })
    }
  }
  if (cg2) await attempt(() => removeIfEmpty(join(cg2, 'swarmnet')))
  onStep('removing namespaces')
  for (const ns of ourNetns()) {
    await attempt(async () => {
      if (!netnsExists(ns)) return
      await delNetns(ns)
      removed.push(`netns ${ns}`)
    })
  }
  // Never made here, but a crashed older version might have: only our own names are touched.
  await attempt(async () => {
    for (const l of await listLinks(T.LAB_PREFIX)) if (await deleteLink(l.ifname)) removed.push(`link ${l.ifname}`)
  })
  onStep('removing pins and state')
  for (const node of nodes) {
    for (const p of [T.nodeStateDir(node), T.nodeSocket(node), T.nodePidFile(node), T.nodePinDir(node)]) {
      await attempt(async () => rmPath(p, removed))
    }
  }
  // The members ran in the nodes' namespaces: gone with the processes above; their data and certificates here.
  await attempt(() => removeLabEtcd(removed))
  // What is still there now could not be removed: say so.
  const still = [...ourNetns().map((n) => `netns ${n}`), ...nodeCgroups.filter((c) => existsSync(c)).map((c) => `cgroup ${c}`)]
  if (still.length > 0) errors.push(`still there: ${still.join(', ')}`)
  // The state file names the nodes: kept until everything else is gone, so a later lab down finds the rest.
  if (errors.length > 0) throw new Error(`lab down: ${errors.join('; ')} (removed: ${removed.join(', ') || 'nothing'})`)
  if (removeLabState()) removed.push(T.LAB_STATE_FILE)
  return removed
}

export interface LabExecOptions {
  env?: Record<string, string>
}

/** The namespace of a lab member: "n2" or "client". */
export function labNetns(target: string): string {
  if (target === T.CLIENT) return T.CLIENT_NETNS
  if (!T.NODE_NAME_RE.test(target)) throw new Error(`unknown lab member "${target}" (n1, n2, ... or ${T.CLIENT})`)
  return T.nodeNetns(target)
}

/**
 * Runs argv in a lab member's namespace with our stdio; resolves to its exit code
 * (128 + signal number when killed, as a shell reports it).
 */
export function labExec(target: string, argv: string[], opts: LabExecOptions = {}): Promise<number> {
  const ns = labNetns(target)
  if (!netnsExists(ns)) return Promise.reject(new Error(`lab exec: ${target} is not up (no netns ${ns})`))
  const env: NodeJS.ProcessEnv = {...process.env, ...opts.env}
  // The CLI picks the node it talks to from SWARMNET_HOST; the client is not a node.
  if (target === T.CLIENT) delete env.SWARMNET_HOST
  else env.SWARMNET_HOST = target
  const full = nsenterArgv(ns, argv)
  return new Promise((resolve, reject) => {
    const child = spawn(full[0]!, full.slice(1), {stdio: 'inherit', env})
    child.on('error', reject)
    child.on('close', (code, signal) => {
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0))
    })
  })
}

export interface NodeStatus {
  name: string
  netns: string
  netnsExists: boolean
  /** The address the lab gave it. */
  address: string
  /** Addresses actually on its underlay device (empty when the netns is gone). */
  underlay: string[]
  agentPid?: number
  agentAlive: boolean
}

export interface LabStatus {
  up: boolean
  switch: {netns: string; exists: boolean}
  client: {netns: string; exists: boolean; address: string}
  nodes: NodeStatus[]
}

export async function labStatus(): Promise<LabStatus> {
  const state = readLabState()
  const names = knownNodes(state)
  const nodes: NodeStatus[] = []
  for (const name of names) {
    const netns = T.nodeNetns(name)
    const exists = netnsExists(netns)
    const planned = state?.nodes.find((n) => n.name === name)?.address ?? ''
    const underlay = exists ? await listAddresses(T.UNDERLAY_IF, netns).catch(() => []) : []
    const agentPid = readPidFile(T.nodePidFile(name))
    nodes.push({
      name,
      netns,
      netnsExists: exists,
      address: planned,
      underlay,
      ...(agentPid !== undefined ? {agentPid} : {}),
      agentAlive: agentPid !== undefined && isAlive(agentPid),
    })
  }
  return {
    up: state !== undefined,
    switch: {netns: T.SWITCH_NETNS, exists: netnsExists(T.SWITCH_NETNS)},
    client: {netns: T.CLIENT_NETNS, exists: netnsExists(T.CLIENT_NETNS), address: T.CLIENT_ADDRESS},
    nodes,
  }
}
