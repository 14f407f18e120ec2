/**
 * How a task's process is started in its sandbox, with util-linux tools and sh only:
 *
 *   sh (join the task's cgroups) -> nsenter (its network namespace) -> unshare (new mount, PID,
 *   UTS, IPC and cgroup namespaces; forks) -> sh as PID 1 (private mounts, hostname) ->
 *   setpriv (capabilities, no_new_privs, user) -> the command, still PID 1.
 *
 * The cgroup comes first, so every process of the task, the launcher included, is in it from
 * its first instruction: cgroup.kill reaches all of them whatever the timing.
 */
import {dirname} from 'node:path'
import {run} from '../sys/exec.js'
import {packageRoot} from '../util/root.js'
import {RUN_DIR, STATE_ROOT} from '../agent/paths.js'
import {netnsPath} from '../sys/netns.js'

/**
 * The capabilities a task keeps: Docker's default set without MKNOD (there is no device cgroup
 * here to make mknod harmless). Without NET_ADMIN, SYS_ADMIN, BPF, SYS_PTRACE, SYS_MODULE and
 * the rest, a task can neither reconfigure its links nor mount, load programs or modules.
 */
export const TASK_CAPS = [
  'chown',
  'dac_override',
  'fowner',
  'fsetid',
  'kill',
  'setgid',
  'setuid',
  'setpcap',
  'setfcap',
  'net_bind_service',
  'net_raw',
  'sys_chroot',
  'audit_write',
] as const

/**
 * Paths the task must not see: the agents' state and sockets (also when moved elsewhere by
 * SWARMNET_STATE_DIR / SWARMNET_RUN_DIR). /run as a whole is the task's own anyway: the
 * node's daemons keep their sockets there, and a socket stays connectable on a read-only mount.
 */
export const HIDDEN_DIRS = [STATE_ROOT, RUN_DIR]

/**
 * What the task runs from (swarmnet itself for the default command, and node) stays visible
 * when it lives under /tmp, which becomes the task's own tmpfs: a clone or CI checkout there
 * is common. Read-only, like the rest of the node.
 */
export function keptDirs(): string[] {
  const under = (d: string) => d.startsWith('/tmp/')
  return [...new Set([packageRoot(), dirname(process.execPath)])].filter(under)
}

/** Joins the cgroups given before `--` (cgroup.procs files), then execs the rest. */
const JOIN_CGROUPS = `set -e
while [ "$1" != -- ]; do echo $$ > "$1"; shift; done
shift
exec "$@"`

/**
 * Runs as PID 1 of the task's namespaces, as root with every capability, and builds the task's
 * view of the node before it execs the command through setpriv. Mount changes stay in this
 * mount namespace: unshare makes it private.
 */
const SETUP = `set -eu
name=$1 hosts=$2 resolv=$3 caps=$4 hidden=$5 keep=$6; shift 6
hostname "$name"
# Every mount of the node read-only (in this namespace only); /proc, /sys, /dev are replaced below.
while read -r _ _ _ _ mp _; do
  case $mp in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  case $mp in *\\\\*) mp=$(printf '%b' "$(printf '%s' "$mp" | sed 's/\\\\\\([0-7][0-7][0-7]\\)/\\\\0\\1/g')") ;; esac
  mount -o remount,bind,ro "$mp"
done < /proc/self/mountinfo
# /etc/hosts and /etc/resolv.conf may be links into /run (systemd-resolved): resolve them before
# /run becomes the task's own, and bind the task's files where they point.
hosts_at=$(readlink -m /etc/hosts)
resolv_at=$(readlink -m /etc/resolv.conf)
mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs /run
for f in "$hosts_at" "$resolv_at"; do
  if [ ! -e "$f" ]; then mkdir -p "$(dirname "$f")"; : > "$f"; fi
done
mount --bind "$hosts" "$hosts_at"
mount --bind "$resolv" "$resolv_at"
# Set aside what must stay visible under /tmp before /tmp becomes the task's own (moved back below).
IFS=:
i=0
for d in $keep; do mkdir -p "/run/.sn-keep/$i"; mount --bind "$d" "/run/.sn-keep/$i"; i=$((i + 1)); done
unset IFS
IFS=:
for d in $hidden; do
  if [ -d "$d" ]; then mount -t tmpfs -o ro,nosuid,nodev,noexec,size=4k,mode=755 tmpfs "$d"; fi
done
unset IFS
mount -t proc -o nosuid,nodev,noexec proc /proc
# As Docker: what in /proc reaches the whole machine is read-only or hidden.
for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus /proc/fs; do
  if [ -e "$p" ]; then mount --bind "$p" "$p"; mount -o remount,bind,ro "$p"; fi
done
for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do
  if [ -e "$p" ]; then mount --bind /dev/null "$p"; fi
done
# A fresh sysfs for the task's network namespace, read-only; it also hides /sys/fs/bpf and the cgroup mounts.
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t tmpfs -o nosuid,noexec,mode=755,size=64k tmpfs /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/tty c 5 0
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,nosuid,noexec devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 tmpfs /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
IFS=:
i=0
for d in $keep; do
  mkdir -p "$d"
  mount --move "/run/.sn-keep/$i" "$d"
  mount -o remount,bind,ro "$d"
  i=$((i + 1))
done
unset IFS
rm -rf /run/.sn-keep
cd /
exec setpriv --bounding-set "-all,$caps" --inh-caps -all --no-new-privs "$@"`

