// A manager's duties on this node, as one object the agent holds while the
// node is a manager: the writer of desired state (backend.ts: embedded, or
// etcd through etcd-manager.ts) and placement (the embedded loop, or the etcd
// leader's). The agent starts one, and stops it when the node stops being a
// manager or its state moves to etcd (src/agent/node-role.ts).
import type {NodeRecord} from '../model/types.js'
import type {MembershipView} from '../membership/view.js'
import {keyOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import {EmbeddedBackend, type DesiredBackend} from './backend.js'
import type {EtcdSettings} from './etcd-client.js'
import {startEtcdManager, type EtcdManager} from './etcd-manager.js'
import {startManagerLoop, type ManagerLoop} from './loop.js'
import {Manager} from './manager.js'
import type {RolePublisher} from './roles.js'

export type ManagerRoleContext = {
  /** The node's gossip store: desired state itself (embedded) or etcd's mirror. */
  store: Store
  selfId: string
  selfName: string
  membership: MembershipView
  log: (m: string) => void
  /** What the etcd leader certifies roles with when it publishes them (roles.ts rolesToPublish). */
  roles: RolePublisher
  /** Whether this node is a manager now: only then it writes its managerStatus. */
  isManager: () => boolean
}

export class ManagerRole {
  private loop: ManagerLoop | undefined

  private constructor(
    readonly backend: DesiredBackend,
    /** Several managers on etcd: any of them serves requests, the leader places. */
    readonly ha: EtcdManager | undefined,
    private readonly embedded: Manager | undefined,
    private readonly ctx: ManagerRoleContext,
  ) {
    this.loop = ha?.loop
  }

  /** The one manager of a cluster that keeps its state in the gossip store. */
  static embedded(ctx: ManagerRoleContext): ManagerRole {
    // The one writer of desired state numbers it (Version.erev): no other node's clock orders it.
    ctx.store.numberDesired = true
    const manager = new Manager(ctx.store, ctx.selfId, ctx.membership)
    return new ManagerRole(new EmbeddedBackend(manager), undefined, manager, ctx)
  }

  /** One of the managers of a cluster on etcd: it joins the leader election at once. */
  static onEtcd(settings: EtcdSettings, ctx: ManagerRoleContext): ManagerRole {
    const ha = startEtcdManager({
      settings,
      local: ctx.store,
      selfId: ctx.selfId,
      selfName: ctx.selfName,
      membership: ctx.membership,
      log: ctx.log,
      // A role in etcd whose gossip record is missing or contradicts it is certified again by the leader.
      roles: ctx.roles,
      onLeader: (_leader, self) => {
        if (!ctx.isManager()) return
        const key = keyOf('node', ctx.selfId)
        const cur = ctx.store.get<NodeRecord>(key)
        const managerStatus = self ? 'leader' : 'reachable'
        if (cur && cur.state !== 'left' && cur.managerStatus !== managerStatus) ctx.store.put(key, {...cur, managerStatus})
      },
    })
    return new ManagerRole(ha.backend, ha, undefined, ctx)
  }

  /** Placement: what is not placed and the passes the agent asks for (undefined until started, embedded). */
  get placement(): ManagerLoop | undefined {
    return this.loop
  }

  /** Starts placing (the etcd leader's placement runs from the start). */
  start(): void {
    if (this.embedded && !this.loop) this.loop = startManagerLoop(this.embedded, this.ctx.store, this.ctx.log)
  }

  /** The gateway bridge's record; with etcd it goes through it, and until etcd answers tasks wait for it as for any record. */
  ensureGwbridge(subnet: string, gatewayIp: string): void {
    if (this.embedded) this.embedded.ensureGwbridge(subnet, gatewayIp)
    else
      this.backend.write((m) => m.ensureGwbridge(subnet, gatewayIp)).catch((e: Error) => this.ctx.log(`gwbridge: ${e.message}`))
  }

  async stop(): Promise<void> {
    // Moved to etcd (or demoted): etcd numbers desired state from now on.
    if (this.embedded) this.ctx.store.numberDesired = false
    this.loop?.stop()
    await this.ha?.stop()
  }
}
