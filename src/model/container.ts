/**
 * A service's containers (service create --image and the flags that go with it), checked where
 * the request arrives: each bad value is refused with one line, before anything is made.
 * What the node needs of an image (its files, its config) is read on the node (src/images).
 */
import {UserError} from './errors.js'
import {parseImageRef} from '../images/image.js'
import {ALL_CAPS} from '../tasks/oci-spec.js'

/** --mount, parsed (Docker's syntax): a directory of the node, a tmpfs, or a volume of the node. */
export type ServiceMount =
  | {type: 'bind'; source: string; target: string; readonly?: boolean}
  | {type: 'volume'; source?: string; target: string; readonly?: boolean}
  | {type: 'tmpfs'; target: string; sizeBytes?: number; mode?: number}

/**
 * A service's runtime settings. With an image, its tasks are the image's containers; without one,
 * commands of the node run in the same runtime (src/tasks/node-view.ts) with these settings.
 */
export type ServiceContainer = {
  /**
   * --image: oci:/DIR[:TAG], oci-archive:/FILE, docker-archive:/FILE, containers-storage:NAME,
   * NAME[:TAG] (node's store), or a registry's HOST/NAME:TAG@DIGEST (pinned by the manager).
   */
  image?: string
  /** --tls-verify=false: the registry is reached over plain HTTP (or unverified TLS). */
  tlsVerify?: false
  /** KEY=VALUE, --env-file's first, then --env. */
  env?: string[]
  workdir?: string
  hostname?: string
  capAdd?: string[]
  capDrop?: string[]
  readOnly?: boolean
  /** --init: an init (tini) is PID 1, forwarding signals to the command and reaping orphans. */
  init?: boolean
  mounts?: ServiceMount[]
  /** --userns remap: its tasks' root is an unprivileged user of the node (src/tasks/userns.ts); absent: the node's own ids (host). */
  userns?: 'remap'
}

export type ContainerRequest = {
  image?: string
  tlsVerify?: boolean
  env?: string[]
  workdir?: string
  hostname?: string
  capAdd?: string[]
  capDrop?: string[]
  readOnly?: boolean
  init?: boolean
  mounts?: string[]
  /** --userns: host (the default) or remap. */
  userns?: string
}

/** --userns's values (podman's flag; host is Docker's and podman's default, remap Docker's daemon option). */
export const USERNS_MODES = ['host', 'remap'] as const

/** --userns checked: remap needs an image (a command task's root is the node's, owned by the node's root). */
export function checkUserns(userns: string, image: string | undefined): 'host' | 'remap' {
  if (!(USERNS_MODES as readonly string[]).includes(userns))
    throw new UserError(`invalid --userns '${userns}': ${USERNS_MODES.join(' or ')}`)
  if (userns === 'remap' && image === undefined)
    throw new UserError(
      "--userns remap needs --image: a command task runs the node's own files, which its remapped root would not own",
    )
  return userns as 'host' | 'remap'
}

/**
 * A health check runs in the task by `runc exec`, which enters a remapped task's user namespace
 * first and from there may not enter its network namespace (the node's): refused together, in
 * one line, rather than a check that can never pass.
 */