/** The user a task runs as, resolved on its node. */
export interface TaskUser {
  uid: number
  gid: number
  /** Supplementary groups from the node's group database, for named users (as Docker does). */
  initGroups: boolean
  /** Exactly these supplementary groups (for exec: the task's own). */
  groups?: number[]
}

/** setpriv's options for the user (none for root: the bounding set is what limits it). */
export function userArgs(u: TaskUser | undefined): string[] {
  if (!u) return []
  const groups = u.groups?.length
    ? ['--groups', u.groups.join(',')]
    : [u.initGroups && !u.groups ? '--init-groups' : '--clear-groups']
  return ['--reuid', String(u.uid), '--regid', String(u.gid), ...groups]
}

const capList = () => TASK_CAPS.map((c) => `+${c}`).join(',')

export interface LaunchSpec {
  netns: string
  hostname: string
  /** The task's own files, bind-mounted over /etc/hosts and /etc/resolv.conf. */
  hostsFile: string
  resolvFile: string
  /** cgroup directories to join (v2 first). */
  cgroups: string[]
  user?: TaskUser
  argv: string[]
  /** Directories under /tmp to keep visible (read-only); by default keptDirs(). */
  keep?: string[]
}

/** argv that runs argv inside the given cgroup directories from its first instruction on. */
export function inCgroupsArgv(cgroups: readonly string[], argv: readonly string[]): string[] {
  return ['sh', '-c', JOIN_CGROUPS, 'sn-join', ...cgroups.map((d) => `${d}/cgroup.procs`), '--', ...argv]
}

export function launchArgv(s: LaunchSpec): string[] {
  return inCgroupsArgv(s.cgroups, [
    'nsenter',
    `--net=${netnsPath(s.netns)}`,
    '--',
    'unshare',
    '--mount',
    '--pid',
    '--uts',
    '--ipc',
    '--cgroup',
    '--fork',
    '--kill-child=SIGKILL',
    '--propagation',
    'private',
    '--',
    'sh',
    '-c',
    SETUP,
    'sn-setup',
    s.hostname,
    s.hostsFile,
    s.resolvFile,
    capList(),
    HIDDEN_DIRS.join(':'),
    (s.keep ?? keptDirs()).join(':'),
    ...userArgs(s.user),
    '--',
    ...s.argv,
  ])
}

/**
 * `task exec`: into the cgroup, then all of the task's namespaces through its PID 1, with the
 * same capabilities, no_new_privs and user as the task. Its root and working directory too:
 * entering a mount namespace puts a process at that namespace's root, which is not the task's
 * where the agent itself runs chrooted (a build root, a test's clean machine).
 */
export function execArgv(pid: number, cgroups: string[], user: TaskUser | undefined, argv: string[]): string[] {
  return inCgroupsArgv(cgroups, [
    'nsenter',
    `--target=${pid}`,
    '--net',
    '--mount',
    '--pid',
    '--uts',
    '--ipc',
    '--cgroup',
    '--root',
    '--wd',
    '--',
    'setpriv',
    '--bounding-set',
    `-all,${capList()}`,
    '--inh-caps',
    '-all',
    '--no-new-privs',
    ...userArgs(user),
    '--',
    ...argv,
  ])
}

/** The same uid, gid and groups as a running process (for exec): from /proc/<pid>/status. */
export function userOfProcess(statusText: string): TaskUser | undefined {
  const field = (n: string) =>
    statusText
      .split('\n')
      .find((l) => l.startsWith(`${n}:`))
      ?.slice(n.length + 1)
      .trim() ?? ''
  const uid = Number(field('Uid').split(/\s+/)[0])
  const gid = Number(field('Gid').split(/\s+/)[0])
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) return undefined
  if (uid === 0) return undefined
  const groups = field('Groups').split(/\s+/).filter(Boolean).map(Number)
  return {uid, gid, initGroups: false, groups}
}

/** --user as written (UID[:GID] or NAME[:GROUP]) to ids, from the node's user database. */
export async function resolveUser(spec: string): Promise<TaskUser> {
  const [u, g] = spec.split(':') as [string, string | undefined]
  const entry = async (db: string, key: string) => {
    const out = await run(['getent', db, key], `looking up ${db} ${key}`).catch(() => '')
    return out.split('\n')[0]?.split(':')
  }
  let uid: number
  let gid: number | undefined
  let named = false
  if (/^\d+$/.test(u)) {
    uid = Number(u)
    const pw = await entry('passwd', u)
    if (pw && pw[3]) gid = Number(pw[3])
  } else {
    const pw = await entry('passwd', u)
    if (!pw || pw[2] === undefined) throw new Error(`user ${u} does not exist on this node`)
    uid = Number(pw[2])
    gid = Number(pw[3])
    named = true
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g)
    else {
      const gr = await entry('group', g)
      if (!gr || gr[2] === undefined) throw new Error(`group ${g} does not exist on this node`)
      gid = Number(gr[2])
    }
  }
  // A uid with no entry and no group given: its own number as gid rather than root's group.
  return {uid, gid: gid ?? uid, initGroups: named}
}
