/**
 * A member's liveness as this node believes it. Kept in memory only: it
 * changes with every lost packet, and the durable store holds what is
 * administrative (a node record is 'ready' or 'left'), not this.
 *
 * Incarnations order what is said about a member: only the member raises its
 * own (it starts at its boot epoch, so a restarted node outranks everything
 * said about its previous run, and it adds one to refute a suspicion).
 *   alive(i)   beats suspect(j) and dead(j) when i > j, and alive(j) when i > j;
 *   suspect(i) beats alive(j) when i >= j;
 *   dead(i)    beats alive(j) and suspect(j) when i >= j.
 * 'left' comes from the store (the node left or was removed) and is final.
 */
export type Liveness = 'alive' | 'suspect' | 'dead' | 'left'

export type Member = {
  id: string
  addr: string
  port: number
  state: Liveness
  incarnation: number
  /** When the state last changed (ms). */
  since: number
  /** When a message from the member itself last arrived (ms); 0: never. */
  lastHeard: number
}

/** A member's place in the store's roster: what the membership probes. */
export type RosterEntry = {id: string; addr: string; port: number; left: boolean}

/** The state a 'node ls' shows, from the node record's and the liveness'. */
export type NodeStatus = 'ready' | 'suspect' | 'down' | 'left'

export function nodeStatus(l: Liveness | undefined): NodeStatus {
  switch (l) {
    case 'suspect':
      return 'suspect'
    case 'dead':
      return 'down'
    case 'left':
      return 'left'
    default:
      return 'ready'
  }
}
