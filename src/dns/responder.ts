// One DNS question from a task, answered: the cluster's names from the name table, everything
// else through the forwarder. Wire format by dns-packet. Never throws on what a task sends:
// a malformed query is answered FORMERR (when it has a header to answer) or dropped, and counted.
import * as dns from 'dns-packet'
import {wireName} from './fastpath.js'
import {resolve, rotated, type NameTable} from './names.js'
import type {DnsStats} from './stats.js'

/** The UDP size a client without EDNS0 may receive (RFC 1035), and the most we ever send over UDP. */
export const CLASSIC_UDP = 512
export const MAX_UDP = 4096
/** What we advertise in our OPT record: the size that avoids fragmentation (DNS flag day 2020). */
export const OUR_UDP = 1232

const QR = 1 << 15
const RCODE = {NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5} as const

export interface Forward {
  /** The upstream's response to `query` (any id), or undefined when none answered in time. */
  forward(query: Buffer, key: string): Promise<Buffer | undefined>
}

export interface ResponderOptions {
  names: () => NameTable
  ttl: number
  forwarder: Forward
  stats: DnsStats
}

/** Answers kept at most (then the cache starts over): far more than the distinct questions of a node's tasks. */
const ANSWERS_KEPT = 4096

/** An answer just made, and whether it may be kept (the cluster's names, in an order that does not turn). */
interface Fresh {
  out: Buffer | undefined | Promise<Buffer | undefined>
  keep: boolean
}

/** A cluster answer as sent, but for its id, and what it counted. */
interface Kept {
  bytes: Buffer
  nxdomain: boolean
  truncated: boolean
}

export class Responder {
  private turn = 0
  /**
   * Answers from the cluster's names, by asker, transport and the query's bytes after its id: the
   * same question from the same task gets the same bytes while the name table is the same object
   * (it is rebuilt when the store changes), so they are made once. dnsrr answers turn and forwarded
   * ones count down their TTLs: neither is kept.
   */
  private kept = new Map<string, Kept>()
  private keptTable?: NameTable

  constructor(private readonly o: ResponderOptions) {}

  /**
   * The bytes to send back, or undefined to send nothing. `tcp`: no UDP size limit. Synchronous
   * for the cluster's names (most questions: no promise to wait for), a promise when forwarded.
   */
  answer(query: Buffer, asker: string, tcp: boolean): Buffer | undefined | Promise<Buffer | undefined> {
    const s = this.o.stats
    s.queries++
    if (tcp) s.tcp++
    if (query.length < 12 || query.readUInt16BE(2) & QR) {
      s.malformed++
      return undefined // no header to answer, or a response sent to us: answering could loop
    }
    const table = this.o.names()
    if (table !== this.keptTable) {
      this.kept.clear()
      this.keptTable = table
    }
    const key = keptKey(query, asker, tcp)
    const hit = this.kept.get(key)
    if (hit) {
      s.answered++
      if (hit.nxdomain) s.nxdomain++
      if (hit.truncated) s.truncated++
      const out = Buffer.from(hit.bytes)
      query.copy(out, 0, 0, 2)
      return out
    }
    const {out, keep} = this.fresh(query, asker, tcp, table)
    if (!keep || out instanceof Promise || out === undefined) return out
    if (this.kept.size >= ANSWERS_KEPT) this.kept.clear()
    const rcode = out.readUInt16BE(2) & 0xf
    const truncated = (out.readUInt16BE(2) & dns.TRUNCATED_RESPONSE) !== 0
    this.kept.set(key, {bytes: Buffer.from(out), nxdomain: rcode === RCODE.NXDOMAIN, truncated})
    return out
  }

  /** The answer kept for `query` from `asker` (as answer() just made or found it), if it is kept. */
  keptFor(query: Buffer, asker: string, tcp: boolean): Readonly<Kept> | undefined {
    if (query.length < 12 || this.keptTable !== this.o.names()) return undefined
    return this.kept.get(keptKey(query, asker, tcp))
  }

