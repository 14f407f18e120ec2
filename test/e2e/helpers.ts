// Shared by the end-to-end tests: run the real CLI (compiled, as a user runs it)
// and real clients inside the lab's namespaces.
import {spawnSync} from 'node:child_process'
import {request} from 'node:http'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {AgentClient} from '../../src/agent/client.js'
import type {NodeView} from '../../src/agent/views.js'
import {cgroupMounts, cgroupPids} from '../../src/sys/cgroup.js'

export const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..')
export const BIN = join(ROOT, 'bin', 'run.js')

export interface Result {
  code: number
  stdout: string
  stderr: string
}

export function sh(argv: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Result {
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', ...env},
    timeout: timeoutMs,
  })
  return {code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? ''}
}

/** The swarmnet CLI talking to one node's agent. */
export function cli(node: string | undefined, args: string[], timeoutMs = 60_000): Result {
  return sh([process.execPath, BIN, ...args], node ? {SWARMNET_HOST: node} : {}, timeoutMs)
}

/** Like cli, but the command must succeed; returns stdout. */
export function ok(node: string | undefined, args: string[]): string {
  const r = cli(node, args)
  if (r.code !== 0) throw new Error(`swarmnet ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}

export function json<T>(node: string | undefined, args: string[]): T {
  return JSON.parse(ok(node, [...args, '--json'])) as T
}

export function inNs(netns: string, argv: string[], timeoutMs = 30_000): Result {
  return sh(['nsenter', `--net=/run/netns/${netns}`, '--', ...argv], {}, timeoutMs)
}

export async function eventually<T>(what: string, fn: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = fn()
      // A promise is never undefined or false: an async check here would pass at once, unchecked.
      if (v instanceof Promise) throw new TypeError(`eventually(${what}): the check is async; use until()`)
      if (v !== undefined && v !== false) return v
    } catch (e) {
      if (e instanceof TypeError && e.message.startsWith('eventually(')) throw e
      last = e
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** eventually() for async checks (an agent's API): polls every everyMs until fn resolves true. */
export async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      if (await fn()) return
    } catch (e) {
      last = e
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** How one node's agent sees another node (ready, down, ...): from its /nodes, not the CLI, to poll it cheaply. */
export const stateOn = async (viewer: string, name: string) =>
  (await new AgentClient(viewer).get<NodeView[]>('/nodes')).find((n) => n.name === name)?.state

/** Whether `name`'s agent is up or down as `viewer` sees it (its node may stay ready: issue 21). */
export const agentOn = async (viewer: string, name: string) =>
  (await new AgentClient(viewer).get<NodeView[]>('/nodes')).find((n) => n.name === name)?.agent

/** One call to n1's API over its socket, as any HTTP client would make it (not through AgentClient). */
export function api(method: string, path: string, body?: unknown): Promise<{status: number; error?: string}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath: '/run/swarmnet/n1.sock', method, path, agent: false}, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({status: res.statusCode ?? 0, ...(JSON.parse(text) as {error?: string})}))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

/** Everything swarmnet could have left on the machine: must be empty after lab down. */
export function leftovers(): string[] {
  const out: string[] = []
  const ns = sh(['ip', 'netns', 'list'])
    .stdout.split('\n')
    .filter((l) => /^sn-/.test(l))
  out.push(...ns.map((l) => `netns ${l.split(' ')[0]}`))
  const links = sh(['ip', '-br', 'link'])
    .stdout.split('\n')
    .filter((l) => /^sn-/.test(l))
  out.push(...links.map((l) => `link ${l.split(/\s+/)[0]}`))
  const pins = sh(['ls', '-A', '/sys/fs/bpf/swarmnet']).stdout.split('\n').filter(Boolean)
  out.push(...pins.map((p) => `pin dir /sys/fs/bpf/swarmnet/${p}`))
  const state = sh(['ls', '-A', '/var/lib/swarmnet']).stdout.split('\n').filter(Boolean)
  out.push(...state.map((p) => `state /var/lib/swarmnet/${p}`))
  const socks = sh(['ls', '-A', '/run/swarmnet']).stdout.split('\n').filter(Boolean)
  out.push(...socks.map((p) => `run /run/swarmnet/${p}`))
  // Task cgroups (v2, and v1 where limits put them) and anything still running in them.
  const m = cgroupMounts()
  const roots = [m.v2, m.v1.memory, m.v1.cpu].filter((r): r is string => r !== undefined)
  const dirs = sh(['find', ...roots, '-maxdepth', '4', '-type', 'd', '-name', 'swarmnet'])
    .stdout.split('\n')
    .filter(Boolean)
  out.push(...dirs.map((d) => `cgroup ${d}`))
  for (const d of dirs) out.push(...cgroupPids(d).map((p) => `process ${p} in ${d}`))
  return out
}
