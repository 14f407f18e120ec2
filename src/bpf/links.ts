// Attachments through pinned bpf_links: XDP links on a device, TCX links on
// a device's ingress/egress (Linux 6.6+). Unlike netlink attachments these
// have an owner: the kernel refuses to create an XDP link over a program
// someone else attached (and refuses `ip link set dev X xdp off` over our
// link), and TCX keeps several programs side by side instead of replacing.
//
// Each link is pinned on bpffs, so it outlives the process that made it
// (forwarding goes on while the agent is away) and a restarted agent finds
// it again by its path and swaps the program in place (bpf_link_update: one
// atomic step, no moment without a program). Unpinning is detaching.
//
// On kernels without XDP links or TCX the netlink attachments of attach.ts
// are the fallback; the result says which was used.

import fs from 'node:fs'
import path from 'node:path'
import {
  type Device,
  type TcDirection,
  type XdpMode,
  TC_HANDLE,
  TC_PRIORITY,
  attachTc,
  attachXdp,
  detachTc,
  detachXdp,
  devName,
  ifindexOf,
  modeFlags,
  noDevice,
  queryXdp,
  tcAttachedId,
} from './attach.js'
import {BpfError, E, describeErrno, errnoError} from './errors.js'
import {libc} from '../sys/libc.js'
import {SIZEOF, bpfCallAsync, libbpf, libbpfLog, linkCreateAsync, linkDetachAsync} from './libbpf.js'
import {objInfoByFd, objInfoByFdAsync} from './obj-info.js'

// enum bpf_attach_type / bpf_link_type values from the kernel's uapi (the
// installed headers predate TCX, so they are spelled out here).
const BPF_XDP = 37
const BPF_TCX_INGRESS = 46
const BPF_TCX_EGRESS = 47
export const LINK_TYPE = {XDP: 6, TCX: 11} as const

export interface LinkInfo {
  type: number
  id: number
  progId: number
  /** 0 once the link is detached (its device gone, or `bpftool link detach`). */
  ifindex: number
  /** TCX only: BPF_TCX_INGRESS or BPF_TCX_EGRESS. */
  attachType: number
}

export function linkInfoByFd(fd: number): LinkInfo {
  return decodeLinkInfo(objInfoByFd(fd, 'bpf_link_info', 'read bpf_link info'))
}

function decodeLinkInfo(info: Buffer): LinkInfo {
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    progId: info.readUInt32LE(8),
    ifindex: info.readUInt32LE(16),
    attachType: info.readUInt32LE(20),
  }
}

function progInfoByFd(fd: number): {id: number; name: string} {
  const info = objInfoByFd(fd, 'bpf_prog_info', 'read program info')
  const name = info.subarray(64, 80)
  const end = name.indexOf(0)
  return {id: info.readUInt32LE(4), name: name.subarray(0, end < 0 ? 16 : end).toString('utf8')}
}

export function progIdOf(progFd: number): number {
  return progInfoByFd(progFd).id
}

/** The name of a loaded program (kernel-truncated to 15 characters), undefined if it is gone. */
export function progNameById(id: number): string | undefined {
  const fd = libbpf().bpf_prog_get_fd_by_id(id)
  if (fd < 0) return undefined
  try {
    return progInfoByFd(fd).name
  } finally {
    libc().close(fd)
  }
}

/** The link pinned at `pinPath`, or undefined when there is no pin. */
export function pinnedLinkInfo(pinPath: string): LinkInfo | undefined {
  if (!fs.existsSync(pinPath)) return undefined
  const fd = libbpf().bpf_obj_get(pinPath)
  if (fd < 0) throw errnoError(`open pinned link ${pinPath}`, fd)
  try {
    return linkInfoByFd(fd)
  } finally {
    libc().close(fd)
  }
}

/**
 * pinnedLinkInfo with the pin's stat, its open and the info read off the event loop (libuv's
 * thread pool): the drift check reads one pin per task device, and on a loaded host a
 * thousand of them held the loop for seconds. The same answers and the same errors.
 */
