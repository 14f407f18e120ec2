// The one writer of desired state: networks, services and their tasks, with
// their VNIs, subnets and addresses. Runs on the manager node only; a worker's
// API refuses writes (see agent.ts). Every request is checked in full, placement
// and addresses included, before the first write: refused means unchanged.
import {randomBytes} from 'node:crypto'
import {GWBRIDGE_NETWORK_NAME, MAX_REPLICAS} from '../model/defaults.js'
import {UserError} from '../model/errors.js'
import {planNetwork} from '../model/network.js'
import type {Network, Service, Task} from '../model/types.js'
import {checkEndpointMode, checkName} from '../model/validate.js'
import {sandboxSpec} from '../model/limits.js'
import {keyOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import {Controller} from '../agent/controller.js'
import {describeShortfalls, planService, type ServicePlan} from './plan.js'

export const newId = () => randomBytes(12).toString('hex')

export type ServiceRequest = {
  name: string
  mode: 'replicated' | 'global'
  replicas: number
  networks: string[]
  command: string[]
  user?: string
  limitMemory?: string
  limitCpu?: string
  /** vip (the default) or dnsrr; anything else is refused. */
  endpointMode?: string
}

/** What the last pass over all services found: service name -> why it is not fully placed. */
export type PlacementReport = Map<string, string>

export class Manager {
  readonly read: Controller

  constructor(
    private readonly store: Store,
    readonly selfId: string,
  ) {
    this.read = new Controller(store, selfId)
  }

  createNetwork(req: {
    name: string
    driver?: string
    subnet?: string
    attachable?: boolean
    ingress?: boolean
    mtu?: number
  }): Network {
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
        mtu: req.mtu,
        createdAt: Date.now(),
      },
      this.read.cluster(),
      this.read.networks(),
    )
    this.store.put(keyOf('network', net.id), net)
    return net
  }

  /** The node-local bridge through which tasks reach the outside: one record, the same on every node. */
  ensureGwbridge(subnet: string, gateway: string): void {
    if (this.read.networks().some((n) => n.driver === 'bridge')) return
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

  removeNetwork(ref: string, opts: {force?: boolean} = {}): void {
    const net = this.read.findNetwork(ref)
    if (net.ingress && !opts.force)
      throw new UserError(
        `${net.name} is the cluster's ingress network, which cannot be created again once removed: use --force to remove it anyway`,
      )
    if (net.driver === 'bridge')
      throw new UserError(`${net.name} is a node-local network that swarmnet manages: it cannot be removed`)
    const users = this.read.services().filter((s) => s.networks.includes(net.id))
    if (users.length > 0)
      throw new UserError(
        `network ${net.name} is in use by service${users.length > 1 ? 's' : ''} ${users.map((s) => s.name).join(', ')}`,
      )
    const tasks = this.read
      .tasks()
      .filter((t) => t.desiredState === 'running' && t.attachments.some((a) => a.networkId === net.id))
    if (tasks.length > 0) throw new UserError(`network ${net.name} is in use by ${tasks.length} task(s)`)
    this.store.delete(keyOf('network', net.id))
  }

  createService(req: ServiceRequest): Service {
    checkName('service', req.name)
    if (this.read.services().some((s) => s.name === req.name))
      throw new UserError(`service with name '${req.name}' already exists`)
    if (req.mode !== 'replicated' && req.mode !== 'global')
      throw new UserError(`invalid mode '${String(req.mode)}': must be replicated or global`)
    if (req.mode === 'replicated') checkReplicas(req.replicas)
    const nets = [...new Set(req.networks)].map((r) => this.read.findNetwork(r))
    for (const n of nets) {
      if (n.driver !== 'overlay') throw new UserError(`network ${n.name} is node-local: services attach to overlay networks`)
      if (n.ingress) throw new UserError('the ingress network is attached through --publish, not --network')
    }
    const sandbox = sandboxSpec(req)
    const endpointMode = checkEndpointMode(req.endpointMode)
    const now = Date.now()
    const svc: Service = {
      id: newId(),
      name: req.name,
      mode: req.mode === 'global' ? {global: true} : {replicas: req.replicas},
      networks: nets.map((n) => n.id),
      command: req.command,
      ...sandbox,
      endpointMode,
      ...(endpointMode === 'vip' ? {vips: []} : {}),
      createdAt: now,
      updatedAt: now,
    }
    const plan = this.mustFit(svc)
    const stored: Service = plan.vips ? {...svc, vips: plan.vips} : svc
    // The service (with its VIPs) before its tasks, as apply does.
    this.store.put(keyOf('service', svc.id), stored)
    this.apply(stored, {...plan, vips: undefined})
    return stored
  }

  scaleService(ref: string, replicas: number): Service {
    const svc = this.read.findService(ref)
    if ('global' in svc.mode) throw new UserError(`scale can only be used with replicated mode: ${svc.name} is global`)
    checkReplicas(replicas)
    const next: Service = {...svc, mode: {replicas}, updatedAt: Date.now()}
    const plan = this.mustFit(next)
    const stored: Service = plan.vips ? {...next, vips: plan.vips} : next
    this.store.put(keyOf('service', svc.id), stored)
    this.apply(stored, {...plan, vips: undefined})
    return stored
  }

  removeService(ref: string): void {
    const svc = this.read.findService(ref)
    // The service first: a crash half-way leaves tasks without a service, which the next pass removes.
    // Its VIPs go with it: addresses in use are read from the store, there is nothing else to free.
    this.store.delete(keyOf('service', svc.id))
    for (const t of this.read.tasks().filter((x) => x.serviceId === svc.id)) this.store.delete(keyOf('task', t.id))
  }

  /**
   * Brings every service to its spec as nodes come and go: a node that joins
   * gets its global tasks, tasks of a node that left are placed elsewhere,
   * tasks whose service is gone are removed. Each service on its own: one that
   * cannot be placed (or whose writes fail) does not stop the others. Places
   * what fits and reports the rest; writes only what differs, so a pass over
   * a placed cluster writes nothing.
   */
  placeAll(): PlacementReport {
    const report: PlacementReport = new Map()
    const services = this.read.services()
    const known = new Set(services.map((s) => s.id))
    for (const t of this.read.tasks()) {
      if (known.has(t.serviceId)) continue
      try {
        this.store.delete(keyOf('task', t.id))
      } catch (e) {
        report.set(t.serviceName, `cannot remove task ${t.id}: ${(e as Error).message}`)
      }
    }
    // Services that fit whole go first, so one that asks for more than there is
    // cannot take the addresses the others need; it gets what is left after.
    const short: Service[] = []
    for (const svc of services) {
      try {
        const plan = this.plan(svc)
        if (plan.shortfalls.length > 0) short.push(svc)
        else this.apply(svc, plan)
        if (plan.missingNetworks.length > 0) report.set(svc.name, `networks ${plan.missingNetworks.join(', ')} do not exist`)
      } catch (e) {
        report.set(svc.name, (e as Error).message)
      }
    }
    for (const svc of short) {
      try {
        const plan = this.plan(svc)
        this.apply(svc, plan)
        if (plan.shortfalls.length > 0) report.set(svc.name, describeShortfalls(svc, plan.shortfalls))
      } catch (e) {
        report.set(svc.name, (e as Error).message)
      }
    }
    return report
  }

  private plan(svc: Service): ServicePlan {
    return planService(
      svc,
      {nodes: this.read.nodes(), networks: this.read.networks(), tasks: this.read.tasks(), services: this.read.services()},
      {id: newId, now: Date.now()},
    )
  }

  /** The plan if all of it fits; otherwise a refusal, before anything is written. */
  private mustFit(svc: Service): ServicePlan {
    const plan = this.plan(svc)
    if (plan.missingNetworks.length > 0)
      throw new UserError(`service ${svc.name}: networks ${plan.missingNetworks.join(', ')} do not exist`)
    if (plan.shortfalls.length > 0) throw new UserError(`${describeShortfalls(svc, plan.shortfalls)}: nothing was changed`)
    return plan
  }

  private apply(svc: Service, plan: ServicePlan): void {
    // VIPs before tasks: a new task's address was chosen next to them.
    if (plan.vips) this.store.put(keyOf('service', svc.id), {...svc, vips: plan.vips} satisfies Service)
    for (const t of plan.remove) this.store.delete(keyOf('task', t.id))
    for (const t of plan.create) this.store.put(keyOf('task', t.id), t satisfies Task)
  }
}

/** Replica counts as the API may receive them: whole, not negative, within MAX_REPLICAS. */
export function checkReplicas(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0)
    throw new UserError(`invalid replica count ${JSON.stringify(n)}: must be a whole number, 0 or more`)
  if (n > MAX_REPLICAS) throw new UserError(`invalid replica count ${n}: at most ${MAX_REPLICAS} replicas per service`)
  return n
}
