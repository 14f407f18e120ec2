// Store records to the API's views (src/agent/views.ts).
import {availabilityOf, type NodeSpec} from '../model/placement.js'
import {updateConfig, updateState} from '../manager/rolling.js'
import {nodeStatus, type Member} from '../membership/state.js'
import type {NodeLivenessState} from '../membership/node-liveness.js'
import {taskMtu} from '../model/allocate.js'
import {taskName} from '../model/task-name.js'
import type {AttachmentStatus, Network, NetworkAttachment, NodeRecord, Service, Task, TaskStatus} from '../model/types.js'
import type {ClusterReader} from '../store/cluster-reader.js'
import type {AttachmentView, NetworkView, NodeView, ServiceInspectView, ServiceView, TaskView} from './views.js'

/**
 * live: the member as this node's failure detector sees it (absent for this node itself);
 * liveness: whether the node is down, its data path counted (an agent SWIM holds dead whose
 * data path answers leaves the node ready, its agent down).
 */
export function nodeView(
  n: NodeRecord,
  selfId: string,
  live?: Pick<Member, 'state' | 'lastHeard' | 'incarnation'>,
  liveness?: NodeLivenessState,
  now = Date.now(),
  spec?: NodeSpec,
): NodeView {
  const self = n.id === selfId
  const swim = nodeStatus(live?.state)
  const state =
    n.state === 'left' ? 'left' : self ? 'ready' : liveness ? (liveness.down ? 'down' : swim === 'down' ? 'ready' : swim) : swim
  const agent = !self && (liveness ? liveness.agent === 'down' : swim === 'down') ? 'down' : 'up'

  return {
    id: n.id,
    name: n.name,
    addr: n.addr,
    role: n.role,
    state,
    agent,
    self,
    ...(self ? {lastHeardMs: 0} : live && live.lastHeard > 0 ? {lastHeardMs: Math.max(0, now - live.lastHeard)} : {}),
    ...(live ? {incarnation: live.incarnation} : {}),
    gossipPort: n.gossipPort,
    joinedAt: n.joinedAt,
    ...(n.managerStatus ? {managerStatus: state === 'ready' ? n.managerStatus : 'unreachable'} : {}),
    availability: availabilityOf(spec),
    labels: {...spec?.labels},
  }
}

export function networkView(n: Network, c: ClusterReader): NetworkView {
  const nodes = new Map(c.nodes().map((x) => [x.id, x]))
  const tasks = c.tasks().filter((t) => t.desiredState === 'running' && t.attachments.some((a) => a.networkId === n.id))
  const peerIds = [...new Set(tasks.map((t) => t.nodeId))]
  const self = nodes.get(c.selfId)
  return {
    id: n.id,
    name: n.name,
    driver: n.driver,
    scope: n.scope,
    vni: n.vni,
    subnet: n.subnet,
    gateway: n.gateway,
    attachable: n.attachable,
    ingress: n.ingress,
    ...(n.internal ? {internal: true} : {}),
    mtu: n.driver === 'overlay' ? taskMtu(n) : (self?.mtu ?? 1500),
    peers: peerIds.map((id) => ({node: nodes.get(id)?.name ?? id, addr: nodes.get(id)?.addr ?? '?'})),
    endpoints: tasks.map((t) => {
      const a = t.attachments.find((x) => x.networkId === n.id)!
      return {task: taskName(t), service: t.serviceName, ip: a.ip, mac: a.mac, node: nodes.get(t.nodeId)?.name ?? t.nodeId}
    }),
    attachments: c
      .attachments()
      .filter((a) => a.networkId === n.id)
      .map((a) => attachmentView(a, c)),
  }
}

export function taskView(t: Task, c: ClusterReader): TaskView {
  const st = c.statuses().get(t.id)
  const nets = new Map(c.networks().map((n) => [n.id, n.name]))
  const node = c.node(t.nodeId)
  return {
    id: t.id,
    name: taskName(t),
    service: t.serviceName,
    node: node?.name ?? t.nodeId,
    desiredState: t.desiredState,
    state: st?.state ?? 'new',
    addresses: t.attachments.map((a) => ({network: nets.get(a.networkId) ?? a.networkId, ip: a.ip})),
    netns: st?.netns,
    pid: st?.pid,
    restarts: st?.restarts ?? 0,
    message: st?.message,
    ...(st?.health && t.desiredState === 'running' ? {health: st.health} : {}),
  }
}

/** What every service's view reads alike: a list renders it once, not once per service. */
type ServiceViewContext = {statuses: ReadonlyMap<string, TaskStatus>; nets: Map<string, string>; liveNodes?: number}

const serviceViewContext = (c: ClusterReader): ServiceViewContext => ({
  statuses: c.statuses(),
  nets: new Map(c.networks().map((n) => [n.id, n.name])),
})

