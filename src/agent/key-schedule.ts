// A manager's cluster key rotations (src/gossip/rotation.ts carries them out):
// on `swarm rotate-key`, and every keyRotation.intervalMs (default 12 h) on its
// own. With several managers on etcd only the leader rotates on schedule, and
// one rotation at a time holds a lock in etcd (etcd-rotation-lock.ts). The node's
// role (node-role.ts) makes one when the node becomes a manager, at start or
// promoted, and stops it when the node stops being one.
import {DEFAULT_KEY_GRACE_MS, DEFAULT_KEY_ROTATION_MS, type KeyRotation} from '../gossip/rotation.js'
import {startRotation} from '../manager/etcd-rotation-lock.js'
import {writeNodeConfig, type NodeConfig} from './config.js'
import type {NodeRole} from './node-role.js'

/** How often the rotation advances its phases and the schedule is looked at. */
const TICK_MS = 250
/** How long `swarm rotate-key` waits for every live node to hold the new key. */
const ANSWER_WITHIN_MS = 30_000

export class KeySchedule {
  private readonly every: number
  private readonly base: number
  private autoStarting = false
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly rotation: KeyRotation,
    private readonly o: {
      cfg: NodeConfig
      role: NodeRole
      log: (m: string) => void
      /** Where the nodes' acks arrive (gossip's rotation): this rotation while the schedule runs, none after. */
      attach?: (rotation: KeyRotation | undefined) => void
    },
  ) {
    this.every = o.cfg.keyRotation?.intervalMs ?? DEFAULT_KEY_ROTATION_MS
    this.base = o.cfg.keyRotation?.lastAt ?? Date.now()
  }

  /** Starts receiving acks and ticking; a rotation cut short by a restart is finished (rotation.resume). */
  start(): void {
    if (this.timer) return
    this.o.attach?.(this.rotation)
    this.rotation.resume()
    this.timer = setInterval(() => this.tick(), TICK_MS)
  }

  /** Stops ticking and receiving acks (the node stops, or stops being a manager). */
  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.o.attach?.(undefined)
  }

  get running(): boolean {
    return this.timer !== undefined
  }

  /** For `swarm keys`: the rotation's state and the schedule. */
  status(): {rotation: ReturnType<KeyRotation['status']>; intervalMs: number} {
    return {rotation: this.rotation.status(), intervalMs: this.every}
  }

  /** `swarm rotate-key`: returns once every live node holds the new key and this one seals with it (or says who is missing). */
  async rotateNow(graceMs: number | undefined): Promise<unknown> {
    const rotation = this.rotation
    // With several managers, one rotation at a time (a lock in etcd): another manager's is refused.
    const started = await startRotation(rotation, this.o.role.ha?.rotationLock, graceMs ?? DEFAULT_KEY_GRACE_MS)
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ANSWER_WITHIN_MS).unref())
    const how = await Promise.race([rotation.until('use', 'retire'), timeout])
    return {...started, ...rotation.status(), timedOut: how === 'timeout'}
  }

  private tick(): void {
    const {cfg, role, log} = this.o
    const rotation = this.rotation
    rotation.tick()
    const last = rotation.lastRotatedAt
    if (last !== undefined && cfg.keyRotation?.lastAt !== last) {
      cfg.keyRotation = {intervalMs: this.every, lastAt: last}
      writeNodeConfig(cfg)
    }
    // Several managers: the etcd leader alone rotates on schedule (two rotations at once would fight).
    const mayRotate = cfg.role === 'manager' && (!role.ha || role.ha.leadership.isLeader)
    if (mayRotate && !this.autoStarting && this.every > 0 && !rotation.busy && Date.now() - (last ?? this.base) >= this.every) {
      this.autoStarting = true
      startRotation(rotation, role.ha?.rotationLock)
        .catch((e: Error) => log(`keys: automatic rotation: ${e.message}`))
        .finally(() => (this.autoStarting = false))
    }
  }
}