export function checkUsernsHealth(container: ServiceContainer | undefined, healthcheck: unknown): void {
  if (container?.userns === 'remap' && healthcheck !== undefined)
    throw new UserError(
      '--userns remap and --health-cmd do not go together yet: the check runs by runc exec, which cannot enter a remapped task',
    )
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

function checkEnv(kv: string): string {
  const key = kv.split('=')[0]!
  if (!kv.includes('=') || !ENV_KEY.test(key)) throw new UserError(`invalid --env '${kv}': KEY=VALUE, KEY a name`)
  return kv
}

function checkPath(flag: string, p: string): string {
  if (!p.startsWith('/') || p.includes('\0') || p.split('/').includes('..'))
    throw new UserError(`invalid ${flag} '${p}': an absolute path without ..`)
  return p
}

function checkCap(flag: string, c: string): string {
  const n = c.toLowerCase().replace(/^cap_/, '')
  if (n !== 'all' && !(ALL_CAPS as readonly string[]).includes(n))
    throw new UserError(`invalid ${flag} '${c}': no such capability`)
  return n
}

const SIZE = /^(\d+)([kmg]?)b?$/i
const UNIT: Record<string, number> = {'': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3}

/** One --mount: type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=...][,tmpfs-mode=...]. */
export function parseMount(spec: string): ServiceMount {
  const bad = (why: string) => new UserError(`invalid --mount '${spec}': ${why}`)
  const kv = new Map<string, string>()
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=')
    const k = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase()
    const v = eq < 0 ? '' : part.slice(eq + 1)
    const key = k === 'src' ? 'source' : k === 'dst' || k === 'destination' ? 'target' : k === 'ro' ? 'readonly' : k
    if (!['type', 'source', 'target', 'readonly', 'tmpfs-size', 'tmpfs-mode'].includes(key)) throw bad(`unknown key '${k}'`)
    if (kv.has(key)) throw bad(`'${key}' given twice`)
    kv.set(key, v)
  }
  const type = kv.get('type') ?? 'volume'
  const target = kv.get('target')
  if (!target) throw bad('target= is required')
  checkPath('--mount target', target)
  let readonly: boolean | undefined
  if (kv.has('readonly')) {
    const r = kv.get('readonly')!
    if (!['', 'true', '1', 'false', '0'].includes(r)) throw bad(`readonly=${r}: true or false`)
    readonly = ['', 'true', '1'].includes(r)
  }
  const source = kv.get('source')
  if (type === 'bind') {
    if (!source) throw bad('a bind mount needs source=/PATH')
    checkPath('--mount source', source)
    if (kv.has('tmpfs-size') || kv.has('tmpfs-mode')) throw bad('tmpfs-* options are for type=tmpfs')
    return {type, source, target, ...(readonly ? {readonly} : {})}
  }
  if (type === 'volume') {
    if (source !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(source))
      throw bad(`volume name '${source}': letters, digits, _ . -`)
    if (kv.has('tmpfs-size') || kv.has('tmpfs-mode')) throw bad('tmpfs-* options are for type=tmpfs')
    return {type, ...(source ? {source} : {}), target, ...(readonly ? {readonly} : {})}
  }
  if (type === 'tmpfs') {
    if (source) throw bad('a tmpfs has no source')
    if (readonly !== undefined) throw bad('a tmpfs cannot be read-only')
    const m: ServiceMount = {type, target}
    const size = kv.get('tmpfs-size')
    if (size !== undefined) {
      const s = SIZE.exec(size)
      if (!s) throw bad(`tmpfs-size=${size}: a size such as 64m`)
      m.sizeBytes = Number(s[1]) * UNIT[s[2]!.toLowerCase()]!
    }
    const mode = kv.get('tmpfs-mode')
    if (mode !== undefined) {
      if (!/^[0-7]{1,4}$/.test(mode)) throw bad(`tmpfs-mode=${mode}: octal, such as 1777`)
      m.mode = parseInt(mode, 8)
    }
    return m
  }
  throw bad(`type=${type}: bind, volume or tmpfs`)
}

