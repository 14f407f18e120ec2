/**
 * Device pairs made over rtnetlink, with no `ip` process: netkit (Linux 6.7+, which the
 * iproute2 of Debian 12, 6.1, cannot make) and veth, whose request has the same shape (the
 * peer's ifinfomsg and attributes nested in the kind's data) and so proves the encoding on any
 * kernel.
 *
 * A netkit pair is a veth-like pair whose BPF program is the device's own transmit path: a
 * program attached to the peer (BPF_NETKIT_PEER, through the primary's ifindex) runs inside the
 * peer's transmit, in the sending task's context, with no backlog queue before it (a veth hands
 * every frame to the other side's backlog first, where tc ingress then runs).
 *
 * One request, RTM_NEWLINK with NLM_F_CREATE|NLM_F_EXCL: the primary in the caller's namespace,
 * the peer straight into `peerNs` (IFLA_NET_NS_FD), both in L2 mode (the task side keeps its MAC
 * and its ARP, which tc_task answers), both policies "forward" (what a program does not decide
 * goes through, as on a veth).
 *
 * Attribute numbers are the kernel's UAPI (include/uapi/linux/if_link.h, rtnetlink.h,
 * netlink.h); the installed headers predate netkit, so they are spelled out here.
 */
import {closeSync, openSync} from 'node:fs'
import {errno, libc} from './libc.js'
import {checkIfname} from './link.js'
import {netnsPath} from './netns.js'

const AF_NETLINK = 16
const SOCK_RAW = 3
const SOCK_CLOEXEC = 0o2000000
const NETLINK_ROUTE = 0

const RTM_NEWLINK = 16
const NLMSG_ERROR = 2
const NLM_F_REQUEST = 0x1
const NLM_F_ACK = 0x4
const NLM_F_EXCL = 0x200
const NLM_F_CREATE = 0x400
const NLA_F_NESTED = 0x8000

const IFLA_ADDRESS = 1
const IFLA_IFNAME = 3
const IFLA_MTU = 4
const IFLA_LINKINFO = 18
const IFLA_NET_NS_FD = 28
const IFLA_NUM_TX_QUEUES = 31
const IFLA_NUM_RX_QUEUES = 32
const IFLA_INFO_KIND = 1
const IFLA_INFO_DATA = 2

// enum { IFLA_NETKIT_UNSPEC, _PEER_INFO, _PRIMARY, _POLICY, _PEER_POLICY, _MODE, ... }
const IFLA_NETKIT_PEER_INFO = 1
const IFLA_NETKIT_POLICY = 3
const IFLA_NETKIT_PEER_POLICY = 4
const IFLA_NETKIT_MODE = 5
// enum { VETH_INFO_UNSPEC, VETH_INFO_PEER }
const VETH_INFO_PEER = 1
// enum netkit_mode { NETKIT_L2, NETKIT_L3 }; enum netkit_action { ..., NETKIT_PASS = 0, ... }
const NETKIT_L2 = 0
const NETKIT_PASS = 0

const NLMSG_HDRLEN = 16
const IFINFOMSG_LEN = 16

const align4 = (n: number) => (n + 3) & ~3

/** One netlink attribute: its header, its payload, padding to 4 bytes. */
function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length
  const b = Buffer.alloc(align4(len))
  b.writeUInt16LE(len, 0)
  b.writeUInt16LE(type, 2)
  payload.copy(b, 4)
  return b
}
const u32Attr = (type: number, v: number) => {
  const p = Buffer.alloc(4)
  p.writeUInt32LE(v >>> 0, 0)
  return attr(type, p)
}
const strAttr = (type: number, s: string) => attr(type, Buffer.from(`${s}\0`, 'utf8'))
const nested = (type: number, parts: Buffer[]) => attr(type | NLA_F_NESTED, Buffer.concat(parts))

function macBytes(mac: string): Buffer {
  const parts = mac.split(':')
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`invalid MAC address "${mac}"`)
  return Buffer.from(parts.map((p) => parseInt(p, 16)))
}

/** The link attributes both ends can carry. */
function linkAttrs(o: {name: string; mtu?: number; mac?: string; queues?: number}): Buffer[] {
  return [
    strAttr(IFLA_IFNAME, o.name),
    ...(o.mtu ? [u32Attr(IFLA_MTU, o.mtu)] : []),
    ...(o.mac ? [attr(IFLA_ADDRESS, macBytes(o.mac))] : []),
    ...(o.queues ? [u32Attr(IFLA_NUM_TX_QUEUES, o.queues), u32Attr(IFLA_NUM_RX_QUEUES, o.queues)] : []),
  ]
}

export interface PairOptions {
  /** The peer's namespace (a named one under /run/netns); default: the caller's. */
  peerNs?: string
  mtu?: number
  /** The peer's MAC address (netkit keeps it in L2 mode). */
  peerMac?: string
  /** Transmit and receive queues of each end (default the kernel's: 1). */
  queues?: number
}

