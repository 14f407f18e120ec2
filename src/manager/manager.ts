// The one writer of desired state: networks, services and their tasks, with
// their VNIs, subnets and addresses. Runs on the manager node only; a worker's
// API refuses writes (see agent.ts). Every request is checked in full, placement
// and addresses included, before the first write: refused means unchanged.
import {randomFillSync} from 'node:crypto'
import {statSync} from 'node:fs'
import {attachmentAsTask} from '../model/attachment.js'
import {freeAddresses, macForIp} from '../model/allocate.js'
import {cidrContains, parseCidr, tryParseIpv4} from '../model/ipv4.js'
import {GWBRIDGE_NETWORK_NAME, MAX_REPLICAS} from '../model/defaults.js'
import {UserError} from '../model/errors.js'
import {planNetwork} from '../model/network.js'
import type {
  AttachmentStatus,
  Network,
  NetworkAttachment,
  NodeRecord,
  PublishedPort,
  Service,
  Task,
  TaskSpec,
} from '../model/types.js'
import {checkEndpointMode, checkName} from '../model/validate.js'
import {parseNetworkSpec} from '../model/network-spec.js'
import {serviceAliases} from '../dns/aliases.js'
import {sandboxSpec} from '../model/limits.js'
import {stopSpec} from '../tasks/stop.js'
import {inProgress, updateProgress} from './rolling.js'
import {rolledBack, taskSpecOf, withTaskSpec} from './task-spec.js'
import {updateConfigOf, type UpdateRequest} from './update-config.js'
import {healthSpec, type HealthRequest} from '../tasks/health.js'
import {NOBODY_DOWN, type MembershipView} from '../membership/view.js'
import {revocationOf} from '../gossip/revocation.js'
import {keyOf, prefixOf} from '../store/keys.js'
import type {DesiredStore} from './backend.js'
import {ClusterReader} from '../store/cluster-reader.js'
import {describeShortfalls, placementNodes, planService, type PlacementNodes, type ServicePlan} from './plan.js'
import {indexOf, isIndexSource, StateIndex} from '../store/state-index.js'
import {describeHostPortShort} from './host-ports.js'
import {portKey, type PortRef, type PortRequest} from '../model/ports.js'
import {checkUsernsHealth, type ContainerRequest, containerSpec} from '../model/container.js'
import {type ContainerUpdate, updatedContainer} from '../model/container-update.js'
import {hasIngressPorts, hostPortKeys, planPorts, reservedPorts} from '../model/publish.js'
import {nextNetworks, type NetworksUpdate} from './service-networks.js'
import {
  availabilityOf,
  checkAvailability,
  parseConstraint,
  parseLabel,
  parsePlacementPref,
  type NodeSpec,
} from '../model/placement.js'

/**
 * 24 hex digits: for tasks, the one rule of src/model/ids.ts (their ids become paths). Cut from
 * a pool of random bytes refilled when used up (a call into the CSPRNG per id cost ~15 us; a create
 * takes four), each id's bytes used once.
 */
export function newId(): string {
  if (idPoolAt + ID_BYTES > idPool.length) {
    randomFillSync(idPool)
    idPoolAt = 0
  }
  const id = idPool.toString('hex', idPoolAt, idPoolAt + ID_BYTES)
  idPoolAt += ID_BYTES
  return id
}
const ID_BYTES = 12
const idPool = Buffer.alloc(ID_BYTES * 256)
let idPoolAt = idPool.length

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
  /** --publish / -p, parsed (src/model/ports.ts); published absent = allocated. */
  ports?: PortRequest[]
  /** --stop-signal and --stop-grace-period as written (src/tasks/stop.ts). */
  stopSignal?: string
  stopGracePeriod?: string
  /** --constraint and --placement-pref as written (src/model/placement.ts). */
  constraints?: string[]
  placementPrefs?: string[]
} & ContainerRequest &
  HealthRequest &
  UpdateRequest

/** service update: each field absent = unchanged (src/manager/manager.ts updateService). */
export type ServiceUpdate = {
  replicas?: number
  command?: string[]
  user?: string
  limitMemory?: string
  limitCpu?: string
  stopSignal?: string
  stopGracePeriod?: string
  ports?: PortsUpdate
  force?: boolean
  /** --constraint-add/-rm and --placement-pref-add/-rm as written (src/model/placement.ts). */
  constraintAdd?: string[]
  constraintRm?: string[]
  placementPrefAdd?: string[]
  placementPrefRm?: string[]
} & HealthRequest &
  UpdateRequest &
  ContainerUpdate

/** service update --publish-add / --publish-rm: the removals first, so a port can be published again with another target. */
/** node update: each absent = unchanged. */
export type NodeUpdate = {availability?: string; labelAdd?: string[]; labelRm?: string[]}

