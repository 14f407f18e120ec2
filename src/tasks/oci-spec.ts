/**
 * A task's OCI runtime configuration (the bundle's config.json, runtime-spec 1.0): what Docker
 * gives a container by default (its mounts, masked paths, capabilities and seccomp profile),
 * with the task's process, rootfs, cgroup, limits, and the network namespace swarmnet made and
 * wired for it (the runtime joins it rather than making one). With a user namespace (userns.ts),
 * the task's ids are mapped and /sys is the node's, bound read-only: a sysfs mount needs a network
 * namespace of the task's own user namespace, and the task's is the node's to wire.
 */
import {defaultSeccomp} from './seccomp-default.js'
import type {Remap} from './userns.js'

/** Docker's default capabilities (lower-case, without cap_). */
export const DOCKER_CAPS = [
  'chown',
  'dac_override',
  'fsetid',
  'fowner',
  'mknod',
  'net_raw',
  'setgid',
  'setuid',
  'setfcap',
  'setpcap',
  'net_bind_service',
  'sys_chroot',
  'kill',
  'audit_write',
] as const

/** Paths Docker hides (an empty file or tmpfs over them) and makes read-only in /proc and /sys. */
const MASKED = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
]
const READONLY = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']

export interface OciMount {
  destination: string
  type?: string
  source?: string
  options?: string[]
}

export interface ContainerSpec {
  rootfs: string
  readonlyRootfs: boolean
  args: string[]
  env: string[]
  cwd: string
  uid: number
  gid: number
  additionalGids?: number[]
  hostname: string
  /** Capabilities of the process (lower-case, without cap_): DOCKER_CAPS with --cap-add/--cap-drop applied. */
  caps: readonly string[]
  /** The task's network namespace (a path), made and wired by swarmnet. */
  netnsPath: string
  /** The cgroup, relative to each hierarchy's root: /swarmnet/<node>/<task>. */
  cgroupsPath: string
  limits?: {memoryBytes?: number; nanoCpus?: number}
  /** The task's own files, bound over the image's. */
  files: {hosts: string; resolv: string; hostname: string}
  /** Mounts the task's own files go over (a command task's /etc, node-view.ts). */
  baseMounts?: OciMount[]
  /** --mount and the like, after Docker's own. */
  mounts?: OciMount[]
  /** --init: the node's static init binary, bound at INIT_PATH and run as PID 1 in front of args. */
  init?: string
  /** --userns remap: a new user namespace with this mapping (the rootfs and files given to its root). */
  userns?: Remap
}

/**
 * Where --init's binary is bound in the container. Docker's /sbin/docker-init would need a file to
 * bind over in the root, which a read-only root (a command task's view, --read-only) cannot get;
 * /dev is the runtime's own tmpfs in every container.
 */
export const INIT_PATH = '/dev/init'

const CPU_PERIOD_US = 100_000

export function ociConfig(c: ContainerSpec): Record<string, unknown> {
  const capNames = c.caps.map((x) => `CAP_${x.toUpperCase()}`)
  // As Docker: a process that is not root has no effective or permitted capabilities (only the bound).
  const own = c.uid === 0 ? capNames : []
  const file = (destination: string, source: string) => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', 'rprivate'],
  })
  const mounts: OciMount[] = [
    {destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev']},
    {destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k']},
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    // runc joins the path namespaces (the network one) before it makes the user namespace, so the
    // network namespace is not the task's user namespace's and the kernel refuses it a sysfs:
    // the node's /sys instead, as Docker binds it then (rbind: a user namespace may not split off
    // the mounts below it).
    c.userns
      ? {destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro']}
      : {destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro']},
    {destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev']},
    {destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev']},
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    ...(c.baseMounts ?? []),
    file('/etc/hosts', c.files.hosts),
    file('/etc/resolv.conf', c.files.resolv),
    file('/etc/hostname', c.files.hostname),
    ...(c.mounts ?? []),
    ...(c.init ? [{destination: INIT_PATH, type: 'bind', source: c.init, options: ['bind', 'ro', 'nosuid', 'nodev']}] : []),
  ]
  const resources: Record<string, unknown> = {devices: [{allow: false, access: 'rwm'}]}
  if (c.limits?.memoryBytes !== undefined) resources.memory = {limit: c.limits.memoryBytes}
  if (c.limits?.nanoCpus !== undefined)
    resources.cpu = {
      period: CPU_PERIOD_US,
      quota: Math.max(1000, Math.round((c.limits.nanoCpus / 1e9) * CPU_PERIOD_US)),
    }
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: {uid: c.uid, gid: c.gid, ...(c.additionalGids?.length ? {additionalGids: c.additionalGids} : {})},
      // tini: `--` ends its own options; -s would make it a subreaper, needless as PID 1.
      args: c.init ? [INIT_PATH, '--', ...c.args] : c.args,
      env: c.env,
      cwd: c.cwd,
      capabilities: {bounding: capNames, effective: own, permitted: own, inheritable: [], ambient: []},
      // The node finds a task's PID 1 by it (runner.ts), and it closes setuid binaries as a way up.
      noNewPrivileges: true,
      oomScoreAdj: 0,
    },
    root: {path: c.rootfs, readonly: c.readonlyRootfs},
    hostname: c.hostname,
    mounts,
    linux: {
      namespaces: [
        {type: 'pid'},
        {type: 'ipc'},
        {type: 'uts'},
        {type: 'mount'},
        {type: 'cgroup'},
        {type: 'network', path: c.netnsPath},
        ...(c.userns ? [{type: 'user'}] : []),
      ],
      ...(c.userns ? {uidMappings: [c.userns.uid], gidMappings: [c.userns.gid]} : {}),
      cgroupsPath: c.cgroupsPath,
      resources,
      seccomp: defaultSeccomp(c.caps),
      maskedPaths: MASKED,
      readonlyPaths: READONLY,
    },
  }
}

/** Docker's default set with --cap-add / --cap-drop applied (names in any case, with or without CAP_; ALL). */
export function taskCaps(add: readonly string[] = [], drop: readonly string[] = []): string[] {
  const norm = (x: string) => x.toLowerCase().replace(/^cap_/, '')
  const d = drop.map(norm)
  let caps: string[] = d.includes('all') ? [] : DOCKER_CAPS.filter((c) => !d.includes(c))
  for (const a of add.map(norm)) {
    if (a === 'all') caps = [...ALL_CAPS]
    else if (!caps.includes(a)) caps.push(a)
  }
  return caps
}

/** Every capability name the kernel has today (for --cap-add and its checks). */
export const ALL_CAPS = [
  'chown',
  'dac_override',
  'dac_read_search',
  'fowner',
  'fsetid',
  'kill',
  'setgid',
  'setuid',
  'setpcap',
  'linux_immutable',
  'net_bind_service',
  'net_broadcast',
  'net_admin',
  'net_raw',
  'ipc_lock',
  'ipc_owner',
  'sys_module',
  'sys_rawio',
  'sys_chroot',
  'sys_ptrace',
  'sys_pacct',
  'sys_admin',
  'sys_boot',
  'sys_nice',
  'sys_resource',
  'sys_time',
  'sys_tty_config',
  'mknod',
  'lease',
  'audit_write',
  'audit_control',
  'setfcap',
  'mac_override',
  'mac_admin',
  'syslog',
  'wake_alarm',
  'block_suspend',
  'audit_read',
  'perfmon',
  'bpf',
  'checkpoint_restore',
] as const
