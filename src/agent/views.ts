// What the agent API answers: flat, display-ready records. The commands render
// these and nothing else, so the store's shape can change behind them.

import type {ServiceContainer} from '../model/container.js'

export interface NodeView {
  id: string
  name: string
  addr: string
  role: 'manager' | 'worker'
  /** ready, suspect, down or left: the store's record ('left') and this node's failure detector */
  state: string
  /** up, or down: declared dead by SWIM (its data path may still answer: then state is ready) */
  agent: 'up' | 'down'
  self: boolean
  /** ms since a message from the node itself last arrived here; 0 for this node; absent: never */
  lastHeardMs?: number
  /** the node's incarnation as this node knows it (its boot epoch, raised by refutations) */
  incarnation?: number
  gossipPort?: number
  joinedAt?: number
  /** managers of an etcd cluster: leader (places and allocates), reachable, or unreachable (down, as seen here) */
  managerStatus?: 'leader' | 'reachable' | 'unreachable'
  /** active, pause or drain (node update --availability) */
  availability: 'active' | 'pause' | 'drain'
  /** node update --label-add */
  labels: Record<string, string>
}

export interface EndpointView {
  task: string
  service: string
  ip: string
  mac: string
  node: string
}

export interface NetworkView {
  id: string
  name: string
  driver: string
  scope: string
  vni?: number
  subnet: string
  gateway: string
  attachable: boolean
  ingress: boolean
  /** network create --internal: no way out for tasks only on internal networks. */
  internal?: boolean
  mtu: number
  peers: {node: string; addr: string}[]
  endpoints: EndpointView[]
  /** Namespaces attached with `network connect`. */
  attachments: AttachmentView[]
}

export interface TaskView {
  id: string
  name: string
  service: string
  node: string
  desiredState: string
  state: string
  addresses: {network: string; ip: string}[]
  netns?: string
  pid?: number
  restarts: number
  message?: string
  /** starting, healthy or unhealthy: its health check's verdict; absent when its service has none. */
  health?: string
}

export interface ServiceView {
  id: string
  name: string
  mode: 'replicated' | 'global'
  desired: number
  running: number
  networks: string[]
  command: string[]
  /** --image and its flags, when the tasks are containers. */
  container?: ServiceContainer
  endpointMode: 'vip' | 'dnsrr'
  /** One per network in vip mode (by network name); none in dnsrr mode. */
  vips: {network: string; ip: string}[]
  /** Published ports in the order they were published (the newest last); empty when none. */
  ports: PortView[]
}

/** A published port as the store has it (published always set: allocated when not given). */
export interface PortView {
  published: number
  target: number
  protocol: 'tcp' | 'udp'
  mode: 'ingress' | 'host'
}

/** A task that should be running, as a backend of its service on one network. */
export interface BackendView {
  network: string
  task: string
  ip: string
  node: string
  /** The task's state as its node reports it: only 'running' ones receive flows. */
  state: string
}

/** GET /services/NAME: the service, its VIPs and its backends on every network. */
export interface ServiceInspectView extends ServiceView {
  backends: BackendView[]
  /** --constraint and --placement-pref as given; absent: none */
  placement?: {constraints?: string[]; preferences?: string[]}
  /**
   * The --update-* settings (when set) and, after an update or rollback that replaced tasks, where it
   * stands (Docker's UpdateStatus: updating, paused, completed, rollback_started, rollback_paused,
   * rollback_completed), with its message and times (epoch ms).
   */
  update?: {
    state?: string
    message?: string
    startedAt?: number
    completedAt?: number
    specVersion: number
    parallelism: number
    order: string
    delayMs: number
    monitorMs: number
    failureAction: string
    maxFailureRatio: number
    /** a previous spec to roll back to exists */
    rollback: boolean
  }
}

/** GET /info: this node, its cluster, and what its gossip has counted since the agent started. */
export interface InfoView {
  node: string
  nodeId: string
  role: string
  clusterId: string
  advertiseAddr: string
  underlay: string
  dataPathPort: number
  gossip: Record<string, number>
  /** Managers on etcd: where desired state is, the leader's node id (null: none now), transactions. */
  desiredState?: {store: 'etcd'; endpoints: string[]; prefix: string}
  leader?: string | null
  etcd?: {commits: number; retries: number}
}

export interface AttachmentView {
  id: string
  name: string
  network: string
  node: string
  netns: string
  ip: string
  mac: string
  /** attached, failed, gone; pending until its node has said. */
  state: string
  message?: string
}
