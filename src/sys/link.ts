/**
 * Links, addresses and routes through iproute2. Every function takes the namespace last:
 * undefined means the caller's own (for the agent, the node's namespace).
 */
import {ExecError, run} from './exec.js'
import {ifindexOf as deviceIndex} from '../bpf/attach.js'

export interface LinkInfo {
  ifindex: number
  ifname: string
  mtu: number
  /** MAC address */
  address: string
  operstate: string
  flags: string[]
  /** Bridge this link is enslaved to. */
  master?: string
  /** "veth", "bridge", ... (absent for plain devices) */
  kind?: string
}

/** The kernel's IFNAMSIZ minus the terminating NUL. */
export const MAX_IFNAME = 15

export function checkIfname(name: string): void {
  if (name.length === 0 || name.length > MAX_IFNAME || /[\s/:]/.test(name)) {
    throw new Error(`invalid interface name "${name}" (1-${MAX_IFNAME} chars, no spaces, '/' or ':')`)
  }
}

const where = (ns?: string) => (ns ? ` in ${ns}` : '')

function ip(ns: string | undefined, args: string[], doing: string): Promise<string> {
  return run(['ip', ...(ns ? ['-n', ns] : []), ...args], doing)
}

/**
 * Several `ip` commands in one process (`ip -batch`), in order; the first that fails stops
 * the rest and is the error. Each process the agent starts holds its event loop while it forks
 * (longer on a busy machine), and a task's links took about twenty of them one by one.
 * Arguments are whitespace-free by construction (checked names, addresses, numbers).
 */
export async function ipBatch(ns: string | undefined, commands: string[][], doing: string): Promise<void> {
  if (commands.length === 0) return
  for (const c of commands)
    for (const a of c) if (a === '' || /\s/.test(a)) throw new Error(`${doing}: '${a}' cannot go into an ip batch`)
  await run(['ip', ...(ns ? ['-n', ns] : []), '-batch', '-'], doing, {input: commands.map((c) => c.join(' ')).join('\n') + '\n'})
}

/** The ifindex of a device of the caller's own namespace, 0 when there is none: one syscall, no process. */
const localIndex = (name: string): number => {
  checkIfname(name)
  try {
    return deviceIndex(name)
  } catch {
    return 0
  }
}

/** Raw JSON of `ip -d -j link show` (the parts we read). */
interface IpLinkJson {
  ifindex: number
  ifname: string
  mtu: number
  address?: string
  operstate?: string
  flags?: string[]
  master?: string
  linkinfo?: {info_kind?: string}
}

function toInfo(j: IpLinkJson): LinkInfo {
  return {
    ifindex: j.ifindex,
    ifname: j.ifname,
    mtu: j.mtu,
    address: j.address ?? '',
    operstate: j.operstate ?? 'UNKNOWN',
    flags: j.flags ?? [],
    ...(j.master ? {master: j.master} : {}),
    ...(j.linkinfo?.info_kind ? {kind: j.linkinfo.info_kind} : {}),
  }
}

export async function listLinks(prefix = '', ns?: string): Promise<LinkInfo[]> {
  const out = await ip(ns, ['-d', '-j', 'link', 'show'], `listing links${where(ns)}`)
  const all = JSON.parse(out || '[]') as IpLinkJson[]
  return all.filter((l) => l.ifname.startsWith(prefix)).map(toInfo)
}

/** The link, or undefined when there is none of that name. */
export async function getLink(name: string, ns?: string): Promise<LinkInfo | undefined> {
  try {
    const out = await ip(ns, ['-d', '-j', 'link', 'show', 'dev', name], `reading link ${name}${where(ns)}`)
    const [j] = JSON.parse(out) as IpLinkJson[]
    return j ? toInfo(j) : undefined
  } catch (e) {
    if (e instanceof ExecError && /does not exist|Cannot find device/i.test(e.stderr)) return undefined
    throw e
  }
}

async function mustGet(name: string, ns?: string): Promise<LinkInfo> {
  const l = await getLink(name, ns)
  if (!l) throw new Error(`reading link ${name}${where(ns)}: no such device`)
  return l
}

export const linkExists = async (name: string, ns?: string) =>
  ns === undefined ? localIndex(name) > 0 : (await getLink(name, ns)) !== undefined
export const ifindexOf = async (name: string, ns?: string) => {
  if (ns !== undefined) return (await mustGet(name, ns)).ifindex
  const i = localIndex(name)
  if (i === 0) throw new Error(`reading link ${name}: no such device`)
  return i
}
export const macOf = async (name: string, ns?: string) => (await mustGet(name, ns)).address
export const mtuOf = async (name: string, ns?: string) => (await mustGet(name, ns)).mtu

export interface VethOptions {
  /** Namespace where `name` is created (undefined = current). */
  ns?: string
  /** Namespace for the peer; default the same as `name`. */
  peerNs?: string
  mtu?: number
  /** The peer's MAC address, set as it is made. */
  peerMac?: string
}

