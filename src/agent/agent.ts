// One node, wired together: store, gossip, the reconcilers (maps, tasks) and
// the local API. Control flows one way: API -> controller -> store -> gossip
// and reconcilers. A restarted agent reads its store and reconciles again;
// the data plane and the tasks keep going while it is away.
import {mkdirSync, rmSync, writeFileSync} from 'node:fs'
import type {Server} from 'node:http'
import {Gossip, type Peer} from '../gossip/gossip.js'
import {parseToken, rotateToken} from '../gossip/token.js'
import type {NodeRecord} from '../model/types.js'
import {keyOf, prefixOf} from '../store/keys.js'
import {ifindexOf, mtuOf} from '../sys/link.js'
import {ensureGwBridge, removeGwBridge} from '../tasks/gwbridge.js'
import {Datapath} from '../dataplane/datapath.js'
import {desiredMaps} from '../dataplane/desired.js'
import {TaskReconciler, type TaskHooks} from '../dataplane/tasks.js'
import {AttachmentReconciler} from '../dataplane/attachments.js'
import {attachmentAsTask} from '../model/attachment.js'
import type {NetworkAttachment, Task, TaskStatus} from '../model/types.js'
import {readCounters} from '../bpf/counters.js'
import {MIRRORED, type DesiredMaps} from '../dataplane/desired.js'
import {AgentMetrics} from '../metrics/agent-metrics.js'
import {DEFAULT_METRICS_ADDR, parseMetricsAddr, serveMetrics} from '../metrics/server.js'
import {startApi} from './api.js'
import {clusterKeyring, readNodeConfig, writeNodeConfig} from './config.js'
import {UserError} from '../model/errors.js'
import {Manager} from '../manager/manager.js'
import {startManagerLoop, type ManagerLoop} from '../manager/loop.js'
import {Controller} from './controller.js'
import {Membership} from '../membership/swim.js'
import {nodeStatus} from '../membership/state.js'
import {openNodeStore} from './node-store.js'
import {pidPath, socketPath, stateDir} from './paths.js'
import {NodeDns} from '../dns/node-dns.js'

export interface AgentHandle {
  stop(): Promise<void>
  done: Promise<void>
}

export interface AgentOptions {
  /** HOST:PORT of the Prometheus endpoint; '' for none. Default DEFAULT_METRICS_ADDR. */
  metricsAddr?: string
}

