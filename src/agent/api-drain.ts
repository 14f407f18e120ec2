// The last moments of an agent's API after a handover (`agent --replace`): the successor's socket
// has taken the name, so no new client can reach this one, but a client that connected just
// before the rename may not have sent its request yet: if the agent exits then, that client sees
// EPIPE. Draining stops accepting, answers what is already connected, and closes whatever is left
// after a grace period; the agent exits after it.
import type {Server} from 'node:http'
import {Server as NetServer} from 'node:net'

/** How long connections already accepted get to send their request and be answered. */
export const API_DRAIN_MS = 2_000

/** Resolves once every accepted connection has ended, or graceMs has passed (then they are closed). */
export function drainApi(server: Server, graceMs = API_DRAIN_MS): Promise<void> {
  return new Promise((resolve) => {
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      server.closeAllConnections()
      resolve()
    }
    const timer = setTimeout(finish, graceMs)
    // net.Server's own close: it stops accepting and calls back when the last connection ends;
    // http's would also close the idle kept-alive ones, which the grace does anyway.
    NetServer.prototype.close.call(server, finish)
  })
}
