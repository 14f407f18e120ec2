// The thread that reads and answers the responder's UDP socket in batches (see udp-batch.ts):
// recvmmsg takes up to BATCH questions in one call, those whose answer is kept (the question's
// bytes after the id, from this asker, while the name table is the same) are answered with one
// sendmmsg, and the rest go to the main thread, whose responder answers them as before and tells
// this thread the answers it keeps. Nothing here decodes DNS: a kept answer is the responder's
// own bytes with the question's id written in, so the two paths answer byte for byte alike.
// A batch's answers are put together by asker (each asker's in the order asked), and those next to
// each other that go to the same address and are of the same length (a client asking one name
// many times, as dnsperf does, on one socket or several) leave as one UDP_SEGMENT message: the
// kernel routes, filters and forwards them once and cuts them into the same datagrams only at the
// device (or the receiving socket), which is most of a datagram's cost on the way out.
import {parentPort, receiveMessageOnPort, workerData, type MessagePort} from 'node:worker_threads'
import koffi from 'koffi'
import {
  EAGAIN,
  EINTR,
  EINVAL,
  EIO,
  MSG_TRUNC,
  MSG_WAITFORONE,
  SOCKADDR_IN,
  SOL_UDP,
  UDP_SEGMENT,
  errno,
  libcUdp,
} from './libc-udp.js'
import {
  BATCH,
  CTL_GEN,
  CTL_STOP,
  COUNTER,
  KEPT_MAX,
  SLOT,
  type KeptEntry,
  type Miss,
  type WorkerData,
} from './udp-batch-shared.js'

const wd = workerData as WorkerData
const {c, layout} = libcUdp()
const ctl = new Int32Array(wd.ctl)
const counters = new Float64Array(wd.counters)
const entries: MessagePort = wd.entries
const fd = wd.fd
const H = layout.mmsghdr
const V = layout.iovec
const C = layout.cmsghdr
/** A control message holding one uint16 (UDP_SEGMENT's datagram size): CMSG_LEN(2), CMSG_SPACE(2). */
const CMSG_LEN = C.data + 2
const CMSG_SPACE = C.data + 8
/**
 * Datagrams per UDP_SEGMENT message at most (the kernel takes 64, 128 since 6.9), and the longest
 * answer sent that way: a segment must fit the route's MTU, or the kernel refuses the whole send.
 */
const GSO_SEGMENTS = 64
const GSO_MAX = 1200

/** Native memory (the kernel reads and writes it), seen as a Buffer, and its address. */
function native(size: number): {ptr: unknown; b: Buffer; addr: number} {
  const ptr: unknown = koffi.alloc('uint8_t', size)
  const b = Buffer.from(koffi.view(ptr, size))
  b.fill(0)
  return {ptr, b, addr: Number(koffi.address(ptr))}
}

/** A pointer or size_t (LP64) written into native memory. */
function putPtr(b: Buffer, at: number, addr: number): void {
  b.writeUInt32LE(addr % 0x100000000, at)
  b.writeUInt32LE(Math.floor(addr / 0x100000000), at + 4)
}

const data = native(BATCH * SLOT)
const names = native(BATCH * SOCKADDR_IN)
const riov = native(BATCH * V.size)
const rhdr = native(BATCH * H.size)
const siov = native(BATCH * V.size)
const shdr = native(BATCH * H.size)
const ctrl = native(BATCH * CMSG_SPACE)
for (let i = 0; i < BATCH; i++) {
  putPtr(ctrl.b, i * CMSG_SPACE + C.len, CMSG_LEN)
  ctrl.b.writeInt32LE(SOL_UDP, i * CMSG_SPACE + C.level)
  ctrl.b.writeInt32LE(UDP_SEGMENT, i * CMSG_SPACE + C.type)
  putPtr(riov.b, i * V.size + V.base, data.addr + i * SLOT)
  riov.b.writeUInt32LE(SLOT, i * V.size + V.len)
  putPtr(rhdr.b, i * H.size + H.name, names.addr + i * SOCKADDR_IN)
  rhdr.b.writeUInt32LE(SOCKADDR_IN, i * H.size + H.namelen)
  putPtr(rhdr.b, i * H.size + H.iov, riov.addr + i * V.size)
  rhdr.b.writeUInt32LE(1, i * H.size + H.iovlen)
}
/** The answers of a batch: each one's datagram slot (whose sender it goes to) and length; siov[a] is answer a. */
let ansAt = new Int32Array(BATCH)
let ansLen = new Int32Array(BATCH)
/** group()'s output, swapped with ansAt/ansLen. */
let nextAt = new Int32Array(BATCH)
let nextLen = new Int32Array(BATCH)
/** group(): each answer taken already. */
const taken = new Uint8Array(BATCH)
/** The first answer of each header in shdr. */
const hdrAt = new Int32Array(BATCH)
/** Off once the kernel refused a segmented send (a route without checksum offload): a datagram per header from then on. */
let gso = true

