// Starting the lab's nodes the way a person would: `swarmnet init` in the
// first node's namespace, `swarmnet join` in the others, through the real CLI.
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {AgentClient} from '../agent/client.js'
import type {NodeView} from '../agent/views.js'
import {nodeCgroupDirs} from '../sys/cgroup.js'
import {inCgroupsArgv} from '../sys/cgroup.js'
import {run} from '../sys/exec.js'
import {nsenterArgv} from '../sys/netns.js'
import {selfArgv} from '../util/root.js'
import type {LabNode, LabState} from './state.js'
import {nodeAddress, nodeName} from './topology.js'

/** initArgs: more flags for n1's `swarmnet init` (the cluster's settings, e.g. --dns). */
export async function startLabNode(
  node: LabNode,
  lab?: Pick<LabState, 'etcd' | 'managers'>,
  initArgs: string[] = [],
): Promise<void> {
  const first = {name: nodeName(1), address: nodeAddress(1)}
  const cli = (args: string[]) => onLabNode(node, args, `starting lab node ${node.name}`)
  // Managers on etcd: the lab's members, reached with the client certificate it made for them.
  const etcd = lab?.etcd
    ? [
        '--etcd-endpoints',
        lab.etcd.endpoints.join(','),
        '--etcd-ca',
        lab.etcd.client.ca,
        '--etcd-cert',
        lab.etcd.client.cert,
        '--etcd-key',
        lab.etcd.client.key,
      ]
    : []
  if (node.index === 1) {
    await cli([
      'init',
      '--node',
      node.name,
      '--advertise-addr',
      node.underlayIf,
      ...(etcd.length ? ['--store', 'etcd', ...etcd] : []),
      ...initArgs,
    ])
    return
  }
  const manager = node.index <= (lab?.managers ?? 1)
  const {token} = await new AgentClient(first.name).get<{token: string}>(manager ? '/join-token?role=manager' : '/join-token')
  await cli([
    'join',
    '--node',
    node.name,
    '--advertise-addr',
    node.underlayIf,
    '--token',
    token,
    ...(manager ? ['--manager', ...etcd] : []),
    `${first.address}:7946`,
  ])
}

/**
 * `swarmnet ARGS` in a lab node's namespace, as a person on that node would run it. It runs in
 * the node's agent cgroup: an agent it starts (init, join, agent --detach) inherits it, and lab
 * down kills it with the node's tasks.
 */
export function onLabNode(node: Pick<LabNode, 'name' | 'netns'>, args: string[], doing: string): Promise<string> {
  const agentCgroup = join(nodeCgroupDirs(node.name).v2, 'agent')
  mkdirSync(agentCgroup, {recursive: true})
  return run(inCgroupsArgv([agentCgroup], nsenterArgv(node.netns, [...selfArgv(), ...args])), doing, {
    env: {...process.env, NO_COLOR: '1'},
    timeoutMs: 60_000,
  })
}

/** The agent of a lab node that died (kill -9), started again in the background as after a reboot. */
export async function restartLabAgent(node: Pick<LabNode, 'name' | 'netns'>): Promise<void> {
  await onLabNode(node, ['agent', '--detach', '--node', node.name], `restarting the agent of ${node.name}`)
}

/**
 * Resolves once the first node (the manager that places tasks) sees every node ready with its
 * agent heard. A node that joined a moment ago is not yet in its view, and placement does not
 * rebalance later (Swarm's rule), so a service created right after `lab up` would skip it.
 */
export async function waitNodesReady(nodes: readonly Pick<LabNode, 'name'>[], timeoutMs = 60_000): Promise<void> {
  const first = nodes[0]
  if (!first) return
  const manager = new AgentClient(first.name)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const seen = await manager.get<NodeView[]>('/nodes')
    const missing = nodes.filter((n) => !seen.some((v) => v.name === n.name && v.state === 'ready' && v.agent === 'up'))
    if (missing.length === 0) return
    if (Date.now() > deadline) {
      const say = missing.map((n) => {
        const v = seen.find((x) => x.name === n.name)
        return v ? `${n.name} ${v.state}, agent ${v.agent}` : `${n.name} unknown`
      })
      throw new Error(`${first.name} does not see every node ready after ${Math.round(timeoutMs / 1000)} s: ${say.join('; ')}`)
    }
    await new Promise((r) => setTimeout(r, 200))
  }
}
