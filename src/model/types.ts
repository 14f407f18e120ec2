import type {ServiceContainer} from './container.js'
/**
 * The cluster's nouns, as they are stored and gossiped.
 *
 * These are `type` aliases rather than interfaces on purpose: an object type
 * alias is assignable to the store's `Json` type (it gets an implicit index
 * signature), an interface is not, so these can be put into the store without
 * casts. Everything here must survive JSON.stringify/parse unchanged: no Dates,
 * no Maps, no undefined inside arrays. Times are epoch milliseconds.
 */

export type ClusterSpec = {
  id: string
  createdAt: number
  /** UDP port of VXLAN, cluster-wide, set only at init (1024-49151). */
  dataPathPort: number
  /** CIDR the subnets of networks created without --subnet come from. */
  defaultAddrPool: string
  /** Prefix length of those subnets. */
  subnetSize: number
  /** Where desired state lives: absent = the embedded gossip store (one manager); 'etcd' = several managers on etcd. */
  store?: 'etcd'
  /** The tasks' resolver, set only at init: upstreams (absent: each node's /etc/resolv.conf) and the TTL of its answers. */
  dns?: DnsSpec
}

export type DnsSpec = {servers?: string[]; ttl?: number}

export type NodeRole = 'manager' | 'worker'
export type NodeState = 'ready' | 'down' | 'left'

export type NodeRecord = {
  id: string
  name: string
  /** Underlay IPv4 address: the VTEP and the gossip address. */
  addr: string
  gossipPort: number
  role: NodeRole
  state: NodeState
  /** MTU of the underlay device. */
  mtu: number
  joinedAt: number
  /** The node's Ed25519 public key (SPKI DER, base64): its entries are signed with it. */
  pubKey?: string
  /** The cluster identity's signature over id, pubKey and role (see gossip/identity.ts). */
  cert?: string
  /** Managers of an etcd cluster: whether this one holds the leader's lease (written by the node itself). */
  managerStatus?: 'leader' | 'reachable'
}

export type NetworkDriver = 'overlay' | 'bridge'
export type NetworkScope = 'swarm' | 'local'

export type Network = {
  id: string
  name: string
  driver: NetworkDriver
  scope: NetworkScope
  /** VXLAN network identifier; overlay networks only. */
  vni?: number
  subnet: string
  gateway: string
  attachable: boolean
  ingress: boolean
  internal?: boolean
  /**
   * MTU of the tasks' interfaces on this network, the same on every node (overlay only; the
   * underlay must carry it plus 50). Absent in networks made before it existed: DEFAULT_NETWORK_MTU.
   */
  mtu?: number
  createdAt: number
}

export type ServiceMode = {replicas: number} | {global: true}

export type Service = {
  id: string
  name: string
  mode: ServiceMode
  /** Network ids, not names: a renamed network keeps its services. */
  networks: string[]
  /** Extra DNS names of the service on one network (Swarm's --network name=N,alias=A); absent = none. */
  aliases?: ServiceAlias[]
  command: string[]
  /** --constraint as written (src/model/placement.ts): every one must hold on a task's node. */
  constraints?: string[]
  /** --placement-pref as written (spread=node.labels.KEY): tasks spread over the label's values. */
  placementPrefs?: string[]
  /** --user as written, UID[:GID] or NAME[:GROUP]; resolved on the node that runs the task. */
  user?: string
  /** --limit-memory in bytes, --limit-cpu in billionths of a CPU (Docker's NanoCPUs). */
  limits?: {memoryBytes?: number; nanoCpus?: number}
  /** --image and its flags: the tasks are containers run by runc; absent = commands of the node. */
  container?: ServiceContainer
  /** How the service is reached: one virtual IP per network (absent = 'vip'), or only its task addresses. */
  endpointMode?: EndpointMode
  /** vip mode: one address per attached network, from its subnet like a task's; none in dnsrr mode. */
  vips?: ServiceVip[]
  /** Published ports (Docker's PortConfig); absent = none. */
  ports?: PublishedPort[]
  /** --stop-signal, a signal name (absent: SIGTERM); --stop-grace-period in ms before SIGKILL (absent: 10 s). src/tasks/stop.ts */
  stopSignal?: string
  stopGraceMs?: number
  /** --health-cmd and its timing (src/tasks/health.ts); absent = no check (a task serves once running). */
  healthcheck?: HealthSpec
  /** Raised by every update that needs new tasks (and by rollback): tasks of another version are replaced (src/manager/rolling.ts). */
  specVersion?: number
  /** --update-* flags; absent fields: Docker's defaults (src/manager/rolling.ts UPDATE_DEFAULTS). */
  update?: UpdateConfig
  /** Where the last update or rollback stands (Docker's UpdateStatus), kept by the placing manager. */
  updateStatus?: UpdateStatus
  /** What the tasks ran before the last update that replaced them: service rollback goes back to it. */
  previous?: TaskSpec
  createdAt: number
  updatedAt: number
}

