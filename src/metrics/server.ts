// The agent's Prometheus endpoint: GET /metrics on a TCP address, nothing else.
import {createServer, type Server} from 'node:http'
import {isIPv4} from 'node:net'
import {UserError} from '../model/errors.js'
import type {AgentMetrics} from './agent-metrics.js'

/** The port Docker's daemon uses for its own metrics. */
export const DEFAULT_METRICS_ADDR = '127.0.0.1:9323'

/** HOST:PORT as --metrics-addr takes it (IPv4 or [IPv6]); '' means off. */
export function parseMetricsAddr(text: string): {host: string; port: number} | undefined {
  if (text === '') return undefined
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(text)
  const host = m?.[1] ?? m?.[2]
  const port = Number(m?.[3])
  if (!m || !host || (m[2] !== undefined && !isIPv4(host)) || port < 1 || port > 65535)
    throw new UserError(`invalid --metrics-addr '${text}': give IP:PORT (e.g. ${DEFAULT_METRICS_ADDR}), or '' for none`)
  return {host, port}
}

export function serveMetrics(at: {host: string; port: number}, metrics: AgentMetrics): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, {'content-type': 'text/plain'})
      res.end('only GET /metrics here\n')
      return
    }
    metrics.text().then(
      (body) => {
        res.writeHead(200, {'content-type': metrics.contentType})
        res.end(body)
      },
      (e: Error) => {
        res.writeHead(500, {'content-type': 'text/plain'})
        res.end(`${e.message}\n`)
      },
    )
  })
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(`cannot serve metrics on ${at.host}:${at.port}: ${e.code ?? e.message}`)),
    )
    server.listen(at.port, at.host, () => resolve(server))
  })
}
