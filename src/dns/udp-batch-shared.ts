// What the responder's main thread and its batch thread (udp-batch.ts, udp-batch-worker.ts) share:
// the layout of their shared memory and the messages between them.
import type {MessagePort} from 'node:worker_threads'

/** Datagrams per recvmmsg/sendmmsg call: dnsperf's (and a busy node's) outstanding questions fit. */
export const BATCH = 64
/** Bytes per datagram slot: the largest UDP answer the responder sends (MAX_UDP); longer questions are dropped. */
export const SLOT = 4096
/** Kept answers at most in the batch thread (then it starts over), as in the responder. */
export const KEPT_MAX = 4096

/** Int32 cells of the control memory: set to stop; the name table's generation (bumped on each change). */
export const CTL_STOP = 0
export const CTL_GEN = 1
export const CTL_CELLS = 2

/** Float64 cells of the counters the batch thread writes (only it), in DnsStats' names. */
export const COUNTER = {queries: 0, answered: 1, nxdomain: 2, truncated: 3, malformed: 4} as const
export const COUNTER_CELLS = 5

export interface WorkerData {
  fd: number
  ctl: SharedArrayBuffer
  counters: SharedArrayBuffer
  /** Main -> batch thread: KeptEntry messages. */
  entries: MessagePort
}

/** An answer the responder keeps, for the batch thread to answer the same question with. */
export interface KeptEntry {
  /** The generation of the name table it was made from. */
  gen: number
  /** `${asker as a 32-bit number}|${the question's bytes after the id, latin1}` */
  key: string
  bytes: Uint8Array
  nxdomain: boolean
  truncated: boolean
}

/** A question the batch thread has no kept answer for: the main thread's responder answers it. */
export interface Miss {
  q: Buffer
  /** The asker's address (32-bit, network order read big-endian) and port. */
  ip: number
  port: number
}

/** Batch thread -> main. */
export type FromBatch = {ready: true} | {misses: Miss[]} | {error: string}