/** Kept answers by asker and question bytes after the id; valid for generation `gen` only. */
let kept = new Map<string, KeptEntry>()
let gen = Atomics.load(ctl, CTL_GEN)

/** Before each batch: the kept answers of an older table dropped, then the new ones taken in. */
function sync(): void {
  const g = Atomics.load(ctl, CTL_GEN)
  if (g !== gen) {
    kept = new Map()
    gen = g
  }
  for (let m = receiveMessageOnPort(entries); m; m = receiveMessageOnPort(entries)) {
    const e = m.message as KeptEntry
    // Made from a name table that is gone already: never kept.
    if (e.gen !== Atomics.load(ctl, CTL_GEN) || e.bytes.length > SLOT) continue
    if (kept.size >= KEPT_MAX) kept = new Map()
    kept.set(e.key, e)
  }
}

/** The datagrams of slots i and j came from the same address and port. */
function sameAsker(i: number, j: number): boolean {
  const a = i * SOCKADDR_IN
  const b = j * SOCKADDR_IN
  return names.b.readUInt32LE(a) === names.b.readUInt32LE(b) && names.b.readUInt32LE(a + 4) === names.b.readUInt32LE(b + 4)
}

/**
 * Answers [0, n) to the same asker next to each other, each asker's in the order asked (askers in
 * the order they first appear), and siov written in that order: a client with several questions
 * out on each of several sockets (dnsperf -c 8, a stub resolver's few sockets) gets one
 * UDP_SEGMENT run per socket and length instead of one datagram per message. Answers to different
 * askers go to different sockets, whose relative order nothing promises.
 */
function group(n: number): void {
  if (gso && n > 2) {
    taken.fill(0, 0, n)
    let o = 0
    for (let a = 0; a < n; a++) {
      if (taken[a]) continue
      const i = ansAt[a]!
      for (let b = a; b < n; b++)
        if (!taken[b] && (b === a || sameAsker(i, ansAt[b]!))) {
          taken[b] = 1
          nextAt[o] = ansAt[b]!
          nextLen[o++] = ansLen[b]!
        }
    }
    ;[ansAt, nextAt] = [nextAt, ansAt]
    ;[ansLen, nextLen] = [nextLen, ansLen]
  }
  for (let a = 0; a < n; a++) {
    putPtr(siov.b, a * V.size + V.base, data.addr + ansAt[a]! * SLOT)
    putPtr(siov.b, a * V.size + V.len, ansLen[a]!)
  }
}

/**
 * shdr from header 0 for answers [from, n): one header per run of answers next to each other to
 * the same asker and of the same length (one UDP_SEGMENT message) while gso is on, else one per
 * answer. Returns the number of headers.
 */
function headers(from: number, n: number): number {
  let h = 0
  for (let a = from; a < n; h++) {
    const i = ansAt[a]!
    const len = ansLen[a]!
    let k = 1
    if (gso && len <= GSO_MAX) while (a + k < n && k < GSO_SEGMENTS && ansLen[a + k] === len && sameAsker(i, ansAt[a + k]!)) k++
    const s = h * H.size
    putPtr(shdr.b, s + H.name, names.addr + i * SOCKADDR_IN)
    shdr.b.writeUInt32LE(SOCKADDR_IN, s + H.namelen)
    putPtr(shdr.b, s + H.iov, siov.addr + a * V.size)
    putPtr(shdr.b, s + H.iovlen, k)
    if (k > 1) {
      ctrl.b.writeUInt16LE(len, h * CMSG_SPACE + C.data)
      putPtr(shdr.b, s + H.control, ctrl.addr + h * CMSG_SPACE)
      putPtr(shdr.b, s + H.controllen, CMSG_SPACE)
    } else {
      putPtr(shdr.b, s + H.control, 0)
      putPtr(shdr.b, s + H.controllen, 0)
    }
    hdrAt[h] = a
    a += k
  }
  return h
}