export async function pinnedLinkInfoAsync(pinPath: string): Promise<LinkInfo | undefined> {
  try {
    await fs.promises.stat(pinPath)
  } catch {
    return undefined // as existsSync: any failure to see the pin is no pin
  }
  const fd = await bpfCallAsync('bpf_obj_get', pinPath)
  if (fd < 0) throw errnoError(`open pinned link ${pinPath}`, fd)
  try {
    return decodeLinkInfo(await objInfoByFdAsync(fd, 'bpf_link_info', 'read bpf_link info'))
  } finally {
    libc().close(fd)
  }
}

/**
 * Is our link at `pinPath` still attached to `dev` (of the expected kind)?
 * The periodic drift check: a pin read, no netlink dump.
 */
export function linkAttached(pinPath: string, dev: Device, kind: 'xdp' | TcDirection): boolean {
  let ifindex: number
  try {
    ifindex = ifindexOf(dev)
  } catch {
    return false
  }
  return linkIs(pinnedLinkInfo(pinPath), ifindex, kind)
}

/** linkAttached with the pin read off the event loop (pinnedLinkInfoAsync): the drift check's. */
export async function linkAttachedAsync(pinPath: string, dev: Device, kind: 'xdp' | TcDirection): Promise<boolean> {
  let ifindex: number
  try {
    ifindex = ifindexOf(dev)
  } catch {
    return false
  }
  return linkIs(await pinnedLinkInfoAsync(pinPath), ifindex, kind)
}

function linkIs(info: LinkInfo | undefined, ifindex: number, kind: 'xdp' | TcDirection): boolean {
  if (!info || info.ifindex !== ifindex) return false
  if (kind === 'xdp') return info.type === LINK_TYPE.XDP
  return info.type === LINK_TYPE.TCX && info.attachType === tcxAttachType(kind)
}

/** Detach and unpin the link at `pinPath`. False if there was none. */
export function removeLink(pinPath: string): boolean {
  if (!fs.existsSync(pinPath)) return false
  const fd = libbpf().bpf_obj_get(pinPath)
  // Detach explicitly: an fd someone else holds would otherwise keep it attached.
  if (fd >= 0) {
    libbpf().bpf_link_detach(fd)
    libc().close(fd)
  }
  fs.rmSync(pinPath, {force: true})
  return true
}

/** removeLink with the detach on libuv's thread pool (linkDetachAsync): the event loop is not held meanwhile. */
export async function removeLinkAsync(pinPath: string): Promise<boolean> {
  if (!fs.existsSync(pinPath)) return false
  const fd = libbpf().bpf_obj_get(pinPath)
  if (fd >= 0) {
    try {
      await linkDetachAsync(fd)
    } finally {
      libc().close(fd)
    }
  }
  fs.rmSync(pinPath, {force: true})
  return true
}

export interface LinkAttachOptions {
  /** Where the link is pinned (on bpffs); its parent folder is made if needed. */
  pinPath: string
  /**
   * The name of the program as swarmnet attached it before it used links:
   * such a netlink attachment on the hook is ours (an agent upgraded in
   * place) and is taken over. Anything else is not ours and is left alone.
   */
  ownName?: string
}

export interface LinkAttachResult {
  /** created: a new link; updated: the pinned link now runs progFd; unchanged: it already did. */
  action: 'created' | 'updated' | 'unchanged'
  /** link: a pinned bpf_link; netlink: the fallback of kernels without one. */
  via: 'link' | 'netlink'
  progId: number
  /** A netlink attachment of our own program (from before links) was replaced. */
  tookOverLegacy?: boolean
}

function tcxAttachType(direction: TcDirection): number {
  return direction === 'ingress' ? BPF_TCX_INGRESS : BPF_TCX_EGRESS
}

/**
 * The pinned link, when it is alive on this device and of this kind:
 * update it to run progFd. A dead or misplaced one is unpinned (that
 * detaches it) so a new one can be made. Undefined when none is usable.
 */
function reuse(
  pinPath: string,
  ifindex: number,
  progFd: number,
  progId: number,
  matches: (i: LinkInfo) => boolean,
  what: string,
): LinkAttachResult | undefined {
  if (!fs.existsSync(pinPath)) return undefined
  const fd = libbpf().bpf_obj_get(pinPath)
  if (fd < 0) throw errnoError(`open pinned link ${pinPath}`, fd)
  try {
    const info = linkInfoByFd(fd)
    if (info.ifindex === ifindex && matches(info)) {
      if (info.progId === progId) return {action: 'unchanged', via: 'link', progId}
      const rc = libbpf().bpf_link_update(fd, progFd, null)
      if (rc < 0) throw errnoError(`update the program of ${what} (link ${info.id})`, rc)
      return {action: 'updated', via: 'link', progId}
    }
    libbpf().bpf_link_detach(fd)
  } finally {
    libc().close(fd)
  }
  fs.rmSync(pinPath, {force: true})
  return undefined
}

