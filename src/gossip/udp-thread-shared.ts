// What the gossip UDP thread (udp-thread-worker.ts) and the transport on the main thread
// (udp-thread.ts) say to each other. Types only, and the layout of the shared memory.
import type {Message} from './codec.js'

/** Given to the thread at its start. */
export type UdpThreadData = {
  bindAddr: string
  port: number
  nodeId: string
  epoch: number
  privateKey: string
  /** `sum: 1` in every header the thread seals, as the transport's own (transport.ts sumFlag). */
  summaries: boolean
  /** The keyring's keys and primary at the start (then `keys` messages). */
  keys: KeysUpdate
  /** One BigInt64 cell: the last sequence number either thread stamped in a header (Atomics.add). */
  seq: SharedArrayBuffer
  /** One BigInt64 cell: process.hrtime.bigint() when the main thread last beat. */
  heartbeat: SharedArrayBuffer
  /** How old the main thread's beat may be for the thread to answer a ping for it, in ms. */
  loopStaleMs: number
}

export type KeysUpdate = {t: 'keys'; entries: {id: number; key: Uint8Array}[]; primary: number}

/** Main -> thread. */
export type ToThread =
  | KeysUpdate
  /** Certified, unrevoked node keys: set (key) or forgotten (no key). */
  | {t: 'senders'; set: [string, string][]; del: string[]}
  /** The SWIM incarnation this node answers with and its signed `alive` (absent: membership not running: no answers). */
  | {t: 'self'; inc?: number; isig?: string}
  | {t: 'send'; packet: Uint8Array; addr: string; port: number}
  | {t: 'stop'}

/** Thread -> main. */
export type FromThread =
  | {t: 'bound'}
  | {t: 'bind-error'; message: string}
  /**
   * A datagram the thread opened, authenticated (by `key`, the sender's certified key as the
   * thread knew it) and found fresh. acked: the thread answered it (a ping for this node);
   * withheld: it was such a ping, but the main thread's beat was too old to answer for it.
   */
  | {
      t: 'msg'
      m: Message
      addr: string
      port: number
      key: string
      len: number
      byMac: boolean
      acked: boolean
      withheld: boolean
      ackBytes: number
    }
  /** A datagram the thread did not accept (it could not open it, authenticate it, or it was not fresh): the main thread judges and counts it as before. */
  | {t: 'raw'; packet: Uint8Array; addr: string; port: number}
  | {t: 'send-error'}
