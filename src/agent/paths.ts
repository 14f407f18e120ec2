// Where a node keeps what it owns, so that each thing can be found and removed.
import {existsSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {assertNodeName, isValidNodeName} from '../bpf/pins.js'
import {agentNotRunning, noAgentOnHost, notInitialised} from './unreachable.js'

export const RUN_DIR = process.env.SWARMNET_RUN_DIR ?? '/run/swarmnet'
export const STATE_ROOT = process.env.SWARMNET_STATE_DIR ?? '/var/lib/swarmnet'

/** A node's name becomes a path under /sys/fs/bpf, /run and /var/lib: the loader's rule decides. */
export function checkNodeName(name: string): string {
  assertNodeName(name)
  return name
}

export const socketPath = (node: string) => join(RUN_DIR, `${node}.sock`)
export const pidPath = (node: string) => join(RUN_DIR, `${node}.pid`)
export const stateDir = (node: string) => join(STATE_ROOT, node)
export const nodeConfigPath = (node: string) => join(stateDir(node), 'node.json')
export const agentLogPath = (node: string) => join(stateDir(node), 'agent.log')

/** The nodes that have an agent socket on this host. */
export function localNodes(): string[] {
  if (!existsSync(RUN_DIR)) return []
  return readdirSync(RUN_DIR)
    .filter((f) => f.endsWith('.sock'))
    .map((f) => f.slice(0, -'.sock'.length))
    .sort()
}

/**
 * Which agent a command talks to: --host or SWARMNET_HOST (a node name or a
 * socket path), else the only agent on this host.
 */
export function resolveHost(host: string | undefined): {node: string; socket: string} {
  if (host) {
    if (host.includes('/')) return {node: host, socket: host}
    checkNodeName(host)
    return {node: host, socket: socketPath(host)}
  }
  const nodes = localNodes()
  if (nodes.length === 1) return {node: nodes[0]!, socket: socketPath(nodes[0]!)}
  if (nodes.length === 0) throw noAgentOnHost(initialisedNodes())
  throw new Error(`several agents on this host (${nodes.join(', ')}): choose one with --host or SWARMNET_HOST`)
}

/** The nodes initialised on this host (init or join wrote their config), their agent running or not. */
export function initialisedNodes(): string[] {
  if (!existsSync(STATE_ROOT)) return []
  return readdirSync(STATE_ROOT)
    .filter((n) => isValidNodeName(n) && existsSync(nodeConfigPath(n)))
    .sort()
}

/** Nothing answers on a node's socket: was the node never made, or is only its agent down? */
export function noAgentError(node: string, socket: string): Error {
  if (node === socket) return new Error(`no agent answers on ${socket}`)
  return existsSync(nodeConfigPath(node)) ? agentNotRunning(node) : notInitialised(node)
}