function pin(linkFd: number, pinPath: string, what: string): void {
  fs.mkdirSync(path.dirname(pinPath), {recursive: true, mode: 0o700})
  const rc = libbpf().bpf_obj_pin(linkFd, pinPath)
  if (rc < 0) throw errnoError(`pin the link of ${what} at ${pinPath}`, rc)
}

function foreignXdp(dev: Device, id: number): BpfError {
  const name = progNameById(id) ?? '?'
  return new BpfError(
    'BUSY',
    `${devName(dev)} already has an XDP program that is not swarmnet's (${name}, id ${id}): refusing to replace it; ` +
      `remove it first (e.g. ip link set dev ${devName(dev)} xdp off)`,
    {errno: E.EBUSY},
  )
}

/**
 * Attach an XDP program to a device through a link pinned at o.pinPath.
 * Never replaces a program that is not ours: refuses with BUSY instead.
 */
export function attachXdpLink(dev: Device, progFd: number, mode: XdpMode, o: LinkAttachOptions): LinkAttachResult {
  const ifindex = ifindexOf(dev)
  const progId = progIdOf(progFd)
  const what = `XDP on ${devName(dev)}`
  const reused = reuse(o.pinPath, ifindex, progFd, progId, (i) => i.type === LINK_TYPE.XDP, what)
  if (reused) return reused

  // Not through our link: whatever is on the device belongs to someone else,
  // unless it is our own program from before links.
  const q = queryXdp(ifindex)
  const present = q.progId || q.drvProgId || q.skbProgId || q.hwProgId
  let tookOverLegacy = false
  if (present) {
    if (!o.ownName || progNameById(present) !== o.ownName) throw foreignXdp(dev, present)
    // A one-time step on upgrade: a link cannot replace a netlink attachment.
    detachXdp(ifindex)
    tookOverLegacy = true
  }

  const opts = Buffer.alloc(SIZEOF.bpf_link_create_opts)
  opts.writeBigUInt64LE(BigInt(opts.length), 0)
  opts.writeUInt32LE(modeFlags(mode), 8)
  libbpfLog().take()
  const fd = libbpf().bpf_link_create(progFd, ifindex, BPF_XDP, opts)
  if (fd < 0) {
    const errno = -fd
    const log = libbpfLog().take()
    if (errno === E.ENODEV) throw noDevice(dev)
    if (errno === E.EINVAL) {
      // A kernel without XDP links (before 5.9): netlink, still never over a foreign program.
      attachXdp(ifindex, progFd, {mode})
      return {action: 'created', via: 'netlink', progId, ...(tookOverLegacy ? {tookOverLegacy} : {})}
    }
    if (errno === E.EBUSY || errno === E.EEXIST) {
      const again = queryXdp(ifindex)
      const other = again.progId || again.drvProgId || again.skbProgId
      if (other) throw foreignXdp(dev, other)
    }
    if (mode === 'native' && (errno === E.EOPNOTSUPP || errno === E.ENOTSUPP)) {
      throw new BpfError(
        'UNSUPPORTED',
        `native XDP attach to ${devName(dev)} failed (${describeErrno(errno)}): the driver does not support it here; ` +
          `generic XDP works but is slower: opt in with mode 'generic'`,
        {errno, libbpfLog: log},
      )
    }
    throw errnoError(`attach ${mode} XDP link to ${devName(dev)}`, fd, {libbpfLog: log})
  }
  try {
    pin(fd, o.pinPath, what)
  } finally {
    // The pin holds the link now; without it, closing detaches.
    libc().close(fd)
  }
  return {action: 'created', via: 'link', progId, ...(tookOverLegacy ? {tookOverLegacy} : {})}
}