export type PortsUpdate = {add: PortRequest[]; rm: PortRef[]}

export type ConnectRequest = {
  network: string
  /** The namespace as a path on the node, or the pid of a process in it (one of the two). */
  netns?: string
  pid?: number
  ip?: string
  name?: string
  /** The node whose namespace it is (a name or id); default: this one. */
  node?: string
}

/** What the last pass over all services found: service name -> why it is not fully placed. */
export type PlacementReport = Map<string, string>

/** The same by service id (a pass over some services merges its findings into the last ones by id). */
export type ProblemsById = Map<string, {name: string; why: string}>

export class Manager {
  readonly read: ClusterReader

  constructor(
    private readonly store: DesiredStore,
    readonly selfId: string,
    /** Liveness (src/membership/): replicated tasks of a node declared down are placed elsewhere. */
    private readonly membership: MembershipView = NOBODY_DOWN,
    /**
     * addressStart: where free addresses are searched from (etcd: each manager its own part; absent: lowest first).
     * now: the clock of rolling updates' delays and monitor periods (tests set it; absent: Date.now).
     */
    private readonly opts: {addressStart?: number; now?: () => number} = {},
  ) {
    this.read = new ClusterReader(store, selfId)
  }

  createNetwork(req: {
    name: string
    driver?: string
    subnet?: string
    attachable?: boolean
    ingress?: boolean
    internal?: boolean
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
        internal: req.internal,
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
    const atts = this.attachments().filter((a) => a.networkId === net.id)
    if (atts.length > 0)
      throw new UserError(`network ${net.name} is in use by attached namespace(s) ${atts.map((a) => a.name).join(', ')}`)
    this.store.delete(keyOf('network', net.id))
  }

  attachments(): NetworkAttachment[] {
    return this.store.values<NetworkAttachment>(prefixOf('attachment'))
  }

  /**
   * Attaches a namespace swarmnet did not make to an attachable overlay network, as a task
   * would be: an address of the network, a veth with the tc program on its node. Checked in
   * full before the one write; the node plumbs it when the record reaches it.
   */
  connect(req: ConnectRequest): NetworkAttachment {
    const net = this.read.findNetwork(req.network)
    if (net.driver !== 'overlay' || net.ingress || !net.attachable)
      throw new UserError(`network ${net.name} is not attachable: create it with \`network create --attachable\``)
    if ((req.netns === undefined) === (req.pid === undefined))
      throw new UserError('give the namespace as --netns PATH or --pid PID (one of them)')
    if (req.pid !== undefined && (!Number.isInteger(req.pid) || req.pid < 1 || req.pid > 2 ** 22))
      throw new UserError(`invalid pid ${JSON.stringify(req.pid)}`)
    const netns = req.netns ?? `/proc/${req.pid}/ns/net`
    if (!/^\//.test(netns) || /\/\.\.?(\/|$)/.test(netns))
      throw new UserError(`--netns ${netns}: give an absolute path without '..'`)
    const node =
      req.node === undefined
        ? this.read.nodes().find((n) => n.id === this.selfId)
        : this.read.nodes().find((n) => n.name === req.node || n.id === req.node)
    if (!node) throw new UserError(`node ${req.node} not found`)
    if (node.state !== 'ready') throw new UserError(`node ${node.name} is ${node.state}`)
    if (node.id === this.selfId) checkNetns(netns)
    const name = req.name ?? (req.pid !== undefined ? `pid-${req.pid}` : netns.slice(netns.lastIndexOf('/') + 1))
    checkName('attachment', name)
    const mine = this.attachments().filter((a) => a.networkId === net.id)
    if (mine.some((a) => a.name === name)) throw new UserError(`network ${net.name} already has an attachment named ${name}`)
    if (mine.some((a) => a.nodeId === node.id && a.netns === netns))
      throw new UserError(`${netns} on node ${node.name} is already attached to ${net.name}`)
    // Task addresses, other attachments and the services' VIPs: one pool, never an address twice.
    const used = new Set([
      ...[...this.read.tasks(), ...this.attachments().map(attachmentAsTask)].flatMap((t) =>
        t.attachments.filter((a) => a.networkId === net.id).map((a) => a.ip),
      ),
      ...this.read.services().flatMap((s) => (s.vips ?? []).filter((v) => v.networkId === net.id).map((v) => v.ip)),
    ])
    let ip: string
    if (req.ip !== undefined) {
      const n = tryParseIpv4(req.ip)
      const c = parseCidr(net.subnet)
      if (n === undefined) throw new UserError(`invalid address '${req.ip}'`)
      const last = c.addr + 2 ** (32 - c.prefix) - 1
      if (!cidrContains(c, n) || n === c.addr || n === last)
        throw new UserError(`address ${req.ip} is not a host address of ${net.subnet}`)
      if (req.ip === net.gateway) throw new UserError(`address ${req.ip} is the gateway of ${net.name}`)
      if (used.has(req.ip)) throw new UserError(`address ${req.ip} is in use on ${net.name}`)
      ip = req.ip
    } else {
      const next = freeAddresses(net.subnet, net.gateway, used).next()
      if (next.done) throw new UserError(`network ${net.name} (${net.subnet}) has no free address left`)
      ip = next.value
    }
    const att: NetworkAttachment = {
      id: newId(),
      name,
      networkId: net.id,
      nodeId: node.id,
      netns,
      ip,
      mac: macForIp(ip),
      createdAt: Date.now(),
    }
    this.store.put(keyOf('attachment', att.id), att)
    return att
  }

  disconnect(network: string, ref: string): NetworkAttachment {
    const net = this.read.findNetwork(network)
    const att = this.attachments().find((a) => a.networkId === net.id && (a.name === ref || a.id === ref))
    if (!att) throw new UserError(`network ${net.name} has no attachment ${ref}`)
    this.store.delete(keyOf('attachment', att.id))
    return att
  }

  /**
   * Attachments whose namespace is gone (their node says so), whose node left or whose
   * network is gone are removed, and the statuses that no node will remove.
   */
  reapAttachments(): string[] {
    const done: string[] = []
    // From the index: every pass asks this, and a read of the store per kind scans all its records.
    const ix = this.index
    const statuses = ix.attachmentStatuses
    const nodes = ix.nodes
    const nets = ix.networks
    // A copy: the index's list changes as attachments are removed below.
    const atts = [...ix.list<NetworkAttachment>('attachment')]
    for (const a of atts) {
      const why =
        statuses.get(a.id)?.state === 'gone'
          ? 'its namespace is gone'
          : nodes.get(a.nodeId)?.state === 'left' || !nodes.has(a.nodeId)
            ? 'its node left'
            : !nets.has(a.networkId)
              ? 'its network is gone'
              : undefined
      if (!why) continue
      this.store.delete(keyOf('attachment', a.id))
      done.push(`attachment ${a.name} removed: ${why}`)
    }
    // A status without its attachment is its node's to remove, once it has removed the veth
    // (`disconnect` waits for that): here only those with nothing left to remove (the namespace
    // is gone) or no node left to remove them.
    const live = this.index.attachments
    const reap = [...statuses.values()].filter((st) => {
      if (live.has(st.id)) return false
      const node = nodes.get(st.nodeId)
      return st.state === 'gone' || !node || node.state === 'left'
    })
    for (const st of reap.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)))
      this.store.delete(keyOf('attachmentstatus', st.id))
    return done
  }

