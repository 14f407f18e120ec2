// Which node's agent a command reaches on this host, and what to say when none answers. The
// places themselves are src/sys/node-paths.ts (re-exported here for the agent's own files).
import {existsSync, readdirSync} from 'node:fs'
import {assertNodeName, isValidNodeName} from '../bpf/pins.js'
import {nodeConfigPath, RUN_DIR, socketPath, STATE_ROOT} from '../sys/node-paths.js'
import {agentNotRunning, noAgentOnHost, notInitialised} from './unreachable.js'

export {agentLogPath, nodeConfigPath, pidPath, RUN_DIR, socketPath, stateDir, STATE_ROOT} from '../sys/node-paths.js'

/** A node's name becomes a path under /sys/fs/bpf, /run and /var/lib: the loader's rule decides. */
export function checkNodeName(name: string): string {
  assertNodeName(name)
  return name
}

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
