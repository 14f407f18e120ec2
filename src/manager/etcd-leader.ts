// Which manager places and allocates on its own initiative: the one holding
// the `leader` key, created only if absent and tied to its lease. While its
// agent lives, etcd3 keeps the lease alive; when it dies (or loses etcd), the
// lease runs out after ttl seconds, etcd deletes the key, and the next manager
// that asks creates it. Placement transactions compare the key's create
// revision (etcd-transaction.ts), so a leader that lost its claim cannot write.
// A manager that etcd no longer counts as one (demoted or removed by another
// manager, roles/<id>) stands aside: it cannot publish its own record (a node
// does not change its own role), so it leaves the role to a manager that can.
import type {Lease, Namespace} from 'etcd3'
import {LEADER} from './etcd-keys.js'

export type LeadershipOptions = {
  /** Lease time to live: how long a dead leader keeps the role (etcd's minimum is about 2 s here). */
  ttlSec?: number
  /** How often a standby asks whether the role is free. */
  pollMs?: number
  log?: (m: string) => void
  /** Called on every change of who leads, with whether it is this manager. */
  onChange?: (leader: string | undefined, self: boolean) => void
  /**
   * Whether this manager may lead, asked every round: while not, it gives the role up and claims
   * nothing (a manager etcd demoted, whose record only another leader can publish).
   */
  mayLead?: () => Promise<boolean>
}

export const DEFAULT_LEADER_TTL_SEC = 3

export class Leadership {
  /** The leader as last read from etcd (undefined: none, or etcd unreachable). */
  leader: string | undefined
  private rev: string | undefined
  private lease: Lease | undefined
  private timer: NodeJS.Timeout | undefined
  private busy = false
  private stopped = false

  constructor(
    private readonly ns: Namespace,
    readonly selfId: string,
    private readonly opts: LeadershipOptions = {},
  ) {}

  get isLeader(): boolean {
    return this.rev !== undefined
  }

  /** The create revision of this manager's leader key while it leads: what placement commits against. */
  revision(): string | undefined {
    return this.rev
  }

  start(): void {
    void this.tick()
    this.timer = setInterval(() => void this.tick(), this.opts.pollMs ?? 500)
    this.timer.unref()
  }

  /** Gives the role up at once (a clean stop), so a standby need not wait for the lease to run out. */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    const lease = this.lease
    this.lease = undefined
    this.set(undefined, undefined)
    if (lease) await lease.revoke().catch(() => undefined)
  }

  /** One round: claim the role if it is free, otherwise learn who holds it; check our own claim. */
  async tick(): Promise<void> {
    if (this.busy || this.stopped) return
    this.busy = true
    try {
      if (this.opts.mayLead && !(await this.opts.mayLead())) {
        if (!this.stopped) await this.standAside()
        return
      }
      if (!this.lease) {
        const lease = this.ns.lease(this.opts.ttlSec ?? DEFAULT_LEADER_TTL_SEC)
        lease.on('lost', () => {
          if (this.lease !== lease) return
          this.lease = undefined
          this.opts.log?.('leader: lease lost (etcd unreachable or too slow): standing by')
          this.set(undefined, undefined)
        })
        this.lease = lease
        await lease.grant()
      }
      const id = await this.lease.grant()
      const claim = await this.ns.if(LEADER, 'Create', '==', 0).then(this.ns.put(LEADER).value(this.selfId).lease(id)).commit()
      if (this.stopped) return
      if (claim.succeeded) {
        this.set(this.selfId, claim.header.revision)
        return
      }
      const cur = (await this.ns.get(LEADER).exec()).kvs[0]
      if (this.stopped) return
      const holder = cur?.value.toString()
      // Our key from an earlier round of this same lease: still ours.
      if (holder === this.selfId && cur?.lease === id) this.set(this.selfId, cur.create_revision)
      else this.set(holder, undefined)
    } catch (e) {
      // Without etcd nobody can commit placement: stand by until it answers again.
      if (this.rev !== undefined || this.leader !== undefined)
        this.opts.log?.(`leader: etcd unreachable (${(e as Error).message.split('\n')[0]}): standing by`)
      this.set(undefined, undefined)
    } finally {
      this.busy = false
    }
  }

  /** Gives the role up (its key goes with the lease) and only watches who holds it. */
  private async standAside(): Promise<void> {
    const lease = this.lease
    this.lease = undefined
    if (this.rev !== undefined)
      this.opts.log?.('leader: etcd no longer counts this node as a manager: standing aside for a leader that publishes it')
    if (this.rev !== undefined || lease) this.set(undefined, undefined)
    if (lease) await lease.revoke().catch(() => undefined)
    const holder = (await this.ns.get(LEADER).exec()).kvs[0]?.value.toString()
    if (!this.stopped) this.set(holder === this.selfId ? undefined : holder, undefined)
  }

  private set(leader: string | undefined, rev: string | undefined): void {
    const changed = leader !== this.leader || (rev !== undefined) !== (this.rev !== undefined)
    this.leader = leader
    this.rev = rev
    if (!changed) return
    if (rev !== undefined) this.opts.log?.('leader: this manager leads (places and allocates)')
    this.opts.onChange?.(leader, rev !== undefined)
  }
}