export type EndpointMode = 'vip' | 'dnsrr'

/** Docker's HEALTHCHECK: the command (run with /bin/sh -c in the task) and its timing in ms. */
export type HealthSpec = {cmd: string; intervalMs: number; timeoutMs: number; retries: number; startPeriodMs: number}

export type TaskHealth = 'starting' | 'healthy' | 'unhealthy'

export type UpdateConfig = {
  parallelism: number
  order: 'start-first' | 'stop-first'
  /** --update-delay: ms between a group's new tasks serving and the next group starting (absent: 0). */
  delayMs?: number
  /** --update-monitor: ms a new task is watched for failure after it serves (absent: 5 s). */
  monitorMs?: number
  /** --update-failure-action (absent: pause). */
  failureAction?: UpdateFailureAction
  /** --update-max-failure-ratio: failed new tasks / replicas tolerated (absent: 0). */
  maxFailureRatio?: number
}

export type UpdateFailureAction = 'pause' | 'continue' | 'rollback'

export type UpdateState = 'updating' | 'paused' | 'completed' | 'rollback_started' | 'rollback_paused' | 'rollback_completed'

/** Times are the placing manager's clock. */
export type UpdateStatus = {
  state: UpdateState
  startedAt: number
  completedAt?: number
  message?: string
  /** New tasks of this update and when the manager first saw each serve: their monitor period starts then. */
  served?: Record<string, number>
  /** New tasks that failed within their monitor period (counted once each). */
  failed?: string[]
}

/** The part of a service its tasks are made from: a change to it replaces them. */
export type TaskSpec = Pick<Service, 'command' | 'user' | 'limits' | 'stopSignal' | 'stopGraceMs' | 'healthcheck' | 'container'>

export type ServiceAlias = {networkId: string; names: string[]}

export type ServiceVip = {networkId: string; ip: string}

export type PortProtocol = 'tcp' | 'udp'
export type PublishMode = 'ingress' | 'host'
/** published is always set in the store: the manager allocates it (30000-32767) when the user gave none. */
export type PublishedPort = {protocol: PortProtocol; target: number; published: number; mode: PublishMode}

export type TaskAttachment = {networkId: string; ip: string; mac: string}

export type Task = {
  id: string
  serviceId: string
  serviceName: string
  /** 1..replicas for replicated services; 0 for global ones (keyed by node). */
  slot: number
  nodeId: string
  desiredState: 'running' | 'shutdown'
  attachments: TaskAttachment[]
  /** The service's specVersion it was made from (absent: 0). */
  specVersion?: number
  createdAt: number
}

export type TaskState = 'new' | 'starting' | 'running' | 'failed' | 'shutdown'

/** Written only by the node that runs the task: one writer per key. */
export type TaskStatus = {
  taskId: string
  nodeId: string
  state: TaskState
  pid?: number
  netns?: string
  restarts: number
  message?: string
  /** The task's address on the node-local gateway bridge, kept so a restart reuses it. */
  gwIp?: string
  /** Its health check's verdict (src/tasks/health.ts); absent: the service has no check. */
  health?: TaskHealth
  updatedAt: number
}

/**
 * A network namespace swarmnet did not make (a container's, `ip netns add`'s) attached to an
 * attachable overlay network as a task would be: desired state, written by the manager.
 */
export type NetworkAttachment = {
  id: string
  /** Unique on its network; the endpoint's name. */
  name: string
  networkId: string
  /** The node whose namespace it is: that node plumbs it and watches it. */
  nodeId: string
  /** The namespace as a path on that node: /run/netns/NAME, /proc/PID/ns/net, any nsfs file. */
  netns: string
  ip: string
  mac: string
  createdAt: number
}

export type AttachmentState = 'attached' | 'failed' | 'gone'

/** Written only by the node of the attachment: what it found (the manager removes a gone one). */
export type AttachmentStatus = {
  id: string
  nodeId: string
  state: AttachmentState
  /** The namespace's inode when plumbed: the same path holding another namespace later is not ours. */
  netnsIno?: number
  message?: string
  updatedAt: number
}
