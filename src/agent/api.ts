// The agent's local API: JSON over HTTP on a root-only unix socket. Reads are
// answered from the store; writes go through the controller into the store.
import {chmodSync, renameSync, mkdirSync, rmSync} from 'node:fs'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {dirname} from 'node:path'
import {isUserError, UserError} from '../model/errors.js'
import {pinImage} from '../images/image.js'
import {checkServiceMode} from '../model/validate.js'
import {checkPortRef, checkPortRequest} from '../model/ports.js'
import type {HealthRequest} from '../tasks/health.js'
import {checkReplicas, type Manager} from '../manager/manager.js'
import type {UpdateRequest} from '../manager/update-config.js'
import {readLog, tailOffset, taskLogPath} from '../tasks/logs.js'
import type {Member} from '../membership/state.js'
import type {NodeLivenessState} from '../membership/node-liveness.js'
import type {ClusterReader} from '../store/cluster-reader.js'
import {
  attachmentView,
  networkView,
  nodeView,
  serviceInspectView,
  serviceListViewSliced,
  serviceTasksView,
  serviceView,
  taskView,
} from './render.js'
import {attachTimeout, connectAndWait, disconnectAndWait} from './attach-wait.js'

export interface ApiContext {
  controller: ClusterReader
  /**
   * Runs one request of the writer of desired state (embedded or etcd: see manager/backend.ts);
   * refused (one clear line) on a node that is not a manager.
   */
  write<T>(fn: (m: Manager) => T): Promise<T>
  info(): unknown
  /** The Prometheus text the metrics endpoint serves, for `swarmnet top` on the socket. */
  metrics(): Promise<{text: string}>
  joinToken(rotate: boolean, role?: 'worker' | 'manager'): {token: string; addr: string}
  /** node promote / demote (clusters on etcd); tls: the new manager's files, default this manager's. */
  changeRole?(
    ref: string,
    role: 'manager' | 'worker',
    tls: {ca?: string; cert?: string; key?: string},
  ): Promise<{node: string; role: string}>
  /** swarm migrate-store --to etcd (an embedded cluster's manager). */
  migrateStore?(etcd: {endpoints: string[]; ca?: string; cert?: string; key?: string}): Promise<unknown>
  leave(force: boolean): Promise<void>
  /** The cluster keys this node holds (ids only) and, on the manager, the rotation's state. */
  keys(): unknown
  /** Managers: starts a key rotation; resolves once the new key is in use (or a timeout says who lacks it). */
  rotateKey(graceMs: number | undefined): Promise<unknown>
  /** What the node's resolver answers and has counted (inspect dns). */
  dns?(): unknown
  /** Resolves once every write made so far is on disk: a write is acknowledged only then. */
  durable?: () => Promise<void>
  /** Liveness of the other nodes, as this node's failure detector sees them. */
  membership?: {get(id: string): Member | undefined}
  /** Whether each other node is down and whether its agent is (src/membership/node-liveness.ts). */
  liveness?: {state(id: string): NodeLivenessState}
  /** Calls fn after every change of the node's store (calls that wait for a node's report); returns the unsubscribe. */
  changes(fn: () => void): () => void
  /**
   * `agent --replace`: this agent stops everything but this API (answering reads from what it
   * knows, refusing writes) and lets go of the node's lock; it exits once the new agent's socket
   * has taken the place of its own.
   */
  handover?(): Promise<{pid: number}>
}

/** --image with a registry's tag pinned to its digest, here on the manager before the write (it waits on the registry). */
async function pinned(image: string | undefined, tlsVerify: boolean): Promise<string | undefined> {
  if (image === undefined) return undefined
  try {
    return await pinImage(image, {tlsVerify})
  } catch (e) {
    throw new UserError((e as Error).message)
  }
}

type Handler = (m: RegExpExecArray, body: Record<string, unknown>, query: URLSearchParams) => unknown | Promise<unknown>

