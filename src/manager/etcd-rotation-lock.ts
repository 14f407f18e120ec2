// One cluster key rotation at a time across managers (issue 20): two rotations at once would
// each pick the next key id with bytes of their own and pull the nodes back and forth. A
// manager starts a rotation only while it holds lock/rotation in etcd, created only if absent
// and tied to a lease of its own: released when the rotation is done, and by etcd when the
// manager dies (the lease runs out). With the embedded store there is one manager: no lock.
import type {Lease, Namespace} from 'etcd3'
import {UserError, isUserError} from '../model/errors.js'
import type {KeyRotation} from '../gossip/rotation.js'
import {ROTATION_LOCK} from './etcd-keys.js'

/** How long a dead manager's lock outlives it. */
export const ROTATION_LOCK_TTL_SEC = 10

export interface RotationLock {
  /** Takes the lock, or throws one line naming the manager holding it. */
  acquire(): Promise<void>
  release(): Promise<void>
}

export class EtcdRotationLock implements RotationLock {
  private lease: Lease | undefined

  constructor(
    private readonly ns: Namespace,
    /** What the lock's value says to the manager that finds it taken (this node's name). */
    private readonly holder: string,
    private readonly log?: (m: string) => void,
    private readonly ttlSec = ROTATION_LOCK_TTL_SEC,
  ) {}

  async acquire(): Promise<void> {
    if (this.lease) throw new UserError('a key rotation is already under way on this manager')
    const lease = this.ns.lease(this.ttlSec)
    try {
      const id = await lease.grant()
      const r = await this.ns
        .if(ROTATION_LOCK, 'Create', '==', 0)
        .then(this.ns.put(ROTATION_LOCK).value(this.holder).lease(id))
        .commit()
      if (!r.succeeded) {
        const by = (await this.ns.get(ROTATION_LOCK).string()) ?? 'another manager'
        throw new UserError(`a key rotation is already under way, started by manager ${by}: try again once it is done`)
      }
    } catch (e) {
      await lease.revoke().catch(() => undefined)
      if (isUserError(e as Error)) throw e
      throw new UserError(`etcd cannot take the key rotation lock: ${((e as Error).message ?? String(e)).split('\n')[0]}`)
    }
    lease.on('lost', () => {
      if (this.lease === lease) this.log?.('keys: the rotation lock was lost (etcd unreachable): another rotation may start')
    })
    this.lease = lease
  }

  /** Revoking the lease deletes the lock. */
  async release(): Promise<void> {
    const lease = this.lease
    this.lease = undefined
    await lease?.revoke().catch(() => undefined)
  }
}

/**
 * Starts a rotation under the lock (when there is one): refused with one line while another
 * manager rotates; the lock is let go when the rotation is done (or could not start).
 */
export async function startRotation(
  rotation: KeyRotation,
  lock: RotationLock | undefined,
  graceMs?: number,
): Promise<{newId: number; oldId: number}> {
  if (rotation.busy) throw new UserError(`a key rotation is already under way (phase ${rotation.status().phase})`)
  await lock?.acquire()
  let started: {newId: number; oldId: number}
  try {
    started = rotation.start(graceMs)
  } catch (e) {
    await lock?.release()
    throw new UserError((e as Error).message)
  }
  if (lock) void rotation.until('idle').then(() => lock.release())
  return started
}
