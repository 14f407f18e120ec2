// What the agent's MembershipView answers to changes() (view.ts): its answers come from SWIM's
// member states and from liveness (node-liveness.ts). Of a member alive or suspect (or unknown),
// isDown is false and agentAway is its SWIM state: both change only when that state does, and
// SWIM says so (Membership.onChange). Of a member dead or left, isDown depends on time as well
// (the data path's last answer, the agent grace, the reschedule delay): those are volatile.
import type {Member} from './state.js'
import type {ViewChange} from './view.js'

export class ViewChanges {
  private generation = 0
  private current: ViewChange | undefined

  /** members: every member SWIM knows now, read again once per change. */
  constructor(private readonly members: () => Iterable<Pick<Member, 'id' | 'state'>>) {}

  /**
   * Called on every SWIM change and every liveness change, before any other listener of them
   * (the agent registers it first), so a pass that a change starts sees a new generation.
   */
  changed(): void {
    this.generation++
    this.current = undefined
  }

  /** Members added or removed by the roster need no call: an added one is alive (answers as an unknown one), a removed one's node record went too. */
  now(): ViewChange {
    if (!this.current) {
      const volatile = new Set<string>()
      for (const m of this.members()) if (m.state === 'dead' || m.state === 'left') volatile.add(m.id)
      this.current = {generation: this.generation, volatile}
    }
    return this.current
  }
}
