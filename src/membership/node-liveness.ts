// One answer to "is this node up?", for everything that asks (the maps, DNS, placement,
// node ls, node rm): SWIM (./swim.ts) says whether a node's agent answers, the data-path
// prober (src/dataplane/prober.ts) whether its data path does. A node whose agent is
// declared dead but whose data path answers is not down: its agent is restarting or being
// upgraded, and its tasks still carry traffic. It stays up for the agent grace period;
// after that, or as soon as its data path stops answering, it is down as before.

import type {Member} from './state.js'
import type {MembershipView} from './view.js'

export interface LivenessSources {
  /** SWIM's view of a member (absent: never heard of). */
  member(id: string): Member | undefined
  /** When the member's data path last answered a probe (ms); 0: never. */
  dataPathAnsweredAt(id: string): number
  now(): number
}

export type NodeLivenessConfig = {
  /** How long a node whose agent is down but whose data path answers stays up (ms). */
  agentGraceMs: number
  /** A data path that has not answered for this long is gone (ms). */
  dataPathStaleMs: number
}

export const DEFAULT_AGENT_GRACE_MS = 60_000
/** Four probe intervals (250 ms): one lost probe or answer is not a dead data path. */
export const DATA_PATH_STALE_MS = 1000

export type NodeLivenessState = {down: boolean; agent: 'up' | 'down'}

export class NodeLiveness implements MembershipView {
  private readonly downSince = new Map<string, number>()
  private readonly listeners = new Set<(id: string, down: boolean) => void>()

  constructor(
    private readonly src: LivenessSources,
    readonly cfg: NodeLivenessConfig,
  ) {}

  /** The node's agent is declared dead by SWIM (not left: a node that left is simply down). */
  agentDown(id: string): boolean {
    return this.src.member(id)?.state === 'dead'
  }

  dataPathUp(id: string): boolean {
    const at = this.src.dataPathAnsweredAt(id)
    return at > 0 && this.src.now() - at <= this.cfg.dataPathStaleMs
  }

  private computeDown(id: string): boolean {
    const m = this.src.member(id)
    if (!m) return false
    if (m.state === 'left') return true
    if (m.state !== 'dead') return false
    return !this.dataPathUp(id) || this.src.now() - m.since >= this.cfg.agentGraceMs
  }

  /** Down: gone, or its agent dead and its data path silent, or its agent dead past the grace. */
  isDown(id: string): boolean {
    return this.computeDown(id)
  }

  /** How long the node has been down (ms), 0 when it is not: what the reschedule delay counts. */
  downFor(id: string): number {
    if (!this.computeDown(id)) return 0
    const since = this.downSince.get(id)
    return since === undefined ? 1 : Math.max(1, this.src.now() - since)
  }

  state(id: string): NodeLivenessState {
    return {down: this.computeDown(id), agent: this.agentDown(id) ? 'down' : 'up'}
  }

  /** Called on every SWIM change and every few hundred ms: says which nodes went down or came back. */
  refresh(ids: Iterable<string>): void {
    const now = this.src.now()
    for (const id of ids) {
      const down = this.computeDown(id)
      const was = this.downSince.has(id)
      if (down === was) continue
      if (down) this.downSince.set(id, now)
      else this.downSince.delete(id)
      for (const fn of this.listeners) fn(id, down)
    }
  }

  onChange(fn: (id: string, down: boolean) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }
}
