import type {Socket} from 'node:net'

/**
 * Length-prefixed frames over one TCP connection: [u32 BE length][payload].
 * A reader pulls frames one at a time with a deadline, which keeps the
 * request/response protocols (push-pull, join) straight-line code.
 */
export const MAX_FRAME = 20 * 1024 * 1024 // memberlist's push-pull state limit
/**
 * Until a connection's first frame has authenticated, a peer is anyone: it may
 * not make us buffer more than this (the join handshake and a push-pull
 * request fit; the whole state only ever goes the other way).
 */
export const MAX_UNAUTHENTICATED_FRAME = 64 * 1024

/**
 * Splits a byte stream into frames in linear time: chunks are kept as they
 * come and each frame is copied out once, so a frame that arrives in many
 * small pieces costs its size, not its size times the number of pieces.
 */
export class FrameReader {
  /** The largest frame accepted; raised once the peer has authenticated. */
  limit: number
  private chunks: Buffer[] = []
  /** Index of the first chunk still held (shift() is O(n) on a long array). */
  private head = 0
  private have = 0
  /** Length of the frame being read, once its prefix is in. */
  private need: number | undefined

  constructor(limit: number) {
    this.limit = limit
  }

  /** Bytes held that are not yet part of a frame handed out. */
  get buffered(): number {
    return this.have
  }

  /** Part of a frame is in (its length or some of its bytes) and the rest is not. */
  get partial(): boolean {
    return this.have > 0 || this.need !== undefined
  }

  append(chunk: Buffer): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.have += chunk.length
  }

  /** The next complete frame, if one is in; throws FrameTooBig on a length over the limit. */
  next(): Buffer | undefined {
    if (this.need === undefined) {
      if (this.have < 4) return undefined
      const len = this.take(4).readUInt32BE(0)
      if (len > this.limit) throw new FrameTooBig(len, this.limit)
      this.need = len
    }
    if (this.have < this.need) return undefined
    const frame = this.take(this.need)
    this.need = undefined
    return frame
  }

  /** Removes n bytes from the front: at most one chunk is split. */
  private take(n: number): Buffer {
    const parts: Buffer[] = []
    let left = n
    while (left > 0) {
      const c = this.chunks[this.head] as Buffer
      if (c.length <= left) {
        parts.push(c)
        this.head++
        left -= c.length
      } else {
        parts.push(c.subarray(0, left))
        this.chunks[this.head] = c.subarray(left)
        left = 0
      }
    }
    if (this.head === this.chunks.length) {
      this.chunks = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head)
      this.head = 0
    }
    this.have -= n
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, n)
  }
}

export class FrameTooBig extends Error {
  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super(`frame of ${length} bytes is over the ${limit} limit`)
  }
}

/**
 * Frames are parsed when they are asked for (pull), under the limit in force
 * at that moment, and the socket is paused while more than one frame's worth
 * waits unread: a peer can make us hold at most about one frame at the
 * current limit, and a frame sent right behind the authenticating one is
 * judged by the raised limit.
 */
export class FramedConn {
  readonly socket: Socket
  private readonly reader: FrameReader
  private waiter: ((f: Buffer | undefined) => void) | undefined
  private ended = false
  /** Why the stream was cut, when it was (oversized frame, socket error). */
  error: string | undefined
  /** The peer announced a frame over the limit: a protocol violation, not a network fault. */
  oversized = false

  /** limit: MAX_UNAUTHENTICATED_FRAME for connections others open to us, until authenticated(). */
  constructor(socket: Socket, limit = MAX_FRAME) {
    this.socket = socket
    this.reader = new FrameReader(limit)
    socket.on('data', (chunk: Buffer) => {
      this.reader.append(chunk)
      this.pump()
    })
    socket.on('error', (e) => this.finish(e.message))
    socket.on('close', () => this.finish())
  }

  get remote(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`
  }

  /** After next() gave nothing: the stream ended or timed out in the middle of a frame (a truncated frame). */
  get truncated(): boolean {
    return this.reader.partial
  }

  /** The peer proved it holds the cluster key: frames up to MAX_FRAME from now on. */
  authenticated(): void {
    this.reader.limit = MAX_FRAME
  }

  send(payload: Buffer): void {
    if (this.ended) return
    const head = Buffer.alloc(4)
    head.writeUInt32BE(payload.length)
    this.socket.write(Buffer.concat([head, payload]))
  }

  /** The next frame, or undefined on close, error, oversized frame or timeout. */
  next(timeoutMs: number): Promise<Buffer | undefined> {
    const f = this.parse()
    if (f) return Promise.resolve(f)
    if (this.ended) return Promise.resolve(undefined)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined
        this.error ??= 'timed out'
        resolve(undefined)
      }, timeoutMs)
      this.waiter = (frame) => {
        clearTimeout(timer)
        this.waiter = undefined
        resolve(frame)
      }
      this.pump()
    })
  }

  /** Flushes what was sent, then closes. */
  close(): void {
    this.ended = true
    this.socket.end()
    // A peer that never reads must not pin the socket open.
    setTimeout(() => this.socket.destroy(), 1000).unref()
  }

  destroy(): void {
    this.ended = true
    this.socket.destroy()
  }

  private pump(): void {
    if (this.waiter) {
      const f = this.parse()
      if (f) this.waiter(f)
    }
    if (this.ended) return
    if (this.reader.buffered > this.reader.limit + 4) this.socket.pause()
    else this.socket.resume()
  }

  private parse(): Buffer | undefined {
    if (this.oversized) return undefined
    try {
      return this.reader.next()
    } catch (e) {
      this.oversized = true
      this.finish((e as Error).message)
      this.socket.destroy()
      return undefined
    }
  }

  private finish(error?: string): void {
    if (error) this.error ??= error
    this.ended = true
    if (this.waiter) this.waiter(undefined)
  }
}
