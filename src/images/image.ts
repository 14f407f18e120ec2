/**
 * Images a task runs from, by reference: what skopeo names offline (oci:DIR[:TAG],
 * oci-archive:FILE, docker-archive:FILE, containers-storage:NAME, the node's podman store) or a
 * bare NAME[:TAG] in the node's own image store (store.ts), or a registry's HOST/NAME[:TAG]
 * pulled into that store by digest (registry.ts). Each image's root file system is unpacked once per node (umoci), keyed by its
 * manifest digest, and shared read-only by every task that runs it (rootfs.ts gives each task a
 * writable layer over it). A task in a user namespace (--userns remap) runs from a second copy
 * beside it, unpacked with the node's mapping (its files owned by the mapped ids): once per image
 * per mapping, by umoci in its own process, and removed with the image.
 */
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {stateDir} from '../sys/node-paths.js'
import {run} from '../sys/exec.js'
import {pullByDigest, remoteDigest} from './registry.js'
import {type Remap, remapKey, umociMapArgs} from '../tasks/userns.js'

/** The parts of an image's configuration a container starts from (OCI image-spec config). */
export interface ImageConfig {
  env: string[]
  entrypoint: string[]
  cmd: string[]
  workdir: string
  user: string
}

export interface UnpackedImage {
  /** sha256:... of its manifest. */
  digest: string
  /** Read-only: shared by the node's tasks. */
  rootfs: string
  config: ImageConfig
}

/** A reference split: an OCI layout directory and tag, or an archive to copy into the store first. */
export type ImageRef =
  | {kind: 'oci'; dir: string; tag: string}
  | {kind: 'oci-archive' | 'docker-archive'; file: string}
  | {kind: 'store'; name: string}
  | {kind: 'containers-storage'; name: string}
  /** A registry's image: HOST[:PORT]/PATH, a tag, and the manifest digest once pinned (registry.ts). */
  | {kind: 'registry'; name: string; tag: string; digest?: string}

const NAME_RE = /^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$/

/** Parses --image; one-line error for anything else. */
export function parseImageRef(ref: string): ImageRef {
  const colon = ref.indexOf(':')
  const transport = colon > 0 ? ref.slice(0, colon) : ''
  const rest = ref.slice(colon + 1)
  if (transport === 'oci') {
    if (!rest.startsWith('/')) throw new Error(`image ${ref}: oci: needs an absolute directory (oci:/DIR[:TAG])`)
    // The first colon after the directory, as skopeo and umoci split it (a tag may hold one: busybox:1.0).
    const c = rest.indexOf(':')
    return c > 0
      ? {kind: 'oci', dir: rest.slice(0, c), tag: rest.slice(c + 1) || 'latest'}
      : {kind: 'oci', dir: rest, tag: 'latest'}
  }
  if (transport === 'oci-archive' || transport === 'docker-archive') {
    if (!rest.startsWith('/')) throw new Error(`image ${ref}: ${transport}: needs an absolute file path`)
    return {kind: transport, file: rest}
  }
  if (transport === 'containers-storage') {
    // What podman names an image: NAME[:TAG], a full reference or an id (skopeo resolves it in the store).
    if (!/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/.test(rest)) throw new Error(`image ${ref}: containers-storage: needs an image name`)
    return {kind: 'containers-storage', name: rest}
  }
  if (transport === 'docker') {
    if (!rest.startsWith('//')) throw new Error(`image ${ref}: docker: needs //, as skopeo spells it (docker://HOST/NAME[:TAG])`)
    return parseRegistryRef(ref, rest.slice(2), true)
  }
  if (transport === 'dir')
    throw new Error(
      `image ${ref}: the dir: transport is not supported (use oci:, oci-archive:, docker-archive:, containers-storage:, a registry's HOST/NAME[:TAG] or swarmnet image load)`,
    )
  if (isRegistryRef(ref)) return parseRegistryRef(ref, ref, false)
  if (!NAME_RE.test(ref))
    throw new Error(
      `image ${ref}: not an image reference (oci:/DIR[:TAG], oci-archive:/FILE, docker-archive:/FILE, HOST/NAME[:TAG] or NAME[:TAG])`,
    )
  return {kind: 'store', name: ref.includes(':') ? ref : `${ref}:latest`}
}

/** Docker's rule: a first part with a dot or a port, or localhost, names a registry; else the name is local (the node's store). */
const isRegistryRef = (ref: string) => {
  const first = ref.split('/')[0]!
  return ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')
}

const HOST = '[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?'
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const REGISTRY_RE = new RegExp(
  `^(${HOST}/${COMPONENT}(?:/${COMPONENT})*)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?$`,
)

/**
 * HOST/PATH[:TAG][@sha256:...]; after docker:// also a name without a host, which is Docker Hub's
 * (docker://busybox is docker.io/library/busybox:latest, as skopeo reads it).
 */
