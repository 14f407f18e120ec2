// `swarmnet agent --replace`: a new agent takes a node over from the running one (an upgrade, a
// restart) with the API answering throughout. The new process has loaded everything it runs
// before it asks; the old agent then stops all but its API (reads answered from what it knows,
// writes refused with "try again") and lets go of the node's lock; the new one takes the lock,
// starts, and renames its socket over the old one's; the old agent sees that and exits. The data
// plane forwards throughout: it is pinned (docs/upgrade.md).
import {AgentClient} from './client.js'
import {agentAnswers} from './spawn.js'

/** How long the new agent waits for the node's lock once the old one said it lets go. */
export const HANDOVER_LOCK_WAIT_MS = 30_000

/** Asks the node's running agent to hand over; its pid, or undefined when none runs (start as usual). */
export async function askHandover(node: string): Promise<number | undefined> {
  if (!(await agentAnswers(node))) return undefined
  const r = await new AgentClient(node).post<{pid: number}>('/agent/handover')
  return r.pid
}