  createService(req: ServiceRequest): Service {
    checkName('service', req.name)
    if (this.read.serviceNamed(req.name) !== undefined) throw new UserError(`service with name '${req.name}' already exists`)
    if (req.mode !== 'replicated' && req.mode !== 'global')
      throw new UserError(`invalid mode '${String(req.mode)}': must be replicated or global`)
    if (req.mode === 'replicated') checkReplicas(req.replicas)
    const specs = req.networks.map(parseNetworkSpec)
    const nets = [...new Set(specs.map((x) => x.network))].map((r) => this.read.findNetwork(r))
    const aliases = serviceAliases(specs, (r) => this.read.findNetwork(r).id)
    for (const n of nets) {
      if (n.driver !== 'overlay') throw new UserError(`network ${n.name} is node-local: services attach to overlay networks`)
      if (n.ingress) throw new UserError('the ingress network is attached through --publish, not --network')
    }
    const sandbox = sandboxSpec(req)
    const container = containerSpec(req)
    const stop = stopSpec(req)
    const healthcheck = healthSpec(req)
    checkUsernsHealth(container.container, healthcheck)
    const endpointMode = checkEndpointMode(req.endpointMode)
    const constraints = req.constraints ?? []
    const placementPrefs = req.placementPrefs ?? []
    constraints.forEach(parseConstraint)
    placementPrefs.forEach(parsePlacementPref)
    const update = updateConfigOf(req, undefined)
    const ports = this.planPorts({name: req.name, endpointMode}, [], req.ports ?? [], undefined)
    const now = Date.now()
    const svc: Service = {
      id: newId(),
      name: req.name,
      mode: req.mode === 'global' ? {global: true} : {replicas: req.replicas},
      networks: this.withIngress(
        nets.map((n) => n.id),
        ports,
      ),
      ...(aliases.length > 0 ? {aliases} : {}),
      command: req.command,
      ...(constraints.length > 0 ? {constraints} : {}),
      ...(placementPrefs.length > 0 ? {placementPrefs} : {}),
      ...sandbox,
      ...container,
      ...stop,
      ...(healthcheck ? {healthcheck} : {}),
      endpointMode,
      ...(endpointMode === 'vip' ? {vips: []} : {}),
      ...(ports.length > 0 ? {ports} : {}),
      ...(update ? {update} : {}),
      createdAt: now,
      updatedAt: now,
    }
    return this.writePlanned(svc, this.mustFit(svc))
  }

