// When the manager places: after a change to nodes, networks, services or
// tasks (coalesced), and every few seconds as a backstop. Separate from the
// node's reconcile loop, which only reads the store and drives its own node.
// A pass after changes places only the services they touched (and those not
// fully placed last time); a change to nodes, networks, attachments or who is
// down, and pass() itself, place every service.
import type {Store} from '../store/store.js'
import type {Manager, PlacementReport, ProblemsById} from './manager.js'
import type {Task} from '../model/types.js'
import {idOf, keyOf} from '../store/keys.js'

export type ManagerLoop = {
  /** One pass over every service now (the timer and the store changes run one over what changed). */
  pass(): PlacementReport
  /** The pass the timer and the store changes run: the services changed since the last one (all, if nodes changed). */
  passChanged(): PlacementReport
  /** What is not placed right now, by service name. */
  readonly problems: PlacementReport
  stop(): void
}

// nodespec/: labels and availability change where every service may run (a full pass).
const TRIGGERS = ['node/', 'nodespec/', 'network/', 'service/', 'task/', 'attachment', 'taskstatus/', 'cluster']

export function startManagerLoop(
  manager: Manager,
  store: Store,
  log: (m: string) => void,
  opts: {intervalMs?: number; debounceMs?: number} = {},
): ManagerLoop {
  let problems: ProblemsById = new Map()
  let running = false
  // What changed since the last pass: the services to place again, or everything (nodes,
  // networks, attachments, the cluster record, or who is down: any service may be affected).
  let dirty = new Set<string>()
  let full = true
  let nodes = ''

  const run = (place: () => ProblemsById, checked: ReadonlySet<string> | undefined): PlacementReport => {
    // placeAll's own writes trigger the listener: no re-entry, the next pass looks at what they touched.
    if (running) return byName(problems)
    running = true
    try {
      for (const line of manager.reapAttachments()) log(line)
      const found = place()
      // A pass over some services: what it did not look at keeps what the last pass found.
      const next: ProblemsById = new Map(checked ? [...problems].filter(([id]) => !checked.has(id)) : [])
      for (const [id, p] of found) next.set(id, p)
      // Say each problem once when it appears and once when it is gone, not on every pass.
      for (const [id, p] of next) if (problems.get(id)?.why !== p.why) log(`placement: ${p.why}`)
      for (const [id, p] of problems) if (!next.has(id)) log(`placement: service ${p.name} is fully placed again`)
      problems = next
    } catch (e) {
      log(`placement: ${(e as Error).message}`)
    } finally {
      running = false
    }
    return byName(problems)
  }

  /** Every service (at the start, on a membership change, and what pass() is asked for). */
  const pass = (): PlacementReport => {
    if (running) return byName(problems)
    full = false
    dirty = new Set()
    nodes = manager.nodesSignature()
    return run(() => manager.placeServices(), undefined)
  }

  /**
   * The services changed since the last pass, those it could not place (room may have come free),
   * and those in a rolling update (its delay and monitor periods end with no change to the store).
   */
  const changed = (): PlacementReport => {
    if (running) return byName(problems)
    const sig = manager.nodesSignature()
    if (full || sig !== nodes) return pass()
    const ids = new Set([...dirty, ...problems.keys(), ...manager.rollingServices()])
    dirty = new Set()
    return ids.size > 0 ? run(() => manager.placeServices(ids), ids) : byName(problems)
  }

  let pending: NodeJS.Timeout | undefined
  const unsubscribe = store.onChange((key, value, old) => {
    if (!TRIGGERS.some((p) => key.startsWith(p))) return
    if (key.startsWith('service/')) dirty.add(idOf(key))
    else if (key.startsWith('task/')) {
      for (const t of [value, old] as (Task | undefined)[])
        if (t) {
          dirty.add(t.serviceId)
          // Its host-mode ports decide where the services sharing them may run.
          for (const id of manager.hostPortPeers(t.serviceId)) dirty.add(id)
        }
    } else if (key.startsWith('taskstatus/')) {
      // A replaced task waits for its node to say it stopped before it goes: the next timer's pass
      // looks at its service (statuses change all the time; they do not start a pass of their own).
      const t = store.get<Task>(keyOf('task', idOf(key)))
      if (t) dirty.add(t.serviceId)
      return
    } else if (key === 'cluster') {
      full = true
      return
    } else full = true
    if (!pending) pending = setTimeout(() => ((pending = undefined), void changed()), opts.debounceMs ?? 20)
  })
  const timer = setInterval(() => void changed(), opts.intervalMs ?? 3000)
  timer.unref()

  return {
    pass,
    passChanged: changed,
    get problems() {
      return byName(problems)
    },
    stop() {
      clearInterval(timer)
      if (pending) clearTimeout(pending)
      unsubscribe()
    },
  }
}

function byName(p: ProblemsById): PlacementReport {
  return new Map([...p.values()].map((x) => [x.name, x.why]))
}