/** Sends answers [0, n), as many calls as it takes; a message the kernel refuses is skipped. */
function sendAll(n: number): void {
  let h = headers(0, n)
  while (h > 0) {
    const r = c.sendmmsg(fd, shdr.ptr, h, 0)
    if (r < 0) {
      const e = errno()
      if (e === EINTR) continue
      if ((e === EIO || e === EINVAL) && gso && shdr.b.readUInt32LE(H.iovlen) > 1) {
        // Segmentation refused where this socket sends: its answers go one by one, now and from now on.
        gso = false
        parentPort!.postMessage({error: `UDP_SEGMENT refused (errno ${e}): one datagram per message`})
        h = headers(hdrAt[0]!, n)
        continue
      }
    }
    const done = r > 0 ? r : 1
    if (done >= h) break
    // The unsent to the front; their iovecs and control messages stay where they are.
    shdr.b.copyWithin(0, done * H.size, h * H.size)
    hdrAt.copyWithin(0, done, h)
    h -= done
  }
}

parentPort!.postMessage({ready: true})
let last = 0
let failing = false
while (Atomics.load(ctl, CTL_STOP) === 0) {
  for (let i = 0; i < last; i++) {
    rhdr.b.writeUInt32LE(SOCKADDR_IN, i * H.size + H.namelen)
    rhdr.b.writeInt32LE(0, i * H.size + H.flags)
  }
  const n = c.recvmmsg(fd, rhdr.ptr, BATCH, MSG_WAITFORONE, null)
  if (n <= 0) {
    const e = n < 0 ? errno() : 0
    last = 0
    if (n < 0 && e !== EAGAIN && e !== EINTR && !failing) {
      failing = true
      parentPort!.postMessage({error: `recvmmsg: errno ${e}`})
    }
    // A socket that errs (or was shut down) must not spin this thread.
    if (n === 0 || (e !== EAGAIN && e !== EINTR)) Atomics.wait(ctl, CTL_STOP, 0, 50)
    continue
  }
  failing = false
  last = n
  sync()
  let out = 0
  let misses: Miss[] | undefined
  for (let i = 0; i < n; i++) {
    const h = i * H.size
    const len = rhdr.b.readUInt32LE(h + H.len)
    const at = i * SLOT
    // Too short for a header, cut short by the slot, or a response sent to us: dropped, as the
    // responder drops them (answering a response could loop between two resolvers).
    if (len < 12 || rhdr.b.readInt32LE(h + H.flags) & MSG_TRUNC || data.b[at + 2]! & 0x80) {
      counters[COUNTER.queries]++
      counters[COUNTER.malformed]++
      continue
    }
    const ip = names.b.readUInt32BE(i * SOCKADDR_IN + 4)
    const key = `${ip}|${data.b.toString('latin1', at + 2, at + len)}`
    const hit = kept.get(key)
    // The generation is read again for each answer: a change applied since the batch began
    // is never answered from the table before it.
    if (!hit || Atomics.load(ctl, CTL_GEN) !== gen) {
      ;(misses ??= []).push({q: Buffer.from(data.b.subarray(at, at + len)), ip, port: names.b.readUInt16BE(i * SOCKADDR_IN + 2)})
      continue
    }
    const id0 = data.b[at]!
    const id1 = data.b[at + 1]!
    data.b.set(hit.bytes, at)
    data.b[at] = id0
    data.b[at + 1] = id1
    counters[COUNTER.queries]++
    counters[COUNTER.answered]++
    if (hit.nxdomain) counters[COUNTER.nxdomain]++
    if (hit.truncated) counters[COUNTER.truncated]++
    ansAt[out] = i
    ansLen[out] = hit.bytes.length
    out++
  }
  if (out > 0) {
    group(out)
    sendAll(out)
  }
  if (misses) parentPort!.postMessage({misses})
}
for (const m of [data, names, riov, rhdr, siov, shdr, ctrl]) koffi.free(m.ptr)
entries.close()