  scaleService(ref: string, replicas: number): Service {
    const svc = this.read.findService(ref)
    if ('global' in svc.mode) throw new UserError(`scale can only be used with replicated mode: ${svc.name} is global`)
    checkReplicas(replicas)
    const next: Service = {...svc, mode: {replicas}, updatedAt: Date.now()}
    return this.writePlanned(next, this.mustFit(next))
  }

  /**
   * Publishes and unpublishes ports of a live service. Only the service record changes (its
   * tasks keep running, and with them every flow on its other ports), except when it gets its
   * first ingress port: then its tasks are replaced by tasks attached to the ingress network,
   * as Swarm's service update replaces them. Removing the last ingress port keeps the ingress
   * attachment (and the VIP on it) until the service is removed: no task is replaced for it,
   * and publishing again later needs no replacement either.
   */
  updatePorts(ref: string, req: PortsUpdate): Service {
    const svc = this.read.findService(ref)
    if (req.add.length === 0 && req.rm.length === 0)
      throw new UserError('nothing to change: give --publish-add SPEC or --publish-rm PORT')
    const next = this.withPorts(svc, req)
    if (next === svc) return svc // Docker: a port published as it is already is a no-op, nothing written
    return this.writePlanned(next, this.mustNotShrink(svc, next))
  }

  /** svc with its ports changed as req says (checked against the cluster), not written. */
  private withPorts(svc: Service, req: PortsUpdate): Service {
    const current = svc.ports ?? []
    const gone = new Set<string>()
    for (const r of req.rm) {
      const key = portKey(r)
      if (gone.has(key)) throw new UserError(`port ${key} is given twice to remove`)
      if (!current.some((p) => portKey(p) === key)) {
        const has = current.length === 0 ? 'none' : current.map(portKey).join(', ')
        throw new UserError(`service ${svc.name} does not publish port ${key} (it publishes ${has})`)
      }
      gone.add(key)
    }
    const keep = current.filter((p) => !gone.has(portKey(p)))
    // Docker: adding a port the service keeps as it is (same published, target, protocol, mode) is a no-op.
    const add = req.add.filter((r) => !keep.some((p) => samePort(p, r)))
    if (gone.size === 0 && add.length === 0) return svc
    const ports = this.planPorts(svc, keep, add, svc.id)
    const {ports: _old, ...rest} = svc
    const next: Service = {
      ...rest,
      networks: this.withIngress(svc.networks, ports),
      ...(ports.length > 0 ? {ports} : {}),
      updatedAt: Date.now(),
    }
    return next
  }

