/**
 * The part of its node's /etc a command task sees (node-view.ts): one filtered copy per node,
 * under the run directory, bound read-only at /etc into every command task of the node, so a
 * task's start copies nothing and makes no synchronous call: at size (hundreds of starts a
 * minute) the copies held the agent's event loop long enough for SWIM to suspect the node.
 *
 * The copy is kept current in place, checked at a task's start at most every ETC_CHECK_MS: each
 * entry of the allow-list is lstat'ed (in libuv's threads, off the event loop), and what changed
 * (kind, inode, size, mtime or ctime) is copied under a temporary name and renamed over its copy,
 * so a task reads the old file or the new, never half of one. A burst of starts shares one check.
 * Checked rather than watched: an inotify watch on /etc fires for every file there, listed or
 * not, and needs a watch per listed directory; a check bounds how stale a new task's /etc can be
 * (ETC_CHECK_MS after a change on the node) at ~50 lstat calls per check. Running tasks see a
 * change too once a later start has checked (their /etc is the same directory), as a program of
 * the node would; they read nothing else of the node's /etc but the directories bound into it.
 */
import {copyFile, lstat, mkdir, readdir, readlink, rename, rm, symlink, writeFile} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {RUN_DIR} from '../sys/node-paths.js'
import {removeIfEmpty} from '../sys/cgroup.js'

/**
 * Entries of /etc a task sees: files and links copied, directories bound read-only over their
 * mount points in the copy. Never shadow, gshadow, sudoers, ssh, ssl/private, machine-id,
 * swarmnet's or any daemon's own files.
 */
const ETC = [
  'passwd',
  'group',
  'nsswitch.conf',
  'host.conf',
  'gai.conf',
  'protocols',
  'services',
  'networks',
  'rpc',
  'ethertypes',
  'ld.so.cache',
  'ld.so.conf',
  'ld.so.conf.d',
  'localtime',
  'timezone',
  'ssl/certs',
  'ssl/openssl.cnf',
  'ca-certificates',
  'ca-certificates.conf',
  'pki/tls/certs',
  'pki/ca-trust',
  'alternatives',
  'os-release',
  'debian_version',
  'lsb-release',
  'issue',
  'mime.types',
  'magic',
  'magic.mime',
  'inputrc',
  'profile',
  'profile.d',
  'bash.bashrc',
  'environment',
  'shells',
  'terminfo',
  'iproute2',
  'locale.alias',
  'locale.conf',
  'default/locale',
  'mtab',
  'python3',
  /^python3\.\d+$/,
  'perl',
  'fonts',
] as const

/** The task's own files are bound over these (oci-spec.ts): empty mount points in the copy. */
const OWN = ['hosts', 'resolv.conf', 'hostname']

/** At most this long between two checks of the node's /etc (ms): how stale a new task's copy can be. */
export const ETC_CHECK_MS = 2000

type Kind = 'file' | 'link' | 'dir'
interface Entry {
  kind: Kind
  /** What tells a changed file or link: its inode, size and times (empty for a directory, which is bound). */
  sig: string
}

export interface NodeEtc {
  /** The node's copy, bound read-only at /etc. */
  dir: string
  /** The directories of the allow-list there (relative to /etc), bound read-only from the node's. */
  dirs: string[]
}

interface State {
  /** When the last check started. */
  checkedAt: number
  /** The copy's own inode: another one (removed and made again from outside) is copied whole. */
  dirIno: number
  entries: Map<string, Entry>
  current?: NodeEtc
  pending?: Promise<NodeEtc>
}

const states = new Map<string, State>()

export const nodeViewDir = (node: string) => join(RUN_DIR, 'view', node)
export const nodeEtcDir = (node: string) => join(nodeViewDir(node), 'etc')

/** The node's copy of its filtered /etc, checked against the node's at most every ETC_CHECK_MS. */
export function nodeEtc(node: string): Promise<NodeEtc> {
  let st = states.get(node)
  if (!st) states.set(node, (st = {checkedAt: 0, dirIno: -1, entries: new Map()}))
  if (st.pending) return st.pending
  if (st.current && Date.now() - st.checkedAt < ETC_CHECK_MS) return Promise.resolve(st.current)
  const s = st
  s.pending = refresh(node, s).finally(() => (s.pending = undefined))
  return s.pending
}

