// One node, wired together: the composition root. It builds the parts (store,
// gossip, membership and liveness, the data path, the reconcilers, the local
// API) and wires them; what they do is theirs. Every node runs the reconcile
// loop (node-reconciler.ts); the role and a manager's duties (placement, the
// desired-state backend on etcd or embedded, join answering, role changes and
// migrate-store) are one state machine (node-role.ts, with the duties in
// src/manager/manager-role.ts), a manager's requests (manager-requests.ts) and
// its key rotation schedule (key-schedule.ts).
// Control flows one way: API -> controller -> store -> gossip and reconcilers.
// A restarted agent reads its store and reconciles again; the data plane and
// the tasks keep going while it is away.
import {mkdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import type {Server} from 'node:http'
import {Gossip, type Peer} from '../gossip/gossip.js'
import type {NetworkAttachment, NodeRecord} from '../model/types.js'
import {keyOf, prefixOf} from '../store/keys.js'
import {attachmentAsTask} from '../model/attachment.js'
import {DrainAcks, DrainWait} from '../dataplane/drain-acks.js'
import {ifindexOf, mtuOf} from '../sys/link.js'
import {NodeAddrs} from '../dataplane/node-addrs.js'
import {ensureGwBridge, removeGwBridge} from '../tasks/gwbridge.js'
import {Datapath} from '../dataplane/datapath.js'
import {TaskReconciler, type TaskHooks} from '../dataplane/tasks.js'
import {AttachmentReconciler} from '../dataplane/attachments.js'
import type {Task, TaskStatus} from '../model/types.js'
import {readCounters} from '../bpf/counters.js'
import {LAYOUT_VERSION} from '../bpf/upgrade.js'
import {MIRRORED} from '../dataplane/desired.js'
import {AgentMetrics} from '../metrics/agent-metrics.js'
import {EventLoopDelay} from '../metrics/event-loop.js'
import {readLbSnapshot} from '../metrics/lb-metrics.js'
import {readPortStats} from '../metrics/mesh-metrics.js'
import {DEFAULT_METRICS_ADDR, parseMetricsAddr, serveMetrics} from '../metrics/server.js'
import {startApi} from './api.js'
import {drainApi} from './api-drain.js'
import {clusterKeyring, readNodeConfig, setKeyring, writeNodeConfig} from './config.js'
import type {Keyring} from '../gossip/keyring.js'
import {DEFAULT_KEY_GRACE_MS, KeyRotation} from '../gossip/rotation.js'
import {UserError} from '../model/errors.js'
import {promotionKey} from '../manager/roles.js'
import {NodeRole} from './node-role.js'
import {KeySchedule} from './key-schedule.js'
import {ManagerRequests} from './manager-requests.js'
import {NodeReconciler} from './node-reconciler.js'
import {ClusterReader} from '../store/cluster-reader.js'
import {Membership} from '../membership/swim.js'
import {nodeStatus} from '../membership/state.js'
import {DATA_PATH_STALE_MS, NodeLiveness} from '../membership/node-liveness.js'
import {ViewChanges} from '../membership/view-changes.js'
import {DataPathProber} from '../dataplane/prober.js'
import {probeKey} from '../dataplane/probe-wire.js'
import {writeProbeKeys} from '../dataplane/probe-keys.js'
import {openNodeStore} from './node-store.js'
import {lockNode, releaseNode} from './lock.js'
import {clearFailStop, failStop} from './fail-stop.js'
import {pidPath, socketPath, stateDir} from './paths.js'
import {etcdFilesOutside, givenEtcdPaths, keepEtcdFiles} from './etcd-files.js'
import {NodeDns} from '../dns/node-dns.js'
import {startCpuProfile} from './cpu-profile.js'
import {processesStarted, useSpawner} from '../sys/exec.js'
import {Spawner} from '../sys/spawner.js'

/** How long an agent that handed over waits for its successor's socket before it stops anyway. */
const HANDOVER_TIMEOUT_MS = 60_000

export interface AgentHandle {
  stop(): Promise<void>
  done: Promise<void>
}

export interface AgentOptions {
  /** HOST:PORT of the Prometheus endpoint; '' for none. Default DEFAULT_METRICS_ADDR. */
  metricsAddr?: string
  /** How long to wait for the node's lock: an agent handing over lets go of it (`agent --replace`). */
  lockWaitMs?: number
}

export async function runAgent(node: string, log: (m: string) => void, opts: AgentOptions = {}): Promise<AgentHandle> {
  const metricsAt = parseMetricsAddr(opts.metricsAddr ?? DEFAULT_METRICS_ADDR)
  const cfg = readNodeConfig(node)
  if (!cfg) throw new Error(`node ${node} is not part of a cluster: run \`swarmnet init\` or \`swarmnet join\` first`)
  if (!cfg.nodeKey || !cfg.cert || !cfg.clusterIdentity)
    throw new Error(`node ${node} was set up before gossip was signed: run \`swarmnet leave\` and join again`)
  const nodeKey = cfg.nodeKey
  // Every command from here on is forked by the spawner, not by this big process on its event
  // loop (src/sys/spawner.ts); it exits with the agent, however the agent ends.
  useSpawner(new Spawner(log))
  mkdirSync(stateDir(node), {recursive: true, mode: 0o700})
  await lockNode(node, opts.lockWaitMs ?? 0)
  // A config from before the copies: its etcd TLS files move under the state directory now (etcd-files.ts).
  if (cfg.etcd && etcdFilesOutside(node, cfg.etcd)) {
    try {
      cfg.etcdGiven ??= givenEtcdPaths(cfg.etcd)
      cfg.etcd = keepEtcdFiles(node, cfg.etcd)
      writeNodeConfig(cfg)
    } catch (e) {
      log(`the etcd TLS files stay where they are: ${(e as Error).message}`)
    }
  }
  const store = openNodeStore(node, cfg.nodeId, {
    onWriteFailure: (e) => failStop(node, `the store in ${stateDir(node)} cannot be written: ${e.message}`, log),
  })
  if (store.refused > 0) log(`store: left out ${store.refused} malformed value(s) of the state file (last: ${store.lastRefusal})`)
  const controller = new ClusterReader(store, cfg.nodeId)
  // Only the manager writes desired state; a worker's API refuses writes (see writer below).
  // Replaced only once down for the reschedule delay: a restarting agent keeps its tasks.
  // Down is liveness's answer (SWIM and the data-path probe together, ../membership/node-liveness.ts).
  const isDown = (id: string): boolean => liveness.downFor(id) >= membership.cfg.rescheduleDelayMs
  const downNow = (id: string) => liveness.isDown(id)
  // Placement gives no new task to a node whose agent is not heard now (suspected or dead).
  const agentAway = (id: string) => {
    const s = membership.get(id)?.state
    return s === 'suspect' || s === 'dead'
  }
  const cluster = controller.cluster()
  // Worker or manager, and a manager's duties (placement, the writer of desired state, etcd):
  // one state machine that node promote / demote and migrate-store move (node-role.ts).
  const nodeRole: NodeRole = new NodeRole({
    cfg,
    node,
    nodeKey,
    store,
    clusterId: cluster.id,
    // changes: what placement keeps its node set against (src/membership/view-changes.ts).
    membership: {isDown, downNow, agentAway, changes: () => viewChanges.now()},
    log,
    me: () => me,
    serveJoins: (join) => gossip.setJoin(join),
    keySchedule: () => keySchedule(),
  })

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
    // The election may have been won already (its onLeader wrote 'leader' meanwhile, and will not
    // again while this node leads): what it knows, not 'reachable' over it.
    ...(nodeRole.ha ? {managerStatus: nodeRole.ha.leadership.isLeader ? ('leader' as const) : ('reachable' as const)} : {}),
  }
  if (JSON.stringify(self) !== JSON.stringify(me)) store.put(keyOf('node', cfg.nodeId), me)

  const gw = await ensureGwBridge()
  nodeRole.duties?.ensureGwbridge(gw.subnet, gw.gatewayIp)

  const datapath = Datapath.open({node, underlay: cfg.underlay, xdpMode: cfg.xdpMode})
  // What an upgrade did with the maps of an older layout: the operator's record that no flow was dropped.
  for (const u of datapath.upgrades) {
    const list = (names: string[]) => (names.length > 0 ? [...names].sort().join(' ') : 'none')
    log(
      `data plane upgraded from layout ${u.from} to ${LAYOUT_VERSION}: carried over ${list(u.migrated)}; refilled from the store ${list(u.refilled)}; dropped ${list(u.dropped)}`,
    )
  }
  datapath.setConfig({
    nodeIp: cfg.advertiseAddr,
    vxlanPort: cluster.dataPathPort,
    underlayIfindex: await ifindexOf(cfg.underlay),
  })
  // Measuring only (SWARMNET_AGENT_CPU_PROF): from here on, the BPF programs being loaded.
  const cpuProfile = await startCpuProfile(node)
  if (cpuProfile) log(`cpu profile: written to ${cpuProfile.file} when the agent stops`)
  const sockError = datapath.status().nodeLocalMeshError
  if (sockError) log(`published ports from the node itself are off: ${sockError}`)
  const sockLbError = datapath.status().socketLbError
  if (sockLbError) log(`load balancing at connect() is off, tc balances every flow to a VIP: ${sockLbError}`)

  const hooks: TaskHooks = {
    preparePeer: async (peerIf) => datapath.preparePeer(peerIf),
    attachHost: async (hostIf, a) => {
      const vni = controller.networks().find((n) => n.id === a.networkId)?.vni
      if (vni === undefined) throw new Error(`network ${a.networkId} of ${hostIf} is not an overlay network`)
      await datapath.attachTask(hostIf, {vni, ip: a.ip})
    },
    attachGateway: (hostIf) => datapath.attachGateway(hostIf),
    // The DNS fast path is a shortcut: without it the task's questions reach the responder all the same.
    attachGw: async (gwIf) => {
      try {
        await datapath.attachDns(gwIf)
      } catch (e) {
        log(`dns: no fast path on ${gwIf}: ${(e as Error).message}`)
      }
    },
  }
  const tasks = new TaskReconciler({
    node,
    selfId: cfg.nodeId,
    store,
    stateDir: stateDir(node),
    underlayMtu: mtu,
    log,
    hooks,
    // A task that finished stopping: its endpoints leave the maps now, not at the next timer.
    wake: () => soon(),
    drainWait: (id) => drainWait.wait(id),
  })
  // Namespaces attached with `network connect`: to the data plane, tasks without a process.
  const attachments = new AttachmentReconciler({node, selfId: cfg.nodeId, store, hooks, log})

  const peers = (): Peer[] =>
    store
      .values<NodeRecord>(prefixOf('node'))
      .filter((n) => n.id !== cfg.nodeId && n.state !== 'left' && !membership.isDown(n.id))
      .map((n) => ({id: n.id, addr: n.addr, port: n.gossipPort}))

  const ring = clusterKeyring(cfg)
  // Every key change is on disk before it is acked or sealed with: a restarted agent still opens what others seal.
  const persistKeys = (r: Keyring): void => {
    setKeyring(cfg, r)
    writeNodeConfig(cfg)
    writeProbeKeys(datapath.maps.sn_probe_keys, r.entries())
  }
  // The data path answers probes tagged under any installed key, with or without this agent.
  writeProbeKeys(datapath.maps.sn_probe_keys, ring.entries())
  const gossip = new Gossip({
    store,
    nodeId: cfg.nodeId,
    bindAddr: cfg.bindAddr,
    port: cfg.gossipPort,
    key: ring,
    onKeysChanged: persistKeys,
    peers,
    identity: cfg.clusterIdentity,
    nodeKey,
    ...(nodeRole.joinAnswering() ? {join: nodeRole.joinAnswering()} : {}),
  })
  // Liveness, in memory: who is a member is the store's node records; who is up is this.
  const membership = new Membership({
    self: {id: cfg.nodeId, addr: cfg.advertiseAddr, port: cfg.gossipPort},
    incarnation: gossip.epoch,
    net: {send: (to, m, id) => gossip.sendSwim(to, m, id), answerWith: (self) => gossip.swimAnswer(self)},
    config: cfg.membership,
    sign: (text) => gossip.signRumour(text),
    verify: (id, text, sig) => gossip.verifyRumour(id, text, sig),
  })
  gossip.onSwim = (m, from, addr, acked) => membership.receive(m, from, addr, acked)
  // Every other node's data path, asked directly (bpf/include/probe.h answers it in XDP).
  const prober = new DataPathProber({
    bindAddr: cfg.advertiseAddr,
    port: cluster.dataPathPort,
    sendKey: () => ({keyId: ring.primary, key: probeKey(ring.primaryKey())}),
    keyFor: (id) => {
      const k = ring.key(id)
      return k ? probeKey(k) : undefined
    },
  })
  const liveness = new NodeLiveness(
    {member: (id) => membership.get(id), dataPathAnsweredAt: (id) => prober.answeredAt(id), now: Date.now},
    {agentGraceMs: membership.cfg.agentGraceMs, dataPathStaleMs: DATA_PATH_STALE_MS},
  )
  // Counts SWIM's and liveness's changes for placement's kept node set: registered before any
  // other listener of them, so a pass a change starts already sees it counted.
  const viewChanges = new ViewChanges(() => membership.list())
  membership.onChange(() => viewChanges.changed())
  liveness.onChange(() => viewChanges.changed())
  const otherIds = () => controller.nodes().flatMap((n) => (n.id === cfg.nodeId ? [] : [n.id]))
  const dns = new NodeDns({selfId: cfg.nodeId, store, cluster, addr: gw.gatewayIp, membership: liveness, log})
  dns.fastPathHits = () => Number(readCounters(datapath.maps.stats).dns_fast_answer)
  const unwatchDns = liveness.onChange(() => dns.invalidate())
  const roster = () => {
    membership.setRoster(controller.nodes().map((n) => ({id: n.id, addr: n.addr, port: n.gossipPort, left: n.state === 'left'})))
    prober.setTargets(
      controller.nodes().flatMap((n) => (n.id === cfg.nodeId || n.state === 'left' ? [] : [{id: n.id, addr: n.addr}])),
    )
  }
  roster()
  await gossip.start()
  membership.start()
  await prober.start()
  // Liveness changes with time too (a data path falls silent, an agent's grace runs out).
  const livenessTimer = setInterval(() => liveness.refresh(otherIds()), 250)

  // Managers rotate the cluster key: on `swarm rotate-key`, and every keyRotation.intervalMs (default 12 h).
  // The schedule (key-schedule.ts) runs while the node is a manager, promoted ones included (node-role.ts).
  const keySchedule = (): KeySchedule =>
    new KeySchedule(
      new KeyRotation({
        ring,
        selfId: cfg.nodeId,
        privateKey: nodeKey.privateKey,
        peers,
        send: (id, d) => gossip.sendKeys(id, d),
        persist: persistKeys,
        graceMs: DEFAULT_KEY_GRACE_MS,
        log,
      }),
      {cfg, role: nodeRole, log, attach: (r) => (gossip.rotation = r)},
    )

  // This node's reconcilers (node-reconciler.ts): on every change, coalesced; and every few seconds to repair drift.
  // A long collection pause is logged with its kind and the heap's size: what to cut next (issue 24).
  // A long stall is logged with what it was made of: the thread running, or waiting for a CPU (loop-stalls.ts).
  const loopDelay = new EventLoopDelay(10, {onLongGc: log, onLongStall: log})
  const metrics = new AgentMetrics(node, {
    eventLoop: () => loopDelay.window(),
    processesStarted,
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
      return [...(reconciler.lastDesired?.endpoints.values() ?? [])]
        .filter((e) => !e.vip)
        .map((e) => ({
          network: names.get(e.vni) ?? String(e.vni),
          local: e.local,
        }))
    },
    publishedPorts: () => readPortStats(datapath.maps.sn_mesh_stats, controller.services()),
    dns: () => ({stats: dns.server.stats, fastPathAnswers: dns.fastPathHits?.()}),
    lb: () =>
      readLbSnapshot(datapath.maps, {
        services: controller.services(),
        networks: controller.networks(),
        tasks: controller.tasks(),
        nodes: controller.nodes(),
      }),
  })
  // An address added to or removed from the node: its published ports follow at once.
  const nodeAddrs = new NodeAddrs([gw.ifname], () => reconciler.soon(), log)
  // A stopping task's signal waits for every node's maps to have left it out (drain-acks.ts).
  const drainWait = new DrainWait({
    selfId: cfg.nodeId,
    store,
    view: {
      nodes: () => controller.nodes(),
      networks: () => controller.networks(),
      tasks: () => [...controller.tasks(), ...store.values<NetworkAttachment>(prefixOf('attachment')).map(attachmentAsTask)],
      services: () => controller.services(),
      statuses: () => controller.statuses(),
    },
    membership: {isDown: (id) => liveness.isDown(id), agentAway, changes: () => viewChanges.now()},
  })
  const reconciler = new NodeReconciler({
    selfId: cfg.nodeId,
    store,
    controller,
    tasks,
    attachments,
    datapath,
    dns,
    drainAcks: new DrainAcks({store, selfId: cfg.nodeId}),
    liveness,
    // Every address of the node answers published ports, but the gateway bridge's (node-addrs.ts).
    localAddrs: () => nodeAddrs.list(),
    log,
    observeStep: (what, seconds, failed) => metrics.observeStep(what, seconds, failed),
  })
  const soon = () => reconciler.soon()
  // A manager's requests about roles and join tokens (manager-requests.ts).
  const requests = new ManagerRequests({cfg, nodeKey, store, controller, role: nodeRole, liveness, log})
  const unsubscribe = store.onChange((key, value) => {
    // This node's task states are written by its own reconcilers; another node's decide which backends a VIP has.
    const statusNode = (value as {nodeId?: unknown} | undefined)?.nodeId
    if (key.startsWith('taskstatus/') && (statusNode === undefined || statusNode === cfg.nodeId)) return
    // Written by the reconcilers themselves (a gone attachment changes nothing here until the manager removes it).
    if (key.startsWith('attachmentstatus/')) return
    // What other nodes' maps left out: only a stopping task waits on it (drain-acks.ts).
    if (key.startsWith('drained/')) return
    if (key.startsWith('node/')) roster()
    if (key === keyOf('node', cfg.nodeId) || key === promotionKey(cfg.nodeId)) void nodeRole.follow()
    requests.onChange(key, value)
    soon()
  })
  reconciler.start()
  nodeRole.start()
  const nameOf = (id: string) => controller.nodes().find((n) => n.id === id)?.name ?? id
  // What SWIM says is about the node's agent; whether the node is down is liveness's (below).
  const unwatchSwim = membership.onChange((m, was) => {
    log(`membership: agent of node ${nameOf(m.id)} ${nodeStatus(was)} -> ${nodeStatus(m.state)}`)
    liveness.refresh(otherIds())
    // An agent heard again may take the tasks placement held back from it (agentAway).
    if (m.state === 'alive' && was !== 'alive') nodeRole.placement?.pass()
  })
  // A node declared down (or back): its endpoints leave (or return to) the maps at once, and the manager re-places.
  const unwatch = liveness.onChange((id, down) => {
    const why = !down && liveness.agentDown(id) ? ' (its agent is down, its data path answers)' : ''
    log(`liveness: node ${nameOf(id)} ${down ? 'down' : 'up'}${why}`)
    soon()
    nodeRole.placement?.pass()
    if (nodeRole.placement && down) {
      const t = setTimeout(() => nodeRole.placement?.pass(), membership.cfg.rescheduleDelayMs + 50)
      t.unref()
    }
  })
  // The tasks' resolver, up before the first task starts: a failure to bind is said, not fatal.
  await dns.start().catch((e: Error) => log(`dns: cannot answer at ${gw.gatewayIp}:53: ${e.message}`))
  await reconciler.reconcile()

  let resolveDone!: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  let api: Server | undefined
  // Metrics are for watching, not for running: an address already taken is said, not fatal.
  const metricsServer = metricsAt
    ? await serveMetrics(metricsAt, metrics).catch((e: Error) => void log(`metrics: ${e.message}`))
    : undefined

  // Everything but the API: what a handover stops before the next agent takes the node.
  let quiesced: Promise<void> | undefined
  const quiesce = () =>
    (quiesced ??= (async () => {
      reconciler.stop()
      nodeAddrs.stop()
      await nodeRole.stop()
      unsubscribe()
      unwatch()
      unwatchSwim()
      clearInterval(livenessTimer)
      prober.stop()
      membership.stop()
      unwatchDns()
      await dns.stop()
      tasks.stop()
      drainWait.stop()
      metricsServer?.close()
      loopDelay.stop()
      await gossip.stop()
      datapath.close()
      store.close()
    })())
  let socketIno: number | undefined
  /** The socket is still the one this agent made (a successor's replaced it in a handover). */
  const ownSocket = () => {
    try {
      return statSync(socketPath(node)).ino === socketIno
    } catch {
      return false
    }
  }
  /** answering: a request is still to be answered (leave), so `done` (on which the command exits) waits for its exit. */
  const stop = async (answering = false) => {
    await cpuProfile?.stop().catch((e: Error) => log(`cpu profile: ${e.message}`))
    await quiesce()
    api?.close()
    if (ownSocket()) rmSync(socketPath(node), {force: true})
    let pidFile = ''
    try {
      pidFile = readFileSync(pidPath(node), 'utf8').trim()
    } catch {
      // gone already
    }
    if (pidFile === String(process.pid)) rmSync(pidPath(node), {force: true})
    if (!answering) resolveDone()
  }
  let handingOver = false
  const handover = async (): Promise<{pid: number}> => {
    if (handingOver) throw new UserError('this agent is already handing over')
    handingOver = true
    log('handover: stopping all but the API; the next agent takes the node')
    await quiesce()
    releaseNode(node)
    // Exit once the successor's socket has taken our socket's place; a successor that never comes: exit anyway.
    const since = Date.now()
    const watch = setInterval(() => {
      if (ownSocket() && Date.now() - since < HANDOVER_TIMEOUT_MS) return
      clearInterval(watch)
      const succeeded = !ownSocket()
      log(succeeded ? 'handover: the next agent serves the API: stopping' : 'handover: no agent took over: stopping')
      // Clients that connected before the successor's socket took the name are still answered.
      void (succeeded && api ? drainApi(api) : Promise.resolve()).then(() => stop())
    }, 20)
    return {pid: process.pid}
  }

  api = await startApi(socketPath(node), {
    controller,
    changes: (fn) => store.onChange(() => fn()),
    metrics: async () => ({text: await metrics.text()}),
    dns: () => dns.inspect(node),
    write: async (fn) => {
      if (handingOver) throw new UserError('this agent is handing over to a new one: try again in a moment')
      if (nodeRole.migrating) throw new UserError('the cluster state is moving to etcd: try again in a moment')
      if (nodeRole.backend) return nodeRole.backend.write(fn)
      const at = controller.managerName()
      throw new UserError(`this node is a worker: run the command on the manager${at ? ` ${at}` : ''}`)
    },
    handover,
    info: () => ({
      node,
      pid: process.pid,
      nodeId: cfg.nodeId,
      role: cfg.role,
      clusterId: cluster.id,
      advertiseAddr: cfg.advertiseAddr,
      underlay: cfg.underlay,
      dataPathPort: cluster.dataPathPort,
      gossip: gossip.stats,
      membership: {...membership.stats, incarnation: membership.incarnation, health: membership.awareness.score},
      store: {refused: store.refused, lastRefusal: store.lastRefusal, log: store.logStats},
      ...(nodeRole.placement ? {placement: Object.fromEntries(nodeRole.placement.problems)} : {}),
      ...(nodeRole.ha
        ? {
            desiredState: {store: 'etcd', endpoints: cfg.etcd!.endpoints, prefix: cfg.etcd!.prefix},
            leader: nodeRole.ha.leadership.leader ?? null,
            etcd: {commits: nodeRole.ha.backend.commits, retries: nodeRole.ha.backend.retries},
          }
        : {}),
      datapath: datapath.status(),
    }),
    changeRole: (ref, role, tls) => requests.changeRole(ref, role, tls),
    migrateStore: (etcd) => nodeRole.migrateStore(etcd),
    joinToken: (rotate, role) => requests.joinToken(rotate, role),
    keys: () => ({
      primary: ring.primary,
      ids: ring.ids(),
      ...nodeRole.keys?.status(),
    }),
    rotateKey: async (graceMs) => {
      // A demoted node keeps the object it started with, not the right to use it.
      const keys = nodeRole.keys
      if (!keys || cfg.role !== 'manager') {
        const at = controller.managerName()
        throw new UserError(`this node is a worker: run the command on the manager${at ? ` ${at}` : ''}`)
      }
      return keys.rotateNow(graceMs)
    },
    leave: async (force) => {
      const others = controller.nodes().filter((n) => n.id !== cfg.nodeId && n.state === 'ready')
      // On etcd another manager carries on (this one resigns as it stops).
      const carriedOn = cfg.etcd !== undefined && others.some((n) => n.role === 'manager')
      if (cfg.role === 'manager' && others.length > 0 && !force && !carriedOn) {
        throw new UserError(
          `this node is the cluster's manager and ${others.length} other node(s) depend on it: leaving would leave them unmanaged (use --force to leave anyway)`,
        )
      }
      store.put(keyOf('node', cfg.nodeId), {...me, state: 'left'})
      await gossip.flush()
      await tasks.removeAll()
      await attachments.removeAll()
      await stop(true)
      Datapath.teardown(node, cfg.underlay, cfg.xdpMode)
      await removeGwBridge().catch(() => undefined)
      rmSync(stateDir(node), {recursive: true, force: true})
      setTimeout(() => process.exit(0), 50)
    },
    membership,
    liveness,
    durable: () => store.sync(),
  })
  socketIno = statSync(socketPath(node)).ino
  writeFileSync(pidPath(node), `${process.pid}\n`)
  clearFailStop(node)
  if (metricsServer) log(`metrics on http://${metricsAt!.host}:${metricsAt!.port}/metrics`)
  log(`node ${node} (${cfg.role}) ready at ${cfg.advertiseAddr}, underlay ${cfg.underlay}, gossip :${gossip.port}`)
  return {stop: () => stop(), done}
}