  /**
   * service update: everything service create takes but the name, mode and networks (those have
   * their own requests), plus --force, the container flags (--image, --env-add/-rm, --mount-add/-rm,
   * ...) and --constraint-add/-rm, --placement-pref-add/-rm. A change to what tasks are made from
   * (TaskSpec, the container included), or --force, raises the spec's version: its tasks are replaced by a rolling update (src/manager/rolling.ts), and the spec
   * they ran is kept for service rollback. Replicas, ports, placement and the update settings
   * change only the record. The VIPs and published ports stay. Checked in full before the one write.
   */
  updateService(ref: string, req: ServiceUpdate): Service {
    const svc = this.read.findService(ref)
    let next: Service = {...svc}
    if (req.replicas !== undefined) {
      if ('global' in svc.mode) throw new UserError(`--replicas can only be used with replicated mode: ${svc.name} is global`)
      next.mode = {replicas: checkReplicas(req.replicas)}
    }
    if (req.ports && (req.ports.add.length > 0 || req.ports.rm.length > 0)) next = this.withPorts(next, req.ports)
    const spec: TaskSpec = taskSpecOf(svc)
    if (req.command !== undefined) spec.command = req.command
    const container = updatedContainer(svc.name, svc.container, req)
    if (container) spec.container = container
    // Constraints and preferences change only the record: the next pass moves the tasks whose node
    // no longer fits (each stopped gracefully, as drain moves them), as swarmkit replaces them.
    const constraints = editList(svc.name, svc.constraints, req.constraintAdd, req.constraintRm, 'constraint', parseConstraint)
    const prefs = editList(
      svc.name,
      svc.placementPrefs,
      req.placementPrefAdd,
      req.placementPrefRm,
      'placement-pref',
      parsePlacementPref,
    )
    const {constraints: _c, placementPrefs: _p, ...withoutPlacement} = next
    next = {
      ...withoutPlacement,
      ...(constraints.length > 0 ? {constraints} : {}),
      ...(prefs.length > 0 ? {placementPrefs: prefs} : {}),
    }
    const sandbox = sandboxSpec({
      user: req.user ?? svc.user,
      ...(req.limitMemory !== undefined ? {limitMemory: req.limitMemory} : {}),
      ...(req.limitCpu !== undefined ? {limitCpu: req.limitCpu} : {}),
    })
    if (sandbox.user !== undefined) spec.user = sandbox.user
    if (req.limitMemory !== undefined || req.limitCpu !== undefined) spec.limits = {...svc.limits, ...sandbox.limits}
    const stop = stopSpec(req)
    if (stop.stopSignal !== undefined) spec.stopSignal = stop.stopSignal
    if (stop.stopGraceMs !== undefined) spec.stopGraceMs = stop.stopGraceMs
    if (req.noHealthcheck || req.healthCmd !== undefined) {
      const h = healthSpec(req)
      if (h) spec.healthcheck = h
      else delete spec.healthcheck
    } else if (req.healthInterval ?? req.healthTimeout ?? req.healthRetries ?? req.healthStartPeriod) {
      if (!svc.healthcheck) throw new UserError(`service ${svc.name} has no health check: give --health-cmd`)
      spec.healthcheck = healthSpec({
        healthCmd: svc.healthcheck.cmd,
        healthInterval: req.healthInterval ?? `${svc.healthcheck.intervalMs}ms`,
        healthTimeout: req.healthTimeout ?? `${svc.healthcheck.timeoutMs}ms`,
        healthRetries: req.healthRetries ?? svc.healthcheck.retries,
        healthStartPeriod: req.healthStartPeriod ?? `${svc.healthcheck.startPeriodMs}ms`,
      })
    }
    checkUsernsHealth(spec.container, spec.healthcheck)
    const update = updateConfigOf(req, svc.update)
    if (update) next.update = update
    const changed = JSON.stringify(spec) !== JSON.stringify(taskSpecOf(svc))
    const now = this.now()
    if (changed || req.force) {
      next = {...withTaskSpec(next, spec), specVersion: (svc.specVersion ?? 0) + 1, previous: taskSpecOf(svc)}
      next.updateStatus = {state: 'updating', startedAt: now, message: 'update in progress'}
    } else if (svc.updateStatus && (svc.updateStatus.state === 'paused' || svc.updateStatus.state === 'rollback_paused')) {
      // Docker: a paused update goes on with the next service update (its failures counted afresh).
      const back = svc.updateStatus.state === 'rollback_paused'
      next.updateStatus = {
        state: back ? 'rollback_started' : 'updating',
        startedAt: now,
        message: `${back ? 'rollback' : 'update'} resumed`,
      }
    }
    next.updatedAt = Date.now()
    return this.writePlanned(next, this.mustNotShrink(svc, next))
  }

  /** service rollback: the spec before the last update that replaced the tasks, rolled out as any update. */
  rollbackService(ref: string): Service {
    const svc = this.read.findService(ref)
    if (!svc.previous) throw new UserError(`service ${svc.name} has no previous spec to roll back to`)
    const next = rolledBack({...svc, previous: svc.previous}, this.now(), 'manually requested rollback')
    return this.writePlanned(next, this.mustNotShrink(svc, next))
  }

  /**
   * Attaches a live service to networks and detaches it from others (service-networks.ts): a
   * VIP on each new network, and each running task an address there, plugged into it where it
   * runs (no task replaced); tasks on a removed network are replaced by tasks without it.
   */
  updateNetworks(ref: string, req: NetworksUpdate): Service {
    const svc = this.read.findService(ref)
    const {aliases: _old, ...rest} = svc
    const next: Service = {...rest, ...nextNetworks(svc, req, (r) => this.read.findNetwork(r)), updatedAt: Date.now()}
    return this.writePlanned(next, this.mustNotShrink(svc, next))
  }

  /**
   * The plan of a changed service, refused if it leaves more of its tasks without a node or an
   * address than now. A service already short (a node is down, its tasks wait as Swarm's wait
   * pending) can still change its ports; a change that would strand tasks cannot.
   */
  private mustNotShrink(now: Service, next: Service): ServicePlan {
    const plan = this.plan(next)
    if (plan.missingNetworks.length > 0)
      throw new UserError(`service ${next.name}: networks ${plan.missingNetworks.join(', ')} do not exist`)
    const before = this.plan(now)
    if (unplaced(plan) <= unplaced(before)) return plan
    if (plan.hostPortShort) throw new UserError(`${describeHostPortShort(next, plan.hostPortShort)}: nothing was changed`)
    throw new UserError(`${describeShortfalls(next, plan.shortfalls)}: nothing was changed`)
  }

