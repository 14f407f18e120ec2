// One agent per node: the agent holds an flock on <state dir>/agent.lock for as long as
// it runs. A second agent on the same state directory would apply gossip and write the
// same log beside the first, so it is refused before it opens anything. The kernel drops
// the lock with its holder, so an agent killed with -9 never leaves a stale one.
import {closeSync, openSync, readFileSync, writeSync, ftruncateSync} from 'node:fs'
import {join} from 'node:path'
import {UserError} from '../model/errors.js'
import {tryLockExclusive} from '../sys/flock.js'
import {stateDir} from './paths.js'

export const lockPath = (node: string) => join(stateDir(node), 'agent.lock')

/** The lock fds this process holds, by node: `releaseNode` (a handover) gives one up before the process ends. */
const held = new Map<string, number>()

/**
 * Takes the node's agent lock for the life of this process (the fd stays open); throws one line if
 * held. `waitMs`: how long to wait for a holder that is letting go (`agent --replace`).
 */
export async function lockNode(node: string, waitMs = 0): Promise<void> {
  const file = lockPath(node)
  const fd = openSync(file, 'a+', 0o600)
  const deadline = Date.now() + waitMs
  while (!tryLockExclusive(fd)) {
    if (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10))
      continue
    }
    closeSync(fd)
    const holder = readFileSync(file, 'utf8').trim()
    throw new UserError(`another agent of node ${node} is running on ${stateDir(node)}${holder ? ` (pid ${holder})` : ''}`)
  }
  ftruncateSync(fd, 0)
  writeSync(fd, `${process.pid}\n`, 0)
  held.set(node, fd)
}

/** Lets go of the node's lock: the next agent of the node may start. */
export function releaseNode(node: string): void {
  const fd = held.get(node)
  if (fd === undefined) return
  held.delete(node)
  closeSync(fd) // the kernel drops the flock with its last open file description
}
