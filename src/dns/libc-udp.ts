// The libc socket calls the batched UDP path makes (declared in sys/libc.ts), and the layouts of
// the structs it fills by hand (struct mmsghdr, msghdr, iovec, sockaddr_in). Node 20's dgram has
// no recvmmsg/sendmmsg; these let one call move up to a batch of datagrams. Loaded on first use,
// in whichever thread asks (koffi's functions are per thread). Offsets come from koffi's own
// layout of the C structs (LP64 Linux), not from constants.
import koffi from 'koffi'
import {libc, type Libc} from '../sys/libc.js'

export {errno} from '../sys/libc.js'

/** The libc calls of the batch path. */
export type LibcUdp = Pick<Libc, 'socket' | 'bind' | 'setsockopt' | 'shutdown' | 'close' | 'sendto' | 'recvmmsg' | 'sendmmsg'>

export const AF_INET = 2
export const SOCK_DGRAM = 2
export const SOCK_CLOEXEC = 0o2000000
export const SOL_SOCKET = 1
export const SO_RCVTIMEO = 20
export const SHUT_RD = 0
export const MSG_DONTWAIT = 0x40
export const MSG_TRUNC = 0x20
export const MSG_WAITFORONE = 0x10000
export const EAGAIN = 11
export const EIO = 5
export const EINVAL = 22
export const EINTR = 4
export const SOCKADDR_IN = 16
/** UDP generic segmentation offload (linux/udp.h): one send carries equal-sized datagrams to one address. */
export const SOL_UDP = 17
export const UDP_SEGMENT = 103

/** Byte offsets inside the structs the batch path writes. */
export interface UdpLayout {
  iovec: {size: number; base: number; len: number}
  mmsghdr: {
    size: number
    name: number
    namelen: number
    iov: number
    iovlen: number
    control: number
    controllen: number
    flags: number
    len: number
  }
  cmsghdr: {len: number; level: number; type: number; data: number}
}

let loaded: {c: LibcUdp; layout: UdpLayout} | undefined

export function libcUdp(): {c: LibcUdp; layout: UdpLayout} {
  if (loaded) return loaded
  const c = libc()
  const iovec = koffi.struct({iov_base: 'void *', iov_len: 'size_t'})
  const msghdr = koffi.struct({
    msg_name: 'void *',
    msg_namelen: 'uint32_t',
    msg_iov: 'void *',
    msg_iovlen: 'size_t',
    msg_control: 'void *',
    msg_controllen: 'size_t',
    msg_flags: 'int',
  })
  const mmsghdr = koffi.struct({msg_hdr: msghdr, msg_len: 'unsigned int'})
  const cmsghdr = koffi.struct({cmsg_len: 'size_t', cmsg_level: 'int', cmsg_type: 'int'})
  const at = (t: koffi.IKoffiCType, f: string) => koffi.offsetof(t, f)
  const layout: UdpLayout = {
    iovec: {size: koffi.sizeof(iovec), base: at(iovec, 'iov_base'), len: at(iovec, 'iov_len')},
    mmsghdr: {
      size: koffi.sizeof(mmsghdr),
      name: at(msghdr, 'msg_name'),
      namelen: at(msghdr, 'msg_namelen'),
      iov: at(msghdr, 'msg_iov'),
      iovlen: at(msghdr, 'msg_iovlen'),
      control: at(msghdr, 'msg_control'),
      controllen: at(msghdr, 'msg_controllen'),
      flags: at(msghdr, 'msg_flags'),
      len: at(mmsghdr, 'msg_len'),
    },
    cmsghdr: {
      len: at(cmsghdr, 'cmsg_len'),
      level: at(cmsghdr, 'cmsg_level'),
      type: at(cmsghdr, 'cmsg_type'),
      // CMSG_DATA: the header rounded up to size_t's alignment.
      data: Math.ceil(koffi.sizeof(cmsghdr) / 8) * 8,
    },
  }
  loaded = {c, layout}
  return loaded
}

/** A struct sockaddr_in for `ip`:`port`. */
export function sockaddrIn(ip: string, port: number): Buffer {
  const b = Buffer.alloc(SOCKADDR_IN)
  b.writeUInt16LE(AF_INET, 0)
  b.writeUInt16BE(port, 2)
  b.writeUInt32BE(ipv4Number(ip), 4)
  return b
}

/** A dotted IPv4 address as the unsigned 32-bit number it is on the wire (network order read big-endian). */
export function ipv4Number(ip: string): number {
  const p = ip.split('.')
  if (p.length !== 4) throw new Error(`not an IPv4 address: ${ip}`)
  let n = 0
  for (const x of p) {
    const v = Number(x)
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new Error(`not an IPv4 address: ${ip}`)
    n = n * 256 + v
  }
  return n
}

export function ipv4String(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}