  private planPorts(
    svc: {name: string; endpointMode?: Service['endpointMode']},
    keep: Service['ports'] & {},
    add: PortRequest[],
    selfId: string | undefined,
  ) {
    if (keep.length === 0 && add.length === 0) return []
    const cluster = this.read.cluster()
    return planPorts({
      service: {name: svc.name, endpointMode: svc.endpointMode ?? 'vip'},
      keep,
      add,
      others: this.read.services().filter((s) => s.id !== selfId),
      reserved: reservedPorts(
        cluster.dataPathPort,
        this.read.nodes().filter((n) => n.state !== 'left'),
      ),
    })
  }

  /** A service with an ingress port is attached to the ingress network (last, so its other networks keep their order). */
  private withIngress(networks: string[], ports: NonNullable<Service['ports']>): string[] {
    if (!hasIngressPorts({ports})) return networks
    const ingress = this.read.networks().find((n) => n.ingress)
    if (!ingress)
      throw new UserError(
        'the cluster has no ingress network (it was removed with network rm --force): only mode=host ports can be published',
      )
    return networks.includes(ingress.id) ? networks : [...networks, ingress.id]
  }

  removeService(ref: string): void {
    const svc = this.read.findService(ref)
    // The service first: a crash half-way leaves tasks without a service, which the next pass removes.
    // Its VIPs go with it: addresses in use are read from the store, there is nothing else to free.
    this.store.delete(keyOf('service', svc.id))
    const nodes = placementNodes(this.index, this.membership)
    for (const t of this.read.tasksOf(svc.id)) this.retireOrDelete(t, nodes)
  }

  /**
   * A task of a removed service: one its node may still run (a status says so, and the node is a
   * live member) is marked shutdown and stops gracefully there (src/tasks/stop.ts); the placement
   * pass deletes it once its node has said it stopped. Any other is deleted now.
   */
  private retireOrDelete(t: Task, nodes: PlacementNodes): void {
    const st = this.index.statuses.get(t.id)
    const up = nodes.liveIds.has(t.nodeId)
    if (up && st && (st.state === 'running' || st.state === 'starting')) {
      if (t.desiredState !== 'shutdown') this.store.put(keyOf('task', t.id), {...t, desiredState: 'shutdown'} satisfies Task)
      return
    }
    // A node that is down (a member still) may run it when it is back: it stays shutdown until then.
    if (nodes.members.has(t.nodeId) && !up && t.desiredState === 'shutdown') return
    this.store.delete(keyOf('task', t.id))
  }

  /**
   * Takes a node that is down out of the cluster for good: its record becomes 'left' (the
   * store's administrative state), so its tasks, global ones too, are placed elsewhere or
   * removed, and it can no longer come back under its id. Refused while it is up.
   */
  removeNode(ref: string): NodeRecord {
    const n = this.read.findNode(ref)
    if (n.id === this.selfId) throw new UserError(`node ${n.name} is this manager: it cannot remove itself (use leave)`)
    if (n.state === 'left') throw new UserError(`node ${n.name} has already left the cluster`)
    // The state node ls shows (not the reschedule delay placement waits for): one notion of down.
    const m = this.membership
    if (!(m.downNow ? m.downNow(n.id) : m.isDown(n.id)))
      throw new UserError(`node ${n.name} is up: only a node that is down can be removed (stop it, or run leave on it)`)
    const gone: NodeRecord = {...n, state: 'left'}
    // Its certificate first: whatever record of it stands anywhere (one it wrote itself with a
    // high clock before this reached a node included), nothing signed under it is believed again.
    const revoke = revocationOf(n, Date.now())
    if (revoke) this.store.put(revoke.key, revoke.value)
    this.store.put(keyOf('node', n.id), gone)
    return gone
  }

  /**
   * node update: a node's labels and availability, in its nodespec record (never in its own
   * record, which only the node signs). Drain: the next pass moves its tasks elsewhere, each
   * stopped gracefully (out of the load balancer and DNS first); pause: it keeps its tasks.
   */
  updateNode(ref: string, req: NodeUpdate): NodeSpec {
    const n = this.read.findNode(ref)
    if (n.state === 'left') throw new UserError(`node ${n.name} has left the cluster`)
    const labelAdd = (req.labelAdd ?? []).map(parseLabel)
    const labelRm = req.labelRm ?? []
    const availability = req.availability === undefined ? undefined : checkAvailability(req.availability)
    if (labelAdd.length === 0 && labelRm.length === 0 && availability === undefined)
      throw new UserError('nothing to change: give --availability, --label-add or --label-rm')
    const cur = this.store.get<NodeSpec>(keyOf('nodespec', n.id))
    const labels = {...cur?.labels}
    for (const k of labelRm) {
      if (!(k in labels)) throw new UserError(`node ${n.name} has no label '${k}'`)
      delete labels[k]
    }
    for (const [k, v] of labelAdd) labels[k] = v
    const next: NodeSpec = {id: n.id, availability: availability ?? availabilityOf(cur), labels}
    this.store.put(keyOf('nodespec', n.id), next)
    return next
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
    return new Map([...this.place(undefined).values()].map((p) => [p.name, p.why]))
  }

