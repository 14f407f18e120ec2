// The thread that reads and answers the responder's UDP socket in batches (see udp-batch.ts):
// recvmmsg takes up to BATCH questions in one call, those whose answer is kept (the question's
// bytes after the id, from this asker, while the name table is the same) are answered with one
// sendmmsg, and the rest go to the main thread, whose responder answers them as before and tells
// this thread the answers it keeps. Nothing here decodes DNS: a kept answer is the responder's
// own bytes with the question's id written in, so the two paths answer byte for byte alike.
import {parentPort, receiveMessageOnPort, workerData, type MessagePort} from 'node:worker_threads'
import koffi from 'koffi'
import {EAGAIN, EINTR, MSG_TRUNC, MSG_WAITFORONE, SOCKADDR_IN, errno, libcUdp} from './libc-udp.js'
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

/** Native memory (the kernel reads and writes it), seen as a Buffer, and its address. */
function native(size: number): {ptr: unknown; b: Buffer; addr: number} {
  const ptr: unknown = koffi.alloc('uint8_t', size)
  const b = Buffer.from(koffi.view(ptr, size))
  b.fill(0)
  return {ptr, b, addr: Number(koffi.address(ptr))}
}

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
for (let i = 0; i < BATCH; i++) {
  putPtr(riov.b, i * V.size + V.base, data.addr + i * SLOT)
  riov.b.writeUInt32LE(SLOT, i * V.size + V.len)
  putPtr(rhdr.b, i * H.size + H.name, names.addr + i * SOCKADDR_IN)
  rhdr.b.writeUInt32LE(SOCKADDR_IN, i * H.size + H.namelen)
  putPtr(rhdr.b, i * H.size + H.iov, riov.addr + i * V.size)
  rhdr.b.writeUInt32LE(1, i * H.size + H.iovlen)
  shdr.b.writeUInt32LE(SOCKADDR_IN, i * H.size + H.namelen)
  putPtr(shdr.b, i * H.size + H.iov, siov.addr + i * V.size)
  shdr.b.writeUInt32LE(1, i * H.size + H.iovlen)
}

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

/** Sends shdr[0..n), as many calls as it takes; a datagram the kernel refuses is skipped. */
function sendAll(n: number): void {
  let done = 0
  while (n > 0) {
    if (done > 0) {
      // The unsent to the front, each header pointing at its iovec again.
      shdr.b.copyWithin(0, done * H.size, n * H.size)
      siov.b.copyWithin(0, done * V.size, n * V.size)
      n -= done
      done = 0
      for (let j = 0; j < n; j++) putPtr(shdr.b, j * H.size + H.iov, siov.addr + j * V.size)
      if (n === 0) break
    }
    const r = c.sendmmsg(fd, shdr.ptr, n, 0)
    if (r < 0 && errno() === EINTR) continue
    done = r > 0 ? r : 1
    if (done === n) break
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
    const s = out * H.size
    putPtr(shdr.b, s + H.name, names.addr + i * SOCKADDR_IN)
    putPtr(siov.b, out * V.size + V.base, data.addr + at)
    siov.b.writeUInt32LE(hit.bytes.length, out * V.size + V.len)
    siov.b.writeUInt32LE(0, out * V.size + V.len + 4)
    out++
  }
  if (out > 0) sendAll(out)
  if (misses) parentPort!.postMessage({misses})
}
for (const m of [data, names, riov, rhdr, siov, shdr]) koffi.free(m.ptr)
entries.close()
