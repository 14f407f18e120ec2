/**
 * What a command task (a service without --image) sees of its node: an allow-list, not the
 * node's root with parts hidden. Its root is a directory of the task's own, read-only, holding
 * mount points and the node's top-level links (bin -> usr/bin on a merged-/usr system); runc
 * binds into it, read-only, what a program of the node needs to run: /usr, /bin, /sbin, /lib*,
 * and of /etc the entries in ETC (users and groups without their shadow files, name service,
 * dynamic linker, time zone, CA certificates without ssl/private, alternatives, ...).
 * /tmp and /run are the task's own tmpfs. Everything else (the state directory, /run/swarmnet,
 * /root, /home, /opt, /srv, /var, the etcd TLS files wherever they are, bpffs, the node's cgroup
 * tree) is not there at all; a task that needs more is given it with --mount.
 *
 * Also bound, read-only: swarmnet's own package (and node's directory when it is not under
 * /usr), because a service without a command runs `swarmnet whoami` from it.
 */
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {dirname, join} from 'node:path'
import {packageRoot} from '../util/root.js'
import type {OciMount} from './oci-spec.js'

/** The node's top-level directories a program may need (followed as links when they are links). */
const TOP = ['usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']

/**
 * Entries of /etc a task sees: files are copied at each start, directories bound read-only. Never
 * shadow, gshadow, sudoers, ssh, ssl/private, machine-id, swarmnet's or any daemon's own files.
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

/** Read-only bind options; rro also makes the mounts below the bound directory read-only. */
const RO_BIND = ['rbind', 'rro', 'nosuid', 'nodev', 'rprivate']

export interface NodeView {
  /** The task's root: mount points and links only. */
  rootfs: string
  /** The allow-list as mounts, after Docker's own ones (oci-spec.ts). */
  mounts: OciMount[]
}

function kind(path: string): 'link' | 'dir' | 'file' | undefined {
  try {
    const st = lstatSync(path)
    return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : undefined
  } catch {
    return undefined
  }
}

/** One node path into the view: a link as a link, a directory as a read-only bind, a file copied or bound. */
function admit(rootfs: string, path: string, mounts: OciMount[], files: 'copy' | 'bind'): void {
  const at = join(rootfs, path)
  const k = kind(path)
  if (!k) return
  mkdirSync(dirname(at), {recursive: true, mode: 0o755})
  if (k === 'link') symlinkSync(readlinkSync(path), at)
  else if (k === 'dir') {
    mkdirSync(at, {recursive: true, mode: 0o755})
    mounts.push({destination: path, type: 'bind', source: path, options: RO_BIND})
  } else if (files === 'copy') copyFileSync(path, at)
  else {
    writeFileSync(at, '')
    mounts.push({destination: path, type: 'bind', source: path, options: RO_BIND})
  }
}

/** Whether path is at or below one of dirs. */
const within = (path: string, dirs: readonly string[]) => dirs.some((d) => path === d || path.startsWith(`${d}/`))

/**
 * Builds the task's root in dir/rootfs (made again at each start: the node's /etc may have
 * changed) and returns it with the mounts of the allow-list.
 */
export function buildNodeView(dir: string): NodeView {
  const rootfs = join(dir, 'rootfs')
  rmSync(rootfs, {recursive: true, force: true})
  mkdirSync(rootfs, {recursive: true, mode: 0o755})
  const mounts: OciMount[] = []
  for (const t of TOP) admit(rootfs, `/${t}`, mounts, 'bind')
  for (const d of ['etc', 'tmp', 'run', 'root', 'var', 'proc', 'sys', 'dev']) mkdirSync(join(rootfs, d), {mode: 0o755})
  // As on the node: /var/run and /var/tmp are where programs look for /run and /tmp.
  symlinkSync('../run', join(rootfs, 'var', 'run'))
  symlinkSync('../tmp', join(rootfs, 'var', 'tmp'))
  // The task's own files (hosts, resolv.conf, hostname) are bound over these by oci-spec.ts.
  for (const f of ['hosts', 'resolv.conf', 'hostname']) writeFileSync(join(rootfs, 'etc', f), '')
  let names: string[] = []
  try {
    names = readdirSync('/etc')
  } catch {
    // no /etc: nothing of it to show
  }
  for (const e of ETC) {
    const paths = typeof e === 'string' ? [e] : names.filter((n) => e.test(n))
    for (const p of paths) admit(rootfs, `/etc/${p}`, mounts, 'copy')
  }
  mounts.push(
    {destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777']},
    {destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755']},
  )
  // swarmnet's package and node, for the default command, where no directory above already shows them.
  const shown = TOP.map((t) => `/${t}`).filter((t) => kind(t) === 'dir')
  for (const d of new Set([packageRoot(), dirname(process.execPath)]))
    if (!within(d, shown) && existsSync(d)) {
      mkdirSync(join(rootfs, d), {recursive: true, mode: 0o755})
      mounts.push({destination: d, type: 'bind', source: d, options: RO_BIND})
    }
  return {rootfs, mounts}
}
