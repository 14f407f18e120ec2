/**
 * What a command task (a service without --image) sees of its node: an allow-list, not the
 * node's root with parts hidden. Its root is a directory of the task's own, read-only, holding
 * mount points and the node's top-level links (bin -> usr/bin on a merged-/usr system); runc
 * binds into it, read-only, what a program of the node needs to run: /usr, /bin, /sbin, /lib*,
 * and at /etc the node's filtered copy of its /etc (node-etc.ts: users and groups without their
 * shadow files, name service, dynamic linker, time zone, CA certificates without ssl/private,
 * alternatives, ...), one for all the node's tasks, with the task's own hosts, resolv.conf and
 * hostname bound over it. /tmp and /run are the task's own tmpfs. Everything else (the state
 * directory, /run/swarmnet, /root, /home, /opt, /srv, /var, the etcd TLS files wherever they are,
 * bpffs, the node's cgroup tree) is not there at all; a task that needs more is given it with --mount.
 *
 * Also bound, read-only: swarmnet's own package (and node's directory when it is not under
 * /usr), because a service without a command runs `swarmnet whoami` from it.
 *
 * Nothing here holds the agent's event loop: what does not depend on the task (the node's /etc,
 * its top-level entries) is looked at once per check (ETC_CHECK_MS), and the task's own root,
 * a handful of directories and links, is made with asynchronous calls.
 */
import {access, lstat, mkdir, readlink, rm, symlink, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {packageRoot} from '../util/root.js'
import type {OciMount} from './oci-spec.js'
import {ETC_CHECK_MS, nodeEtc} from './node-etc.js'

/** The node's top-level directories a program may need (followed as links when they are links). */
const TOP = ['usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']

/** Read-only bind options; rro also makes the mounts below the bound directory read-only. */
const RO_BIND = ['rbind', 'rro', 'nosuid', 'nodev', 'rprivate']

const bind = (path: string, source = path): OciMount => ({destination: path, type: 'bind', source, options: RO_BIND})

export interface NodeView {
  /** The task's root: mount points and links only. */
  rootfs: string
  /** The node's /etc copy at /etc: mounted before the task's own files, which go over its placeholders. */
  etc: OciMount
  /** The rest of the allow-list as mounts, after Docker's own ones (oci-spec.ts). */
  mounts: OciMount[]
}

/** The node's top-level entries as a task's root shows them, and the directories bound for the default command. */
interface Top {
  links: {name: string; target: string}[]
  dirs: string[]
  files: string[]
  /** swarmnet's package and node's directory, where no top-level directory already shows them. */
  extra: string[]
}

async function scanTop(): Promise<Top> {
  const top: Top = {links: [], dirs: [], files: [], extra: []}
  for (const name of TOP) {
    const st = await lstat(`/${name}`).catch(() => undefined)
    if (st?.isSymbolicLink()) top.links.push({name, target: await readlink(`/${name}`)})
    else if (st?.isDirectory()) top.dirs.push(name)
    else if (st?.isFile()) top.files.push(name)
  }
  const shown = top.dirs.map((t) => `/${t}`)
  const within = (path: string) => shown.some((d) => path === d || path.startsWith(`${d}/`))
  for (const d of new Set([packageRoot(), dirname(process.execPath)]))
    if (
      !within(d) &&
      (await access(d).then(
        () => true,
        () => false,
      ))
    )
      top.extra.push(d)
  return top
}

let top: {at: number; value: Promise<Top>} | undefined

/** The node's top-level entries, looked at again at most every ETC_CHECK_MS. */
function nodeTop(): Promise<Top> {
  if (!top || Date.now() - top.at >= ETC_CHECK_MS) top = {at: Date.now(), value: scanTop()}
  return top.value
}

/**
 * Builds the task's root in dir/rootfs (made again at each start: an earlier run's is not
 * trusted) and returns it with the mounts of the allow-list.
 */
export async function buildNodeView(node: string, dir: string): Promise<NodeView> {
  const [etc, t] = await Promise.all([nodeEtc(node), nodeTop()])
  const rootfs = join(dir, 'rootfs')
  await rm(rootfs, {recursive: true, force: true})
  await mkdir(rootfs, {recursive: true, mode: 0o755})
  const at = (p: string) => join(rootfs, p)
  await Promise.all([
    ...t.links.map((l) => symlink(l.target, at(l.name))),
    ...t.files.map((f) => writeFile(at(f), '')),
    ...[...t.dirs, 'etc', 'tmp', 'run', 'root', 'proc', 'sys', 'dev'].map((d) => mkdir(at(d), {mode: 0o755})),
    // As on the node: /var/run and /var/tmp are where programs look for /run and /tmp.
    mkdir(at('var'), {mode: 0o755}).then(() => Promise.all([symlink('../run', at('var/run')), symlink('../tmp', at('var/tmp'))])),
  ])
  // After the top-level links: a directory below one of them is made where the link leads, as on the node.
  for (const d of t.extra) await mkdir(at(d), {recursive: true, mode: 0o755})
  const mounts: OciMount[] = [
    ...[...t.dirs, ...t.files].map((d) => bind(`/${d}`)),
    ...etc.dirs.map((p) => bind(`/etc/${p}`)),
    {destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777']},
    {destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755']},
    ...t.extra.map((d) => bind(d)),
  ]
  return {rootfs, etc: bind('/etc', etc.dir), mounts}
}
