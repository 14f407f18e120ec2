/**
 * Drain acknowledgements: a task stopped gracefully (src/tasks/stop.ts) gets its stop signal once
 * every node whose maps could still send it a new flow has said they no longer do, not after a
 * fixed time. Docker waits a fixed 2 s for gossip to converge; a node whose reconcile pass was
 * busy starting a task synced later than that, and a rolling update's stopped task refused the
 * connections that node still sent it.
 *
 * Each node writes `drained/<its id>` (its own key only: src/gossip/authority.ts): the draining
 * tasks (record shutdown, still running: desired.ts isDraining) on the networks its maps hold, as
 * its last complete map sync left them out of every table. The stopping node waits for every node
 * that holds one of the task's networks, is not down and whose agent is heard. A node without the
 * record (an agent from before it) is waited for by the clock, DRAIN_DELAY_MS, as before; a node
 * that never says so is waited for DRAIN_MAX_MS at most, then named in the log.
 */
import {DRAIN_DELAY_MS} from '../tasks/stop.js'
import type {MembershipView} from '../membership/view.js'
import type {Network, NodeRecord, Service, Task} from '../model/types.js'
import {keyOf, prefixOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import {holdsItsNetworks, servingNodes, type ClusterView} from './desired.js'
import {meshNetworkIds} from './mesh.js'

/** The longest a stop waits for the nodes' word before it goes on without it. */
export const DRAIN_MAX_MS = 10_000
/** The most task ids one record lists (the store's list bound): past it, the rest wait for DRAIN_MAX_MS. */
export const DRAINED_MAX = 4096
/** How often a wait looks again without a record arriving (a node declared down, the clock rules). */
const TICK_MS = 100

/** drained/<node id>: what that node's maps no longer pick. */
export type DrainedRecord = {
  /** Ids of draining tasks, sorted. */
  tasks: string[]
}

export const drainedKey = (nodeId: string) => keyOf('drained', nodeId)

/** This node's part: writes its record when the set its maps left out changes. */
export class DrainAcks {
  private last: string | undefined

  constructor(private readonly o: {store: Pick<Store, 'get' | 'put'>; selfId: string}) {}

  /** After a map sync that wrote everything: `ids` are the draining tasks it left out of every table. */
  publish(ids: readonly string[]): void {
    const tasks = [...ids].sort().slice(0, DRAINED_MAX)
    const text = tasks.join(',')
    if (text === this.last) return
    const key = drainedKey(this.o.selfId)
    // Written at the first pass even when empty: the record says the node acknowledges at all.
    if (this.o.store.get<DrainedRecord>(key)?.tasks.join(',') !== text) this.o.store.put(key, {tasks} satisfies DrainedRecord)
    this.last = text
  }
}

export interface DrainView {
  nodes(): NodeRecord[]
  networks(): Network[]
  /** Tasks and network attachments (as tasks): whatever makes a node hold a network. */
  tasks(): Task[]
  services(): Service[]
  statuses(): ClusterView['statuses']
}

/** How a wait ended. Node ids. */
export interface DrainOutcome {
  ms: number
  /** Said its maps leave the task out. */
  confirmed: string[]
  /** Has no record (an older agent): waited for by the clock. */
  byClock: string[]
  /** Did not say so within DRAIN_MAX_MS. */
  unconfirmed: string[]
}

interface Waiting {
  taskId: string
  started: number
  done: (o: DrainOutcome) => void
}

/** The stopping node's part: waits for the other nodes' records. */
export class DrainWait {
  private readonly waiting = new Set<Waiting>()
  private timer: NodeJS.Timeout | undefined
  private scheduled = false
  private readonly unsubscribe: () => void
  /** A record's list as a set, kept while the record is the one held. */
  private readonly sets = new WeakMap<DrainedRecord, Set<string>>()

  constructor(
    private readonly o: {
      selfId: string
      store: Pick<Store, 'get' | 'onChange'>
      view: DrainView
      membership: MembershipView
      now?: () => number
      maxMs?: number
      byClockMs?: number
    },
  ) {
    this.unsubscribe = o.store.onChange((key) => {
      if (key.startsWith(prefixOf('drained')) && this.waiting.size > 0) this.schedule()
    })
  }

  /** Resolves when every node that could pick the task for a new flow has said it no longer does. */
  wait(taskId: string): Promise<DrainOutcome> {
    return new Promise((done) => {
      this.waiting.add({taskId, started: this.now(), done})
      this.schedule()
      this.timer ??= setInterval(() => this.check(), TICK_MS)
    })
  }

  /**
   * No wait ends from now on: an agent that exits leaves its tasks running (the next agent takes
   * them back and stops them), so a stop under way must not go on to its signal.
   */
  stop(): void {
    this.unsubscribe()
    this.waiting.clear()
    clearInterval(this.timer)
    this.timer = undefined
  }

  private now(): number {
    return (this.o.now ?? Date.now)()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.check()
    })
  }

  private check(): void {
    if (this.waiting.size === 0) return
    const {view, membership} = this.o
    const nodes = view.nodes()
    const statuses = view.statuses()
    const serving = servingNodes({nodes, selfId: this.o.selfId, membership})
    // An agent not heard now cannot change its maps, however long it is waited for.
    const asked = [...serving.keys()].filter((id) => id === this.o.selfId || !membership.agentAway?.(id))
    const tasks = view.tasks()
    const v = {tasks, networks: view.networks(), services: view.services(), statuses}
    const mesh = new Set(meshNetworkIds(v))
    const holders = networkHolders(v, serving)
    const byId = new Map(tasks.map((t) => [t.id, t]))
    const now = this.now()
    for (const w of [...this.waiting]) {
      const ms = now - w.started
      const t = byId.get(w.taskId)
      // Its record gone (the manager deleted it) or meant to run again: no table leaves it out now.
      const nets = t && t.desiredState === 'shutdown' ? t.attachments.map((a) => a.networkId) : []
      const outcome: DrainOutcome = {ms, confirmed: [], byClock: [], unconfirmed: []}
      for (const id of asked) {
        if (!nets.some((n) => mesh.has(n) || holders.get(n)?.has(id))) continue
        const rec = this.o.store.get<DrainedRecord>(drainedKey(id))
        if (!rec) outcome.byClock.push(id)
        else if (this.setOf(rec).has(w.taskId)) outcome.confirmed.push(id)
        else outcome.unconfirmed.push(id)
      }
      const clockDone = outcome.byClock.length === 0 || ms >= (this.o.byClockMs ?? DRAIN_DELAY_MS)
      if ((outcome.unconfirmed.length === 0 && clockDone) || ms >= (this.o.maxMs ?? DRAIN_MAX_MS)) {
        this.waiting.delete(w)
        w.done(outcome)
      }
    }
    if (this.waiting.size === 0 && this.timer) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  private setOf(rec: DrainedRecord): Set<string> {
    let s = this.sets.get(rec)
    if (!s) this.sets.set(rec, (s = new Set(rec.tasks)))
    return s
  }
}

/** For each network, the serving nodes that hold it through a task (desired.ts heldNetworks, the mesh's aside). */
function networkHolders(
  v: Pick<ClusterView, 'tasks' | 'statuses'>,
  serving: ReadonlyMap<string, NodeRecord>,
): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const t of v.tasks) {
    if (!serving.has(t.nodeId) || !holdsItsNetworks(t, serving, v.statuses)) continue
    for (const a of t.attachments) {
      let s = out.get(a.networkId)
      if (!s) out.set(a.networkId, (s = new Set()))
      s.add(t.nodeId)
    }
  }
  return out
}
