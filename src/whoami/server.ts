/**
 * The built-in demo workload, after the traefik/whoami image: it tells a client which task
 * answered and what address the request came from (which shows that the routing mesh keeps
 * the client's source address).
 */
import {createServer, type IncomingMessage, type Server} from 'node:http'
import {hostname, networkInterfaces} from 'node:os'

export interface WhoamiOptions {
  port?: number
  host?: string
}

export interface WhoamiReport {
  hostname: string
  ip: string[]
  remoteAddr: string
  method: string
  url: string
  httpVersion: string
  headers: Record<string, string>
}

function addresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((a) => a.address)
}

export function report(req: IncomingMessage): WhoamiReport {
  const remote = req.socket.remoteAddress ?? ''
  const headers: Record<string, string> = {}
  // rawHeaders keeps the client's spelling and order, as whoami prints them.
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers[req.rawHeaders[i]!] = req.rawHeaders[i + 1]!
  return {
    hostname: process.env.SWARMNET_TASK_NAME ?? hostname(),
    ip: addresses(),
    remoteAddr: `${remote.replace(/^::ffff:/, '')}:${req.socket.remotePort ?? 0}`,
    method: req.method ?? 'GET',
    url: req.url ?? '/',
    httpVersion: req.httpVersion,
    headers,
  }
}

export function renderText(r: WhoamiReport): string {
  return [
    `Hostname: ${r.hostname}`,
    ...r.ip.map((a) => `IP: ${a}`),
    `RemoteAddr: ${r.remoteAddr}`,
    `${r.method} ${r.url} HTTP/${r.httpVersion}`,
    ...Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`),
    '',
  ].join('\n')
}

/** Resolves once listening. */
export function startWhoami(opts: WhoamiOptions = {}): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    const r = report(req)
    if (path === '/json') {
      res.writeHead(200, {'content-type': 'application/json'})
      res.end(`${JSON.stringify(r)}\n`)
    } else if (path === '/' || path === '') {
      res.writeHead(200, {'content-type': 'text/plain; charset=utf-8'})
      res.end(renderText(r))
    } else {
      res.writeHead(404, {'content-type': 'text/plain'})
      res.end('not found\n')
    }
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 80, opts.host ?? '0.0.0.0', () => {
      server.off('error', reject)
      resolve(server)
    })
  })
}
