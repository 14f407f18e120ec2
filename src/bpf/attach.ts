// Attaching programs to network devices: XDP on the underlay, tc (clsact,
// direct-action) on task devices. Everything here acts on the network
// namespace of the calling process: to attach inside another namespace, run
// the caller there (e.g. under `ip netns exec` / nsenter).
//
// These are the netlink attachments (the fallback on kernels without XDP
// links or TCX, and the task-side XDP of a veth swarmnet just made):
// re-attaching replaces. The pinned bpf_link attachments swarmnet prefers,
// which never replace what is not theirs, are in links.ts.

import os from 'node:os'
import {BpfError, E, describeErrno, errnoError} from './errors.js'
import {libc} from '../sys/libc.js'
import {SIZEOF, libbpf, libbpfLog, xdpAttachAsync} from './libbpf.js'

export type Device = number | string
export type XdpMode = 'native' | 'generic'
export type TcDirection = 'ingress' | 'egress'

const XDP_FLAGS_SKB_MODE = 1 << 1
const XDP_FLAGS_DRV_MODE = 1 << 2
const XDP_ATTACHED = {NONE: 0, DRV: 1, SKB: 2, HW: 3, MULTI: 4} as const

const BPF_TC_INGRESS = 1 << 0
const BPF_TC_EGRESS = 1 << 1
const BPF_TC_F_REPLACE = 1 << 0

/**
 * Fixed tc filter identity: attaching again with the same handle and
 * priority replaces our filter instead of stacking a second one.
 */
export const TC_HANDLE = 1
export const TC_PRIORITY = 1

/** A device's ifindex; names are looked up in the current netns. */
export function ifindexOf(dev: Device): number {
  if (typeof dev === 'number') {
    if (!Number.isInteger(dev) || dev <= 0) throw new BpfError('BAD_ARGUMENT', `invalid ifindex ${dev}`)
    return dev
  }
  const idx = libc().if_nametoindex(dev)
  if (!idx) throw noDevice(dev)
  return idx
}

export function noDevice(dev: Device): BpfError {
  const what = typeof dev === 'number' ? `with ifindex ${dev}` : dev
  return new BpfError('NO_DEVICE', `network device ${what} not found (in this network namespace)`, {
    errno: E.ENODEV,
  })
}

export function devName(dev: Device): string {
  return typeof dev === 'number' ? `ifindex ${dev}` : dev
}

export function modeFlags(mode: XdpMode): number {
  return mode === 'generic' ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE
}

export interface XdpAttachOptions {
  /**
   * 'native' (driver) by default. 'generic' (skb mode) is much slower and
   * only used when asked for: a failed native attach never falls back.
   */
  mode?: XdpMode
}

/** Attach (or replace) the XDP program of a device. */
export function attachXdp(dev: Device, progFd: number, opts: XdpAttachOptions = {}): void {
  const mode = opts.mode ?? 'native'
  const ifindex = ifindexOf(dev)
  libbpfLog().take()
  const rc = libbpf().bpf_xdp_attach(ifindex, progFd, modeFlags(mode), null)
  if (rc !== 0) throw xdpAttachError(dev, mode, rc, libbpfLog().take())
}

/**
 * attachXdp with the kernel's work on libuv's threads: attaching to a veth waits while the
 * kernel sets up the device's NAPI, which held the agent's loop at every task start.
 */
export async function attachXdpAsync(dev: Device, progFd: number, opts: XdpAttachOptions = {}): Promise<void> {
  const mode = opts.mode ?? 'native'
  const ifindex = ifindexOf(dev)
  const rc = await xdpAttachAsync(ifindex, progFd, modeFlags(mode))
  // No libbpf log here: another call's lines could be in it by now.
  if (rc !== 0) throw xdpAttachError(dev, mode, rc, [])
}