export function serviceView(s: Service, c: ClusterReader, ctx: ServiceViewContext = serviceViewContext(c)): ServiceView {
  const tasks = c.tasksOf(s.id).filter((t) => t.desiredState === 'running')
  const st = ctx.statuses
  const nets = ctx.nets
  return {
    id: s.id,
    name: s.name,
    mode: 'global' in s.mode ? 'global' : 'replicated',
    desired: 'global' in s.mode ? (ctx.liveNodes ??= c.liveNodes().length) : s.mode.replicas,
    running: tasks.filter((t) => st.get(t.id)?.state === 'running').length,
    networks: s.networks.map((id) => nets.get(id) ?? id),
    command: s.command,
    ...(s.container ? {container: s.container} : {}),
    endpointMode: s.endpointMode ?? 'vip',
    vips: (s.vips ?? []).map((v) => ({network: nets.get(v.networkId) ?? v.networkId, ip: v.ip})),
    ports: (s.ports ?? []).map((p) => ({published: p.published, target: p.target, protocol: p.protocol, mode: p.mode})),
  }
}

/** GET /services (service ls): every service. */
export function serviceListView(c: ClusterReader): ServiceView[] {
  const ctx = serviceViewContext(c)
  return c.services().map((s) => serviceView(s, c, ctx))
}

/**
 * serviceListView for the API: the same rows, rendered a slice at a time with the event loop
 * let go in between, so 10,000 services do not hold SWIM's probes (120 ms) and other requests
 * for the whole render. A change that lands between slices shows in the later rows only, as
 * it would in a list taken a moment later.
 */
export async function serviceListViewSliced(c: ClusterReader, slice = 500): Promise<ServiceView[]> {
  const all = c.services()
  const out: ServiceView[] = []
  for (let i = 0; i < all.length; i += slice) {
    if (i > 0) await new Promise((r) => setImmediate(r))
    const ctx = serviceViewContext(c)
    for (const s of all.slice(i, i + slice)) out.push(serviceView(s, c, ctx))
  }
  return out
}

/** GET /services/NAME/tasks (service ps): the service's tasks by slot. */
export function serviceTasksView(s: Service, c: ClusterReader): TaskView[] {
  return c
    .tasksOf(s.id)
    .sort((a, b) => a.slot - b.slot)
    .map((t) => taskView(t, c))
}

export function attachmentView(a: NetworkAttachment, c: ClusterReader): AttachmentView {
  const st: AttachmentStatus | undefined = c.attachmentStatus(a.id)
  return {
    id: a.id,
    name: a.name,
    network: c.networks().find((n) => n.id === a.networkId)?.name ?? a.networkId,
    node: c.nodes().find((n) => n.id === a.nodeId)?.name ?? a.nodeId,
    netns: a.netns,
    ip: a.ip,
    mac: a.mac,
    state: st?.state ?? 'pending',
    ...(st?.message ? {message: st.message} : {}),
  }
}

export function serviceInspectView(s: Service, c: ClusterReader): ServiceInspectView {
  const tasks = c
    .tasksOf(s.id)
    .filter((t) => t.desiredState === 'running')
    .sort((a, b) => a.slot - b.slot || (a.nodeId < b.nodeId ? -1 : 1))
  const st = c.statuses()
  const nets = new Map(c.networks().map((n) => [n.id, n.name]))
  const nodes = new Map(c.nodes().map((n) => [n.id, n.name]))
  const backends = s.networks.flatMap((netId) =>
    tasks.flatMap((t) =>
      t.attachments
        .filter((a) => a.networkId === netId)
        .map((a) => ({
          network: nets.get(netId) ?? netId,
          task: taskName(t),
          ip: a.ip,
          node: nodes.get(t.nodeId) ?? t.nodeId,
          state: st.get(t.id)?.state ?? 'new',
        })),
    ),
  )
  const state = updateState(s, c.tasksOf(s.id))
  return {
    ...serviceView(s, c),
    backends,
    ...(s.constraints || s.placementPrefs
      ? {
          placement: {
            ...(s.constraints ? {constraints: s.constraints} : {}),
            ...(s.placementPrefs ? {preferences: s.placementPrefs} : {}),
          },
        }
      : {}),
    ...(state || s.update
      ? {
          update: {
            ...(state ? {state} : {}),
            ...(s.updateStatus?.message ? {message: s.updateStatus.message} : {}),
            ...(s.updateStatus ? {startedAt: s.updateStatus.startedAt} : {}),
            ...(s.updateStatus?.completedAt ? {completedAt: s.updateStatus.completedAt} : {}),
            specVersion: s.specVersion ?? 0,
            ...updateConfig(s),
            rollback: s.previous !== undefined,
          },
        }
      : {}),
  }
}
