// The spawner's own program (the agent's side is spawner.ts): a small Node process that starts
// the agent's commands on its behalf, so that the agent's main thread never forks. fork() copies
// the page tables of the process that calls it, and Node calls it on its main thread: from the
// agent (hundreds of MB, maps of BPF maps) that held the event loop 25-30% of the time while
// tasks started; from this process it is cheap and off the agent's loop.
//
// It runs in the agent's namespaces, cgroup and credentials (inherited), answers requests in
// the order their processes end, and exits when its channel to the agent closes: the agent
// stopped or was killed. Signals meant for the agent's process group (Ctrl-C, systemd's
// SIGTERM to the unit) are not for it: the agent may still need a command while it stops.
import {startProcess, type ProcessRequest, type ProcessResult} from './start-process.js'

/** Agent -> spawner. */
export interface SpawnerRequest {
  id: number
  req: ProcessRequest
}
/** Spawner -> agent: the pid once the process runs, then its result. */
export type SpawnerReply = {id: number; pid: number} | {id: number; result: ProcessResult}

if (!process.send) {
  process.stderr.write('spawner: started without an IPC channel (only the agent starts it)\n')
  process.exit(2)
}
const send = (m: SpawnerReply) => {
  // The agent is gone (disconnect follows): nobody to tell.
  if (process.connected) process.send!(m)
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => undefined)
process.on('disconnect', () => process.exit(0))
process.on('message', (m: SpawnerRequest) => {
  void startProcess(m.req, (pid) => send({id: m.id, pid})).then((result) => send({id: m.id, result}))
})
