// Asks every other node's data path whether it is alive: a probe (./probe-wire.ts) to its
// data-path port, answered by its XDP program (bpf/include/probe.h) with no agent needed.
// A node answers when its link, its address and its program are there: what its tasks'
// traffic needs. What the answers mean is src/membership/node-liveness.ts's.

import dgram from 'node:dgram'
import {randomBytes} from 'node:crypto'
import {PROBE_REPLY, PROBE_REQUEST, decodeProbe, encodeProbe} from './probe-wire.js'

export type ProbeTarget = {id: string; addr: string}

export interface ProberOptions {
  /** This node's underlay address: the probes' source, bound so replies come back to it. */
  bindAddr: string
  /** The cluster's data-path port (every node's XDP answers on it). */
  port: number
  /** The probe key to tag with and its key id (the primary cluster key's). */
  sendKey: () => {keyId: number; key: Buffer}
  /** The probe key of a key id, to check replies (every installed cluster key's). */
  keyFor: (keyId: number) => Buffer | undefined
  /** One probe of every target per interval (ms). */
  intervalMs?: number
  now?: () => number
}

export const PROBE_INTERVAL_MS = 250

export class DataPathProber {
  private sock: dgram.Socket | undefined
  private timer: NodeJS.Timeout | undefined
  private targets: ProbeTarget[] = []
  private readonly lastAnswer = new Map<string, number>()
  /** Nonces in flight (hex) -> the target asked; kept for two intervals. */
  private readonly inFlight = new Map<string, {id: string; addr: string; at: number}>()
  private readonly now: () => number
  readonly stats = {sent: 0, answered: 0, refused: 0}

  constructor(private readonly o: ProberOptions) {
    this.now = o.now ?? Date.now
  }

  setTargets(t: ProbeTarget[]): void {
    this.targets = t
    const ids = new Set(t.map((x) => x.id))
    for (const id of this.lastAnswer.keys()) if (!ids.has(id)) this.lastAnswer.delete(id)
  }

  /** When the node's data path last answered (ms); 0: never since this agent started. */
  answeredAt(id: string): number {
    return this.lastAnswer.get(id) ?? 0
  }

  async start(): Promise<void> {
    const sock = dgram.createSocket('udp4')
    sock.on('message', (msg, from) => this.receive(msg, from.address, from.port))
    // A failed send (no route: the peer's link is gone) is a probe without an answer.
    sock.on('error', () => {})
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind({address: this.o.bindAddr, port: 0}, () => {
        sock.off('error', reject)
        resolve()
      })
    })
    this.sock = sock
    const every = this.o.intervalMs ?? PROBE_INTERVAL_MS
    this.timer = setInterval(() => this.round(every), every)
    this.timer.unref()
    this.round(every)
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.sock?.close()
    this.sock = undefined
  }

  private round(every: number): void {
    const now = this.now()
    for (const [n, f] of this.inFlight) if (now - f.at > 2 * every) this.inFlight.delete(n)
    const sock = this.sock
    if (!sock) return
    const {keyId, key} = this.o.sendKey()
    for (const t of this.targets) {
      const nonce = randomBytes(16)
      const b = encodeProbe({type: PROBE_REQUEST, keyId, nonce}, key, this.o.bindAddr, t.addr)
      this.inFlight.set(nonce.toString('hex'), {id: t.id, addr: t.addr, at: now})
      this.stats.sent++
      sock.send(b, this.o.port, t.addr, () => {})
    }
  }

  private receive(msg: Buffer, addr: string, port: number): void {
    const p = port === this.o.port ? decodeProbe(msg, addr, this.o.bindAddr, this.o.keyFor) : undefined
    const f = p && p.type === PROBE_REPLY ? this.inFlight.get(p.nonce.toString('hex')) : undefined
    // Only an answer from the node asked, to a probe still in flight, counts (each nonce once).
    if (!p || !f || f.addr !== addr) {
      this.stats.refused++
      return
    }
    this.inFlight.delete(p.nonce.toString('hex'))
    this.stats.answered++
    this.lastAnswer.set(f.id, this.now())
  }
}
