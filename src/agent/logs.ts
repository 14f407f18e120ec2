// `task logs` and `service logs`: a task's log is on the node that runs it, and that node's
// agent serves it. On this host we can reach the agents whose sockets are here (in the lab,
// every node's); a task on another host is named on stderr, not skipped silently.
import {request} from 'node:http'
import {AgentClient} from './client.js'
import {localNodes, socketPath} from './paths.js'
import type {TaskView} from './views.js'

export interface LogOptions {
  follow: boolean
  tail?: number
}

/** Streams GET path from a node's agent into onData; resolves when the agent ends the answer. */
function streamFrom(node: string, path: string, onData: (b: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath: socketPath(node), method: 'GET', path, agent: false}, (res) => {
      if ((res.statusCode ?? 500) >= 400) {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          let msg = `HTTP ${res.statusCode}`
          try {
            msg = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as {error?: string}).error ?? msg
          } catch {
            // not JSON: keep the status
          }
          reject(new Error(msg))
        })
        return
      }
      res.on('data', onData)
      res.on('end', resolve)
      res.on('error', reject)
    })
    req.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? new Error(`the agent of node ${node} is not running`) : e),
    )
    req.end()
  })
}

const query = (o: LogOptions) => `?follow=${o.follow ? 1 : 0}${o.tail !== undefined ? `&tail=${o.tail}` : ''}`

/** Splits a stream into whole lines, each written with prefix. */
function prefixed(prefix: string, write: (s: string) => void): {data: (b: Buffer) => void; end: () => void} {
  let rest = ''
  return {
    data: (b) => {
      const lines = (rest + b.toString('utf8')).split('\n')
      rest = lines.pop() ?? ''
      for (const l of lines) write(`${prefix}${l}\n`)
    },
    end: () => {
      if (rest) write(`${prefix}${rest}\n`)
      rest = ''
    },
  }
}

/** One task's log, as it is (no prefix). */
export async function taskLogs(host: string | undefined, ref: string, o: LogOptions, out: (b: Buffer) => void): Promise<void> {
  const t = await new AgentClient(host).get<TaskView>(`/tasks/${encodeURIComponent(ref)}`)
  if (!localNodes().includes(t.node))
    throw new Error(`task ${t.name} runs on node ${t.node}, whose agent is not on this host: run the command there`)
  await streamFrom(t.node, `/tasks/${encodeURIComponent(t.id)}/logs${query(o)}`, out)
}

/**
 * Every running task's log of a service, each line prefixed with the task's name; resolves to
 * the names of the tasks whose logs are not reachable from here (the caller says so).
 */
export async function serviceLogs(
  host: string | undefined,
  service: string,
  o: LogOptions,
  write: (s: string) => void,
  warn: (s: string) => void,
): Promise<void> {
  const tasks = (await new AgentClient(host).get<TaskView[]>(`/services/${encodeURIComponent(service)}/tasks`)).filter(
    (t) => t.desiredState === 'running',
  )
  const here = new Set(localNodes())
  const away = tasks.filter((t) => !here.has(t.node))
  if (away.length > 0)
    warn(
      `logs of ${away.map((t) => `${t.name} (node ${t.node})`).join(', ')} are not reachable from this host: run the command on those nodes`,
    )
  const width = Math.max(0, ...tasks.map((t) => t.name.length))
  await Promise.all(
    tasks
      .filter((t) => here.has(t.node))
      .map(async (t) => {
        const p = prefixed(`${t.name.padEnd(width)} | `, write)
        try {
          await streamFrom(t.node, `/tasks/${encodeURIComponent(t.id)}/logs${query(o)}`, p.data)
        } catch (e) {
          warn(`logs of ${t.name}: ${(e as Error).message}`)
        } finally {
          p.end()
        }
      }),
  )
}
