/**
 * A node's own image store (swarmnet image load / ls / rm): one OCI layout under the node's state
 * directory, an image per tag (NAME:TAG), its blobs shared. A service's bare --image NAME[:TAG]
 * is looked up here, on the node that runs the task, never on a registry.
 */
import {readFileSync, rmSync} from 'node:fs'
import {parseMountinfo} from '../sys/cgroup.js'
import {join} from 'node:path'
import {run} from '../sys/exec.js'
import {copyIntoStore, imagesDir, layoutTags, parseImageRef, readLayoutImage, storeLayout} from './image.js'

export interface StoredImage {
  name: string
  /** sha256:... of its manifest. */
  digest: string
}

/** docker.io/library/busybox:1.0 -> busybox:1.0, as Docker shows it; a name without tag gets :latest. */
export function shortName(name: string): string {
  const n = name.replace(/^docker\.io\/(library\/)?/, '')
  return /:[^/]*$/.test(n) ? n : `${n}:latest`
}

/** The name an archive carries: RepoTags of a docker archive, the ref.name of an OCI archive's single image. */
async function archiveName(file: string): Promise<{transport: 'docker-archive' | 'oci-archive'; name?: string}> {
  const list = (await run(['tar', '-tf', file], `reading ${file}`)).split('\n')
  if (list.includes('manifest.json')) {
    const m = JSON.parse(await run(['tar', '-xOf', file, 'manifest.json'], `reading ${file}`)) as {RepoTags?: string[]}[]
    const tag = m[0]?.RepoTags?.[0]
    return {transport: 'docker-archive', ...(tag ? {name: shortName(tag)} : {})}
  }
  if (list.includes('index.json') && list.includes('oci-layout')) {
    const idx = JSON.parse(await run(['tar', '-xOf', file, 'index.json'], `reading ${file}`)) as {
      manifests?: {annotations?: Record<string, string>}[]
    }
    const ref = idx.manifests?.length === 1 ? idx.manifests[0]?.annotations?.['org.opencontainers.image.ref.name'] : undefined
    // A bare tag ("latest") names no image: the user gives the name.
    return {
      transport: 'oci-archive',
      ...(ref && /[a-z]/.test(ref.split(':')[0]!) && ref.includes(':') ? {name: shortName(ref)} : {}),
    }
  }
  throw new Error(`${file} is neither a docker archive (docker save) nor an OCI archive`)
}

/** Loads a docker-archive or oci-archive file into the node's store; resolves to the name it is stored under. */
export async function loadImage(node: string, file: string, name?: string): Promise<string> {
  const a = await archiveName(file).catch((e: Error) => {
    throw new Error(`cannot load ${file}: ${e.message.split('\n')[0]}`)
  })
  const stored = name ? shortName(name) : a.name
  if (!stored) throw new Error(`${file} does not name its image: give --name NAME[:TAG]`)
  if (parseImageRef(stored).kind !== 'store') throw new Error(`invalid image name ${stored}`)
  // An OCI archive with several images needs the one wanted named: the single one is taken as is.
  await copyIntoStore(node, `${a.transport}:${file}`, stored)
  return stored
}

export function listImages(node: string): StoredImage[] {
  return layoutTags(storeLayout(node))
    .filter((t) => !t.tag.startsWith('archive-'))
    .map((t) => ({name: t.tag, digest: t.digest}))
    .sort((a, b) => a.name.localeCompare(b.name))
}

/**
 * Removes an image's name from the store and the blobs no name uses any more (umoci gc). Its
 * unpacked root (and the copies of it with a user namespace's mapping, which live inside its
 * directory) stays while tasks may run from it; it goes when no name points at its digest.
 */
export async function removeImage(node: string, name: string): Promise<void> {
  const n = shortName(name)
  if (!layoutTags(storeLayout(node)).some((t) => t.tag === n)) throw new Error(`no image ${n} in node ${node}'s store`)
  const {digest} = readLayoutImage(storeLayout(node), n)
  await run(['umoci', 'rm', '--image', `${storeLayout(node)}:${n}`], `removing ${n}`)
  await run(['umoci', 'gc', '--layout', storeLayout(node)], 'collecting unused blobs')
  if (layoutTags(storeLayout(node)).some((t) => t.digest === digest)) return
  const rootfs = join(imagesDir(node), 'rootfs', digest.slice('sha256:'.length))
  // A running task's root lies over it or over a mapped copy: kept then (the next unused removal, or leave, takes it).
  const inUse = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).some(
    (m) => m.fstype === 'overlay' && m.superOptions.includes(`lowerdir=${rootfs}/`),
  )
  if (!inUse) rmSync(rootfs, {recursive: true, force: true})
}
