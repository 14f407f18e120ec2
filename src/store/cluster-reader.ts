// The read side of the API: the cluster's records as this node's store holds
// them, and the lookups by name, id or id prefix that every command uses.
// Writes are the manager's (src/manager/manager.ts).
import {UserError} from '../model/errors.js'
import {taskName} from '../model/task-name.js'
import type {
  AttachmentStatus,
  ClusterSpec,
  Network,
  NetworkAttachment,
  NodeRecord,
  Service,
  Task,
  TaskStatus,
} from '../model/types.js'
import {CLUSTER_KEY, keyOf, prefixOf} from './keys.js'
import type {Store} from './store.js'
import {indexOf, isIndexSource, type StateIndex} from './state-index.js'
import type {NodeSpec} from '../model/placement.js'

export class ClusterReader {
  constructor(
    /** Only reads: the node's store, or a manager's view of etcd during one request. */
    private readonly store: Pick<Store, 'get' | 'values'>,
    readonly selfId: string,
  ) {}

  /** The store's index (state-index.ts) when it can keep one; a plain reader is scanned. */
  get index(): StateIndex | undefined {
    return isIndexSource(this.store) ? indexOf(this.store) : undefined
  }

  cluster(): ClusterSpec {
    const c = this.store.get<ClusterSpec>(CLUSTER_KEY)
    if (!c) throw new Error('this node holds no cluster state yet')
    return c
  }

  nodes(): NodeRecord[] {
    const ix = this.index
    return ix ? [...ix.list<NodeRecord>('node')] : this.store.values<NodeRecord>(prefixOf('node'))
  }

  /** A node's labels and availability (nodespec/<id>); absent: none, active. */
  nodeSpec(id: string): NodeSpec | undefined {
    return this.store.get<NodeSpec>(keyOf('nodespec', id))
  }

  liveNodes(): NodeRecord[] {
    return this.nodes().filter((n) => n.state === 'ready')
  }

  networks(): Network[] {
    const ix = this.index
    return ix ? [...ix.list<Network>('network')] : this.store.values<Network>(prefixOf('network'))
  }

  services(): Service[] {
    const ix = this.index
    return ix ? [...ix.list<Service>('service')] : this.store.values<Service>(prefixOf('service'))
  }

  tasks(): Task[] {
    const ix = this.index
    return ix ? [...ix.list<Task>('task')] : this.store.values<Task>(prefixOf('task'))
  }

  /** Task id -> its status; the index's own map when there is one: read it, do not change it. */
  statuses(): ReadonlyMap<string, TaskStatus> {
    return this.index?.statuses ?? new Map(this.store.values<TaskStatus>(prefixOf('taskstatus')).map((s) => [s.taskId, s]))
  }

  /** A service's tasks in key order (what tasks() holds of it). */
  tasksOf(serviceId: string): Task[] {
    const ix = this.index
    return ix ? ix.tasksOf(serviceId) : this.tasks().filter((t) => t.serviceId === serviceId)
  }

  /** A node by id. */
  node(id: string): NodeRecord | undefined {
    const ix = this.index
    return ix ? ix.nodes.get(id) : this.nodes().find((n) => n.id === id)
  }

  attachments(): NetworkAttachment[] {
    const ix = this.index
    return ix ? [...ix.list<NetworkAttachment>('attachment')] : this.store.values<NetworkAttachment>(prefixOf('attachment'))
  }

  attachmentStatus(id: string): AttachmentStatus | undefined {
    return this.store.get<AttachmentStatus>(keyOf('attachmentstatus', id))
  }

  findNetwork(ref: string): Network {
    return findByRef(this.networks(), ref, 'network')
  }

  findNode(ref: string): NodeRecord {
    return findByRef(this.nodes(), ref, 'node')
  }

  /** The service by that name (the first in key order, as a scan finds it), if any. */
  serviceNamed(name: string): Service | undefined {
    const ix = this.index
    return ix ? ix.serviceNamed(name) : this.services().find((s) => s.name === name)
  }

  findService(ref: string): Service {
    // By name from the index (a scan of every service per lookup grew with the cluster); by id or prefix as before.
    return this.serviceNamed(ref) ?? findByRef(this.services(), ref, 'service')
  }

  /**
   * A task by any name `service ps` prints: its id or an unambiguous id prefix,
   * or its name (SERVICE.SLOT, or SERVICE.NODEID for a global task). A name
   * matches by string, not by parsing: a node id prefix may be all digits.
   */
  findTask(ref: string): Task {
    const all = this.tasks()
    const exact = all.find((x) => x.id === ref)
    if (exact) return exact
    const named = all.filter((x) => taskName(x) === ref)
    const t = named.find((x) => x.desiredState === 'running') ?? named[0] ?? uniquePrefix(all, ref, 'task')
    if (!t) throw new UserError(`task ${ref} not found`)
    return t
  }

  /** The manager's node name, for a worker to say where writes go. */
  managerName(): string | undefined {
    return this.nodes().find((n) => n.role === 'manager' && n.state !== 'left')?.name
  }
}

/** A record by name, id or unambiguous id prefix, tried in that order. */
function findByRef<T extends {id: string; name: string}>(all: T[], ref: string, what: string): T {
  const x = all.find((x) => x.name === ref) ?? all.find((x) => x.id === ref) ?? uniquePrefix(all, ref, what)
  if (!x) throw new UserError(`${what} ${ref} not found`)
  return x
}

function uniquePrefix<T extends {id: string}>(all: T[], ref: string, what: string): T | undefined {
  if (ref.length < 3) return undefined
  const hits = all.filter((x) => x.id.startsWith(ref))
  if (hits.length > 1) throw new UserError(`${what} ${ref} is ambiguous: ${hits.length} match`)
  return hits[0]
}