  /**
   * Places only the services named (a deleted one: its tasks go), as placeAll would place them:
   * a pass after changes touches what changed, not the whole cluster. Every service when ids is
   * absent. Problems by service id.
   */
  placeServices(ids?: ReadonlySet<string>): ProblemsById {
    return this.place(ids)
  }

  /** Who may take tasks now, as one string: when it changes, every service may need placing again. */
  nodesSignature(): string {
    return placementNodes(this.index, this.membership)
      .live.map((n) => n.id)
      .join(',')
  }

  /** The services that share a host-mode port with this one: moving its tasks changes where theirs may go. */
  hostPortPeers(serviceId: string): string[] {
    const ix = this.index
    const svc = ix.services.get(serviceId)
    if (!svc) return []
    const out = new Set<string>()
    for (const k of hostPortKeys(svc)) for (const id of ix.hostPorts.get(k) ?? []) if (id !== serviceId) out.add(id)
    return [...out]
  }

  private place(only: ReadonlySet<string> | undefined): ProblemsById {
    const report: ProblemsById = new Map()
    const ix = this.index
    // Nodes do not change during a pass: who may take tasks is worked out once for all services.
    const nodes = placementNodes(ix, this.membership)
    const services = only
      ? [...only].sort().flatMap((id) => (ix.services.has(id) ? [ix.services.get(id)!] : []))
      : this.read.services()
    const gone = only
      ? [...only].filter((id) => !ix.services.has(id) && ix.tasksByService.has(id))
      : [...ix.tasksByService.keys()].filter((id) => !ix.services.has(id))
    const orphans = gone.flatMap((id) => ix.tasksOf(id))
    for (const t of orphans.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
      try {
        this.retireOrDelete(t, nodes)
      } catch (e) {
        report.set(t.serviceId, {name: t.serviceName, why: `cannot remove task ${t.id}: ${(e as Error).message}`})
      }
    }
    const set = (svc: Service, why: string) => report.set(svc.id, {name: svc.name, why})
    // Services that fit whole go first, so one that asks for more than there is
    // cannot take the addresses the others need; it gets what is left after.
    const short: Service[] = []
    for (const cur of services) {
      let svc = cur
      try {
        svc = this.progress(cur)
        const plan = this.plan(svc, nodes)
        if (plan.shortfalls.length > 0) short.push(svc)
        else this.apply(svc, plan)
        if (plan.missingNetworks.length > 0) set(svc, `networks ${plan.missingNetworks.join(', ')} do not exist`)
        else if (plan.hostPortShort) set(svc, describeHostPortShort(svc, plan.hostPortShort))
        else if (plan.pending) set(svc, describePending(svc, plan.pending))
      } catch (e) {
        set(svc, (e as Error).message)
      }
    }
    for (const svc of short) {
      try {
        const plan = this.plan(svc, nodes)
        this.apply(svc, plan)
        if (plan.shortfalls.length > 0) set(svc, describeShortfalls(svc, plan.shortfalls))
        else if (plan.hostPortShort) set(svc, describeHostPortShort(svc, plan.hostPortShort))
      } catch (e) {
        set(svc, (e as Error).message)
      }
    }
    return report
  }

  /** Services whose update or rollback is still rolling or watching its last tasks: the clock moves them on. */
  rollingServices(): string[] {
    return [...this.index.services.values()].filter((s) => inProgress(s.updateStatus?.state)).map((s) => s.id)
  }

  /** A rolling update's record brought up to date (rolling.ts updateProgress), written when it changed. */
  private progress(svc: Service): Service {
    const next = updateProgress(svc, this.index.tasksOf(svc.id), this.index.statuses, this.now())
    if (!next) return svc
    this.store.put(keyOf('service', svc.id), next)
    return next
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now()
  }

  private plan(svc: Service, nodes?: PlacementNodes): ServicePlan {
    // Attachments hold addresses as tasks do (the index counts them; they have no service, so placement never moves them).
    return planService(
      svc,
      {index: this.index, membership: this.membership, nodes, addressStart: this.opts.addressStart},
      {id: newId, now: this.now()},
    )
  }

  /** The store's index (state-index.ts); a store that cannot keep one is read whole for each question. */
  private get index(): StateIndex {
    return isIndexSource(this.store) ? indexOf(this.store) : scanIndex(this.store)
  }

