/**
 * --userns remap (Docker's userns-remap, podman's --userns): a task in a user namespace of its
 * own, its root one unprivileged user of the node. One mapping per node, the same for every
 * remapped task: container ids 0-65535 are host ids START..START+65535. START is the subordinate
 * range /etc/subuid and /etc/subgid give a user named swarmnet (as Docker's dockremap), when they
 * give one of 65536 ids or more; 100000 otherwise (the first range useradd hands out).
 *
 * runc 1.1 has no idmapped mounts, so what the mapped root must own is owned by host ids: the
 * image's root is a copy unpacked with the mapping (images/image.ts), the task's writable layer
 * and the volumes made for it are chowned, and the directories on the way to its files are
 * traversable by it (it is no one on the node, so "others" to root's directories).
 */
import {readFileSync} from 'node:fs'
import {chmod, chown, stat} from 'node:fs/promises'
import {dirname, relative} from 'node:path'

export interface IdMapping {
  containerID: number
  hostID: number
  size: number
}

export interface Remap {
  uid: IdMapping
  gid: IdMapping
}

export const REMAP_SIZE = 65536
export const REMAP_DEFAULT_START = 100000
/** The user whose subordinate ranges, when present, place the mapping (Docker's is dockremap). */
export const REMAP_USER = 'swarmnet'

/** The start of REMAP_USER's range in an /etc/subuid or /etc/subgid text, if it holds REMAP_SIZE ids. */
export function subordinateStart(text: string): number | undefined {
  for (const line of text.split('\n')) {
    const [user, start, count] = line.trim().split(':')
    if (user === REMAP_USER && /^\d+$/.test(start ?? '') && /^\d+$/.test(count ?? '') && Number(count) >= REMAP_SIZE)
      return Number(start)
  }
  return undefined
}

const readOr = (file: string) => {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

/** This node's mapping (read at each task start: a range added to /etc/subuid counts from the next one). */
export function nodeRemap(subuid = '/etc/subuid', subgid = '/etc/subgid'): Remap {
  const one = (file: string): IdMapping => ({
    containerID: 0,
    hostID: subordinateStart(readOr(file)) ?? REMAP_DEFAULT_START,
    size: REMAP_SIZE,
  })
  return {uid: one(subuid), gid: one(subgid)}
}

/** Where an image's copy for this mapping lives beside its plain root: one per mapping. */
export const remapKey = (r: Remap) => `userns-${r.uid.hostID}-${r.gid.hostID}-${r.uid.size}`

/** umoci's --uid-map/--gid-map (container:host:size). */
export const umociMapArgs = (r: Remap) => [
  '--uid-map',
  `${r.uid.containerID}:${r.uid.hostID}:${r.uid.size}`,
  '--gid-map',
  `${r.gid.containerID}:${r.gid.hostID}:${r.gid.size}`,
]

/** Gives a file or directory of the node to the task's root (chown to the mapped 0:0). */
export const giveToRoot = (path: string, r: Remap) => chown(path, r.uid.hostID, r.gid.hostID)

/**
 * Lets the mapped root reach `dir` (its files are bound into the task by path, which runc resolves
 * inside the user namespace): `dir` itself goes to the mapped root's group with search only
 * (0710, not listable by others); every directory above it, up to and with `top`, gets search for
 * others (o+x, as Docker makes /var/lib/docker 0711), nothing more.
 */
export async function openPathTo(dir: string, top: string, r: Remap): Promise<void> {
  if (relative(top, dir).startsWith('..')) throw new Error(`${dir} is not under ${top}`)
  await chown(dir, 0, r.gid.hostID)
  await chmod(dir, 0o710)
  for (let d = dirname(dir); ; d = dirname(d)) {
    const m = (await stat(d)).mode & 0o7777
    if ((m & 0o001) === 0) await chmod(d, m | 0o001)
    if (d === top || d === dirname(d)) break
  }
}