function parseRegistryRef(ref: string, rest: string, hub: boolean): ImageRef {
  let r = rest
  if (hub && !isRegistryRef(r)) r = `docker.io/${r.includes('/') ? '' : 'library/'}${r}`
  const m = REGISTRY_RE.exec(r)
  if (!m) throw new Error(`image ${ref}: not a registry reference (HOST[:PORT]/NAME[:TAG][@sha256:DIGEST])`)
  return {kind: 'registry', name: m[1]!, tag: m[2] ?? 'latest', ...(m[3] ? {digest: m[3]} : {})}
}

/** A registry reference as stored in a service's spec: HOST/NAME:TAG, with @DIGEST once pinned (as Docker stores it). */
export const registryRefString = (r: {name: string; tag: string; digest?: string}) =>
  `${r.name}:${r.tag}${r.digest ? `@${r.digest}` : ''}`

export const imagesDir = (node: string) => join(stateDir(node), 'images')
/** The node's store: one OCI layout, blobs shared between its images. */
export const storeLayout = (node: string) => join(imagesDir(node), 'layout')
const unpackedDir = (node: string) => join(imagesDir(node), 'rootfs')

const blob = (dir: string, digest: string) => {
  const [alg, hex] = digest.split(':')
  if (alg !== 'sha256' || !/^[0-9a-f]{64}$/.test(hex ?? '')) throw new Error(`malformed digest ${digest}`)
  return join(dir, 'blobs', alg, hex!)
}

interface IndexJson {
  manifests?: {digest: string; mediaType?: string; annotations?: Record<string, string>}[]
}

const readJson = <T>(path: string, what: string): T => {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T
  } catch (e) {
    throw new Error(`${what}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message}`)
  }
}

/** The tags of an OCI layout with their manifest digests. */
export function layoutTags(dir: string): {tag: string; digest: string}[] {
  if (!existsSync(join(dir, 'index.json'))) return []
  const idx = readJson<IndexJson>(join(dir, 'index.json'), `${dir}/index.json`)
  return (idx.manifests ?? []).flatMap((m) => {
    const tag = m.annotations?.['org.opencontainers.image.ref.name']
    return tag ? [{tag, digest: m.digest}] : []
  })
}

/** Manifest digest and configuration of tag in an OCI layout. */
export function readLayoutImage(dir: string, tag: string): {digest: string; config: ImageConfig} {
  const m = layoutTags(dir).find((x) => x.tag === tag)
  if (!m) {
    if (!existsSync(join(dir, 'index.json'))) throw new Error(`image oci:${dir}: not an OCI layout (no index.json)`)
    throw new Error(`image oci:${dir}:${tag}: no such tag`)
  }
  const manifest = readJson<{config?: {digest: string}}>(blob(dir, m.digest), `manifest of ${tag}`)
  if (!manifest.config) throw new Error(`image oci:${dir}:${tag}: not an image manifest (an index? pick a platform's tag)`)
  const c = readJson<{config?: Record<string, unknown>}>(blob(dir, manifest.config.digest), `config of ${tag}`).config ?? {}
  const strs = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])
  return {
    digest: m.digest,
    config: {
      env: strs(c.Env),
      entrypoint: strs(c.Entrypoint),
      cmd: strs(c.Cmd),
      workdir: typeof c.WorkingDir === 'string' && c.WorkingDir ? c.WorkingDir : '/',
      user: typeof c.User === 'string' ? c.User : '',
    },
  }
}

/**
 * umoci's unpack of dir:tag into target/rootfs, unless done; beside it and renamed, so a
 * half-unpacked image is never taken for a whole one. With a mapping, each file's owner is shifted
 * by it (umoci chowns as it writes, symlinks too, and keeps the modes, set-id bits included).
 */
async function unpackOnce(dir: string, tag: string, target: string, o: {config?: ImageConfig; remap?: Remap}): Promise<void> {
  const {remap} = o
  if (existsSync(join(target, 'done'))) return
  const tmp = `${target}.tmp-${process.pid}`
  rmSync(tmp, {recursive: true, force: true})
  mkdirSync(tmp, {recursive: true, mode: 0o700})
  try {
    await run(
      ['umoci', 'raw', 'unpack', ...(remap ? umociMapArgs(remap) : []), '--image', `${dir}:${tag}`, join(tmp, 'rootfs')],
      `unpacking image ${dir}:${tag}`,
      {timeoutMs: 300_000},
    )
    if (o.config) writeFileSync(join(tmp, 'config.json'), JSON.stringify(o.config))
    writeFileSync(join(tmp, 'done'), '')
    rmSync(target, {recursive: true, force: true})
    renameSync(tmp, target)
  } catch (e) {
    rmSync(tmp, {recursive: true, force: true})
    throw e
  }
}

/**
 * The unpacked root file system of tag in dir: unpacked now unless this node has it already. With
 * a mapping, the copy for it (inside the plain one's directory, so whatever removes the image
 * removes it; the plain one is unpacked first, so it is never unpacked over the copy).
 */
