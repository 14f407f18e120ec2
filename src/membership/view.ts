import type {NodeRecord} from '../model/types.js'

/**
 * What the reconcilers (maps, load balancing, the manager's placement) read of
 * liveness: one question, so they all agree on who is down at the same moment.
 */
export interface MembershipView {
  isDown(id: string): boolean
  /**
   * Down now, as `node ls` shows it, when isDown answers for placement and counts the
   * reschedule delay too (the manager's view): what `node rm` asks. Absent: isDown.
   */
  downNow?(id: string): boolean
  /**
   * The node's agent is not heard now (suspected or declared dead by SWIM) while the node
   * itself is not down (its data path answers): it keeps its tasks but is given no new one.
   * Absent: every node that is not down takes tasks.
   */
  agentAway?(id: string): boolean
  /**
   * For callers that keep what they derive from the view (placement's node set, plan.ts): see
   * ViewChange. Absent, or undefined now: keep nothing, ask again.
   */
  changes?(): ViewChange | undefined
}

/**
 * The answers of isDown and agentAway stay the same while `generation` does, but those of the
 * `volatile` nodes: theirs may change with time alone (a node down but not yet for the
 * reschedule delay, an agent dead within its grace), so a caller asks them again every time.
 */
export type ViewChange = {generation: number; volatile: ReadonlySet<string>}

/** Before membership runs (and in pure tests): nobody is down. */
export const NOBODY_DOWN: MembershipView = {isDown: () => false, changes: () => NEVER_CHANGES}
const NEVER_CHANGES: ViewChange = {generation: 0, volatile: new Set()}

/** Nodes that are members ('ready' in the store) and not declared down. */
export function liveNodeIds(nodes: Pick<NodeRecord, 'id' | 'state'>[], view: MembershipView): Set<string> {
  return new Set(nodes.filter((n) => n.state === 'ready' && !view.isDown(n.id)).map((n) => n.id))
}
