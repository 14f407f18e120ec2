// This node's role and the manager's duties that come with it, as one state
// machine instead of variables the agent reassigns. A worker holds no duties;
// a manager holds a ManagerRole (src/manager/manager-role.ts); while the one
// embedded manager moves the cluster's state to etcd it is 'migrating' and
// takes no request. Three events change the role, each through become():
// node promote and node demote (a manager re-certified this node's key for
// another role: follow() sees its own record change), and migrate-store.
import {checkNodeCert, type KeyPair} from '../gossip/identity.js'
import type {JoinAnswering} from '../gossip/gossip.js'
import type {ManagerSecrets} from '../gossip/manager-secrets.js'
import {generateToken} from '../gossip/token.js'
import type {MembershipView} from '../membership/view.js'
import {UserError} from '../model/errors.js'
import type {NodeRecord} from '../model/types.js'
import type {DesiredBackend} from '../manager/backend.js'
import {checkEtcdSettings, type EtcdSettings} from '../manager/etcd-client.js'
import type {EtcdManager} from '../manager/etcd-manager.js'
import {defaultPrefix} from '../manager/etcd-keys.js'
import {joinAnswering, secretsHeld} from '../manager/join-answering.js'
import type {ManagerLoop} from '../manager/loop.js'
import {ManagerRole, type ManagerRoleContext} from '../manager/manager-role.js'
import {migrateToEtcd} from '../manager/migrate.js'
import {promotionKey, type Promotion} from '../manager/roles.js'
import {keyOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import {writeNodeConfig, type NodeConfig} from './config.js'
import {forgetEtcdFiles, givenEtcdPaths, keepEtcdFiles} from './etcd-files.js'
import type {KeySchedule} from './key-schedule.js'
import {configAsManager, configAsWorker} from './role-config.js'

type RoleState = {kind: 'worker'} | {kind: 'manager'; duties: ManagerRole} | {kind: 'migrating'; duties: ManagerRole}

export type NodeRoleOptions = {
  /** The node's config: read live, changed and written back with the role. */
  cfg: NodeConfig
  /** The node's name as the agent was started for it (what the rotation lock tells another manager). */
  node: string
  nodeKey: KeyPair
  store: Store
  clusterId: string
  membership: MembershipView
  log: (m: string) => void
  /** The record this node publishes of itself: its role and certificate follow the role. */
  me: () => NodeRecord
  /** Gossip answers joins with this (a manager holding the identity) or not at all. */
  serveJoins: (join: JoinAnswering | undefined) => void
  /**
   * A manager's key rotation schedule (key-schedule.ts), made when the node is or becomes a
   * manager (at start, or promoted) and stopped when it stops being one: a promoted node rotates
   * and receives the acks of its rotations without a restart, a demoted one no longer does.
   */
  keySchedule?: () => KeySchedule
}

export type Migrated = {records: number; prefix: string; endpoints: string[]}

export class NodeRole {
  private state: RoleState
  private readonly ctx: ManagerRoleContext
  private schedule: KeySchedule | undefined
  private started = false

  constructor(private readonly o: NodeRoleOptions) {
    const {cfg} = o
    this.ctx = {
      store: o.store,
      selfId: cfg.nodeId,
      selfName: o.node,
      membership: o.membership,
      log: o.log,
      roles: {
        secrets: () => this.secrets(),
        etcd: () => (cfg.etcd ? {...cfg.etcd, ...(cfg.etcdGiven ?? {})} : undefined),
      },
      isManager: () => cfg.role === 'manager',
    }
    const duties =
      cfg.role !== 'manager' ? undefined : cfg.etcd ? ManagerRole.onEtcd(cfg.etcd, this.ctx) : ManagerRole.embedded(this.ctx)
    this.state = duties ? {kind: 'manager', duties} : {kind: 'worker'}
  }

  /** A manager's duties, also while migrating. */
  get duties(): ManagerRole | undefined {
    return this.state.kind === 'worker' ? undefined : this.state.duties
  }
  get backend(): DesiredBackend | undefined {
    return this.duties?.backend
  }
  get placement(): ManagerLoop | undefined {
    return this.duties?.placement
  }
  get ha(): EtcdManager | undefined {
    return this.duties?.ha
  }
  /** A manager's key rotation schedule, while the node is one (and started). */
  get keys(): KeySchedule | undefined {
    return this.schedule
  }
  /** migrate-store runs: the embedded manager takes no request meanwhile. */
  get migrating(): boolean {
    return this.state.kind === 'migrating'
  }

  /** All a manager needs to admit joins and certify roles, if this node holds it. */
  secrets(): ManagerSecrets | undefined {
    return secretsHeld(this.o.cfg)
  }

  /** What gossip answers joins with: a manager holding the identity answers them (src/manager/join-answering.ts). */
  joinAnswering(): JoinAnswering | undefined {
    return this.o.cfg.role === 'manager' ? joinAnswering(this.o.store, this.o.cfg.nodeId, this.o.cfg) : undefined
  }

  /** Placement starts once the node's reconcilers are up, with a pass over every service. */
  start(): void {
    this.started = true
    this.duties?.start()
    this.followKeys()
    this.placement?.pass()
  }

  /** The agent stops (or hands over): the duties stop, the role stays what the config says. */
  async stop(): Promise<void> {
    this.started = false
    this.followKeys()
    await this.duties?.stop()
  }

  /** The key schedule runs while the node is a started manager (a migration keeps it). */
  private followKeys(): void {
    const wanted = this.started && this.duties !== undefined && this.o.cfg.role === 'manager'
    if (wanted && !this.schedule && this.o.keySchedule) {
      this.schedule = this.o.keySchedule()
      this.schedule.start()
    } else if (!wanted && this.schedule) {
      this.schedule.stop()
      this.schedule = undefined
    }
  }

  /**
   * node promote / demote: a manager re-certified this node's key for another role
   * (src/manager/roles.ts). Called on every change of the node's record or promotion.
   */
  async follow(): Promise<void> {
    const {cfg, nodeKey, store, log} = this.o
    const rec = store.get<NodeRecord>(keyOf('node', cfg.nodeId))
    if (!rec || rec.state === 'left' || rec.role === cfg.role || !rec.cert || !cfg.clusterIdentity) return
    if (!checkNodeCert(cfg.clusterIdentity, cfg.nodeId, nodeKey.publicKey, rec.role, rec.cert)) return
    if (rec.role === 'manager') {
      // Its etcd settings travel in their own record: wait for them.
      const p = store.get<Promotion>(promotionKey(cfg.nodeId))
      if (!p) return
      const next = configAsManager(cfg, rec.cert, p, nodeKey)
      if (next.warning) log(next.warning)
      // The TLS files the promotion names, used from the node's state directory (etcd-files.ts).
      try {
        next.cfg.etcdGiven = givenEtcdPaths(p.etcd)
        next.cfg.etcd = keepEtcdFiles(cfg.name, p.etcd)
      } catch (e) {
        log(`promotion: the etcd TLS files stay where they are: ${(e as Error).message}`)
      }
      Object.assign(cfg, next.cfg)
      writeNodeConfig(cfg)
      const promoted = this.become(() => ManagerRole.onEtcd(cfg.etcd!, this.ctx))
      log('this node is now a manager (promoted)')
      return promoted
    }
    const next = configAsWorker(cfg, rec.cert)
    for (const k of Object.keys(cfg) as (keyof NodeConfig)[]) if (!(k in next)) delete cfg[k]
    Object.assign(cfg, next)
    writeNodeConfig(cfg)
    forgetEtcdFiles(cfg.name)
    await this.become(() => undefined)
    log('this node is now a worker (demoted)')
  }

  /** swarm migrate-store: the one embedded manager copies the state to etcd and serves from there on. */
  async migrateStore(etcd: Omit<EtcdSettings, 'prefix'>): Promise<Migrated> {
    const {cfg, log} = this.o
    if (cfg.role !== 'manager' || this.state.kind === 'worker') throw new UserError('run migrate-store on the manager')
    if (this.ha || cfg.etcd) throw new UserError('this cluster already keeps its state in etcd')
    if (this.state.kind === 'migrating') throw new UserError('a migration is already under way')
    checkEtcdSettings(etcd)
    this.state = {kind: 'migrating', duties: this.state.duties}
    try {
      const settings: EtcdSettings = keepEtcdFiles(cfg.name, {...etcd, prefix: defaultPrefix(this.o.clusterId)})
      cfg.etcdGiven = givenEtcdPaths(etcd)
      const {records} = await migrateToEtcd({local: this.o.store, settings, selfId: cfg.nodeId})
      // From now on: requests and placement through etcd; the embedded loop stops writing.
      cfg.etcd = settings
      cfg.managerToken ??= generateToken(cfg.identity!.publicKey).text
      writeNodeConfig(cfg)
      const moved = this.become(() => ManagerRole.onEtcd(settings, this.ctx))
      log(`desired state moved to etcd at ${settings.endpoints.join(',')} (${records} records under ${settings.prefix})`)
      await moved
      return {records, prefix: settings.prefix, endpoints: settings.endpoints}
    } finally {
      if (this.state.kind === 'migrating') this.state = {kind: 'manager', duties: this.state.duties}
    }
  }

  /**
   * The one transition: the old duties stop (the embedded loop at once, an etcd manager
   * resigns), the new ones start, and what the node publishes and answers follows its config.
   */
  private async become(next: () => ManagerRole | undefined): Promise<void> {
    const {cfg} = this.o
    const stopping = this.duties?.stop()
    const duties = next()
    this.state = duties ? {kind: 'manager', duties} : {kind: 'worker'}
    const me = this.o.me()
    Object.assign(me, {role: cfg.role, cert: cfg.cert})
    if (!duties) delete me.managerStatus
    this.o.serveJoins(this.joinAnswering())
    duties?.start()
    this.followKeys()
    await stopping
  }
}
