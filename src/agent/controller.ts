// The write side of the API: turns a request into store entries, after the
// model's checks. The store (and gossip) carry them to every node; the
// reconcilers there do the rest. Nothing here touches links or maps.
import {randomBytes} from 'node:crypto'
import {allocateIp, macForIp, placeTasks} from '../model/allocate.js'
import {GWBRIDGE_NETWORK_NAME} from '../model/defaults.js'
import {UserError} from '../model/errors.js'
import {planNetwork} from '../model/network.js'
import type {ClusterSpec, Network, NodeRecord, Service, Task, TaskStatus} from '../model/types.js'
import {checkName} from '../model/validate.js'
import {CLUSTER_KEY, keyOf, prefixOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import {sandboxSpec} from '../tasks/limits.js'

export const newId = () => randomBytes(12).toString('hex')

export class Controller {
  constructor(
    private readonly store: Store,
    readonly selfId: string,
  ) {}

  cluster(): ClusterSpec {
    const c = this.store.get<ClusterSpec>(CLUSTER_KEY)
    if (!c) throw new Error('this node holds no cluster state yet')
    return c
  }

  nodes(): NodeRecord[] {
    return this.store.values<NodeRecord>(prefixOf('node'))
  }

  liveNodes(): NodeRecord[] {
    return this.nodes().filter((n) => n.state === 'ready')
  }

  networks(): Network[] {
    return this.store.values<Network>(prefixOf('network'))
  }

  services(): Service[] {
    return this.store.values<Service>(prefixOf('service'))
  }

  tasks(): Task[] {
    return this.store.values<Task>(prefixOf('task'))
  }

  statuses(): Map<string, TaskStatus> {
    return new Map(this.store.values<TaskStatus>(prefixOf('taskstatus')).map((s) => [s.taskId, s]))
  }

  findNetwork(ref: string): Network {
    const all = this.networks()
    const n = all.find((x) => x.name === ref) ?? all.find((x) => x.id === ref) ?? uniquePrefix(all, ref, 'network')
    if (!n) throw new UserError(`network ${ref} not found`)
    return n
  }

  findService(ref: string): Service {
    const all = this.services()
    const s = all.find((x) => x.name === ref) ?? all.find((x) => x.id === ref) ?? uniquePrefix(all, ref, 'service')
    if (!s) throw new UserError(`service ${ref} not found`)
    return s
  }

  findTask(ref: string): Task {
    const all = this.tasks()
    const byName = /^(.+)\.(\d+)$/.exec(ref)
    const t =
      all.find((x) => x.id === ref) ??
      (byName
        ? all.find((x) => x.serviceName === byName[1] && x.slot === Number(byName[2]) && x.desiredState === 'running')
        : undefined) ??
      uniquePrefix(all, ref, 'task')
    if (!t) throw new UserError(`task ${ref} not found`)
    return t
  }

  createNetwork(req: {name: string; driver?: string; subnet?: string; attachable?: boolean; ingress?: boolean}): Network {
    if (req.driver !== undefined && req.driver !== 'overlay')
      throw new UserError(`unsupported driver '${req.driver}': swarmnet networks are overlay networks`)
    const net = planNetwork(
      {
        id: newId(),
        name: req.name,
        driver: 'overlay',
        subnet: req.subnet,
        attachable: req.attachable,
        ingress: req.ingress,
        createdAt: Date.now(),
      },
      this.cluster(),
      this.networks(),
    )
    this.store.put(keyOf('network', net.id), net)
    return net
  }

  /** The node-local bridge through which tasks reach the outside: the same on every node. */
  ensureGwbridge(subnet: string, gateway: string): void {
    if (this.networks().some((n) => n.driver === 'bridge')) return
    const net: Network = {
      id: newId(),
      name: GWBRIDGE_NETWORK_NAME,
      driver: 'bridge',
      scope: 'local',
      subnet,
      gateway,
      attachable: false,
      ingress: false,
      createdAt: Date.now(),
    }
    this.store.put(keyOf('network', net.id), net)
  }

  removeNetwork(ref: string): void {
    const net = this.findNetwork(ref)
    if (net.driver === 'bridge')
      throw new UserError(`${net.name} is a node-local network that swarmnet manages: it cannot be removed`)
    const users = this.services().filter((s) => s.networks.includes(net.id))
    if (users.length > 0)
      throw new UserError(
        `network ${net.name} is in use by service${users.length > 1 ? 's' : ''} ${users.map((s) => s.name).join(', ')}`,
      )
    const tasks = this.tasks().filter((t) => t.desiredState === 'running' && t.attachments.some((a) => a.networkId === net.id))
    if (tasks.length > 0) throw new UserError(`network ${net.name} is in use by ${tasks.length} task(s)`)
    this.store.delete(keyOf('network', net.id))
  }

  createService(req: {
    name: string
    mode: 'replicated' | 'global'
    replicas: number
    networks: string[]
    command: string[]
    user?: string
    limitMemory?: string
    limitCpu?: string
  }): Service {
    checkName('service', req.name)
    if (this.services().some((s) => s.name === req.name)) throw new UserError(`service with name '${req.name}' already exists`)
    if (!Number.isInteger(req.replicas) || req.replicas < 0) throw new UserError(`invalid replica count ${req.replicas}`)
    const nets = [...new Set(req.networks)].map((r) => this.findNetwork(r))
    for (const n of nets) {
      if (n.driver !== 'overlay') throw new UserError(`network ${n.name} is node-local: services attach to overlay networks`)
      if (n.ingress) throw new UserError('the ingress network is attached through --publish, not --network')
    }
    const sandbox = sandboxSpec(req)
    const now = Date.now()
    const svc: Service = {
      id: newId(),
      name: req.name,
      mode: req.mode === 'global' ? {global: true} : {replicas: req.replicas},
      networks: nets.map((n) => n.id),
      command: req.command,
      ...sandbox,
      createdAt: now,
      updatedAt: now,
    }
    this.store.put(keyOf('service', svc.id), svc)
    this.placeService(svc)
    return svc
  }

  scaleService(ref: string, replicas: number): Service {
    const svc = this.findService(ref)
    if ('global' in svc.mode) throw new UserError(`scale can only be used with replicated mode: ${svc.name} is global`)
    if (!Number.isInteger(replicas) || replicas < 0) throw new UserError(`invalid replica count ${replicas}`)
    const next: Service = {...svc, mode: {replicas}, updatedAt: Date.now()}
    this.store.put(keyOf('service', svc.id), next)
    this.placeService(next)
    return next
  }

  removeService(ref: string): void {
    const svc = this.findService(ref)
    for (const t of this.tasks().filter((x) => x.serviceId === svc.id)) this.store.delete(keyOf('task', t.id))
    this.store.delete(keyOf('service', svc.id))
  }

  /**
   * Brings a service's tasks to its spec: new tasks for empty slots (with their
   * addresses), tasks beyond the spec removed. Idempotent; also run when a
   * node joins, for global services.
   */
  placeService(svc: Service): void {
    const tasks = this.tasks()
    const plan = placeTasks(svc, this.liveNodes(), tasks)
    const keep = new Set(plan.filter((p) => p.taskId).map((p) => p.taskId!))
    for (const t of tasks.filter((x) => x.serviceId === svc.id && !keep.has(x.id))) this.store.delete(keyOf('task', t.id))
    const nets = svc.networks.map((id) => this.networks().find((n) => n.id === id)).filter((n): n is Network => n !== undefined)
    for (const p of plan.filter((x) => !x.taskId)) {
      const used = (netId: string) =>
        this.tasks().flatMap((t) => t.attachments.filter((a) => a.networkId === netId).map((a) => a.ip))
      const attachments = nets.map((n) => {
        const ip = allocateIp(n.subnet, n.gateway, used(n.id))
        return {networkId: n.id, ip, mac: macForIp(ip)}
      })
      const task: Task = {
        id: newId(),
        serviceId: svc.id,
        serviceName: svc.name,
        slot: p.slot,
        nodeId: p.nodeId,
        desiredState: 'running',
        attachments,
        createdAt: Date.now(),
      }
      this.store.put(keyOf('task', task.id), task)
    }
  }
}

function uniquePrefix<T extends {id: string}>(all: T[], ref: string, what: string): T | undefined {
  if (ref.length < 3) return undefined
  const hits = all.filter((x) => x.id.startsWith(ref))
  if (hits.length > 1) throw new UserError(`${what} ${ref} is ambiguous: ${hits.length} match`)
  return hits[0]
}
