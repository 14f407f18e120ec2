// Questions that are not the cluster's go to the node's upstream resolvers: UDP first, TCP
// when the answer comes back truncated, each upstream in turn, the whole within a deadline
// (then the caller answers SERVFAIL), with a small cache of what came back.
import {createSocket, type Socket} from 'node:dgram'
import {connect} from 'node:net'
import {randomInt} from 'node:crypto'
import type {Forward} from './responder.js'
import type {DnsStats} from './stats.js'

export interface Upstream {
  host: string
  port: number
}

export interface ForwarderOptions {
  upstreams: Upstream[]
  stats: DnsStats
  /** Everything, all upstreams and the TCP retry, within this (ms). */
  deadlineMs?: number
  /** One UDP try of one upstream (ms). */
  tryMs?: number
  cacheEntries?: number
  /** Longest an answer is kept (s), whatever its TTL says. */
  cacheMaxTtl?: number
  /** The clock the cache ages answers by (ms); Date.now unless a test turns it. */
  now?: () => number
}

interface Pending {
  from: Upstream
  resolve: (b: Buffer) => void
}

const TC = 1 << 9
/** An answer with no records to take a TTL from (NXDOMAIN, NODATA) is kept this long (s). */
const NEGATIVE_TTL = 5

export class Forwarder implements Forward {
  private sock?: Socket
  private readonly pending = new Map<number, Pending>()
  private readonly cache = new Map<string, {res: Buffer; at: number; until: number}>()
  private readonly deadlineMs: number
  private readonly tryMs: number
  private readonly now: () => number

  constructor(private readonly o: ForwarderOptions) {
    this.deadlineMs = o.deadlineMs ?? 1800
    this.tryMs = o.tryMs ?? 700
    this.now = o.now ?? Date.now
  }

  async start(): Promise<void> {
    const sock = createSocket('udp4')
    sock.on('message', (msg, rinfo) => {
      if (msg.length < 12) return
      const p = this.pending.get(msg.readUInt16BE(0))
      // Only from the upstream it was sent to: anyone else guessing the id is ignored.
      if (!p || p.from.host !== rinfo.address || p.from.port !== rinfo.port) return
      p.resolve(msg)
    })
    sock.on('error', () => undefined)
    await new Promise<void>((r) => sock.bind(0, r))
    this.sock = sock
  }

  stop(): void {
    this.sock?.close()
    this.sock = undefined
  }

  async forward(query: Buffer, key: string): Promise<Buffer | undefined> {
    const hit = this.cache.get(key)
    const now = this.now()
    if (hit && hit.until > now) {
      this.o.stats.cacheHits++
      // As a caching resolver does: the TTLs say how long the answer is still good from now.
      return aged(hit.res, Math.floor((now - hit.at) / 1000))
    }
    if (hit) this.cache.delete(key)
    const deadline = Date.now() + this.deadlineMs
    for (const up of this.o.upstreams) {
      const left = deadline - Date.now()
      if (left <= 0) break
      let res = await this.udp(query, up, Math.min(this.tryMs, left))
      if (res && res.readUInt16BE(2) & TC) res = (await this.tcp(query, up, deadline - Date.now())) ?? res
      if (!res) continue
      this.remember(key, res)
      return res
    }
    return undefined
  }

  private udp(query: Buffer, up: Upstream, ms: number): Promise<Buffer | undefined> {
    const sock = this.sock
    if (!sock) return Promise.resolve(undefined)
    let id = randomInt(0x10000)
    for (let i = 0; this.pending.has(id) && i < 16; i++) id = randomInt(0x10000)
    if (this.pending.has(id)) return Promise.resolve(undefined)
    const q = Buffer.from(query)
    q.writeUInt16BE(id, 0)
    return new Promise((resolve) => {
      const done = (b: Buffer | undefined) => {
        clearTimeout(timer)
        this.pending.delete(id)
        resolve(b)
      }
      const timer = setTimeout(() => done(undefined), ms)
      this.pending.set(id, {from: up, resolve: done})
      sock.send(q, up.port, up.host, (e) => e && done(undefined))
    })
  }

