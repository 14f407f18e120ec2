// init and join start the agent in the background and return once its API
// answers, the way `docker swarm init` returns with the node ready.
import {spawn} from 'node:child_process'
import {closeSync, existsSync, mkdirSync, openSync} from 'node:fs'
import {dirname} from 'node:path'
import {selfArgv} from '../util/root.js'
import {UserError} from '../model/errors.js'
import {AgentClient} from './client.js'
import {readNodeConfig} from './config.js'
import {agentLogPath, socketPath} from './paths.js'
import {notInitialised} from './unreachable.js'

export function spawnAgent(node: string, extra: string[] = []): number {
  const log = agentLogPath(node)
  mkdirSync(dirname(log), {recursive: true, mode: 0o700})
  const fd = openSync(log, 'a')
  try {
    const [cmd, ...args] = selfArgv()
    const child = spawn(cmd!, [...args, 'agent', '--node', node, ...extra], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: {...process.env, NO_COLOR: '1'},
    })
    child.unref()
    return child.pid ?? 0
  } finally {
    closeSync(fd)
  }
}

export async function waitForAgent(node: string, pid: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await answers(node)) return
    try {
      process.kill(pid, 0)
    } catch {
      throw new Error(`the agent of ${node} exited while starting: see ${agentLogPath(node)}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`the agent of ${node} did not become ready within ${timeoutMs / 1000} s: see ${agentLogPath(node)}`)
}

/**
 * `swarmnet agent --detach`: the agent of a node that init or join made, started again in the
 * background (after a reboot, a crash or a stop), the way init and join start it.
 */
export async function restartAgent(node: string): Promise<number> {
  if (!readNodeConfig(node)) throw notInitialised(node)
  if (await answers(node)) throw new UserError(`the agent of node '${node}' is already running`)
  const pid = spawnAgent(node)
  await waitForAgent(node, pid)
  return pid
}

/**
 * `swarmnet agent --replace --detach`: a new agent in the background that takes the node over
 * from the running one (src/agent/handover.ts); returns once the new one serves the API.
 */
export async function replaceAgent(node: string, timeoutMs = 60_000): Promise<number> {
  if (!readNodeConfig(node)) throw notInitialised(node)
  const pid = spawnAgent(node, ['--replace'])
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    try {
      const info = await new AgentClient(node).call<{pid?: number}>('GET', '/info', undefined, 2000)
      if (info.pid === pid) return pid
    } catch {
      // between the two agents, or not up yet
    }
    try {
      process.kill(pid, 0)
    } catch {
      throw new Error(`the new agent of ${node} exited while taking over: see ${agentLogPath(node)}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`the new agent of ${node} did not take over within ${timeoutMs / 1000} s: see ${agentLogPath(node)}`)
}

export const agentAnswers = (node: string): Promise<boolean> => answers(node)

async function answers(node: string): Promise<boolean> {
  if (!existsSync(socketPath(node))) return false
  try {
    await new AgentClient(node).call('GET', '/info', undefined, 2000)
    return true
  } catch {
    return false
  }
}