  private fresh(query: Buffer, asker: string, tcp: boolean, table: NameTable): Fresh {
    const s = this.o.stats
    let p: dns.Packet
    try {
      p = dns.decode(query)
    } catch {
      s.malformed++
      return {out: header(query, RCODE.FORMERR), keep: false}
    }
    const opcode = (query.readUInt16BE(2) >> 11) & 0xf
    if (opcode !== 0) {
      s.notimp++
      return {out: header(query, RCODE.NOTIMP), keep: false}
    }
    const q = p.questions?.[0]
    if (!q || p.questions!.length !== 1) {
      s.malformed++
      return {out: header(query, RCODE.FORMERR), keep: false}
    }
    const opt = p.additionals?.find((a) => a.type === 'OPT') as dns.OptAnswer | undefined
    const limit = tcp ? 65535 : opt ? Math.min(Math.max(opt.udpPayloadSize ?? CLASSIC_UDP, CLASSIC_UDP), MAX_UDP) : CLASSIC_UDP
    const cls = q.class ?? 'IN'
    const r = cls === 'IN' || cls === 'ANY' ? resolve(table, asker, q.name, q.type) : 'forward'
    if (r === 'forward') return {out: this.forwarded(query, q, p.id ?? 0, limit), keep: false}
    s.answered++
    const keep = !('rotate' in r && r.rotate)
    const answers: dns.Answer[] = []
    const extra: dns.Answer[] = []
    let rcode: number = RCODE.NOERROR
    if (r.rcode === 'NXDOMAIN') {
      s.nxdomain++
      rcode = RCODE.NXDOMAIN
    } else if ('a' in r) {
      const ips = r.rotate ? rotated(r.a, this.turn++) : r.a
      const bytes = encodeA(query, ips, this.o.ttl, opt !== undefined)
      if (bytes && bytes.length <= limit) return {out: bytes, keep}
      for (const ip of ips) answers.push({type: 'A', class: 'IN', name: q.name, ttl: this.o.ttl, data: ip})
    } else if ('ptr' in r) {
      const name = wireName(r.ptr, MAX_NAME)
      const bytes = name && encodePtr(query, name, this.o.ttl, opt !== undefined)
      if (bytes && bytes.length <= limit) return {out: bytes, keep}
      answers.push({type: 'PTR', class: 'IN', name: q.name, ttl: this.o.ttl, data: r.ptr})
    } else if ('srv' in r) {
      const ttl = this.o.ttl
      for (const x of r.srv) {
        answers.push({
          type: 'SRV',
          class: 'IN',
          name: q.name,
          ttl,
          data: {priority: 0, weight: 0, port: x.port, target: x.target},
        })
      }
      // Each target's address once, so the client needs no second question.
      const seen = new Set<string>()
      for (const x of r.srv) {
        if (seen.has(x.target)) continue
        seen.add(x.target)
        extra.push({type: 'A', class: 'IN', name: x.target, ttl, data: x.ip})
      }
    }
    return {out: this.reply(query, p, q, rcode, answers, opt !== undefined, limit, extra), keep}
  }

  private reply(
    query: Buffer,
    p: dns.Packet,
    q: dns.Question,
    rcode: number,
    answers: dns.Answer[],
    edns: boolean,
    limit: number,
    extra: dns.Answer[] = [],
  ): Buffer {
    const rd = query.readUInt16BE(2) & dns.RECURSION_DESIRED
    const out: dns.Packet = {
      type: 'response',
      id: p.id ?? 0,
      flags: dns.AUTHORITATIVE_ANSWER | rd | dns.RECURSION_AVAILABLE | rcode,
      questions: [q],
      answers,
      additionals: [
        ...extra,
        ...(edns
          ? [
              {
                type: 'OPT',
                name: '.',
                udpPayloadSize: OUR_UDP,
                extendedRcode: 0,
                ednsVersion: 0,
                flags: 0,
                flag_do: false,
                options: [],
              } as dns.Answer,
            ]
          : []),
      ],
    }
    let bytes = dns.encode(out)
    if (bytes.length > limit) {
      // Too big for the client's UDP size: TC set and no answers, so it asks again over TCP.
      this.o.stats.truncated++
      const opt = out.additionals!.filter((a) => a.type === 'OPT')
      bytes = dns.encode({...out, flags: (out.flags ?? 0) | dns.TRUNCATED_RESPONSE, answers: [], additionals: opt})
    }
    return bytes
  }

  private async forwarded(query: Buffer, q: dns.Question, id: number, limit: number): Promise<Buffer> {
    const s = this.o.stats
    s.forwarded++
    const key = `${q.name.toLowerCase()}/${q.type}/${q.class ?? 'IN'}`
    const res = await this.o.forwarder.forward(query, key).catch(() => undefined)
    if (!res) {
      s.servfail++
      return header(query, RCODE.SERVFAIL)
    }
    const out = Buffer.from(res)
    out.writeUInt16BE(id, 0)
    if (out.length > limit) {
      // An upstream that ignored the size asked for (or a cached TCP answer): cut to the header and question.
      s.truncated++
      return truncate(out)
    }
    return out
  }
}

function keptKey(query: Buffer, asker: string, tcp: boolean): string {
  return `${tcp ? 't' : 'u'}${asker}|${query.toString('latin1', 2)}`
}

/**
 * The answer to an A question, byte for byte what the fast path (bpf/tc_dns.c) makes of the
 * query: the header with QR, AA, the query's RD and RA; the question as asked; each address with
 * a pointer to the question's name; our OPT record when the query had one. Undefined when the
 * question cannot be copied as it is (a compressed name), for dns-packet to write.
 */