export function startApi(socket: string, ctx: ApiContext): Promise<Server> {
  const c = ctx.controller
  const w = <T>(fn: (m: Manager) => T) => ctx.write(fn)
  const routes: [string, RegExp, Handler][] = [
    ['GET', /^\/info$/, () => ctx.info()],
    [
      'POST',
      /^\/agent\/handover$/,
      () => {
        if (!ctx.handover) throw new RequestError('this agent cannot hand over')
        return ctx.handover()
      },
    ],
    ['GET', /^\/metrics$/, () => ctx.metrics()],
    ['GET', /^\/dns$/, () => ctx.dns?.() ?? {}],
    [
      'GET',
      /^\/nodes$/,
      () =>
        c
          .nodes()
          .map((n) => nodeView(n, c.selfId, ctx.membership?.get(n.id), ctx.liveness?.state(n.id), Date.now(), c.nodeSpec(n.id))),
    ],
    [
      'GET',
      /^\/nodes\/([^/]+)$/,
      (m) => {
        const n = c.findNode(dec(m[1]))
        return nodeView(n, c.selfId, ctx.membership?.get(n.id), ctx.liveness?.state(n.id), Date.now(), c.nodeSpec(n.id))
      },
    ],
    [
      'POST',
      /^\/nodes\/([^/]+)\/update$/,
      async (m, b) => {
        const req = {availability: optStr(b, 'availability'), labelAdd: strList(b, 'labelAdd'), labelRm: strList(b, 'labelRm')}
        const spec = await w((x) => x.updateNode(dec(m[1]), req))
        const n = c.findNode(spec.id)
        return nodeView(n, c.selfId, ctx.membership?.get(n.id), ctx.liveness?.state(n.id), Date.now(), spec)
      },
    ],
    ['DELETE', /^\/nodes\/([^/]+)$/, async (m) => ({removed: (await w((x) => x.removeNode(dec(m[1])))).name})],
    [
      'POST',
      /^\/migrate-store$/,
      (_m, b) => {
        if (!ctx.migrateStore) throw new RequestError('this agent cannot migrate its store')
        return ctx.migrateStore({
          endpoints: strList(b, 'endpoints'),
          ca: optStr(b, 'ca'),
          cert: optStr(b, 'cert'),
          key: optStr(b, 'key'),
        })
      },
    ],
    [
      'POST',
      /^\/nodes\/([^/]+)\/(promote|demote)$/,
      (m, b) => {
        if (!ctx.changeRole) throw new RequestError('this agent cannot change roles')
        const tls = {
          ...(optStr(b, 'ca') !== undefined ? {ca: optStr(b, 'ca')} : {}),
          ...(optStr(b, 'cert') !== undefined ? {cert: optStr(b, 'cert')} : {}),
          ...(optStr(b, 'key') !== undefined ? {key: optStr(b, 'key')} : {}),
        }
        return ctx.changeRole(dec(m[1]), m[2] === 'promote' ? 'manager' : 'worker', tls)
      },
    ],
    ['GET', /^\/join-token$/, (_m, _b, q) => ctx.joinToken(false, tokenRole(q))],
    ['POST', /^\/join-token\/rotate$/, (_m, _b, q) => ctx.joinToken(true, tokenRole(q))],
    ['GET', /^\/swarm\/keys$/, () => ctx.keys()],
    ['POST', /^\/swarm\/rotate-key$/, (_m, b) => ctx.rotateKey(b.graceMs === undefined ? undefined : num(b, 'graceMs'))],
    ['POST', /^\/leave$/, async (_m, b) => (await ctx.leave(b.force === true), {left: true})],
    ['GET', /^\/networks$/, () => c.networks().map((n) => networkView(n, c))],
    [
      'POST',
      /^\/networks$/,
      async (_m, b) => {
        const req = {
          name: str(b, 'name'),
          driver: optStr(b, 'driver'),
          subnet: optStr(b, 'subnet'),
          attachable: b.attachable === true,
          internal: b.internal === true,
          mtu: optNum(b, 'mtu'),
        }
        return networkView(await w((x) => x.createNetwork(req)), c)
      },
    ],
    ['GET', /^\/networks\/([^/]+)$/, (m) => networkView(c.findNetwork(dec(m[1])), c)],
    [
      'DELETE',
      /^\/networks\/([^/]+)$/,
      async (m, _b, q) => (await w((x) => x.removeNetwork(dec(m[1]), {force: q.get('force') === '1'})), {}),
    ],
    ['GET', /^\/attachments$/, () => c.attachments().map((a) => attachmentView(a, c))],
    [
      'POST',
      /^\/networks\/([^/]+)\/connect$/,
      async (m, b) => {
        const req = {
          network: dec(m[1]),
          netns: optStr(b, 'netns'),
          pid: optNum(b, 'pid'),
          ip: optStr(b, 'ip'),
          name: optStr(b, 'name'),
          node: optStr(b, 'node'),
        }
        // Answered once the namespace's node has attached it (or it is removed again and the error says why).
        return attachmentView(await connectAndWait(ctx, req, attachTimeout(b.timeoutMs)), c)
      },
    ],
    [
      'POST',
      /^\/networks\/([^/]+)\/disconnect$/,
      async (m, b) => {
        const name = str(b, 'name')
        // Answered once the namespace's node has removed its interface.
        return attachmentView(await disconnectAndWait(ctx, dec(m[1]), name, attachTimeout(b.timeoutMs)), c)
      },
    ],
    ['GET', /^\/services$/, () => serviceListViewSliced(c)],
    [
      'POST',
      /^\/services$/,
      async (_m, b) => {
        const req = {
          name: str(b, 'name'),
          mode: checkServiceMode(b.mode),
          replicas: b.replicas === undefined ? 1 : checkReplicas(b.replicas),
          networks: strList(b, 'networks'),
          command: strList(b, 'command'),
          user: optStr(b, 'user'),
          limitMemory: optStr(b, 'limitMemory'),
          limitCpu: optStr(b, 'limitCpu'),
          endpointMode: optStr(b, 'endpointMode'),
          ports: list(b, 'ports').map(checkPortRequest),
          image: await pinned(optStr(b, 'image'), b.tlsVerify !== false),
          ...(b.tlsVerify === false ? {tlsVerify: false} : {}),
          env: strList(b, 'env'),
          workdir: optStr(b, 'workdir'),
          hostname: optStr(b, 'hostname'),
          capAdd: strList(b, 'capAdd'),
          capDrop: strList(b, 'capDrop'),
          readOnly: b.readOnly === true,
          init: b.init === true,
          userns: optStr(b, 'userns'),
          mounts: strList(b, 'mounts'),
          stopSignal: optStr(b, 'stopSignal'),
          stopGracePeriod: optStr(b, 'stopGracePeriod'),
          constraints: strList(b, 'constraints'),
          placementPrefs: strList(b, 'placementPrefs'),
          ...healthRequest(b),
          ...updateRequest(b),
        }
        return serviceView(await w((x) => x.createService(req)), c)
      },
    ],
    ['GET', /^\/services\/([^/]+)$/, (m) => serviceInspectView(c.findService(dec(m[1])), c)],
    ['GET', /^\/services\/([^/]+)\/tasks$/, (m) => serviceTasksView(c.findService(dec(m[1])), c)],
    [
      'POST',
      /^\/services\/([^/]+)\/ports$/,
      async (m, b) => {
        const change = {add: list(b, 'add').map(checkPortRequest), rm: list(b, 'rm').map(checkPortRef)}
        return serviceView(await w((x) => x.updatePorts(dec(m[1]), change)), c)
      },
    ],
    [
      'POST',
      /^\/services\/([^/]+)\/networks$/,
      async (m, b) => {
        const change = {add: strList(b, 'add'), rm: strList(b, 'rm')}
        return serviceView(await w((x) => x.updateNetworks(dec(m[1]), change)), c)
      },
    ],
    [
      'POST',
      /^\/services\/([^/]+)\/update$/,
      async (m, b) => {
        const ports = b.ports as Record<string, unknown> | undefined
        const req = {
          replicas: b.replicas === undefined ? undefined : checkReplicas(b.replicas),
          command: b.command === undefined ? undefined : strList(b, 'command'),
          user: optStr(b, 'user'),
          limitMemory: optStr(b, 'limitMemory'),
          limitCpu: optStr(b, 'limitCpu'),
          stopSignal: optStr(b, 'stopSignal'),
          stopGracePeriod: optStr(b, 'stopGracePeriod'),
          ...(ports ? {ports: {add: list(ports, 'add').map(checkPortRequest), rm: list(ports, 'rm').map(checkPortRef)}} : {}),
          force: b.force === true,
          // Re-resolved at each --image, as docker service update does: the same tag may name a new digest.
          image:
            b.image === undefined
              ? undefined
              : await pinned(optStr(b, 'image'), c.findService(dec(m[1])).container?.tlsVerify !== false),
          envAdd: optStrList(b, 'envAdd'),
          envRm: optStrList(b, 'envRm'),
          mountAdd: optStrList(b, 'mountAdd'),
          mountRm: optStrList(b, 'mountRm'),
          hostname: optStr(b, 'hostname'),
          workdir: optStr(b, 'workdir'),
          capAdd: optStrList(b, 'capAdd'),
          capDrop: optStrList(b, 'capDrop'),
          readOnly: typeof b.readOnly === 'boolean' ? b.readOnly : undefined,
          init: typeof b.init === 'boolean' ? b.init : undefined,
          userns: optStr(b, 'userns'),
          constraintAdd: optStrList(b, 'constraintAdd'),
          constraintRm: optStrList(b, 'constraintRm'),
          placementPrefAdd: optStrList(b, 'placementPrefAdd'),
          placementPrefRm: optStrList(b, 'placementPrefRm'),
          ...healthRequest(b),
          ...updateRequest(b),
        }
        return serviceView(await w((x) => x.updateService(dec(m[1]), req)), c)
      },
    ],
    ['POST', /^\/services\/([^/]+)\/rollback$/, async (m) => serviceView(await w((x) => x.rollbackService(dec(m[1]))), c)],
    [
      'POST',
      /^\/services\/([^/]+)\/scale$/,
      async (m, b) => {
        const replicas = checkReplicas(b.replicas)
        return serviceView(await w((x) => x.scaleService(dec(m[1]), replicas)), c)
      },
    ],
    ['DELETE', /^\/services\/([^/]+)$/, async (m) => (await w((x) => x.removeService(dec(m[1]))), {})],
    ['GET', /^\/tasks$/, () => c.tasks().map((t) => taskView(t, c))],
    ['GET', /^\/tasks\/([^/]+)$/, (m) => taskView(c.findTask(dec(m[1])), c)],
    ['GET', /^\/tasks\/([^/]+)\/logs$/, (m, _b, q) => taskLogStream(c, dec(m[1]), q)],
  ]

  const server = createServer((req, res) => {
    void handle(req, res)
  })

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = req.url ?? '/'
      const q = url.indexOf('?')
      const path = q < 0 ? url : url.slice(0, q)
      const route = routes.find(([method, re]) => method === req.method && re.test(path))
      if (!route) return send(res, 404, {error: `no such API call: ${req.method} ${path}`})
      const body = await readBody(req)
      const result = await route[2](route[1].exec(path)!, body, new URLSearchParams(q < 0 ? '' : url.slice(q + 1)))
      if (result instanceof LogStream) return result.pipe(res)
      // Acknowledged once on disk: what the command changed survives a kill -9 of the agent right after.
      if (req.method !== 'GET') await ctx.durable?.()
      send(res, 200, result ?? {})
    } catch (e) {
      const err = e as Error
      send(res, isUserError(err) || err instanceof RequestError ? 400 : 500, {error: err.message})
    }
  }

  mkdirSync(dirname(socket), {recursive: true, mode: 0o700})
  // Made under a name of its own, then renamed over the socket's: a client finds the old agent's
  // socket or this one, never none (`agent --replace`). (And closing the server unlinks only the
  // name it was made under, never a successor's socket.)
  const fresh = `${socket}.${process.pid}`
  rmSync(fresh, {force: true})
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    // The socket is created under a 0077 umask, so no moment exists when it is open to others.
    const old = process.umask(0o077)
    server.listen(fresh, () => {
      process.umask(old)
      try {
        chmodSync(fresh, 0o600)
        renameSync(fresh, socket)
      } catch (e) {
        server.close()
        reject(e as Error)
        return
      }
      resolve(server)
    })
  })
}

