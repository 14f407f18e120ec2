/**
 * The lab's fixed shape: one switch namespace with a bridge, N nodes and one outside client,
 * all on 172.30.0.0/24. Names only; lab.ts builds it.
 */

import {pidPath, socketPath, STATE_ROOT, stateDir} from '../sys/node-paths.js'
import {PIN_BASE} from '../bpf/pins.js'

export const LAB_PREFIX = 'sn-lab-'
export const SWITCH_NETNS = 'sn-lab-sw'
export const SWITCH_BRIDGE = 'sn-lab-br'
export const UNDERLAY_IF = 'eth0'
export const UNDERLAY_MTU = 1500
export const UNDERLAY_PREFIX = 24
export const UNDERLAY_SUBNET = '172.30.0.0/24'
export const CLIENT = 'client'
export const CLIENT_NETNS = 'sn-lab-client'
export const CLIENT_ADDRESS = '172.30.0.100'
/** The client's port on the switch (the switch ns is the only place it exists). */
export const CLIENT_PORT = 'sn-lab-client'
/** Node addresses are .11 .. .99; .100 is the client. */
export const MAX_NODES = 89

export {RUN_DIR} from '../sys/node-paths.js'
export const LAB_STATE_FILE = `${STATE_ROOT}/lab.json`

export const nodeName = (index: number) => `n${index}`
export const nodeNetns = (node: string) => `${LAB_PREFIX}${node}`
/** The node's port on the switch bridge. */
export const nodePort = (node: string) => `${LAB_PREFIX}${node}`
export const nodeAddress = (index: number) => `172.30.0.${10 + index}`
/** Task namespaces of a node: the runner's own definition. */
export {taskNetnsPrefix} from '../tasks/runner.js'
// Where a node keeps its things: the agent's and the loader's own definitions, not copies.
export const nodeStateDir = stateDir
export const nodeSocket = socketPath
export const nodePidFile = pidPath
export const nodePinDir = (node: string) => `${PIN_BASE}/${node}`

/** Lab node names look like this; anything else under these paths is not ours. */
export const NODE_NAME_RE = /^n[0-9]+$/