/** The container part of a service: its image and runtime flags, or undefined when neither is given. */
export function containerSpec(req: ContainerRequest): {container?: ServiceContainer} {
  if (req.image !== undefined) {
    try {
      parseImageRef(req.image)
    } catch (e) {
      throw new UserError((e as Error).message)
    }
  }
  if (req.hostname !== undefined && (req.hostname.length > 253 || !HOSTNAME.test(req.hostname)))
    throw new UserError(`invalid --hostname '${req.hostname}': a DNS name`)
  if (req.tlsVerify === false && (req.image === undefined || parseImageRef(req.image).kind !== 'registry'))
    throw new UserError('--tls-verify is for an image on a registry (--image HOST/NAME[:TAG])')
  const c: ServiceContainer = req.image !== undefined ? {image: req.image} : {}
  if (req.tlsVerify === false) c.tlsVerify = false
  if (req.env?.length) c.env = req.env.map(checkEnv)
  if (req.workdir !== undefined) c.workdir = checkPath('--workdir', req.workdir)
  if (req.hostname !== undefined) c.hostname = req.hostname
  if (req.capAdd?.length) c.capAdd = req.capAdd.map((x) => checkCap('--cap-add', x))
  if (req.capDrop?.length) c.capDrop = req.capDrop.map((x) => checkCap('--cap-drop', x))
  if (req.readOnly) c.readOnly = true
  if (req.init) c.init = true
  if (req.userns !== undefined && checkUserns(req.userns, req.image) === 'remap') c.userns = 'remap'
  if (req.mounts?.length) {
    c.mounts = req.mounts.map(parseMount)
    const targets = c.mounts.map((m) => m.target)
    const dup = targets.find((t, i) => targets.indexOf(t) !== i)
    if (dup) throw new UserError(`invalid --mount: two mounts at ${dup}`)
  }
  return Object.keys(c).length > 0 ? {container: c} : {}
}

/** Why a stored service's container part is malformed (a value gossiped in), or undefined. */
export function containerProblem(r: Record<string, unknown>): string | undefined {
  if (r.container === undefined) return undefined
  const c = r.container as Record<string, unknown>
  if (typeof c !== 'object' || c === null || Array.isArray(c) || (c.image !== undefined && typeof c.image !== 'string'))
    return "'container' is malformed"
  const strs = (k: string) =>
    c[k] === undefined || (Array.isArray(c[k]) && (c[k] as unknown[]).every((x) => typeof x === 'string'))
  const str = (k: string) => c[k] === undefined || typeof c[k] === 'string'
  if (!strs('env') || !strs('capAdd') || !strs('capDrop') || !str('workdir') || !str('hostname'))
    return "'container' is malformed"
  if (c.readOnly !== undefined && c.readOnly !== true) return "'container.readOnly' is malformed"
  if (c.init !== undefined && c.init !== true) return "'container.init' is malformed"
  if (c.tlsVerify !== undefined && c.tlsVerify !== false) return "'container.tlsVerify' is malformed"
  if (c.mounts !== undefined && !Array.isArray(c.mounts)) return "'container.mounts' is malformed"
  if (c.userns !== undefined && c.userns !== 'remap') return "'container.userns' is malformed"
  try {
    containerSpec({
      ...(c.image !== undefined ? {image: c.image as string} : {}),
      ...(c.userns !== undefined ? {userns: c.userns} : {}),
      ...(c.env ? {env: c.env as string[]} : {}),
      ...(c.workdir !== undefined ? {workdir: c.workdir as string} : {}),
      ...(c.hostname !== undefined ? {hostname: c.hostname as string} : {}),
      ...(c.capAdd ? {capAdd: c.capAdd as string[]} : {}),
      ...(c.capDrop ? {capDrop: c.capDrop as string[]} : {}),
    })
  } catch (e) {
    return (e as Error).message
  }
  return undefined
}

/** --env-file's text as Docker reads it: KEY=VALUE lines, # comments and blank lines skipped, a bare KEY taken from env. */
export function parseEnvFile(text: string, file: string, env: Record<string, string | undefined>): string[] {
  const out: string[] = []
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/^\s+/, '').replace(/\r$/, '')
    if (line === '' || line.startsWith('#')) continue
    const key = line.split('=')[0]!
    if (!ENV_KEY.test(key)) throw new UserError(`invalid --env-file ${file}: line ${i + 1}: '${key}' is not a variable name`)
    if (line.includes('=')) out.push(line)
    else if (env[key] !== undefined) out.push(`${key}=${env[key]}`)
  }
  return out
}