class RequestError extends Error {}

/** ?role=manager|worker (worker when absent). */
function tokenRole(q: URLSearchParams): 'worker' | 'manager' {
  const r = q.get('role') ?? 'worker'
  if (r !== 'worker' && r !== 'manager') throw new RequestError(`role must be worker or manager, not '${r}'`)
  return r
}

/** A task's log as the answer: text, streamed (and kept open with follow until the client goes). */
class LogStream {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly follow: boolean,
  ) {}

  pipe(res: ServerResponse): void {
    res.writeHead(200, {'content-type': 'text/plain; charset=utf-8'})
    const reader = readLog(this.file, this.offset, this.follow, (b) => res.write(b))
    res.on('close', () => reader.close())
    void reader.done.then(() => res.end())
  }
}

/** GET /tasks/TASK/logs?tail=N&follow=1: only the tasks of this node, whose logs are here. */
function taskLogStream(c: ClusterReader, ref: string, q: URLSearchParams): LogStream {
  const t = c.findTask(ref)
  if (t.nodeId !== c.selfId) {
    const node = c.nodes().find((n) => n.id === t.nodeId)?.name ?? t.nodeId
    throw new RequestError(`task ${ref} runs on node ${node}: its logs are there`)
  }
  const tail = q.get('tail')
  if (tail !== null && !/^\d+$/.test(tail)) throw new RequestError(`'tail' must be a number of lines`)
  const file = taskLogPath(nodeNameOf(c), t.id)
  return new LogStream(file, tailOffset(file, tail === null ? undefined : Number(tail)), q.get('follow') === '1')
}