export type PairKind = 'netkit' | 'veth'

/** The encoded RTM_NEWLINK request (exported for its unit test). */
export function pairRequest(
  kind: PairKind,
  name: string,
  peer: string,
  o: PairOptions & {peerNsFd?: number},
  seq: number,
): Buffer {
  const ifinfo = () => Buffer.alloc(IFINFOMSG_LEN) // AF_UNSPEC, no index, no flags
  const peerInfo = Buffer.concat([
    ifinfo(),
    ...linkAttrs({name: peer, mtu: o.mtu, mac: o.peerMac, queues: o.queues}),
    ...(o.peerNsFd !== undefined ? [u32Attr(IFLA_NET_NS_FD, o.peerNsFd)] : []),
  ])
  const body = Buffer.concat([
    ifinfo(),
    ...linkAttrs({name, mtu: o.mtu, queues: o.queues}),
    nested(IFLA_LINKINFO, [
      strAttr(IFLA_INFO_KIND, kind),
      nested(
        IFLA_INFO_DATA,
        kind === 'netkit'
          ? [
              u32Attr(IFLA_NETKIT_MODE, NETKIT_L2),
              u32Attr(IFLA_NETKIT_POLICY, NETKIT_PASS),
              u32Attr(IFLA_NETKIT_PEER_POLICY, NETKIT_PASS),
              attr(IFLA_NETKIT_PEER_INFO, peerInfo),
            ]
          : [attr(VETH_INFO_PEER, peerInfo)],
      ),
    ]),
  ])
  const hdr = Buffer.alloc(NLMSG_HDRLEN)
  hdr.writeUInt32LE(NLMSG_HDRLEN + body.length, 0)
  hdr.writeUInt16LE(RTM_NEWLINK, 4)
  hdr.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 6)
  hdr.writeUInt32LE(seq, 8)
  return Buffer.concat([hdr, body])
}

const EOPNOTSUPP = 95
const ERRNO_TEXT: Record<number, string> = {
  1: 'operation not permitted',
  17: 'a device of that name exists',
  22: 'invalid argument',
}

/** The kernel has no such kind of device (for netkit: before 6.7, or built without CONFIG_NETKIT). */
export class PairUnsupported extends Error {}

let seqNo = 1

/**
 * Makes the netkit pair `name` (here) / `peer` (in o.peerNs), both down, L2, forwarding what no
 * program decides. A one-line error when the kernel refuses (PairUnsupported when it has no
 * netkit); nothing is left behind then: the kernel makes both ends or neither.
 */
export function createNetkit(name: string, peer: string, o: PairOptions = {}): void {
  createPair('netkit', name, peer, o)
}

/** The same for a veth pair (what the agent makes with `ip` today). */
export function createVethPair(name: string, peer: string, o: PairOptions = {}): void {
  createPair('veth', name, peer, o)
}

function createPair(kind: PairKind, name: string, peer: string, o: PairOptions): void {
  checkIfname(name)
  checkIfname(peer)
  if (o.queues !== undefined && (!Number.isInteger(o.queues) || o.queues < 1 || o.queues > 64))
    throw new Error(`creating ${kind} ${name}/${peer}: queues must be 1-64`)
  const nsFd = o.peerNs ? openSync(netnsPath(o.peerNs), 'r') : undefined
  const fd = libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)
  try {
    if (fd < 0) throw new Error(`creating ${kind} ${name}/${peer}: no netlink socket (errno ${errno()})`)
    const seq = seqNo++
    const req = pairRequest(kind, name, peer, {...o, ...(nsFd !== undefined ? {peerNsFd: nsFd} : {})}, seq)
    if (libc().send(fd, req, req.length, 0) !== req.length)
      throw new Error(`creating ${kind} ${name}/${peer}: netlink send failed (errno ${errno()})`)
    const buf = Buffer.alloc(8192)
    for (;;) {
      const n = libc().recv(fd, buf, buf.length, 0)
      if (n < 0) throw new Error(`creating ${kind} ${name}/${peer}: netlink recv failed (errno ${errno()})`)
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = buf.readUInt32LE(off)
        const type = buf.readUInt16LE(off + 4)
        if (len < NLMSG_HDRLEN) break
        if (buf.readUInt32LE(off + 8) === seq && type === NLMSG_ERROR) {
          const err = -buf.readInt32LE(off + NLMSG_HDRLEN)
          if (err === 0) return
          if (err === EOPNOTSUPP)
            throw new PairUnsupported(
              `creating ${kind} ${name}/${peer}: this kernel has no ${kind} devices${kind === 'netkit' ? ' (Linux 6.7+ built with CONFIG_NETKIT)' : ''}`,
            )
          throw new Error(`creating ${kind} ${name}/${peer}: ${ERRNO_TEXT[err] ?? `errno ${err}`}`)
        }
        off += align4(len)
      }
    }
  } finally {
    if (fd >= 0) libc().close(fd)
    if (nsFd !== undefined) closeSync(nsFd)
  }
}