function xdpAttachError(dev: Device, mode: XdpMode, rc: number, log: string[]): Error {
  const errno = -rc
  const d = {errno, libbpfLog: log}
  const name = devName(dev)
  if (errno === E.ENODEV) return noDevice(dev)
  if (mode === 'native' && (errno === E.EOPNOTSUPP || errno === E.ENOTSUPP || errno === E.EINVAL)) {
    return new BpfError(
      'UNSUPPORTED',
      `native XDP attach to ${name} failed (${describeErrno(errno)}): the driver does not support it here ` +
        `(no native XDP, or MTU/offloads it cannot handle); generic XDP works but is slower: opt in with mode 'generic'`,
      d,
    )
  }
  if (errno === E.EBUSY || errno === E.EEXIST) {
    return new BpfError(
      'BUSY',
      `${name} already has an XDP program in the other mode (${mode === 'native' ? 'generic' : 'native'}): detach it first`,
      d,
    )
  }
  if (errno === E.EOPNOTSUPP || errno === E.ENOTSUPP) {
    return new BpfError('UNSUPPORTED', `generic XDP is not supported by this kernel (${os.release()})`, d)
  }
  return errnoError(`attach ${mode} XDP to ${name}`, rc, {libbpfLog: log})
}

export interface XdpQuery {
  progId: number
  drvProgId: number
  hwProgId: number
  skbProgId: number
  attachMode: number
}

export function queryXdp(dev: Device): XdpQuery {
  const ifindex = ifindexOf(dev)
  const buf = Buffer.alloc(SIZEOF.bpf_xdp_query_opts)
  buf.writeBigUInt64LE(BigInt(buf.length), 0)
  const rc = libbpf().bpf_xdp_query(ifindex, 0, buf)
  if (-rc === E.ENODEV) throw noDevice(dev)
  if (rc < 0) throw errnoError(`query XDP on ${devName(dev)}`, rc)
  return {
    progId: buf.readUInt32LE(8),
    drvProgId: buf.readUInt32LE(12),
    hwProgId: buf.readUInt32LE(16),
    skbProgId: buf.readUInt32LE(20),
    attachMode: buf.readUInt8(24),
  }
}

/**
 * Id of the XDP program on a device (in the given mode, or whichever single
 * one is attached), undefined when there is none.
 */
export function xdpAttachedId(dev: Device, mode?: XdpMode): number | undefined {
  const q = queryXdp(dev)
  const id = mode === 'native' ? q.drvProgId : mode === 'generic' ? q.skbProgId : q.progId || q.drvProgId || q.skbProgId
  return id || undefined
}

/** Remove the device's XDP program (of the given mode, or whatever is there). False if none was. */
export function detachXdp(dev: Device, opts: {mode?: XdpMode} = {}): boolean {
  const ifindex = ifindexOf(dev)
  const q = queryXdp(ifindex)
  const modes: XdpMode[] = []
  if (opts.mode) {
    if ((opts.mode === 'native' ? q.drvProgId : q.skbProgId) !== 0) modes.push(opts.mode)
  } else {
    if (q.drvProgId || q.attachMode === XDP_ATTACHED.DRV) modes.push('native')
    if (q.skbProgId || q.attachMode === XDP_ATTACHED.SKB) modes.push('generic')
  }
  for (const mode of modes) {
    const rc = libbpf().bpf_xdp_detach(ifindex, modeFlags(mode), null)
    if (rc < 0) throw errnoError(`detach ${mode} XDP from ${devName(dev)}`, rc)
  }
  return modes.length > 0
}

function tcHook(ifindex: number, attachPoint: number): Buffer {
  const hook = Buffer.alloc(SIZEOF.bpf_tc_hook)
  hook.writeBigUInt64LE(BigInt(hook.length), 0)
  hook.writeInt32LE(ifindex, 8)
  hook.writeUInt32LE(attachPoint, 12)
  return hook
}

function tcOpts(o: {progFd?: number; flags?: number; handle: number; priority: number}): Buffer {
  const buf = Buffer.alloc(SIZEOF.bpf_tc_opts)
  buf.writeBigUInt64LE(BigInt(buf.length), 0)
  buf.writeInt32LE(o.progFd ?? 0, 8)
  buf.writeUInt32LE(o.flags ?? 0, 12)
  buf.writeUInt32LE(o.handle, 20)
  buf.writeUInt32LE(o.priority, 24)
  return buf
}

export function tcPoint(direction: TcDirection): number {
  if (direction !== 'ingress' && direction !== 'egress') {
    throw new BpfError('BAD_ARGUMENT', `tc direction must be 'ingress' or 'egress', not ${JSON.stringify(direction)}`)
  }
  return direction === 'ingress' ? BPF_TC_INGRESS : BPF_TC_EGRESS
}

