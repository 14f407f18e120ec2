// Starting the lab's nodes the way a person would: `swarmnet init` in the
// first node's namespace, `swarmnet join` in the others, through the real CLI.
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {AgentClient} from '../agent/client.js'
import {nodeCgroupDirs} from '../sys/cgroup.js'
import {inCgroupsArgv} from '../tasks/launcher.js'
import {run} from '../sys/exec.js'
import {nsenterArgv} from '../sys/netns.js'
import {selfArgv} from '../util/root.js'
import type {LabNode} from './state.js'
import {nodeAddress, nodeName} from './topology.js'

/** initArgs: more flags for n1's `swarmnet init` (the cluster's settings, e.g. --dns). */
export async function startLabNode(node: LabNode, initArgs: string[] = []): Promise<void> {
  const first = {name: nodeName(1), address: nodeAddress(1)}
  // The agent that init/join starts inherits this cgroup: lab down kills it with the node's tasks.
  const agentCgroup = join(nodeCgroupDirs(node.name).v2, 'agent')
  mkdirSync(agentCgroup, {recursive: true})
  const cli = (args: string[]) =>
    run(inCgroupsArgv([agentCgroup], nsenterArgv(node.netns, [...selfArgv(), ...args])), `starting lab node ${node.name}`, {
      env: {...process.env, NO_COLOR: '1'},
      timeoutMs: 60_000,
    })
  if (node.index === 1) {
    await cli(['init', '--node', node.name, '--advertise-addr', node.underlayIf, ...initArgs])
    return
  }
  const {token} = await new AgentClient(first.name).get<{token: string}>('/join-token')
  await cli(['join', '--node', node.name, '--advertise-addr', node.underlayIf, '--token', token, `${first.address}:7946`])
}