export async function createVeth(name: string, peer: string, opts: VethOptions = {}): Promise<void> {
  checkIfname(name)
  checkIfname(peer)
  const mtu = opts.mtu ? ['mtu', String(opts.mtu)] : []
  const peerNs = opts.peerNs ? ['netns', opts.peerNs] : []
  const peerMac = opts.peerMac ? ['address', opts.peerMac] : []
  await ip(
    opts.ns,
    ['link', 'add', name, ...mtu, 'type', 'veth', 'peer', 'name', peer, ...mtu, ...peerMac, ...peerNs],
    `creating veth ${name}/${peer}${where(opts.ns)}`,
  )
}

/** Moves a link into toNs, renaming it on the way (the kernel does both in one step). */
export async function moveLink(name: string, toNs: string, opts: {ns?: string; newName?: string} = {}): Promise<void> {
  if (opts.newName) checkIfname(opts.newName)
  const rename = opts.newName ? ['name', opts.newName] : []
  await ip(opts.ns, ['link', 'set', 'dev', name, 'netns', toNs, ...rename], `moving ${name} to ${toNs}`)
}

export async function setLinkUp(name: string, ns?: string): Promise<void> {
  await ip(ns, ['link', 'set', 'dev', name, 'up'], `setting ${name} up${where(ns)}`)
}

export async function setLinkDown(name: string, ns?: string): Promise<void> {
  await ip(ns, ['link', 'set', 'dev', name, 'down'], `setting ${name} down${where(ns)}`)
}

export async function setMtu(name: string, mtu: number, ns?: string): Promise<void> {
  await ip(ns, ['link', 'set', 'dev', name, 'mtu', String(mtu)], `setting mtu ${mtu} on ${name}${where(ns)}`)
}

export async function setMac(name: string, mac: string, ns?: string): Promise<void> {
  await ip(ns, ['link', 'set', 'dev', name, 'address', mac], `setting mac ${mac} on ${name}${where(ns)}`)
}

/** cidr like "10.0.1.5/24". `replace`, so adding twice is fine. */
export async function addAddress(name: string, cidr: string, ns?: string): Promise<void> {
  await ip(ns, ['addr', 'replace', cidr, 'dev', name], `adding address ${cidr} to ${name}${where(ns)}`)
}

/** Addresses on a link as "ip/prefixLen". */
export async function listAddresses(name: string, ns?: string, family: 4 | 6 = 4): Promise<string[]> {
  const out = await ip(ns, [`-${family}`, '-j', 'addr', 'show', 'dev', name], `reading addresses of ${name}${where(ns)}`)
  const all = JSON.parse(out || '[]') as {addr_info?: {local: string; prefixlen: number}[]}[]
  return all.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`))
}

export interface RouteSpec {
  /** "10.0.0.0/8" or "default" */
  dest: string
  via?: string
  dev?: string
}

/** `replace`, so it is idempotent. */
export async function addRoute(r: RouteSpec, ns?: string): Promise<void> {
  const args = ['route', 'replace', r.dest, ...(r.via ? ['via', r.via] : []), ...(r.dev ? ['dev', r.dev] : [])]
  await ip(ns, args, `adding route ${r.dest}${where(ns)}`)
}

export function addDefaultRoute(via: string, dev?: string, ns?: string): Promise<void> {
  return addRoute({dest: 'default', via, ...(dev ? {dev} : {})}, ns)
}

/** Idempotent: an existing bridge of that name is kept. */
/**
 * With `mac`, the bridge keeps that address whatever ports come and go. Without one, Linux gives a
 * bridge the lowest of its ports' addresses, which changes as ports are added and removed.
 */
export async function createBridge(name: string, ns?: string, mac?: string): Promise<void> {
  checkIfname(name)
  const l = await getLink(name, ns)
  if (l && l.kind === 'bridge') return
  if (l) throw new Error(`creating bridge ${name}${where(ns)}: a ${l.kind ?? 'link'} of that name exists`)
  const address = mac === undefined ? [] : ['address', mac]
  await ip(ns, ['link', 'add', name, ...address, 'type', 'bridge'], `creating bridge ${name}${where(ns)}`)
}

export async function enslave(name: string, bridge: string, ns?: string): Promise<void> {
  await ip(ns, ['link', 'set', 'dev', name, 'master', bridge], `enslaving ${name} to ${bridge}${where(ns)}`)
}

/** Isolated bridge ports reach the bridge itself but not each other (Docker's icc=false). */
export async function setBridgePortIsolated(name: string, on: boolean, ns?: string): Promise<void> {
  await ip(
    ns,
    ['link', 'set', 'dev', name, 'type', 'bridge_slave', 'isolated', on ? 'on' : 'off'],
    `setting isolation on bridge port ${name}${where(ns)}`,
  )
}

/** Idempotent. Deleting one end of a veth deletes the pair. */
export async function deleteLink(name: string, ns?: string): Promise<boolean> {
  try {
    await ip(ns, ['link', 'del', 'dev', name], `deleting link ${name}${where(ns)}`)
    return true
  } catch (e) {
    if (e instanceof ExecError && /does not exist|Cannot find device/i.test(e.stderr)) return false
    throw e
  }
}