function tcUnsupported(dev: Device, rc: number, log: string[]): BpfError {
  return new BpfError(
    'UNSUPPORTED',
    `tc BPF on ${devName(dev)}: ${describeErrno(-rc)}: this kernel (${os.release()}) lacks the clsact qdisc ` +
      `or the bpf classifier (CONFIG_NET_SCH_INGRESS, CONFIG_NET_CLS_BPF)`,
    {errno: -rc, libbpfLog: log},
  )
}

export interface TcAttachOptions {
  handle?: number
  priority?: number
}

/**
 * Attach a sched_cls program (direct-action) to a device's ingress or
 * egress, creating the clsact qdisc if needed. Re-attaching replaces.
 * Returns the attached program's id.
 */
export function attachTc(dev: Device, progFd: number, direction: TcDirection, opts: TcAttachOptions = {}): number {
  const ifindex = ifindexOf(dev)
  const hook = tcHook(ifindex, tcPoint(direction))
  const bpf = libbpf()
  libbpfLog().take()
  const created = bpf.bpf_tc_hook_create(hook)
  if (created < 0 && -created !== E.EEXIST) {
    const log = libbpfLog().take()
    if (-created === E.ENODEV) throw noDevice(dev)
    if (-created === E.EOPNOTSUPP || -created === E.ENOTSUPP || -created === E.ENOENT) throw tcUnsupported(dev, created, log)
    throw errnoError(`create clsact qdisc on ${devName(dev)}`, created, {libbpfLog: log})
  }
  const o = tcOpts({
    progFd,
    flags: BPF_TC_F_REPLACE,
    handle: opts.handle ?? TC_HANDLE,
    priority: opts.priority ?? TC_PRIORITY,
  })
  const rc = bpf.bpf_tc_attach(hook, o)
  if (rc < 0) {
    const log = libbpfLog().take()
    if (-rc === E.ENODEV) throw noDevice(dev)
    if (-rc === E.EOPNOTSUPP || -rc === E.ENOTSUPP) throw tcUnsupported(dev, rc, log)
    throw errnoError(`attach tc ${direction} program to ${devName(dev)}`, rc, {libbpfLog: log})
  }
  return o.readUInt32LE(16)
}

/** Remove our tc filter from one direction. False if it was not there. */
export function detachTc(dev: Device, direction: TcDirection, opts: TcAttachOptions = {}): boolean {
  const ifindex = ifindexOf(dev)
  const hook = tcHook(ifindex, tcPoint(direction))
  const rc = libbpf().bpf_tc_detach(hook, tcOpts({handle: opts.handle ?? TC_HANDLE, priority: opts.priority ?? TC_PRIORITY}))
  // ENOENT: no such filter; EINVAL: no clsact qdisc at all.
  if (-rc === E.ENOENT || -rc === E.EINVAL) return false
  if (rc < 0) throw errnoError(`detach tc ${direction} program from ${devName(dev)}`, rc)
  return true
}

/** Id of our tc program on that direction, undefined when none. */
export function tcAttachedId(dev: Device, direction: TcDirection, opts: TcAttachOptions = {}): number | undefined {
  const ifindex = ifindexOf(dev)
  const hook = tcHook(ifindex, tcPoint(direction))
  const o = tcOpts({handle: opts.handle ?? TC_HANDLE, priority: opts.priority ?? TC_PRIORITY})
  const rc = libbpf().bpf_tc_query(hook, o)
  if (-rc === E.ENOENT || -rc === E.EINVAL) return undefined
  if (rc < 0) throw errnoError(`query tc ${direction} on ${devName(dev)}`, rc)
  return o.readUInt32LE(16) || undefined
}

/**
 * Delete the device's clsact qdisc and with it every tc filter on both
 * directions (ours and anyone else's). False if there was none.
 */
export function destroyTcHook(dev: Device): boolean {
  const ifindex = ifindexOf(dev)
  const rc = libbpf().bpf_tc_hook_destroy(tcHook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS))
  if (-rc === E.ENOENT || -rc === E.EINVAL) return false
  if (rc < 0) throw errnoError(`remove clsact qdisc from ${devName(dev)}`, rc)
  return true
}