/** What attaching a TCX link needs to know first; `reused` when the pinned link is already right. */
type TcxPlan = {ifindex: number; progId: number; type: number; what: string; reused?: LinkAttachResult}

function planTcx(dev: Device, progFd: number, direction: TcDirection, o: LinkAttachOptions): TcxPlan {
  const ifindex = ifindexOf(dev)
  const progId = progIdOf(progFd)
  const type = tcxAttachType(direction)
  const what = `tc ${direction} on ${devName(dev)}`
  const reused = reuse(o.pinPath, ifindex, progFd, progId, (i) => i.type === LINK_TYPE.TCX && i.attachType === type, what)
  return {ifindex, progId, type, what, ...(reused ? {reused} : {})}
}

/** After bpf_link_create: the fallback or the error when it failed, else the pin. */
function finishTcx(
  dev: Device,
  progFd: number,
  direction: TcDirection,
  o: LinkAttachOptions,
  p: TcxPlan,
  fd: number,
): LinkAttachResult {
  const {ifindex, progId, what} = p
  if (fd < 0) {
    const errno = -fd
    const log = libbpfLog().take()
    if (errno === E.ENODEV) throw noDevice(dev)
    if (errno === E.EINVAL) {
      // No TCX here (Linux before 6.6): the clsact filter, which replaces only our own handle.
      attachTc(ifindex, progFd, direction)
      return {action: 'created', via: 'netlink', progId}
    }
    throw errnoError(`attach TCX ${direction} link to ${devName(dev)}`, fd, {libbpfLog: log})
  }
  try {
    pin(fd, o.pinPath, what)
  } finally {
    libc().close(fd)
  }
  // Our clsact filter from before links would run after the link for nothing: remove it.
  let tookOverLegacy = false
  if (o.ownName) {
    const legacy = tcAttachedId(ifindex, direction, {handle: TC_HANDLE, priority: TC_PRIORITY})
    if (legacy && progNameById(legacy) === o.ownName) tookOverLegacy = detachTc(ifindex, direction)
  }
  return {action: 'created', via: 'link', progId, ...(tookOverLegacy ? {tookOverLegacy} : {})}
}

// EEXIST: this program is still on the device through a link whose last reference is being
// dropped (a pin removed by hand is released by the kernel a moment later). Waited out.
const EEXIST_TRIES = 20
const EEXIST_WAIT_MS = 10

/**
 * Attach a sched_cls program to a device's ingress or egress through a TCX
 * link pinned at o.pinPath (next to whatever else is there, never instead of
 * it). Kernels before 6.6 get our netlink filter (fixed handle and priority).
 */
export function attachTcxLink(dev: Device, progFd: number, direction: TcDirection, o: LinkAttachOptions): LinkAttachResult {
  const p = planTcx(dev, progFd, direction, o)
  if (p.reused) return p.reused
  libbpfLog().take()
  let fd = libbpf().bpf_link_create(progFd, p.ifindex, p.type, null)
  for (let tries = 0; fd === -E.EEXIST && tries < EEXIST_TRIES; tries++) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, EEXIST_WAIT_MS)
    fd = libbpf().bpf_link_create(progFd, p.ifindex, p.type, null)
  }
  return finishTcx(dev, progFd, direction, o, p, fd)
}

/**
 * attachTcxLink with bpf_link_create on libuv's thread pool: creating a TCX link waits for an
 * RCU grace period in the kernel (milliseconds to tens of them on a loaded host), which held the
 * agent's event loop for every task device it attached. The pin is made in the same turn as the
 * result arrives, so no one sees the link unpinned.
 */
export async function attachTcxLinkAsync(
  dev: Device,
  progFd: number,
  direction: TcDirection,
  o: LinkAttachOptions,
): Promise<LinkAttachResult> {
  const p = planTcx(dev, progFd, direction, o)
  if (p.reused) return p.reused
  libbpfLog().take()
  let fd = await linkCreateAsync(progFd, p.ifindex, p.type, null)
  for (let tries = 0; fd === -E.EEXIST && tries < EEXIST_TRIES; tries++) {
    await new Promise((r) => setTimeout(r, EEXIST_WAIT_MS))
    fd = await linkCreateAsync(progFd, p.ifindex, p.type, null)
  }
  return finishTcx(dev, progFd, direction, o, p, fd)
}
