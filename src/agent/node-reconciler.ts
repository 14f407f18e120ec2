// What every node does, manager or worker: its reconcilers read the store and
// drive this node (tasks, attachments, maps, reserved ports), and write nothing
// but their own tasks' status. Each step on its own: tasks that cannot start
// must not keep the maps from following the store, nor the reverse. A pass runs
// on every change (coalesced: soon()), and every few seconds to repair drift.
import type {AttachmentReconciler} from '../dataplane/attachments.js'
import type {Datapath} from '../dataplane/datapath.js'
import type {DrainAcks} from '../dataplane/drain-acks.js'
import {desiredMaps, type DesiredMaps} from '../dataplane/desired.js'
import {ReservedPorts} from '../dataplane/reserved-ports.js'
import type {TaskReconciler} from '../dataplane/tasks.js'
import type {NodeDns} from '../dns/node-dns.js'
import type {MembershipView} from '../membership/view.js'
import {attachmentAsTask} from '../model/attachment.js'
import type {NetworkAttachment} from '../model/types.js'
import type {ClusterReader} from '../store/cluster-reader.js'
import {prefixOf} from '../store/keys.js'
import type {Store} from '../store/store.js'

/** The drift repair's period. */
const PERIOD_MS = 3000
/** Changes within this window make one pass. */
const COALESCE_MS = 20

export type NodeReconcilerOptions = {
  selfId: string
  store: Store
  controller: ClusterReader
  tasks: TaskReconciler
  attachments: AttachmentReconciler
  datapath: Datapath
  dns: NodeDns
  /** Says which draining tasks the maps left out, after a sync that wrote everything. */
  drainAcks?: DrainAcks
  /** Who is down: their endpoints leave the maps. */
  liveness: MembershipView
  /** The node's addresses that answer published ports (node-addrs.ts NodeAddrs). */
  localAddrs: () => string[]
  log: (m: string) => void
  /** Each step's duration and outcome, for the metrics. */
  observeStep: (what: string, seconds: number, failed: boolean) => void
}

export class NodeReconciler {
  /** The maps as the last pass wanted them (the metrics read the endpoints from it). */
  lastDesired: DesiredMaps | undefined
  private busy = false
  private again = false
  private adopted = false
  private lastSyncErrors = ''
  private readonly reservedPorts = new ReservedPorts()
  private pending: NodeJS.Timeout | undefined
  private periodic: NodeJS.Timeout | undefined
  private stopped = false

  constructor(private readonly o: NodeReconcilerOptions) {}

  /** A pass shortly, one for all the changes until then. */
  soon(): void {
    if (!this.pending && !this.stopped)
      this.pending = setTimeout(() => ((this.pending = undefined), void this.reconcile()), COALESCE_MS)
  }

  /** The drift repair's timer. */
  start(): void {
    this.periodic ??= setInterval(() => void this.reconcile(), PERIOD_MS)
  }

  /** No pass is started from now on (one under way finishes). */
  stop(): void {
    this.stopped = true
    clearInterval(this.periodic)
    if (this.pending) clearTimeout(this.pending)
  }

  private async step(what: string, fn: () => unknown): Promise<void> {
    const t0 = process.hrtime.bigint()
    let failed = false
    try {
      await fn()
    } catch (e) {
      failed = true
      this.o.log(`reconcile ${what}: ${(e as Error).message}`)
    }
    this.o.observeStep(what, Number(process.hrtime.bigint() - t0) / 1e9, failed)
    // The event loop is let go between steps: a pass is several steps, passes come one after the
    // other while tasks start, and a step that returns at once only yields to microtasks, so a
    // whole pass could hold the loop (and SWIM's probes, which wait 120 ms) in one stretch.
    await new Promise<void>((resolve) => setImmediate(resolve))
  }

  private desired(): DesiredMaps {
    const {controller, store, tasks, attachments} = this.o
    return {
      ...desiredMaps({
        selfId: this.o.selfId,
        nodes: controller.nodes(),
        networks: controller.networks(),
        tasks: [...controller.tasks(), ...store.values<NetworkAttachment>(prefixOf('attachment')).map(attachmentAsTask)],
        local: [...tasks.localAttachments(), ...attachments.localAttachments()],
        membership: this.o.liveness,
        services: controller.services(),
        statuses: controller.statuses(),
        localGateways: tasks.localGateways(),
        localAddrs: this.o.localAddrs(),
      }),
      dns: this.o.dns.fastPath(),
    }
  }

  /** One pass now (or, while one runs, another right after it). */
  async reconcile(): Promise<void> {
    if (this.busy) {
      this.again = true
      return
    }
    this.busy = true
    const {tasks, attachments, datapath, log} = this.o
    try {
      do {
        this.again = false
        // A restarted agent first takes back the tasks and attachments still there: the maps
        // are written from what runs here, and the live ones must not leave them for a moment.
        if (!this.adopted) {
          await this.step('tasks', () => tasks.adopt())
          await this.step('attachments', () => attachments.reconcile())
          this.adopted = true
        }
        // Endpoints of a network this node is about to have a task on go in before the task
        // starts (its device entry goes in with its attachment), so its first frames find them.
        await this.step('maps', async () => {
          const want = this.desired()
          await datapath.prepareTables(want)
          datapath.sync(want)
        })
        await this.step('tasks', () => tasks.reconcile())
        await this.step('attachments', () => attachments.reconcile())
        await this.step('maps', async () => {
          const want = this.desired()
          await datapath.prepareTables(want)
          this.lastDesired = want
          const synced = datapath.sync(want)
          const errors = synced.errors.map((e) => `map ${e.map}: ${e.failed} entries not written: ${e.message}`).join('; ')
          if (errors !== this.lastSyncErrors) log(`reconcile: ${errors || 'all maps written again'}`)
          this.lastSyncErrors = errors
          if (!errors) this.o.drainAcks?.publish(want.drained ?? [])
          for (const line of await datapath.repair(want)) log(`drift: ${line}`)
          // Sockets sent at connect() to a backend that left the maps just now are ended.
          await datapath.endSockets()
        })
        // The node's own connections never take a published port as their source (its replies would be the mesh's).
        await this.step('ports', () =>
          this.reservedPorts.sync(new Set([...(this.lastDesired?.mesh?.ports.values() ?? [])].map((p) => p.port))),
        )
        // Attached means reachable: said only now that the maps carry the new attachments.
        // (Not a step of its own in the metrics: it only writes the statuses.)
        try {
          attachments.report()
        } catch (e) {
          log(`reconcile attachments: ${(e as Error).message}`)
        }
      } while (this.again)
    } finally {
      this.busy = false
    }
  }
}
