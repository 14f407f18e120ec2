// `network connect` and `disconnect` answer once the node that wires the namespace (this one,
// or another with --node) has done it, as `docker network connect` does. The agent API does
// not touch links: it writes the attachment (through the manager), then waits for that node's
// report in the store (src/dataplane/attachments.ts): its status 'attached' (the namespace has
// its address, its route and its endpoint in the maps), 'failed' or 'gone'; and on disconnect,
// the status removed, which the node does once the veth is gone.
import {UserError} from '../model/errors.js'
import type {ConnectRequest, Manager} from '../manager/manager.js'
import type {NetworkAttachment} from '../model/types.js'
import type {ClusterReader} from '../store/cluster-reader.js'

/** How long a command waits for the node by default (`--timeout`). */
export const DEFAULT_ATTACH_TIMEOUT_MS = 30_000
/** The most a caller may ask for: a command, not a daemon. */
export const MAX_ATTACH_TIMEOUT_MS = 600_000

export interface AttachWaitContext {
  controller: ClusterReader
  write<T>(fn: (m: Manager) => T): Promise<T>
  /** Calls fn after every change of the node's store; returns the unsubscribe function. */
  changes(fn: () => void): () => void
  durable?: () => Promise<void>
}

/**
 * Resolves with check()'s first defined answer, checked now and after every store change;
 * undefined once timeoutMs has passed without one.
 */
export function waitFor<T>(
  changes: AttachWaitContext['changes'],
  check: () => T | undefined,
  timeoutMs: number,
): Promise<T | undefined> {
  return new Promise((resolve) => {
    let done = false
    const finish = (v: T | undefined) => {
      if (done) return
      done = true
      clearTimeout(timer)
      unsubscribe()
      resolve(v)
    }
    const timer = setTimeout(() => finish(undefined), timeoutMs)
    // A check that throws is a bug of ours, not an answer: it counts as not yet.
    const look = () => {
      try {
        const v = check()
        if (v !== undefined) finish(v)
      } catch {
        /* checked again on the next change */
      }
    }
    const unsubscribe = changes(look)
    look()
  })
}

/**
 * Writes the attachment and waits for its node to attach it. When the node cannot (or says
 * nothing within timeoutMs), the attachment is removed again and the one-line error says why:
 * nothing stays, neither the record nor (its node removes it with the record) a link.
 */
export async function connectAndWait(ctx: AttachWaitContext, req: ConnectRequest, timeoutMs: number): Promise<NetworkAttachment> {
  const att = await ctx.write((m) => m.connect(req))
  const c = ctx.controller
  const nodeName = c.nodes().find((n) => n.id === att.nodeId)?.name ?? att.nodeId
  let seen = false
  const outcome = await waitFor<{ok: true} | {ok: false; why: string}>(
    ctx.changes,
    () => {
      const st = c.attachmentStatus(att.id)
      if (st?.state === 'attached') return {ok: true}
      if (st?.state === 'failed' || st?.state === 'gone') return {ok: false, why: st.message ?? st.state}
      // An etcd cluster's record reaches this node's store a moment after the write.
      const present = c.attachments().some((a) => a.id === att.id)
      if (present) seen = true
      else if (seen) return {ok: false, why: 'the attachment was removed while it was made'}
      return undefined
    },
    timeoutMs,
  )
  if (outcome?.ok) return att
  await ctx
    .write((m) => {
      if (m.attachments().some((a) => a.id === att.id)) m.disconnect(att.networkId, att.id)
    })
    .catch(() => undefined) // already removed (the manager reaps a gone namespace): nothing to undo
  await ctx.durable?.()
  if (outcome === undefined)
    throw new UserError(
      `node ${nodeName} did not attach ${att.netns} within ${timeoutMs / 1000} s (is its agent running?): nothing was attached`,
    )
  throw new UserError(`node ${nodeName} cannot attach ${att.netns}: ${outcome.why}`)
}

/**
 * Removes the attachment and waits until its node has removed the interface (its status
 * gone). A node that does not answer in time gets a one-line error: the attachment is
 * removed all the same, and its node removes the interface when its agent runs again.
 */
export async function disconnectAndWait(
  ctx: AttachWaitContext,
  network: string,
  ref: string,
  timeoutMs: number,
): Promise<NetworkAttachment> {
  const att = await ctx.write((m) => m.disconnect(network, ref))
  const c = ctx.controller
  const gone = await waitFor(ctx.changes, () => (c.attachmentStatus(att.id) === undefined ? true : undefined), timeoutMs)
  if (gone) return att
  await ctx.durable?.()
  const nodeName = c.nodes().find((n) => n.id === att.nodeId)?.name ?? att.nodeId
  throw new UserError(
    `node ${nodeName} did not remove the interface of ${att.name} within ${timeoutMs / 1000} s (is its agent running?): ` +
      'the attachment is removed, and the interface goes when that agent runs again',
  )
}

/** The `timeoutMs` of a request, checked: a whole number of ms up to MAX_ATTACH_TIMEOUT_MS. */
export function attachTimeout(v: unknown): number {
  if (v === undefined || v === null) return DEFAULT_ATTACH_TIMEOUT_MS
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_ATTACH_TIMEOUT_MS)
    throw new UserError(`'timeoutMs' must be a whole number of milliseconds from 1 to ${MAX_ATTACH_TIMEOUT_MS}`)
  return v
}