async function unpackFromLayout(node: string, dir: string, tag: string, remap?: Remap): Promise<UnpackedImage> {
  const {digest, config} = readLayoutImage(dir, tag)
  const target = join(unpackedDir(node), digest.slice('sha256:'.length))
  await unpackOnce(dir, tag, target, {config})
  if (!remap) return {digest, rootfs: join(target, 'rootfs'), config}
  const shifted = join(target, remapKey(remap))
  await unpackOnce(dir, tag, shifted, {remap})
  return {digest, rootfs: join(shifted, 'rootfs'), config}
}

/** Copies an archive into the node's store under a name of its own (the file's path hashed), once. */
async function importArchive(node: string, transport: string, file: string): Promise<string> {
  if (!existsSync(file)) throw new Error(`image ${transport}:${file}: no such file`)
  const tag = `archive-${createHash('sha256').update(`${transport}:${file}`).digest('hex').slice(0, 16)}`
  await copyIntoStore(node, `${transport}:${file}`, tag)
  return tag
}

/** skopeo copy SRC into the node's store as tag. */
export async function copyIntoStore(node: string, src: string, tag: string): Promise<void> {
  mkdirSync(imagesDir(node), {recursive: true, mode: 0o700})
  await run(['skopeo', '--insecure-policy', 'copy', '--quiet', src, `oci:${storeLayout(node)}:${tag}`], `copying ${src}`, {
    timeoutMs: 300_000,
  })
}

/** How a registry is reached: TLS verified unless the service says otherwise (service create --tls-verify=false). */
export interface PullOptions {
  tlsVerify?: boolean
  /** --userns remap: the copy of the root with the node's mapping (userns.ts). */
  remap?: Remap
}

/**
 * --image as a service stores it: a registry's tag pinned to the digest it names now (the
 * manager's look-up, as Docker's), so every node runs the same image; any other reference as given.
 * A registry that cannot be reached or has no such image: one line, and the service is not made.
 */
export async function pinImage(ref: string, opts: PullOptions = {}): Promise<string> {
  const r = parseImageRef(ref)
  if (r.kind !== 'registry') return ref
  // A digest given is checked too: a service is never made of an image its registry does not have.
  const digest = await remoteDigest(r.name, r.digest ?? r.tag, opts.tlsVerify ?? true)
  if (r.digest && r.digest !== digest) throw new Error(`image ${ref}: the registry serves it as ${digest}`)
  return registryRefString({...r, digest})
}

/** Pulls and unpacks under way in this agent, by node and reference: two tasks starting at once share one. */
const inFlight = new Map<string, Promise<UnpackedImage>>()

/** The image a task of this node runs: resolved, copied and unpacked as needed. */
export function resolveImage(node: string, ref: string, opts: PullOptions = {}): Promise<UnpackedImage> {
  const key = `${node}\0${ref}\0${opts.tlsVerify ?? true}\0${opts.remap ? remapKey(opts.remap) : ''}`
  const running = inFlight.get(key)
  if (running) return running
  const p = resolveNow(node, ref, opts).finally(() => inFlight.delete(key))
  inFlight.set(key, p)
  return p
}

async function resolveNow(node: string, ref: string, opts: PullOptions): Promise<UnpackedImage> {
  const r = parseImageRef(ref)
  if (r.kind === 'registry') {
    // Pinned by the manager; a reference stored without a digest is resolved here, by this node.
    const digest = r.digest ?? (await remoteDigest(r.name, r.tag, opts.tlsVerify ?? true))
    // Stored under the name and digest it was pulled by: pulled once per node, whatever tag named it.
    const tag = `${r.name}@${digest}`
    if (!layoutTags(storeLayout(node)).some((t) => t.tag === tag)) {
      mkdirSync(imagesDir(node), {recursive: true, mode: 0o700})
      await pullByDigest(storeLayout(node), r.name, digest, tag, opts.tlsVerify ?? true)
    }
    return unpackFromLayout(node, storeLayout(node), tag, opts.remap)
  }
  if (r.kind === 'oci') return unpackFromLayout(node, r.dir, r.tag, opts.remap)
  if (r.kind === 'store') {
    if (!layoutTags(storeLayout(node)).some((t) => t.tag === r.name))
      throw new Error(`image ${r.name} is not in node ${node}'s image store (swarmnet image load FILE)`)
    return unpackFromLayout(node, storeLayout(node), r.name, opts.remap)
  }
  if (r.kind === 'containers-storage') {
    // Copied at each start (a name podman gives to a new build then runs the new image); blobs already
    // in the node's store are not copied again, and an unchanged image is not unpacked again.
    const tag = `cs-${createHash('sha256').update(r.name).digest('hex').slice(0, 16)}`
    await copyIntoStore(node, `containers-storage:${r.name}`, tag).catch((e: Error) => {
      throw new Error(`image containers-storage:${r.name}: not in this node's podman store (${e.message.split('\n')[0]})`)
    })
    return unpackFromLayout(node, storeLayout(node), tag, opts.remap)
  }
  return unpackFromLayout(node, storeLayout(node), await importArchive(node, r.kind, r.file), opts.remap)
}
