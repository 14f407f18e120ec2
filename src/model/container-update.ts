/**
 * service update's container flags (Docker's): --image, --env-add/--env-rm (by KEY),
 * --mount-add/--mount-rm (by target), --hostname, --workdir, --cap-add/--cap-drop, --read-only, --init,
 * --userns.
 * Each value is checked as service create checks it (containerSpec); a removal of what the
 * service does not have is refused, as --publish-rm of a port it does not publish is.
 */
import {containerSpec, type ServiceContainer} from './container.js'
import {UserError} from './errors.js'

export type ContainerUpdate = {
  image?: string
  envAdd?: string[]
  envRm?: string[]
  mountAdd?: string[]
  mountRm?: string[]
  hostname?: string
  workdir?: string
  capAdd?: string[]
  capDrop?: string[]
  /** true: --read-only; false: --read-only=false (writable again). */
  readOnly?: boolean
  /** true: --init; false: --no-init. */
  init?: boolean
  /** remap, or host (back to the node's ids). */
  userns?: string
}

const FLAGS: [keyof ContainerUpdate, string][] = [
  ['envAdd', '--env-add'],
  ['envRm', '--env-rm'],
  ['mountAdd', '--mount-add'],
  ['mountRm', '--mount-rm'],
  ['hostname', '--hostname'],
  ['workdir', '--workdir'],
  ['capAdd', '--cap-add'],
  ['capDrop', '--cap-drop'],
  ['readOnly', '--read-only'],
  ['init', '--init'],
  ['userns', '--userns'],
]

const given = (v: unknown) => v !== undefined && !(Array.isArray(v) && v.length === 0)

/** The service's container part after req (cur itself when req changes nothing); refused as a whole when any value is bad. */
export function updatedContainer(
  service: string,
  cur: ServiceContainer | undefined,
  req: ContainerUpdate,
): ServiceContainer | undefined {
  const first = FLAGS.find(([k]) => given(req[k]))
  if (req.image === undefined && !first) return cur
  // Without an image the flags set the runtime of the service's commands (src/tasks/node-view.ts).
  const image = req.image ?? cur?.image
  // The added values, checked by create's rules; its messages name create's flags, here update's.
  let add: ServiceContainer
  try {
    add =
      containerSpec({
        ...(image !== undefined ? {image} : {}),
        env: req.envAdd,
        workdir: req.workdir,
        hostname: req.hostname,
        capAdd: req.capAdd,
        capDrop: req.capDrop,
        mounts: req.mountAdd,
        userns: req.userns,
      }).container ?? {}
  } catch (e) {
    const m = (e as Error).message
      .replace(/^invalid --env '/, "invalid --env-add '")
      .replace(/^invalid --mount '/, "invalid --mount-add '")
    throw new UserError(m)
  }
  const out: ServiceContainer = {...cur, ...(image !== undefined ? {image} : {})}
  const keyOf = (kv: string) => kv.split('=')[0]!
  // --env-rm KEY, then --env-add KEY=V (replacing the KEY it had).
  let env = [...(cur?.env ?? [])]
  for (const k of req.envRm ?? []) {
    if (!env.some((kv) => keyOf(kv) === k)) throw new UserError(`--env-rm ${k}: service ${service} has no variable ${k}`)
    env = env.filter((kv) => keyOf(kv) !== k)
  }
  for (const kv of add.env ?? []) env = [...env.filter((x) => keyOf(x) !== keyOf(kv)), kv]
  set(out, 'env', env)
  // --mount-rm TARGET, then --mount-add (a target still mounted is refused, as create refuses two).
  let mounts = [...(cur?.mounts ?? [])]
  for (const t of req.mountRm ?? []) {
    if (!mounts.some((m) => m.target === t)) throw new UserError(`--mount-rm ${t}: service ${service} has no mount at ${t}`)
    mounts = mounts.filter((m) => m.target !== t)
  }
  for (const m of add.mounts ?? []) {
    if (mounts.some((x) => x.target === m.target))
      throw new UserError(`--mount-add: service ${service} already has a mount at ${m.target} (remove it with --mount-rm)`)
    mounts.push(m)
  }
  set(out, 'mounts', mounts)
  // Docker: a capability added leaves the drop list and the other way round.
  const adds = add.capAdd ?? []
  const drops = add.capDrop ?? []
  const both = adds.find((c) => drops.includes(c))
  if (both) throw new UserError(`--cap-add and --cap-drop both name ${both}`)
  set(out, 'capAdd', uniq([...(cur?.capAdd ?? []).filter((c) => !drops.includes(c)), ...adds]))
  set(out, 'capDrop', uniq([...(cur?.capDrop ?? []).filter((c) => !adds.includes(c)), ...drops]))
  if (add.workdir !== undefined) out.workdir = add.workdir
  if (add.hostname !== undefined) out.hostname = add.hostname
  if (req.readOnly === true) out.readOnly = true
  else if (req.readOnly === false) delete out.readOnly
  if (req.init === true) out.init = true
  else if (req.init === false) delete out.init
  if (add.userns) out.userns = add.userns
  else if (req.userns === 'host') delete out.userns
  return out
}

const uniq = (xs: string[]) => [...new Set(xs)]

/** A list field as create stores it: absent when empty. */
function set<K extends 'env' | 'mounts' | 'capAdd' | 'capDrop'>(
  c: ServiceContainer,
  k: K,
  v: NonNullable<ServiceContainer[K]>,
): void {
  if (v.length > 0) c[k] = v
  else delete c[k]
}
