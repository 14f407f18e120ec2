// The commands' side of the agent API: JSON over HTTP on the agent's unix socket.
import {request as httpRequest} from 'node:http'
import {noAgentError, resolveHost} from './paths.js'

export class AgentClient {
  readonly node: string
  readonly socket: string

  constructor(host?: string) {
    const h = resolveHost(host)
    this.node = h.node
    this.socket = h.socket
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path)
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.call<T>('POST', path, body)
  }

  delete<T>(path: string): Promise<T> {
    return this.call<T>('DELETE', path)
  }

  call<T>(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    return new Promise<T>((resolve, reject) => {
      const req = httpRequest(
        {
          socketPath: this.socket,
          // A connection per call: Node 20's global agent keeps sockets alive, and one the agent
          // closed as idle (after 5 s) a moment before it is reused fails the call with EPIPE.
          agent: false,
          method,
          path,
          headers: payload ? {'content-type': 'application/json', 'content-length': payload.length} : {},
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            let parsed: unknown
            try {
              parsed = text.length > 0 ? JSON.parse(text) : undefined
            } catch {
              reject(new Error(`agent of ${this.node} answered with something that is not JSON`))
              return
            }
            if ((res.statusCode ?? 500) >= 400) {
              const msg = (parsed as {error?: string} | undefined)?.error ?? `HTTP ${res.statusCode}`
              reject(new Error(msg))
            } else resolve(parsed as T)
          })
        },
      )
      req.on('timeout', () => req.destroy(new Error(`agent of ${this.node} did not answer within ${timeoutMs / 1000} s`)))
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
          reject(noAgentError(this.node, this.socket))
        } else if (e.code === 'EACCES') {
          reject(new Error(`permission denied on ${this.socket}: the agent's socket is root-only`))
        } else reject(e)
      })
      if (payload) req.write(payload)
      req.end()
    })
  }
}
