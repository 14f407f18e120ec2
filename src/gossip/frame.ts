import type {Socket} from 'node:net'

/**
 * Length-prefixed frames over one TCP connection: [u32 BE length][payload].
 * A reader pulls frames one at a time with a deadline, which keeps the
 * request/response protocols (push-pull, join) straight-line code.
 */
export const MAX_FRAME = 20 * 1024 * 1024 // memberlist's push-pull state limit

export class FramedConn {
  readonly socket: Socket
  private buf: Buffer = Buffer.alloc(0)
  private readonly frames: Buffer[] = []
  private waiter: ((f: Buffer | undefined) => void) | undefined
  private ended = false
  /** Why the stream was cut, when it was (oversized frame, socket error). */
  error: string | undefined
  /** The peer announced a frame over MAX_FRAME: a protocol violation, not a network fault. */
  oversized = false

  constructor(socket: Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (e) => this.finish(e.message))
    socket.on('close', () => this.finish())
  }

  get remote(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`
  }

  send(payload: Buffer): void {
    if (this.ended) return
    const head = Buffer.alloc(4)
    head.writeUInt32BE(payload.length)
    this.socket.write(Buffer.concat([head, payload]))
  }

  /** The next frame, or undefined on close, error or timeout. */
  next(timeoutMs: number): Promise<Buffer | undefined> {
    const f = this.frames.shift()
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

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0)
      if (len > MAX_FRAME) {
        this.oversized = true
        this.finish(`frame of ${len} bytes is over the ${MAX_FRAME} limit`)
        this.socket.destroy()
        return
      }
      if (this.buf.length < 4 + len) return
      const frame = this.buf.subarray(4, 4 + len)
      this.buf = this.buf.subarray(4 + len)
      if (this.waiter) this.waiter(frame)
      else this.frames.push(frame)
    }
  }

  private finish(error?: string): void {
    if (error) this.error ??= error
    this.ended = true
    if (this.waiter) this.waiter(undefined)
  }
}
