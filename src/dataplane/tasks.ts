// Store -> the tasks of this node: their namespaces, links and processes.
// Idempotent: a restarted agent adopts the sandboxes and processes that are
// still there (they outlive it on purpose) and makes only what is missing.
import {readdirSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import {taskName} from '../model/task-name.js'
import {taskMtu} from '../model/allocate.js'
import {formatIpv4, parseCidr, parseIpv4} from '../model/ipv4.js'
import type {Network, NodeRecord, Service, Task, TaskStatus} from '../model/types.js'
import {keyOf, prefixOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import {ifindexOf, linkExists, listLinks} from '../sys/link.js'
import {findV1NodeDirs, killCgroup, nodeCgroupDirs, nodeCgroupV2Dir, removeIfEmpty} from '../sys/cgroup.js'
import {netnsExists} from '../sys/netns.js'
import {GWBRIDGE_GATEWAY, GWBRIDGE_IF, GWBRIDGE_PREFIX} from '../tasks/gwbridge.js'
import {setNoExit} from '../sys/nft-noexit.js'
import {ifindexOf as deviceIndex} from '../bpf/attach.js'
import {resolveUser} from '../tasks/user.js'
import {taskDir, tasksDir} from '../tasks/logs.js'
import {
  createTaskSandbox,
  destroyTaskSandbox,
  plumb,
  listTaskNetns,
  removeTaskCgroups,
  startTaskProcess,
  stopTaskProcess,
  taskNetnsName,
  verifyTaskPid,
} from '../tasks/runner.js'
import {Supervisor} from '../tasks/supervisor.js'
import {type MeshSource, meshSourceKey, meshSourcePorts, syncMeshSource} from '../tasks/mesh-source.js'
import {releaseRootfs, removeContainer, removeNodeContainers} from '../tasks/container.js'
import {selfArgv} from '../util/root.js'
import type {LocalAttachment} from './desired.js'
import type {DrainOutcome} from './drain-acks.js'
import {TASK_ID} from '../model/ids.js'
import {setTimeout as sleep} from 'node:timers/promises'
import {DRAIN_DELAY_MS, stopOf} from '../tasks/stop.js'
import {HealthChecker} from '../tasks/health.js'
import {taskExecArgv} from '../tasks/exec.js'
import {forEachLimited} from '../util/pool.js'

export interface TaskHooks {
  /** the task side of an overlay veth, before it moves into the task's namespace */
  preparePeer(peerIf: string): Promise<void>
  /** the host side of an overlay veth, once it exists and before the task's process starts */
  attachHost(hostIf: string, attachment: Task['attachments'][number]): Promise<void>
  /** the host side of the task's gateway-bridge veth, before the task's process starts (routing-mesh replies) */
  attachGateway?(hostIf: string): Promise<void>
  /** the host side of the task's gateway-bridge veth (the DNS fast path), before the task's process starts */
  attachGw?(gwIf: string): Promise<void>
}

interface Running {
  task: Task
  /** How it stops, read from its service when it started (a removed service's tasks still stop gracefully). */
  stop: {signal: NodeJS.Signals; graceMs: number}
  netns: string
  hostIfs: string[]
  local: LocalAttachment[]
  gwIfindex?: number
  /** The mesh source rules as last written (src/tasks/mesh-source.ts): null none, undefined not known (adopted, or a write failed). */
  meshSource?: MeshSource | null
  /** No default route through the gateway bridge (a task only on internal networks): no mesh source rules either. */
  internalOnly: boolean
}

/** How many tasks a node starts at once: enough to overlap their short-lived processes, few enough not to swamp a small node. */
const START_CONCURRENCY = 4
/** Statuses of removed tasks deleted per turn of the loop (removeOrphans). */
const ORPHAN_STATUS_SLICE = 32

/** The host side of a task's veth: overlay i, or 'g' for the gateway bridge. */
export const hostIfName = (taskId: string, i: number | 'g') => `sn-${taskId.slice(0, 8)}-${i}`
const subdirs = (dir: string) => {
  try {
    return readdirSync(dir)
  } catch {
    return []
  }
}

export class TaskReconciler {
  private readonly running = new Map<string, Running>()
  /** Gateway-bridge addresses of running tasks only on internal networks: what the node never forwards for. */
  private readonly noExit = new Map<string, string>()
  /** The set as last written (undefined: not since start, so written once whatever it holds). */
  private noExitWritten: string | undefined
  /** Tasks being stopped (drain, signal, grace): they keep their sandbox and endpoints until done. */
  private readonly stopping = new Set<string>()
  readonly supervisor: Supervisor
  /** This node's tasks' health checks (src/tasks/health.ts): their verdicts go into the tasks' statuses. */
  private readonly health: HealthChecker

  constructor(
    private readonly o: {
      node: string
      selfId: string
      store: Store
      stateDir: string
      underlayMtu: number
      hooks: TaskHooks
      log: (m: string) => void
      /** Asks for a reconcile pass: a task finished stopping (its endpoints leave the maps). */
      wake?: () => void
      /** From leaving the tables to the stop signal, without drainWait: DRAIN_DELAY_MS by default. */
      drainMs?: number
      /** Waits for the nodes to say their maps left the task out (src/dataplane/drain-acks.ts). */
      drainWait?: (taskId: string) => Promise<DrainOutcome>
    },
  ) {
    this.supervisor = new Supervisor({
      onEvent: (e) => {
        if (e.type === 'restarted') this.writeStatus(e.taskId, {state: 'running', pid: e.pid, restarts: e.restarts})
        else if (e.type === 'exited') this.writeStatus(e.taskId, {state: 'failed', message: 'process exited; restarting'})
        else this.writeStatus(e.taskId, {state: 'failed', restarts: e.restarts, message: e.error.message})
      },
    })
    this.supervisor.start()
    this.health = new HealthChecker({
      argvOf: (taskId, argv) => {
        const r = this.running.get(taskId)
        const pid = this.o.store.get<TaskStatus>(keyOf('taskstatus', taskId))?.pid
        return taskExecArgv({id: taskId, name: r ? taskName(r.task) : taskId, node: this.o.node, ...(pid ? {pid} : {})}, argv)
      },
      report: (taskId, health, output) => {
        const r = this.running.get(taskId)
        if (!r || this.stopping.has(taskId)) return
        this.o.log(
          `task ${taskName(r.task)}: ${health}${health === 'unhealthy' && output ? `: ${output.split('\n').pop()}` : ''}`,
        )
        this.writeStatus(taskId, {health})
      },
    })
  }

  /** The host sides of this node's tasks' gateway-bridge veths (host-mode published ports). */
  localGateways(): Array<{taskId: string; hostIfindex: number}> {
    return [...this.running.values()].flatMap((r) => (r.gwIfindex ? [{taskId: r.task.id, hostIfindex: r.gwIfindex}] : []))
  }

  /** What the map reconciler needs: (task, network) -> host-side ifindex, for the tasks here. */
  localAttachments(): LocalAttachment[] {
    return [...this.running.values()].flatMap((r) => r.local)
  }

  /**
   * A restarted agent's first step, before it writes any map: the tasks whose sandbox is still
   * there are taken back (their process adopted, or started again in it). The maps are written
   * from what is running here, so a sync before this would take the live tasks' entries out
   * until the next pass. Nothing new is started and nothing is stopped.
   */
  async adopt(): Promise<void> {
    const want = this.o.store
      .values<Task>(prefixOf('task'))
      .filter((t) => t.nodeId === this.o.selfId && t.desiredState === 'running' && !this.running.has(t.id))
    for (const t of want) {
      if (!netnsExists(taskNetnsName(this.o.node, t.id))) continue
      try {
        await this.start(t)
      } catch (e) {
        this.o.log(`task ${t.id.slice(0, 12)}: ${(e as Error).message}`)
      }
    }
  }

  async reconcile(): Promise<void> {
    const s = this.o.store
    const want = s.values<Task>(prefixOf('task')).filter((t) => t.nodeId === this.o.selfId && t.desiredState === 'running')
    const wantIds = new Set(want.map((t) => t.id))

    for (const [id, r] of this.running) {
      if (wantIds.has(id) || this.stopping.has(id)) continue
      // In the background: a grace period must not hold up the other tasks' starts and stops.
      this.stopping.add(id)
      void this.stopGracefully(id, r)
        .catch((e: Error) => this.o.log(`task ${id.slice(0, 12)}: ${e.message}`))
        .finally(() => {
          this.stopping.delete(id)
          this.o.wake?.()
        })
    }
    await this.removeOrphans(new Set([...wantIds, ...this.stopping]))
    for (const [id, r] of this.running) await this.replugMissing(id, r)
    for (const t of want) {
      const r = this.running.get(t.id)
      if (r && t.attachments.length > r.task.attachments.length) await this.plugAdded(r, t)
    }
    // Several at once: a start mostly waits on short-lived `ip` and sandbox processes, and one
    // at a time a node with hundreds of new tasks took about a second each (issue 24).
    await forEachLimited(
      want.filter((t) => !this.running.has(t.id)),
      START_CONCURRENCY,
      async (t) => {
        try {
          await this.start(t)
        } catch (e) {
          this.o.log(`task ${t.id.slice(0, 12)}: ${(e as Error).message}`)
          this.writeStatus(t.id, {state: 'failed', message: (e as Error).message})
        }
      },
    )
    // After the starts: a new task's rules before much of its traffic, and a publish-add/rm reaches the running ones.
    for (const t of want) {
      const r = this.running.get(t.id)
      if (r && !this.stopping.has(t.id)) await this.syncMeshSource(r, t)
    }
    // Written once after start even when empty: an address a task held before a restart is not kept out.
    for (const id of this.noExit.keys()) if (!wantIds.has(id)) this.noExit.delete(id)
    await this.syncNoExit().catch((e: Error) => this.o.log(`no-exit set: ${e.message}`))
  }

  private async start(t: Task): Promise<void> {
    const s = this.o.store
    const svc = s.get<Service>(keyOf('service', t.serviceId))
    if (!svc) return
    const nets = t.attachments.map((a) => s.get<Network>(keyOf('network', a.networkId)))
    if (nets.some((n) => !n)) return // the network has not arrived yet: a later change retries
    // An image's task's user is the image's to resolve (its /etc/passwd), on each start; a command's the node's.
    const user = svc.user && !svc.container?.image ? await resolveUser(svc.user) : undefined
    const netns = taskNetnsName(this.o.node, t.id)
    const hostIfs = t.attachments.map((_a, i) => hostIfName(t.id, i))
    const gwIf = hostIfName(t.id, 'g')
    const prev = s.get<TaskStatus>(keyOf('taskstatus', t.id))
    // Once per start: a second call with the same stale prev could pick another free address.
    const gwIp = this.gwAddress(t.id, prev)
    // Docker's rule (Sandbox.NeedDefaultGW): a way out only through a network that is not internal.
    const internalOnly = nets.length > 0 && nets.every((n) => n!.internal === true)
    if (internalOnly) {
      // Before the process can send anything: it is in the set before it runs.
      this.noExit.set(t.id, gwIp)
      await this.syncNoExit()
    }

    let adopted = false
    if (netnsExists(netns) && (await Promise.all(hostIfs.map((h) => linkExists(h)))).every(Boolean)) {
      adopted = true // a sandbox from before the agent restarted
    } else {
      if (netnsExists(netns)) await destroyTaskSandbox(netns, [...hostIfs, gwIf])
      this.writeStatus(t.id, {state: 'starting'})
      await createTaskSandbox({
        node: this.o.node,
        taskId: t.id,
        netns,
        attachments: t.attachments.map((a, i) => ({
          hostIf: hostIfs[i]!,
          ip: a.ip,
          prefixLen: parseCidr(nets[i]!.subnet).prefix,
          mac: a.mac,
          mtu: taskMtu(nets[i]!),
        })),
        gw: {ip: gwIp, prefixLen: GWBRIDGE_PREFIX, gatewayIp: GWBRIDGE_GATEWAY, hostIf: gwIf, defaultRoute: !internalOnly},
        hooks: {beforeMove: (_host, peer) => this.o.hooks.preparePeer(peer)},
      })
    }
    for (const [i, h] of hostIfs.entries()) await this.o.hooks.attachHost(h, t.attachments[i]!)
    await this.o.hooks.attachGw?.(gwIf)
    const local: LocalAttachment[] = []
    for (const [i, a] of t.attachments.entries())
      local.push({taskId: t.id, networkId: a.networkId, hostIfindex: await ifindexOf(hostIfs[i]!)})
    let gwIfindex: number | undefined
    if (this.o.hooks.attachGateway && (await linkExists(gwIf))) {
      await this.o.hooks.attachGateway(gwIf)
      gwIfindex = await ifindexOf(gwIf)
    }
    this.running.set(t.id, {
      task: t,
      stop: stopOf(svc),
      netns,
      hostIfs: [...hostIfs, gwIf],
      local,
      ...(gwIfindex ? {gwIfindex} : {}),
      // A new sandbox has none; an adopted one's are read before they are written.
      ...(adopted ? {} : {meshSource: null}),
      internalOnly,
    })
    await this.syncMeshSource(this.running.get(t.id)!, t)

    const name = taskName(t)
    const spawn = async () =>
      (
        await startTaskProcess({
          node: this.o.node,
          taskId: t.id,
          netns,
          name,
          // Overlay addresses first, then the gateway bridge's: every task's name resolves to an address of its own.
          ips: [...t.attachments.map((a) => a.ip), gwIp],
          argv: svc.command.length > 0 || svc.container?.image ? svc.command : [...selfArgv(), 'whoami', '--port', '80'],
          env: {SWARMNET_TASK_NAME: name, SWARMNET_TASK_ID: t.id},
          dir: taskDir(this.o.node, t.id),
          ...(user ? {user} : {}),
          ...(svc.limits ? {limits: svc.limits} : {}),
          ...(svc.container ? {container: {...svc.container, ...(svc.user ? {user: svc.user} : {})}} : {}),
        })
      ).pid
    // After an agent restart only the pid is known: it is adopted if it is in the task's cgroup.
    let pid = adopted && prev?.pid && verifyTaskPid(this.o.node, t.id, prev.pid) ? prev.pid : undefined
    if (!pid) {
      try {
        pid = await spawn()
      } catch (e) {
        // Watched all the same (a pid that is never alive), so the supervisor tries again with backoff.
        this.supervisor.watch(t.id, -1, spawn, prev?.restarts ?? 0)
        throw e
      }
    }
    const restarts = prev?.restarts ?? 0
    this.supervisor.watch(t.id, pid, spawn, restarts)
    // With a check, a task serves only once it has passed one (an adopted task keeps its verdict).
    const health = svc.healthcheck ? (adopted && prev?.health ? prev.health : 'starting') : undefined
    if (svc.healthcheck) this.health.watch(t.id, svc.healthcheck, health)
    this.writeStatus(t.id, {state: 'running', pid, netns, restarts, gwIp, health})
    this.o.log(`task ${svc.name}.${t.slot} ${adopted ? 'adopted' : 'started'} (pid ${pid}, ${netns})`)
  }

  /**
   * A connected UDP server on a target port published in mode=ingress answers from the task's
   * ingress address (src/tasks/mesh-source.ts). Writes only when the wanted rules differ from
   * the last written, so a pass with no port change starts no process.
   */
  private async syncMeshSource(r: Running, t: Task): Promise<void> {
    const s = this.o.store
    const svc = s.get<Service>(keyOf('service', t.serviceId))
    const ingress = t.attachments.find((a) => s.get<Network>(keyOf('network', a.networkId))?.ingress === true)
    // Rules are only ever written for a task on the ingress network: an adopted one off it has none to read.
    if (!ingress && r.meshSource === undefined) r.meshSource = null
    const ports = svc && ingress && !r.internalOnly ? meshSourcePorts(svc.ports ?? []) : []
    const want: MeshSource | null =
      ports.length > 0 && ingress ? {ingressIp: ingress.ip, gatewayIp: GWBRIDGE_GATEWAY, ports} : null
    if (r.meshSource !== undefined && meshSourceKey(r.meshSource ?? undefined) === meshSourceKey(want ?? undefined)) return
    try {
      await syncMeshSource(r.netns, want ?? undefined, r.meshSource)
      r.meshSource = want
    } catch (e) {
      r.meshSource = undefined // read again next pass
      this.o.log(`task ${t.id.slice(0, 12)}: mesh source rules: ${(e as Error).message}`)
    }
  }

  /**
   * Drift: an overlay veth of a running task deleted by hand (which takes its task end with it)
   * is made again in the task's namespace, with the same name, address and MAC, and attached
   * again; the task's process keeps running. The existence check is one if_nametoindex per link.
   */
  private async replugMissing(id: string, r: Running): Promise<void> {
    const t = r.task
    for (const [i, a] of t.attachments.entries()) {
      const hostIf = hostIfName(id, i)
      try {
        deviceIndex(hostIf)
        continue
      } catch {
        // gone: make it again below
      }
      const net = this.o.store.get<Network>(keyOf('network', a.networkId))
      if (!net || !netnsExists(r.netns)) continue
      try {
        await plumb({
          hostIf,
          netns: r.netns,
          ifname: `eth${i}`,
          mtu: taskMtu(net),
          mac: a.mac,
          cidr: `${a.ip}/${parseCidr(net.subnet).prefix}`,
          beforeMove: (_host, peer) => this.o.hooks.preparePeer(peer),
        })
        await this.o.hooks.attachHost(hostIf, a)
        const ifindex = await ifindexOf(hostIf)
        r.local = r.local.map((l) => (l.networkId === a.networkId ? {...l, hostIfindex: ifindex} : l))
        this.o.log(`task ${t.serviceName}.${t.slot}: ${hostIf} was gone: made again`)
      } catch (e) {
        this.o.log(`task ${t.serviceName}.${t.slot}: cannot make ${hostIf} again: ${(e as Error).message}`)
      }
    }
  }

  /**
   * A running task the manager gave an address on one more network (service update
   * --network-add): the new attachments are appended to its record, so each is plugged into the
   * task's namespace as it would have been at start (same host-side name by index, tc attached
   * before it carries anything), under the next free ethN inside (the gateway bridge's veth holds
   * the one after the first attachments). The process keeps running; what listens on every
   * address answers there at once.
   */
  private async plugAdded(r: Running, t: Task): Promise<void> {
    for (let i = r.task.attachments.length; i < t.attachments.length; i++) {
      const a = t.attachments[i]!
      const hostIf = hostIfName(t.id, i)
      const net = this.o.store.get<Network>(keyOf('network', a.networkId))
      if (!net || !netnsExists(r.netns)) return // the network has not arrived yet: a later pass plugs it
      try {
        if (!(await linkExists(hostIf))) {
          const inside = new Set((await listLinks('', r.netns)).map((l) => l.ifname))
          let n = 0
          while (inside.has(`eth${n}`)) n++
          await plumb({
            hostIf,
            netns: r.netns,
            ifname: `eth${n}`,
            mtu: taskMtu(net),
            mac: a.mac,
            cidr: `${a.ip}/${parseCidr(net.subnet).prefix}`,
            beforeMove: (_host, peer) => this.o.hooks.preparePeer(peer),
          })
        }
        await this.o.hooks.attachHost(hostIf, a)
        r.local.push({taskId: t.id, networkId: a.networkId, hostIfindex: await ifindexOf(hostIf)})
        r.hostIfs.push(hostIf)
        r.task = {...r.task, attachments: [...r.task.attachments, a]}
        this.o.log(`task ${t.serviceName}.${t.slot}: plugged into network ${net.name} (${a.ip})`)
      } catch (e) {
        this.o.log(`task ${t.serviceName}.${t.slot}: cannot plug into network ${net.name}: ${(e as Error).message}`)
        return
      }
    }
  }

  /**
   * A task this node is to stop (src/tasks/stop.ts). While its record says 'shutdown' it is out
   * of every table and DNS answer but keeps its endpoint: wait for the other nodes to have synced
   * that, then the stop signal, SIGKILL after the grace period. A task whose record is gone (the
   * manager deleted it: it never ran, or an older manager) is in no table already: no wait.
   */
  private async stopGracefully(id: string, r: Running): Promise<void> {
    this.health.unwatch(id)
    const rec = this.o.store.get<Task>(keyOf('task', id))
    if (rec?.desiredState === 'shutdown') {
      const name = `task ${r.task.serviceName}.${r.task.slot}`
      if (this.o.drainWait) {
        this.o.log(`${name}: out of the load balancer and DNS; ${r.stop.signal} once every node's maps say so`)
        this.o.log(`${name}: ${this.describeDrain(await this.o.drainWait(id))}; ${r.stop.signal} now`)
      } else {
        this.o.log(`${name}: out of the load balancer and DNS; ${r.stop.signal} in ${this.o.drainMs ?? DRAIN_DELAY_MS} ms`)
        await sleep(this.o.drainMs ?? DRAIN_DELAY_MS)
      }
    }
    await this.remove(id, r, r.stop)
  }

  private describeDrain(o: DrainOutcome): string {
    const names = (ids: string[]) => ids.map((id) => this.o.store.get<NodeRecord>(keyOf('node', id))?.name ?? id).join(', ')
    const parts = [`drained in ${o.ms} ms: confirmed by ${o.confirmed.length > 0 ? names(o.confirmed) : 'no node'}`]
    if (o.byClock.length > 0) parts.push(`${names(o.byClock)} (no acknowledgements) waited for by the clock`)
    if (o.unconfirmed.length > 0) parts.push(`not confirmed by ${names(o.unconfirmed)}`)
    return parts.join('; ')
  }

  private async remove(id: string, r: Running, stop?: Running['stop']): Promise<void> {
    this.supervisor.unwatch(id)
    this.health.unwatch(id)
    const st = this.o.store.get<TaskStatus>(keyOf('taskstatus', id))
    const init = st?.pid ? verifyTaskPid(this.o.node, id, st.pid) : undefined
    await stopTaskProcess(this.o.node, id, init, stop?.graceMs, stop?.signal)
    await destroyTaskSandbox(r.netns, r.hostIfs)
    // On libuv's threads: a task's directory holds its root (a command task's files, an image
    // task's mounts' points), and removing it with rmSync held the loop ~2.3 s per agent over 300.
    await rm(taskDir(this.o.node, id), {recursive: true, force: true})
    this.running.delete(id)
    if (this.noExit.delete(id)) await this.syncNoExit()
    this.o.store.delete(keyOf('taskstatus', id))
    this.o.log(`task ${r.task.serviceName}.${r.task.slot} removed`)
  }

  /**
   * What this node made for tasks it no longer has (left by a crash between create and record,
   * or by an agent that was killed): namespaces by exact name, cgroups and task directories by id.
   */
  private async removeOrphans(keep: Set<string>): Promise<void> {
    const claimed = new Set([...keep].map((id) => taskNetnsName(this.o.node, id)))
    for (const ns of listTaskNetns(this.o.node)) {
      if (claimed.has(ns)) continue
      this.o.log(`removing orphaned sandbox ${ns}`)
      await destroyTaskSandbox(ns, []).catch((e: Error) => this.o.log(`cannot remove ${ns}: ${e.message}`))
    }
    for (const id of subdirs(nodeCgroupV2Dir(this.o.node))) {
      if (!TASK_ID.test(id) || keep.has(id) || this.running.has(id)) continue
      this.o.log(`removing orphaned cgroup of task ${id.slice(0, 12)}`)
      try {
        if (!(await killCgroup(join(nodeCgroupV2Dir(this.o.node), id)))) throw new Error('processes survived cgroup.kill')
        await removeContainer(this.o.node, id)
        await removeTaskCgroups(this.o.node, id)
      } catch (e) {
        this.o.log(`cannot remove the cgroup of task ${id.slice(0, 12)}: ${(e as Error).message}`)
      }
    }
    for (const f of subdirs(tasksDir(this.o.node))) {
      // <id> directories, and <id>.log files from before tasks had a directory.
      const id = f.replace(/\.log$/, '')
      if (!TASK_ID.test(id) || keep.has(id) || this.running.has(id)) continue
      await releaseRootfs(join(tasksDir(this.o.node), f)).catch((e: Error) => this.o.log(e.message))
      await rm(join(tasksDir(this.o.node), f), {recursive: true, force: true})
    }
    // The status of a task this node no longer has (stopped by an earlier run, or replaced while the
    // node was down): gone, so the manager sees it stopped and can free its addresses.
    // A few at a time, the loop let go between: each delete is signed, logged and told to every
    // listener, and after a mass removal hundreds at once held the loop ~130 ms (issue 24).
    const gone = this.o.store
      .values<TaskStatus>(prefixOf('taskstatus'))
      .filter((st) => st.nodeId === this.o.selfId && !keep.has(st.taskId))
      .map((st) => st.taskId)
    for (let i = 0; i < gone.length; i++) {
      if (i > 0 && i % ORPHAN_STATUS_SLICE === 0) await new Promise<void>((r) => setImmediate(r))
      const id = gone[i]!
      // Looked at again after each turn: a task started meanwhile keeps its status.
      if (!this.running.has(id) && this.o.store.get<TaskStatus>(keyOf('taskstatus', id))?.nodeId === this.o.selfId)
        this.o.store.delete(keyOf('taskstatus', id))
    }
  }

  /** Stops and removes every task of this node (leave). */
  async removeAll(): Promise<void> {
    for (const [id, r] of this.running) await this.remove(id, r).catch((e: Error) => this.o.log(e.message))
    await this.removeOrphans(new Set())
    await removeNodeContainers(this.o.node)
    // The node's own cgroup levels go too, unless something else still lives there (the lab's agent).
    const dirs = nodeCgroupDirs(this.o.node)
    for (const d of [dirs.v2, ...findV1NodeDirs(this.o.node)]) removeIfEmpty(d)
    this.supervisor.stop()
    this.health.stop()
  }

  stop(): void {
    this.supervisor.stop()
    this.health.stop()
  }

  /** The node's no-exit set made what this.noExit says, when that differs from what was written. */
  private async syncNoExit(): Promise<void> {
    const addrs = [...new Set(this.noExit.values())].sort()
    const sig = addrs.join(',')
    if (sig === this.noExitWritten) return
    await setNoExit(GWBRIDGE_IF, addrs)
    this.noExitWritten = sig
  }

  /**
   * The task's address on the node-local gateway bridge: kept in its status so a
   * restarted agent gives it the same one; else the lowest free.
   */
  private gwAddress(taskId: string, prev: TaskStatus | undefined): string {
    if (prev?.gwIp) return prev.gwIp
    const used = new Set(
      this.o.store
        .values<TaskStatus>(prefixOf('taskstatus'))
        .filter((x) => x.nodeId === this.o.selfId && x.taskId !== taskId && x.gwIp)
        .map((x) => x.gwIp!),
    )
    const base = parseIpv4(GWBRIDGE_GATEWAY)
    for (let i = 1; i < (1 << (32 - GWBRIDGE_PREFIX)) - 2; i++) {
      const ip = formatIpv4(base + i)
      if (!used.has(ip)) {
        this.writeStatus(taskId, {gwIp: ip})
        return ip
      }
    }
    throw new Error('the gateway bridge has no free address left')
  }

  private writeStatus(taskId: string, patch: Partial<TaskStatus>): void {
    const key = keyOf('taskstatus', taskId)
    const prev = this.o.store.get<TaskStatus>(key)
    if (!this.o.store.get<Task>(keyOf('task', taskId))) return
    const next: TaskStatus = {
      taskId,
      nodeId: this.o.selfId,
      state: 'new',
      restarts: 0,
      ...prev,
      ...patch,
      updatedAt: Date.now(),
    }
    if (patch.state === 'running' && patch.message === undefined) delete next.message
    // No check (any more): no verdict, rather than one left from before.
    if ('health' in patch && patch.health === undefined) delete next.health
    this.o.store.put(key, next)
  }
}
