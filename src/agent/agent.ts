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
import {TaskReconciler} from '../dataplane/tasks.js'
import {startApi} from './api.js'
import {clusterKeyring, readNodeConfig, writeNodeConfig} from './config.js'
import {UserError} from '../model/errors.js'
import {Manager} from '../manager/manager.js'
import {startManagerLoop, type ManagerLoop} from '../manager/loop.js'
import {Controller} from './controller.js'
import {openNodeStore} from './node-store.js'
import {pidPath, socketPath, stateDir} from './paths.js'

export interface AgentHandle {
  stop(): Promise<void>
  done: Promise<void>
}

export async function runAgent(node: string, log: (m: string) => void): Promise<AgentHandle> {
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
  const manager = cfg.role === 'manager' ? new Manager(store, cfg.nodeId) : undefined
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

  const tasks = new TaskReconciler({
    node,
    selfId: cfg.nodeId,
    store,
    stateDir: stateDir(node),
    underlayMtu: mtu,
    log,
    hooks: {
      preparePeer: async (peerIf) => datapath.preparePeer(peerIf),
      attachHost: async (hostIf, a) => {
        const vni = controller.networks().find((n) => n.id === a.networkId)?.vni
        if (vni === undefined) throw new Error(`network ${a.networkId} of ${hostIf} is not an overlay network`)
        datapath.attachTask(hostIf, {vni, ip: a.ip})
      },
    },
  })

  const peers = (): Peer[] =>
    store
      .values<NodeRecord>(prefixOf('node'))
      .filter((n) => n.id !== cfg.nodeId && n.state !== 'left')
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
  await gossip.start()

  // This node's reconcilers: they read the store and drive this node, and write
  // nothing but their own tasks' status. Each step on its own: tasks that cannot
  // start must not keep the maps from following the store, nor the reverse.
  // On every change, coalesced; and every few seconds to repair drift.
  let busy = false
  let again = false
  const step = async (what: string, fn: () => unknown): Promise<void> => {
    try {
      await fn()
    } catch (e) {
      log(`reconcile ${what}: ${(e as Error).message}`)
    }
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
        const desired = () =>
          desiredMaps({
            selfId: cfg.nodeId,
            nodes: controller.nodes(),
            networks: controller.networks(),
            tasks: controller.tasks(),
            local: tasks.localAttachments(),
            services: controller.services(),
            statuses: controller.statuses(),
          })
        // Endpoints of a network this node is about to have a task on go in before the task
        // starts (its device entry goes in with its attachment), so its first frames find them.
        await step('maps', () => datapath.sync(desired()))
        await step('tasks', () => tasks.reconcile())
        await step('maps', () => {
          const want = desired()
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
  const unsubscribe = store.onChange((key, value) => {
    // This node's task states are written by its own reconcilers; another node's decide which backends a VIP has.
    const statusNode = (value as {nodeId?: unknown} | undefined)?.nodeId
    if (key.startsWith('taskstatus/') && (statusNode === undefined || statusNode === cfg.nodeId)) return
    if (!pending) pending = setTimeout(() => ((pending = undefined), void reconcile()), 20)
  })
  const periodic = setInterval(() => void reconcile(), 3000)
  const placement: ManagerLoop | undefined = manager ? startManagerLoop(manager, store, log) : undefined
  placement?.pass()
  await reconcile()

  let resolveDone!: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  let api: Server | undefined

  const stop = async () => {
    clearInterval(periodic)
    placement?.stop()
    if (pending) clearTimeout(pending)
    unsubscribe()
    tasks.stop()
    api?.close()
    rmSync(socketPath(node), {force: true})
    await gossip.stop()
    datapath.close()
    store.close()
    rmSync(pidPath(node), {force: true})
    resolveDone()
  }

  api = await startApi(socketPath(node), {
    controller,
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
      await stop()
      Datapath.teardown(node, cfg.underlay, cfg.xdpMode)
      await removeGwBridge().catch(() => undefined)
      rmSync(stateDir(node), {recursive: true, force: true})
      setTimeout(() => process.exit(0), 50)
    },
  })
  writeFileSync(pidPath(node), `${process.pid}\n`)
  log(`node ${node} (${cfg.role}) ready at ${cfg.advertiseAddr}, underlay ${cfg.underlay}, gossip :${gossip.port}`)
  return {stop, done}
}
