// When the manager places: after a change to nodes, networks, services or
// tasks (coalesced), and every few seconds as a backstop. Separate from the
// node's reconcile loop, which only reads the store and drives its own node.
import type {Store} from '../store/store.js'
import type {Manager, PlacementReport} from './manager.js'

export type ManagerLoop = {
  /** One pass now (also what the timer and the store changes trigger). */
  pass(): PlacementReport
  /** What is not placed right now, by service name. */
  readonly problems: PlacementReport
  stop(): void
}

const TRIGGERS = ['node/', 'network/', 'service/', 'task/', 'attachment']

export function startManagerLoop(
  manager: Manager,
  store: Store,
  log: (m: string) => void,
  opts: {intervalMs?: number; debounceMs?: number} = {},
): ManagerLoop {
  let problems: PlacementReport = new Map()
  let running = false

  const pass = (): PlacementReport => {
    // placeAll's own writes trigger the listener: no re-entry, the timer runs once more.
    if (running) return problems
    running = true
    try {
      for (const line of manager.reapAttachments()) log(line)
      const found = manager.placeAll()
      // Say each problem once when it appears and once when it is gone, not on every pass.
      for (const [svc, why] of found) if (problems.get(svc) !== why) log(`placement: ${why}`)
      for (const svc of problems.keys()) if (!found.has(svc)) log(`placement: service ${svc} is fully placed again`)
      problems = found
    } catch (e) {
      log(`placement: ${(e as Error).message}`)
    } finally {
      running = false
    }
    return problems
  }

  let pending: NodeJS.Timeout | undefined
  const unsubscribe = store.onChange((key) => {
    if (!TRIGGERS.some((p) => key.startsWith(p))) return
    if (!pending) pending = setTimeout(() => ((pending = undefined), pass()), opts.debounceMs ?? 20)
  })
  const timer = setInterval(pass, opts.intervalMs ?? 3000)
  timer.unref()

  return {
    pass,
    get problems() {
      return problems
    },
    stop() {
      clearInterval(timer)
      if (pending) clearTimeout(pending)
      unsubscribe()
    },
  }
}