export function encodeA(query: Buffer, ips: readonly string[], ttl: number, edns: boolean): Buffer | undefined {
  const qlen = questionLength(query)
  if (qlen === undefined) return undefined
  const out = answerHead(query, qlen, ips.length, ips.length * 16, edns)
  let at = 12 + qlen
  for (const ip of ips) {
    out.writeUInt16BE(0xc00c, at)
    out.writeUInt16BE(1, at + 2)
    out.writeUInt16BE(1, at + 4)
    out.writeUInt32BE(ttl, at + 6)
    out.writeUInt16BE(4, at + 10)
    let i = at + 12
    for (const part of ip.split('.')) out[i++] = Number(part)
    at += 16
  }
  if (edns) {
    out.writeUInt16BE(41, at + 1)
    out.writeUInt16BE(OUR_UDP, at + 3)
  }
  return out
}

/** The longest name on the wire (RFC 1035 2.3.4). */
const MAX_NAME = 255

/**
 * The answer to a PTR question, byte for byte what the fast path (bpf/tc_dns.c) makes of the
 * query, as encodeA's: one PTR record whose owner is a pointer to the question's name, its
 * data `name` in wire format as given (uncompressed). Undefined when the question cannot be
 * copied as it is.
 */
export function encodePtr(query: Buffer, name: Buffer, ttl: number, edns: boolean): Buffer | undefined {
  const qlen = questionLength(query)
  if (qlen === undefined) return undefined
  const out = answerHead(query, qlen, 1, 12 + name.length, edns)
  const at = 12 + qlen
  out.writeUInt16BE(0xc00c, at)
  out.writeUInt16BE(12, at + 2) // PTR
  out.writeUInt16BE(1, at + 4)
  out.writeUInt32BE(ttl, at + 6)
  out.writeUInt16BE(name.length, at + 10)
  name.copy(out, at + 12)
  if (edns) {
    out.writeUInt16BE(41, at + 12 + name.length + 1)
    out.writeUInt16BE(OUR_UDP, at + 12 + name.length + 3)
  }
  return out
}

/**
 * A response of `ancount` records (`alen` bytes, written by the caller after the question) to
 * the query whose question is `qlen` bytes: the header (QR, AA, the query's RD, RA), the question
 * as asked, and room for our OPT record at the end when the query had one.
 */
function answerHead(query: Buffer, qlen: number, ancount: number, alen: number, edns: boolean): Buffer {
  const out = Buffer.alloc(12 + qlen + alen + (edns ? 11 : 0))
  out.writeUInt16BE(query.readUInt16BE(0), 0)
  out.writeUInt16BE(QR | dns.AUTHORITATIVE_ANSWER | (query.readUInt16BE(2) & dns.RECURSION_DESIRED) | dns.RECURSION_AVAILABLE, 2)
  out.writeUInt16BE(1, 4)
  out.writeUInt16BE(ancount, 6)
  out.writeUInt16BE(edns ? 1 : 0, 10)
  query.copy(out, 12, 12, 12 + qlen)
  return out
}

/** A response with no records but the question (when it can be read): for FORMERR, NOTIMP, SERVFAIL. */
export function header(query: Buffer, rcode: number): Buffer {
  const flags = query.readUInt16BE(2)
  const out = Buffer.alloc(12)
  out.writeUInt16BE(query.readUInt16BE(0), 0)
  // QR, the query's opcode and RD, RA, and the rcode.
  out.writeUInt16BE(QR | (flags & 0x7900) | dns.RECURSION_AVAILABLE | rcode, 2)
  if (rcode === RCODE.FORMERR) return out
  const qlen = questionLength(query)
  if (qlen === undefined) return out
  out.writeUInt16BE(1, 4)
  return Buffer.concat([out, query.subarray(12, 12 + qlen)])
}

/** A response cut to its header and question, TC set. */
function truncate(res: Buffer): Buffer {
  const out = header(res, res.readUInt16BE(2) & 0xf)
  out.writeUInt16BE(out.readUInt16BE(2) | dns.TRUNCATED_RESPONSE | (res.readUInt16BE(2) & dns.AUTHORITATIVE_ANSWER), 2)
  return out
}

/** The length of the first question (uncompressed name, type, class), or undefined. */
function questionLength(b: Buffer): number | undefined {
  if (b.readUInt16BE(4) < 1) return undefined
  let i = 12
  while (i < b.length) {
    const l = b[i]!
    if (l === 0) return i + 1 + 4 <= b.length ? i + 1 + 4 - 12 : undefined
    if (l & 0xc0) return undefined
    i += l + 1
  }
  return undefined
}