const nodeNameOf = (c: ClusterReader) => c.nodes().find((n) => n.id === c.selfId)?.name ?? ''

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value)
  res.writeHead(status, {'content-type': 'application/json', 'content-length': Buffer.byteLength(body)})
  res.end(body)
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length
    if (size > 1 << 20) throw new RequestError('request body too large')
    chunks.push(c)
  }
  if (size === 0) return {}
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error()
    return v as Record<string, unknown>
  } catch {
    throw new RequestError('request body is not a JSON object')
  }
}

/** A name from the path; a malformed escape (`%E0%A4%A`) is the caller's mistake, not ours. */
function dec(s: string | undefined): string {
  try {
    return decodeURIComponent(s ?? '')
  } catch {
    throw new RequestError(`malformed path: ${JSON.stringify(s)} is not valid percent-encoding`)
  }
}

function str(b: Record<string, unknown>, k: string): string {
  const v = b[k]
  if (typeof v !== 'string' || v.length === 0) throw new RequestError(`missing '${k}'`)
  return v
}

function optStr(b: Record<string, unknown>, k: string): string | undefined {
  const v = b[k]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new RequestError(`'${k}' must be a string`)
  return v
}

function num(b: Record<string, unknown>, k: string): number {
  const v = b[k]
  if (typeof v !== 'number') throw new RequestError(`'${k}' must be a number`)
  return v
}

