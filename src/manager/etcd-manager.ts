// A manager of a cluster whose desired state is in etcd: it serves requests
// through the etcd backend (any manager may), and, while it holds the leader's
// lease, places on its own (nodes coming and going, dead nodes' tasks) and
// mirrors etcd into the gossip store that carries the state to every node.
// Standbys do neither; the next leader picks up where the last one stopped,
// because everything it needs is in etcd and in the gossip store: its copy of
// etcd (etcd-cache.ts) is a read at one revision followed by the watch from the
// next, read again whole when the watch ends (its revision compacted away).
import type {Etcd3} from 'etcd3'
import type {MembershipView} from '../membership/view.js'
import type {Store} from '../store/store.js'
import {EtcdBackend} from './etcd-backend.js'
import {etcdClient, type EtcdSettings} from './etcd-client.js'
import {Leadership, type LeadershipOptions} from './etcd-leader.js'
import type {ManagerLoop} from './loop.js'
import type {PlacementReport} from './manager.js'
import {EtcdRotationLock} from './etcd-rotation-lock.js'
import type {RolePublisher} from './roles.js'

export type EtcdManagerOptions = {
  settings: EtcdSettings
  local: Store
  selfId: string
  membership: MembershipView
  log: (m: string) => void
  /** This node's name: what the rotation lock says to a manager that finds it taken. */
  selfName?: string
  /** Who leads changed (this manager writes its node record's managerStatus from it). */
  onLeader?: (leader: string | undefined, self: boolean) => void
  leadership?: Pick<LeadershipOptions, 'ttlSec' | 'pollMs'>
  /** How often the leader places and mirrors without being asked (ms). */
  intervalMs?: number
  /** What the leader certifies roles with when it publishes them from etcd (roles.ts rolesToPublish). */
  roles?: RolePublisher
}

export type EtcdManager = {
  backend: EtcdBackend
  leadership: Leadership
  /** One cluster key rotation at a time across managers (etcd-rotation-lock.ts). */
  rotationLock: EtcdRotationLock
  client: Etcd3
  /** The leader's placement: same shape as the embedded loop, so the agent treats both alike. */
  loop: ManagerLoop
  stop(): Promise<void>
}

// Changes that may call for placement; desired-state keys come from etcd itself.
const TRIGGERS = ['node/', 'taskstatus/', 'attachmentstatus/']

export function startEtcdManager(o: EtcdManagerOptions): EtcdManager {
  const client = etcdClient(o.settings)
  let problems: PlacementReport = new Map()
  let running: Promise<void> | undefined
  let again = false
  let lastError = ''
  let lastRoleProblem: string | undefined
  const leadership: Leadership = new Leadership(client.namespace(o.settings.prefix), o.selfId, {
    ...o.leadership,
    log: o.log,
    // Demoted (or removed) in etcd while leading: another leader publishes this node's record.
    mayLead: () => backend.countsAsManager(),
    onChange: (leader, self) => {
      o.onLeader?.(leader, self)
      if (self) kick()
    },
  })
  const backend = new EtcdBackend({
    client,
    prefix: o.settings.prefix,
    local: o.local,
    selfId: o.selfId,
    membership: o.membership,
    endpoints: o.settings.endpoints,
    leaderRevision: () => leadership.revision(),
    log: o.log,
  })

  const once = async (): Promise<void> => {
    if (!leadership.isLeader) return
    try {
      const {reaped, found} = await backend.write((m) => ({reaped: m.reapAttachments(), found: m.placeAll()}), {asLeader: true})
      for (const line of reaped) o.log(line)
      for (const [svc, why] of found) if (problems.get(svc) !== why) o.log(`placement: ${why}`)
      for (const svc of problems.keys()) if (!found.has(svc)) o.log(`placement: service ${svc} is fully placed again`)
      problems = found
      // Etcd's state at one revision, published to gossip: other managers' commits, roles whose
      // writer died before its gossip record, and records that contradict etcd, whoever wrote them.
      const {problem} = await backend.mirror(o.roles)
      if (problem !== undefined && problem !== lastRoleProblem) o.log(`roles: ${problem}`)
      lastRoleProblem = problem
      if (lastError) o.log('placement: etcd answers again')
      lastError = ''
    } catch (e) {
      const msg = (e as Error).message
      // Say it once, not every second while etcd is away.
      if (msg !== lastError) o.log(`placement: ${msg}`)
      lastError = msg
    }
  }
  // One pass at a time; a request during a pass makes one more after it.
  const kick = (): void => {
    if (running) {
      again = true
      return
    }
    running = once().finally(() => {
      running = undefined
      if (again) {
        again = false
        kick()
      }
    })
  }

  let pending: NodeJS.Timeout | undefined
  const unsubscribe = o.local.onChange((key) => {
    if (!TRIGGERS.some((p) => key.startsWith(p))) return
    if (!pending) pending = setTimeout(() => ((pending = undefined), kick()), 20)
  })
  const timer = setInterval(kick, o.intervalMs ?? 1000)
  timer.unref()
  leadership.start()

  const rotationLock = new EtcdRotationLock(client.namespace(o.settings.prefix), o.selfName ?? o.selfId, o.log)

  return {
    backend,
    leadership,
    rotationLock,
    client,
    loop: {
      pass: () => (kick(), problems),
      passChanged: () => (kick(), problems),
      get problems() {
        return problems
      },
      stop: () => undefined,
    },
    async stop() {
      clearInterval(timer)
      if (pending) clearTimeout(pending)
      unsubscribe()
      await running
      await rotationLock.release()
      await leadership.stop()
      backend.close()
      client.close()
    },
  }
}