export async function runAgent(node: string, log: (m: string) => void, opts: AgentOptions = {}): Promise<AgentHandle> {
  const metricsAt = parseMetricsAddr(opts.metricsAddr ?? DEFAULT_METRICS_ADDR)
  const cfg = readNodeConfig(node)
  if (!cfg) throw new Error(`node ${node} is not part of a cluster: run \`swarmnet init\` or \`swarmnet join\` first`)
  if (!cfg.nodeKey || !cfg.cert || !cfg.clusterIdentity)
    throw new Error(`node ${node} was set up before gossip was signed: run \`swarmnet leave\` and join again`)
  const nodeKey = cfg.nodeKey
  mkdirSync(stateDir(node), {recursive: true, mode: 0o700})
  const store = openNodeStore(node, cfg.nodeId)
  if (store.refused > 0) log(`store: left out ${store.refused} malformed value(s) of the state file (last: ${store.lastRefusal})`)
  const controller = new Controller(store, cfg.nodeId)
  // Only the manager writes desired state; a worker's API refuses writes (see writer below).
  // Replaced only once down for the reschedule delay: a restarting agent keeps its tasks.
  const manager =
    cfg.role === 'manager'
      ? new Manager(store, cfg.nodeId, {isDown: (id) => membership.downFor(id) >= membership.cfg.rescheduleDelayMs})
      : undefined
  const cluster = controller.cluster()

  // This node as the cluster should see it: ready, at its current address.
  const mtu = await mtuOf(cfg.underlay)
  const self = store.get<NodeRecord>(keyOf('node', cfg.nodeId))
  const me: NodeRecord = {
    id: cfg.nodeId,
    name: cfg.name,
    addr: cfg.advertiseAddr,
    gossipPort: cfg.gossipPort,
    role: cfg.role,
    state: 'ready',
    mtu,
    joinedAt: self?.joinedAt ?? Date.now(),
    pubKey: nodeKey.publicKey,
    cert: cfg.cert,
  }
  if (JSON.stringify(self) !== JSON.stringify(me)) store.put(keyOf('node', cfg.nodeId), me)

  const gw = await ensureGwBridge()
  manager?.ensureGwbridge(gw.subnet, gw.gatewayIp)

  const datapath = Datapath.open({node, underlay: cfg.underlay, xdpMode: cfg.xdpMode})
  datapath.setConfig({
    nodeIp: cfg.advertiseAddr,
    vxlanPort: cluster.dataPathPort,
    underlayIfindex: await ifindexOf(cfg.underlay),
  })

  const hooks: TaskHooks = {
    preparePeer: async (peerIf) => datapath.preparePeer(peerIf),
    attachHost: async (hostIf, a) => {
      const vni = controller.networks().find((n) => n.id === a.networkId)?.vni
      if (vni === undefined) throw new Error(`network ${a.networkId} of ${hostIf} is not an overlay network`)
      datapath.attachTask(hostIf, {vni, ip: a.ip})
    },
    // The DNS fast path is a shortcut: without it the task's questions reach the responder all the same.
    attachGw: async (gwIf) => {
      try {
        datapath.attachDns(gwIf)
      } catch (e) {
        log(`dns: no fast path on ${gwIf}: ${(e as Error).message}`)
      }
    },
  }
  const tasks = new TaskReconciler({node, selfId: cfg.nodeId, store, stateDir: stateDir(node), underlayMtu: mtu, log, hooks})
  // Namespaces attached with `network connect`: to the data plane, tasks without a process.
  const attachments = new AttachmentReconciler({node, selfId: cfg.nodeId, store, hooks, log})

  const peers = (): Peer[] =>
    store
      .values<NodeRecord>(prefixOf('node'))
      .filter((n) => n.id !== cfg.nodeId && n.state !== 'left' && !membership.isDown(n.id))
      .map((n) => ({id: n.id, addr: n.addr, port: n.gossipPort}))

  const gossip = new Gossip({
    store,
    nodeId: cfg.nodeId,
    bindAddr: cfg.bindAddr,
    port: cfg.gossipPort,
    key: clusterKeyring(cfg),
    peers,
    identity: cfg.clusterIdentity,
    nodeKey,
    ...(cfg.role === 'manager' && cfg.identity && cfg.token
      ? {join: {identity: cfg.identity, tokens: () => [{token: parseToken(cfg.token!), role: 'worker' as const}]}}
      : {}),
  })
  // Liveness, in memory: who is a member is the store's node records; who is up is this.
  const membership = new Membership({
    self: {id: cfg.nodeId, addr: cfg.advertiseAddr, port: cfg.gossipPort},
    incarnation: gossip.epoch,
    net: {send: (to, m) => gossip.sendSwim(to, m)},
    config: cfg.membership,
  })
  gossip.onSwim = (m, from, addr) => membership.receive(m, from, addr)
  const dns = new NodeDns({selfId: cfg.nodeId, store, cluster, addr: gw.gatewayIp, membership, log})
  dns.fastPathHits = () => Number(readCounters(datapath.maps.stats).dns_fast_answer)
  const unwatchDns = membership.onChange(() => dns.invalidate())
  const roster = () =>
    membership.setRoster(controller.nodes().map((n) => ({id: n.id, addr: n.addr, port: n.gossipPort, left: n.state === 'left'})))
  roster()
  await gossip.start()
  membership.start()

  // This node's reconcilers: they read the store and drive this node, and write
  // nothing but their own tasks' status. Each step on its own: tasks that cannot
  // start must not keep the maps from following the store, nor the reverse.
  // On every change, coalesced; and every few seconds to repair drift.
  let lastDesired: DesiredMaps | undefined
  const metrics = new AgentMetrics(node, {
    counters: () => readCounters(datapath.maps.stats),
    maps: () => MIRRORED.map((m) => ({map: m, entries: datapath.maps[m].entries().length, max: datapath.maps[m].maxEntries})),
    gossip: () => gossip.stats,
    nodeStates: () => controller.nodes().map((n) => n.state),
    tasks: () => {
      const st = controller.statuses()
      return store
        .values<Task>(prefixOf('task'))
        .filter((t) => t.nodeId === cfg.nodeId)
        .map((t) => {
          const s: TaskStatus | undefined = st.get(t.id)
          return {service: t.serviceName, state: s?.state ?? 'new', restarts: s?.restarts ?? 0}
        })
    },
    endpoints: () => {
      const names = new Map(controller.networks().map((n) => [n.vni, n.name]))
      // A service's VIP sits in sn_endpoints too (for ARP), but it is no task's endpoint.
      return [...(lastDesired?.endpoints.values() ?? [])]
        .filter((e) => !e.vip)
        .map((e) => ({
          network: names.get(e.vni) ?? String(e.vni),
          local: e.local,
        }))
    },
  })
  let busy = false
  let again = false
  const step = async (what: string, fn: () => unknown): Promise<void> => {
    const t0 = process.hrtime.bigint()
    let failed = false
    try {
      await fn()
    } catch (e) {
      failed = true
      log(`reconcile ${what}: ${(e as Error).message}`)
    }
    metrics.observeStep(what, Number(process.hrtime.bigint() - t0) / 1e9, failed)
  }
  let lastSyncErrors = ''
  const reconcile = async (): Promise<void> => {
    if (busy) {
      again = true
      return
    }
    busy = true
    try {
      do {
        again = false
        const desired = () => ({
          ...desiredMaps({
            selfId: cfg.nodeId,
            nodes: controller.nodes(),
            networks: controller.networks(),
            tasks: [...controller.tasks(), ...store.values<NetworkAttachment>(prefixOf('attachment')).map(attachmentAsTask)],
            local: [...tasks.localAttachments(), ...attachments.localAttachments()],
            membership,
            services: controller.services(),
            statuses: controller.statuses(),
          }),
          dns: dns.fastPath(),
        })
        // Endpoints of a network this node is about to have a task on go in before the task
        // starts (its device entry goes in with its attachment), so its first frames find them.
        await step('maps', () => datapath.sync(desired()))
        await step('tasks', () => tasks.reconcile())
        await step('attachments', () => attachments.reconcile())
        await step('maps', () => {
          const want = desired()
          lastDesired = want
          const synced = datapath.sync(want)
          const errors = synced.errors.map((e) => `map ${e.map}: ${e.failed} entries not written: ${e.message}`).join('; ')
          if (errors !== lastSyncErrors) log(`reconcile: ${errors || 'all maps written again'}`)
          lastSyncErrors = errors
          for (const line of datapath.repair(want)) log(`drift: ${line}`)
        })
      } while (again)
    } finally {
      busy = false
    }
  }
  let pending: NodeJS.Timeout | undefined
  const soon = () => {
    if (!pending) pending = setTimeout(() => ((pending = undefined), void reconcile()), 20)
  }
  const unsubscribe = store.onChange((key, value) => {
    // This node's task states are written by its own reconcilers; another node's decide which backends a VIP has.
    const statusNode = (value as {nodeId?: unknown} | undefined)?.nodeId
    if (key.startsWith('taskstatus/') && (statusNode === undefined || statusNode === cfg.nodeId)) return
    // Written by the reconcilers themselves (a gone attachment changes nothing here until the manager removes it).
    if (key.startsWith('attachmentstatus/')) return
    if (key.startsWith('node/')) roster()
    soon()
  })
  const periodic = setInterval(() => void reconcile(), 3000)
  const placement: ManagerLoop | undefined = manager ? startManagerLoop(manager, store, log) : undefined
  placement?.pass()
  // A node declared down (or back): its endpoints leave (or return to) the maps at once, and the manager re-places.
  const unwatch = membership.onChange((m, was) => {
    const name = controller.nodes().find((n) => n.id === m.id)?.name ?? m.id
    log(`membership: node ${name} ${nodeStatus(was)} -> ${nodeStatus(m.state)}`)
    if (m.state === 'suspect' || (was === 'suspect' && m.state === 'alive')) return
    soon()
    placement?.pass()
    if (placement && m.state === 'dead') {
      const t = setTimeout(() => placement.pass(), membership.cfg.rescheduleDelayMs + 50)
      t.unref()
    }
  })
  // The tasks' resolver, up before the first task starts: a failure to bind is said, not fatal.
  await dns.start().catch((e: Error) => log(`dns: cannot answer at ${gw.gatewayIp}:53: ${e.message}`))
  await reconcile()

  let resolveDone!: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  let api: Server | undefined
  // Metrics are for watching, not for running: an address already taken is said, not fatal.
  const metricsServer = metricsAt
    ? await serveMetrics(metricsAt, metrics).catch((e: Error) => void log(`metrics: ${e.message}`))
    : undefined

  const stop = async () => {
    clearInterval(periodic)
    placement?.stop()
    if (pending) clearTimeout(pending)
    unsubscribe()
    unwatch()
    membership.stop()
    unwatchDns()
    dns.stop()
    tasks.stop()
    api?.close()
    metricsServer?.close()
    rmSync(socketPath(node), {force: true})
    await gossip.stop()
    datapath.close()
    store.close()
    rmSync(pidPath(node), {force: true})
    resolveDone()
  }

  api = await startApi(socketPath(node), {
    controller,
    metrics: async () => ({text: await metrics.text()}),
    dns: () => dns.inspect(node),
    writer: () => {
      if (manager) return manager
      const at = controller.managerName()
      throw new UserError(`this node is a worker: run the command on the manager${at ? ` ${at}` : ''}`)
    },
    info: () => ({
      node,
      nodeId: cfg.nodeId,
      role: cfg.role,
      clusterId: cluster.id,
      advertiseAddr: cfg.advertiseAddr,
      underlay: cfg.underlay,
      dataPathPort: cluster.dataPathPort,
      gossip: gossip.stats,
      membership: {...membership.stats, incarnation: membership.incarnation, health: membership.awareness.score},
      store: {refused: store.refused, lastRefusal: store.lastRefusal},
      ...(placement ? {placement: Object.fromEntries(placement.problems)} : {}),
      datapath: datapath.status(),
    }),
    joinToken: (rotate) => {
      if (cfg.role !== 'manager' || !cfg.token) throw new Error('this node is a worker: ask a manager for the join token')
      if (rotate) {
        cfg.token = rotateToken(cfg.token).text
        writeNodeConfig(cfg)
      }
      return {token: cfg.token, addr: `${cfg.advertiseAddr}:${cfg.gossipPort}`}
    },
    leave: async (force) => {
      const others = controller.nodes().filter((n) => n.id !== cfg.nodeId && n.state === 'ready')
      if (cfg.role === 'manager' && others.length > 0 && !force) {
        throw new UserError(
          `this node is the cluster's manager and ${others.length} other node(s) depend on it: leaving would leave them unmanaged (use --force to leave anyway)`,
        )
      }
      store.put(keyOf('node', cfg.nodeId), {...me, state: 'left'})
      await gossip.flush()
      await tasks.removeAll()
      await attachments.removeAll()
      await stop()
      Datapath.teardown(node, cfg.underlay, cfg.xdpMode)
      await removeGwBridge().catch(() => undefined)
      rmSync(stateDir(node), {recursive: true, force: true})
      setTimeout(() => process.exit(0), 50)
    },
    membership,
  })
  writeFileSync(pidPath(node), `${process.pid}\n`)
  if (metricsServer) log(`metrics on http://${metricsAt!.host}:${metricsAt!.port}/metrics`)
  log(`node ${node} (${cfg.role}) ready at ${cfg.advertiseAddr}, underlay ${cfg.underlay}, gossip :${gossip.port}`)
  return {stop, done}
}