/** Removes the node's copy (its tasks are gone: leave, lab down). */
export async function removeNodeEtc(node: string): Promise<void> {
  states.delete(node)
  await rm(nodeViewDir(node), {recursive: true, force: true})
  removeIfEmpty(join(RUN_DIR, 'view'))
}

const kindOf = (st: {isSymbolicLink(): boolean; isDirectory(): boolean; isFile(): boolean}): Kind | undefined =>
  st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : undefined

/** The allow-list's entries as the node has them now, in the list's order. */
async function scan(): Promise<Map<string, Entry>> {
  let names: string[] = []
  try {
    names = await readdir('/etc')
  } catch {
    // no /etc: nothing of it to show
  }
  const paths = ETC.flatMap((e) => (typeof e === 'string' ? [e] : names.filter((n) => e.test(n)).sort()))
  const found = await Promise.all(
    paths.map(async (p): Promise<[string, Entry] | undefined> => {
      try {
        const st = await lstat(join('/etc', p))
        const kind = kindOf(st)
        if (!kind) return undefined
        return [p, {kind, sig: kind === 'dir' ? '' : `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`}]
      } catch {
        return undefined
      }
    }),
  )
  return new Map(found.filter((x): x is [string, Entry] => x !== undefined))
}

/** One entry into the copy: a directory as a mount point, a file or link renamed over the old one. */
async function put(dir: string, p: string, kind: Kind): Promise<void> {
  const at = join(dir, p)
  await mkdir(dirname(at), {recursive: true, mode: 0o755})
  const was = await lstat(at).catch(() => undefined)
  if (kind === 'dir') {
    if (was && !was.isDirectory()) await rm(at, {force: true})
    await mkdir(at, {recursive: true, mode: 0o755})
    return
  }
  if (was?.isDirectory()) await rm(at, {recursive: true, force: true})
  const tmp = join(dirname(at), `.${basename(at)}.new`)
  await rm(tmp, {force: true})
  if (kind === 'link') await symlink(await readlink(join('/etc', p)), tmp)
  else await copyFile(join('/etc', p), tmp)
  await rename(tmp, at)
}

/** Removes from the copy what the allow-list no longer has there (and temporary names left by a crash). */
async function sweep(dir: string, rel: string, wanted: Set<string>, leaves: Map<string, Entry>): Promise<void> {
  const names = await readdir(join(dir, rel)).catch(() => [] as string[])
  await Promise.all(
    names.map(async (n) => {
      const p = rel ? `${rel}/${n}` : n
      if (!wanted.has(p)) await rm(join(dir, p), {recursive: true, force: true})
      else if (!leaves.has(p) && !OWN.includes(p)) await sweep(dir, p, wanted, leaves)
    }),
  )
}

async function refresh(node: string, st: State): Promise<NodeEtc> {
  const started = Date.now()
  const dir = nodeEtcDir(node)
  const here = await lstat(dir).catch(() => undefined)
  if (!here || here.ino !== st.dirIno) {
    await mkdir(dir, {recursive: true, mode: 0o755})
    st.entries = new Map()
    st.dirIno = (await lstat(dir)).ino
    await Promise.all(OWN.map((f) => writeFile(join(dir, f), '', {flag: 'a', mode: 0o644})))
  }
  const next = await scan()
  const changed = [...next].filter(([p, e]) => {
    const o = st.entries.get(p)
    return !o || o.kind !== e.kind || o.sig !== e.sig
  })
  await Promise.all(
    changed.map(([p, e]) =>
      // Gone between the scan and the copy: left out now, so the next check copies it again.
      put(dir, p, e.kind).catch(() => next.delete(p)),
    ),
  )
  const same = st.entries.size === next.size && [...next.keys()].every((p) => st.entries.has(p))
  if (!same) {
    const wanted = new Set(OWN)
    for (const p of next.keys()) for (let q = p; q !== '.'; q = dirname(q)) wanted.add(q)
    await sweep(dir, '', wanted, next)
  }
  st.entries = next
  st.checkedAt = started
  st.current = {dir, dirs: [...next].filter(([, e]) => e.kind === 'dir').map(([p]) => p)}
  return st.current
}
