// One node, wired together: store, gossip, the reconcilers (maps, tasks) and
// the local API. Control flows one way: API -> controller -> store -> gossip
// and reconcilers. A restarted agent reads its store and reconciles again;
// the data plane and the tasks keep going while it is away.
import {mkdirSync, rmSync, writeFileSync} from 'node:fs'
import type {Server} from 'node:http'
import {join} from 'node:path'
import {Gossip, type Peer} from '../gossip/gossip.js'
import {parseToken, rotateToken} from '../gossip/token.js'
import type {NodeRecord, Service} from '../model/types.js'
import {keyOf, prefixOf} from '../store/keys.js'
import {Store} from '../store/store.js'
import {ifindexOf, mtuOf} from '../sys/link.js'
import {ensureGwBridge, removeGwBridge} from '../tasks/gwbridge.js'
import {Datapath} from '../dataplane/datapath.js'
import {desiredMaps} from '../dataplane/desired.js'
import {TaskReconciler} from '../dataplane/tasks.js'
import {startApi} from './api.js'
import {readNodeConfig, writeNodeConfig} from './config.js'
import {UserError} from '../model/errors.js'
import {Controller} from './controller.js'
import {pidPath, socketPath, stateDir} from './paths.js'

export interface AgentHandle {
  stop(): Promise<void>
  done: Promise<void>
}

export async function runAgent(node: string, log: (m: string) => void): Promise<AgentHandle> {
  const cfg = readNodeConfig(node)
  if (!cfg) throw new Error(`node ${node} is not part of a cluster: run \`swarmnet init\` or \`swarmnet join\` first`)
  mkdirSync(stateDir(node), {recursive: true, mode: 0o700})
  const store = new Store(join(stateDir(node), 'store'), cfg.nodeId).open()
  const controller = new Controller(store, cfg.nodeId)
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
  }
  if (JSON.stringify(self) !== JSON.stringify(me)) store.put(keyOf('node', cfg.nodeId), me)

  const gw = await ensureGwBridge()
  controller.ensureGwbridge(gw.subnet, gw.gatewayIp)

  const datapath = Datapath.open({node, underlay: cfg.underlay, xdpMode: cfg.xdpMode})
  datapath.setConfig({
    nodeIp: cfg.advertiseAddr,
    vxlanPort: cluster.dataPathPort,
    underlayIfindex: await ifindexOf(cfg.underlay),
    mtu,
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
    key: Buffer.from(cfg.key, 'base64'),
    peers,
    ...(cfg.role === 'manager' && cfg.identity && cfg.token
      ? {join: {identity: cfg.identity.publicKey, tokens: () => [{token: parseToken(cfg.token!), role: 'worker' as const}]}}
      : {}),
  })
  await gossip.start()

  // Reconcile on every change, coalesced; and every few seconds to repair drift.
  let busy = false
  let again = false
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
        if (cfg.role === 'manager') placeServices(controller)
        const desired = () =>
          desiredMaps({
            selfId: cfg.nodeId,
            nodes: controller.nodes(),
            networks: controller.networks(),
            tasks: controller.tasks(),
            local: tasks.localAttachments(),
          })
        // Endpoints of a network this node is about to have a task on go in before the task
        // starts (its device entry goes in with its attachment), so its first frames find them.
        datapath.sync(desired())
        await tasks.reconcile()
        const want = desired()
        const synced = datapath.sync(want)
        const errors = synced.errors.map((e) => `map ${e.map}: ${e.failed} entries not written: ${e.message}`).join('; ')
        if (errors !== lastSyncErrors) log(`reconcile: ${errors || 'all maps written again'}`)
        lastSyncErrors = errors
        for (const line of datapath.repair(want)) log(`drift: ${line}`)
      } while (again)
    } catch (e) {
      log(`reconcile: ${(e as Error).message}`)
    } finally {
      busy = false
    }
  }
  let pending: NodeJS.Timeout | undefined
  const unsubscribe = store.onChange((key) => {
    if (key.startsWith('taskstatus/')) return // written by the reconcilers themselves
    if (!pending) pending = setTimeout(() => ((pending = undefined), void reconcile()), 20)
  })
  const periodic = setInterval(() => void reconcile(), 3000)
  await reconcile()

  let resolveDone!: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  let api: Server | undefined

  const stop = async () => {
    clearInterval(periodic)
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
    info: () => ({
      node,
      nodeId: cfg.nodeId,
      role: cfg.role,
      clusterId: cluster.id,
      advertiseAddr: cfg.advertiseAddr,
      underlay: cfg.underlay,
      dataPathPort: cluster.dataPathPort,
      gossip: gossip.stats,
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

/**
 * The manager keeps every service at its spec as nodes come and go: a node that
 * joins gets its global tasks, tasks of a node that left are placed elsewhere.
 * placeService writes only what differs, so this is cheap when nothing changed.
 */
function placeServices(c: Controller): void {
  for (const s of c.services() as Service[]) c.placeService(s)
}