function optNum(b: Record<string, unknown>, k: string): number | undefined {
  return b[k] === undefined || b[k] === null ? undefined : num(b, k)
}

function list(b: Record<string, unknown>, k: string): unknown[] {
  const v = b[k] ?? []
  if (!Array.isArray(v)) throw new RequestError(`'${k}' must be a list`)
  return v
}

function strList(b: Record<string, unknown>, k: string): string[] {
  const v = b[k] ?? []
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new RequestError(`'${k}' must be a list of strings`)
  return v as string[]
}

/** The --health-* flags of a request body (checked in full by src/tasks/health.ts healthSpec). */
function optStrList(b: Record<string, unknown>, k: string): string[] | undefined {
  return b[k] === undefined ? undefined : strList(b, k)
}

function updateRequest(b: Record<string, unknown>): UpdateRequest {
  const ratio = b.updateMaxFailureRatio
  return {
    updateParallelism: optNum(b, 'updateParallelism'),
    updateOrder: optStr(b, 'updateOrder'),
    updateDelay: optStr(b, 'updateDelay'),
    updateMonitor: optStr(b, 'updateMonitor'),
    updateFailureAction: optStr(b, 'updateFailureAction'),
    updateMaxFailureRatio: typeof ratio === 'number' ? ratio : optStr(b, 'updateMaxFailureRatio'),
  }
}

function healthRequest(b: Record<string, unknown>): HealthRequest {
  return {
    healthCmd: optStr(b, 'healthCmd'),
    healthInterval: optStr(b, 'healthInterval'),
    healthTimeout: optStr(b, 'healthTimeout'),
    healthRetries: optNum(b, 'healthRetries'),
    healthStartPeriod: optStr(b, 'healthStartPeriod'),
    noHealthcheck: b.noHealthcheck === true,
  }
}