  private tcp(query: Buffer, up: Upstream, ms: number): Promise<Buffer | undefined> {
    if (ms <= 0) return Promise.resolve(undefined)
    return new Promise((resolve) => {
      const c = connect({host: up.host, port: up.port})
      let buf = Buffer.alloc(0)
      const done = (b: Buffer | undefined) => {
        clearTimeout(timer)
        c.destroy()
        resolve(b)
      }
      const timer = setTimeout(() => done(undefined), ms)
      c.on('error', () => done(undefined))
      c.on('connect', () => {
        const len = Buffer.alloc(2)
        len.writeUInt16BE(query.length)
        c.write(Buffer.concat([len, query]))
      })
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d])
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)))
      })
      c.on('end', () => done(undefined))
    })
  }

  private remember(key: string, res: Buffer): void {
    const rcode = res.readUInt16BE(2) & 0xf
    if (rcode !== 0 && rcode !== 3) return // SERVFAIL, REFUSED...: ask again next time
    const ttl = Math.min(minTtl(res) ?? NEGATIVE_TTL, this.o.cacheMaxTtl ?? 300)
    if (ttl <= 0) return
    const max = this.o.cacheEntries ?? 1000
    if (this.cache.size >= max) this.cache.delete(this.cache.keys().next().value!)
    const at = this.now()
    this.cache.set(key, {res, at, until: at + ttl * 1000})
  }
}

/** Where the name at offset i ends: past its labels and the root, or past a compression pointer. */
function skipName(b: Buffer, i: number): number {
  for (;;) {
    const l = b[i]
    if (l === undefined) throw new Error('short')
    if ((l & 0xc0) === 0xc0) return i + 2
    i += l + 1
    if (l === 0) return i
  }
}

/** Where the answer section starts: past the header and every question (name, type, class). */
function skipQuestions(b: Buffer): number {
  let i = 12
  for (let n = b.readUInt16BE(4); n > 0; n--) i = skipName(b, i) + 4
  return i
}

/** The smallest TTL of the answer section, read without decoding the records' data. */
function minTtl(b: Buffer): number | undefined {
  try {
    let i = skipQuestions(b)
    let min: number | undefined
    for (let n = b.readUInt16BE(6); n > 0; n--) {
      i = skipName(b, i)
      const ttl = b.readUInt32BE(i + 4)
      min = min === undefined ? ttl : Math.min(min, ttl)
      i += 10 + b.readUInt16BE(i + 8)
    }
    return min
  } catch {
    return 0
  }
}

/**
 * A copy of a response with every record's TTL lowered by `seconds` (not below 0), in the answer,
 * authority and additional sections; OPT's TTL field holds flags and is left as it is. The
 * response came back from an upstream and was read once already (minTtl): one that cannot be
 * walked is returned as it is.
 */
export function aged(res: Buffer, seconds: number): Buffer {
  const out = Buffer.from(res)
  if (seconds <= 0) return out
  try {
    let i = skipQuestions(out)
    const records = out.readUInt16BE(6) + out.readUInt16BE(8) + out.readUInt16BE(10)
    for (let n = records; n > 0; n--) {
      i = skipName(out, i)
      if (out.readUInt16BE(i) !== 41) out.writeUInt32BE(Math.max(0, out.readUInt32BE(i + 4) - seconds), i + 4)
      i += 10 + out.readUInt16BE(i + 8)
    }
    return out
  } catch {
    return Buffer.from(res)
  }
}

/** The nameservers of a resolv.conf (IPv4 only; never `self`, which would be a loop). */
export function upstreamsOf(resolvConf: string, self: string): Upstream[] {
  const out: Upstream[] = []
  for (const line of resolvConf.split('\n')) {
    const m = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line)
    if (m && m[1] !== self) out.push({host: m[1]!, port: 53})
  }
  return out
}