  /** The plan if all of it fits; otherwise a refusal, before anything is written. */
  private mustFit(svc: Service): ServicePlan {
    const plan = this.plan(svc)
    if (plan.missingNetworks.length > 0)
      throw new UserError(`service ${svc.name}: networks ${plan.missingNetworks.join(', ')} do not exist`)
    if (plan.hostPortShort) throw new UserError(`${describeHostPortShort(svc, plan.hostPortShort)}: nothing was changed`)
    if (plan.shortfalls.length > 0) throw new UserError(`${describeShortfalls(svc, plan.shortfalls)}: nothing was changed`)
    return plan
  }

  /** Writes a service that its plan fits, with the VIPs the plan chose, then its tasks. */
  private writePlanned(svc: Service, plan: ServicePlan): Service {
    const stored: Service = plan.vips ? {...svc, vips: plan.vips} : svc
    // The service (with its VIPs) before its tasks, as apply does.
    this.store.put(keyOf('service', svc.id), stored)
    this.apply(stored, {...plan, vips: undefined})
    return stored
  }

  private apply(svc: Service, plan: ServicePlan): void {
    // VIPs before tasks: a new task's address was chosen next to them.
    if (plan.vips) this.store.put(keyOf('service', svc.id), {...svc, vips: plan.vips} satisfies Service)
    for (const t of plan.remove) this.store.delete(keyOf('task', t.id))
    for (const t of plan.retire) this.store.put(keyOf('task', t.id), t satisfies Task)
    for (const t of plan.create) this.store.put(keyOf('task', t.id), t satisfies Task)
    for (const t of plan.extend) this.store.put(keyOf('task', t.id), t satisfies Task)
  }
}

/** A store without change events (none in the agent today): an index of what it holds now. */
function scanIndex(store: DesiredStore): StateIndex {
  const kinds = ['node', 'network', 'service', 'task', 'attachment', 'taskstatus', 'attachmentstatus'] as const
  return StateIndex.build(
    kinds.flatMap((k) =>
      store
        .values<{id?: string; taskId?: string}>(prefixOf(k))
        .map((v) => ({key: keyOf(k, (k === 'taskstatus' ? v.taskId : v.id) ?? ''), value: v})),
    ),
  )
}

/** A namespace file here: it must be one (nsfs), and not this node's own namespace. */
function checkNetns(path: string): void {
  let st
  try {
    st = statSync(path)
  } catch {
    throw new UserError(`${path}: no such namespace on this node`)
  }
  const self = statSync('/proc/self/ns/net')
  // Every namespace file lives on the one nsfs superblock: same device, whatever the path.
  if (st.dev !== self.dev) throw new UserError(`${path} is not a namespace file`)
  if (st.ino === self.ino) throw new UserError(`${path} is this node's own network namespace`)
}

/** A requested port that is exactly one the service has (a request without a published port never is: it asks for a new one). */
const samePort = (p: PublishedPort, r: PortRequest) =>
  r.published === p.published && r.target === p.target && r.protocol === p.protocol && r.mode === p.mode

/** Tasks a plan leaves without a node (host-mode ports) or without addresses. */
function unplaced(plan: ServicePlan): number {
  const noNode = plan.hostPortShort ? plan.hostPortShort.want - plan.hostPortShort.placed : 0
  const noAddress = plan.shortfalls.length > 0 ? plan.shortfalls[0]!.need - plan.create.length - plan.extend.length : 0
  return noNode + noAddress
}

/** One line for slots no node may take (Swarm's pending: 'no suitable node'). */
function describePending(svc: Pick<Service, 'name' | 'constraints'>, n: number): string {
  const cs = svc.constraints?.length ? ` (constraints ${svc.constraints.join(', ')})` : ''
  return `service ${svc.name}: ${n} task${n === 1 ? '' : 's'} pending: no suitable node${cs}, or the nodes are paused or drained`
}

/**
 * A list of --constraint or --placement-pref after --X-rm (each must be there) and --X-add (each
 * checked; one already there is kept once), in the order given.
 */
function editList(
  service: string,
  cur: string[] | undefined,
  add: string[] | undefined,
  rm: string[] | undefined,
  flag: string,
  check: (s: string) => unknown,
): string[] {
  let out = [...(cur ?? [])]
  for (const r of rm ?? []) {
    if (!out.includes(r)) throw new UserError(`--${flag}-rm ${r}: service ${service} has no ${flag} ${r}`)
    out = out.filter((x) => x !== r)
  }
  for (const a of add ?? []) {
    check(a)
    if (!out.includes(a)) out.push(a)
  }
  return out
}

/** Replica counts as the API may receive them: whole, not negative, within MAX_REPLICAS. */
export function checkReplicas(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0)
    throw new UserError(`invalid replica count ${JSON.stringify(n)}: must be a whole number, 0 or more`)
  if (n > MAX_REPLICAS) throw new UserError(`invalid replica count ${n}: at most ${MAX_REPLICAS} replicas per service`)
  return n
}
