// Where a node keeps what it owns on the host, so that each thing can be found and removed: the
// one list of places, read by every part that keeps something there (tasks, images, the load
// balancer's reader, the lab) without reaching up into the agent.
import {join} from 'node:path'

export const RUN_DIR = process.env.SWARMNET_RUN_DIR ?? '/run/swarmnet'
export const STATE_ROOT = process.env.SWARMNET_STATE_DIR ?? '/var/lib/swarmnet'

export const socketPath = (node: string) => join(RUN_DIR, `${node}.sock`)
export const pidPath = (node: string) => join(RUN_DIR, `${node}.pid`)
export const stateDir = (node: string) => join(STATE_ROOT, node)
export const nodeConfigPath = (node: string) => join(stateDir(node), 'node.json')
export const agentLogPath = (node: string) => join(stateDir(node), 'agent.log')
