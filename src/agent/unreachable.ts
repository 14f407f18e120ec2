// Why no agent answers, said so that the fix is the next thing typed: a node that was never
// initialised needs init or join (which refuse a node that already is one); a node that is
// initialised needs only its agent started again.
import {UserError} from '../model/errors.js'
import {lastFailStop} from './fail-stop.js'

export function agentNotRunning(node: string): UserError {
  const stopped = lastFailStop(node)
  return new UserError(
    `the agent of node '${node}' is not running${stopped ? ` (it ${stopped})` : ''}: start it with \`swarmnet agent --node ${node} --detach\` (under systemd: \`systemctl start swarmnet\`)`,
  )
}

export function notInitialised(node: string): UserError {
  return new UserError(
    `node '${node}' is not part of a cluster on this host: make it one with \`swarmnet init\` or \`swarmnet join\``,
  )
}

/** No agent socket at all on this host; `initialised`: the nodes whose config is here. */
export function noAgentOnHost(initialised: string[]): UserError {
  if (initialised.length === 1) return agentNotRunning(initialised[0]!)
  if (initialised.length > 1)
    return new UserError(
      `no agent is running on this host (nodes: ${initialised.join(', ')}): start one with \`swarmnet agent --node NODE --detach\``,
    )
  return new UserError('no swarmnet node on this host: make one with `swarmnet init` or `swarmnet join`')
}
