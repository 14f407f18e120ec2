// Load balancing at connect() for the node's tasks (bpf/sock_lb.c): the four cgroup sock_addr
// programs on the cgroup that holds every task of the node (nodeCgroupDirs(node).v2, src/sys/cgroup.ts:
// command tasks and runc image tasks alike are its children), one pinned link per hook beside the
// node's other links; sn_sock_lb_tasks, which names each task by its cgroup id and lists the
// networks it is on; and the end of sockets whose backend left (bpf/sock_lb_end.c): two pinned
// iterators the agent reads in each task's namespace (an iterator walks the reader's namespace).
import {mkdirSync, rmSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {attachCgroupLink, CGROUP_ATTACH, type CgroupHook} from '../bpf/cgroup-links.js'
import {snSockLbTask, u64, type SockLbNet} from '../bpf/codecs.js'
import {errnoError} from '../bpf/errors.js'
import {libbpf, libbpfLog} from '../bpf/libbpf.js'
import {libc} from '../sys/libc.js'
import type {BpfMap} from '../bpf/map.js'
import {BpfObject} from '../bpf/object.js'
import {removeLink} from '../bpf/links.js'
import {run} from '../sys/exec.js'
import {nodeCgroupV2Dir} from '../sys/cgroup.js'
import {netnsPath} from '../sys/netns.js'

export const SOCK_LB_PROGS: Record<CgroupHook, string> = {
  connect4: 'sn_sock_lb_connect4',
  sendmsg4: 'sn_sock_lb_sendmsg4',
  recvmsg4: 'sn_sock_lb_recvmsg4',
  getpeername4: 'sn_sock_lb_getpeername4',
}

export const sockLbLink = (hook: CgroupHook) => `socklb-${hook}`

/** The cgroup whose descendants are this node's tasks: where the programs go. */
export const sockLbCgroup = (node: string) => nodeCgroupV2Dir(node)

/** Attach the four programs to `cgroup` (made when missing: the first task would make it anyway). */
export function attachSockLb(obj: BpfObject, linkDir: string, cgroup: string): void {
  mkdirSync(cgroup, {recursive: true})
  for (const hook of Object.keys(CGROUP_ATTACH) as CgroupHook[]) {
    attachCgroupLink(cgroup, obj.program(SOCK_LB_PROGS[hook]).fd, hook, join(linkDir, sockLbLink(hook)))
  }
}

/** Take the programs off (a kernel that cannot end their sockets): tc balances every flow again. */
export function detachSockLb(linkDir: string): void {
  for (const hook of Object.keys(CGROUP_ATTACH) as CgroupHook[]) removeLink(join(linkDir, sockLbLink(hook)))
  for (const proto of Object.keys(END_PROGS) as (keyof typeof END_PROGS)[])
    rmSync(join(linkDir, sockLbEndLink(proto)), {force: true})
}

/** A cgroup's id as bpf_get_current_cgroup_id() gives it: its directory's inode on cgroup2. */
export function cgroupId(dir: string): bigint | undefined {
  try {
    return statSync(dir, {bigint: true}).ino
  } catch {
    return undefined // not made yet (a task about to start): the next sync writes it
  }
}

/** What one sync of sn_sock_lb_tasks wrote, for the next (Datapath keeps it). */
export interface SockLbMemo {
  /** Each task cgroup's id by its directory: a cgroup keeps its inode while it lives. */
  ids: Map<string, bigint>
  /** The entries the map was last made to hold in full (key hex -> value). */
  wrote?: Map<string, Buffer>
}

/**
 * Makes sn_sock_lb_tasks hold exactly the given tasks (cgroup directory -> its networks) whose
 * cgroup exists now. A task on more networks than the programs look at keeps the rest with tc.
 * With `memo` (this runs on every sync, twice per reconcile pass): a cgroup's id is looked up
 * (a stat) only the first time its directory is seen, and the map is not read back when its entries
 * are those last written; `full` (the drift check) does both afresh.
 */
export function syncSockLbTasks(
  map: BpfMap,
  want: ReadonlyMap<string, readonly SockLbNet[]>,
  memo: SockLbMemo = {ids: new Map()},
  full = true,
  /** The map as already read back (off the event loop: the drift check's BpfMap.entriesAsync). */
  read?: Array<[Buffer, Buffer]>,
): void {
  const next = new Map<string, Buffer>()
  const ids = new Map<string, bigint>()
  for (const [dir, nets] of want) {
    if (nets.length === 0) continue
    const id = (full ? undefined : memo.ids.get(dir)) ?? cgroupId(dir)
    if (id === undefined) continue
    ids.set(dir, id)
    next.set(u64.encode(id).toString('hex'), snSockLbTask.encode(nets.slice(0, 8)))
  }
  memo.ids = ids // the directories of tasks gone are forgotten
  if (!full && memo.wrote && sameValues(memo.wrote, next)) return
  memo.wrote = undefined // remembered again once the map holds `next` in full
  // One batched read of what the map holds (not a lookup per task).
  const have = new Map((read ?? map.entries()).map(([k, v]) => [k.toString('hex'), v] as const))
  for (const k of have.keys()) if (!next.has(k)) map.delete(Buffer.from(k, 'hex'))
  for (const [k, v] of next) {
    const had = have.get(k)
    if (!had || !had.equals(v)) map.update(Buffer.from(k, 'hex'), v)
  }
  memo.wrote = next
}

function sameValues(a: ReadonlyMap<string, Buffer>, b: ReadonlyMap<string, Buffer>): boolean {
  if (a.size !== b.size) return false
  for (const [k, v] of b) if (!a.get(k)?.equals(v)) return false
  return true
}

const BPF_TRACE_ITER = 28
const END_PROGS = {tcp: 'sn_sock_lb_end_tcp', udp: 'sn_sock_lb_end_udp'} as const
export const sockLbEndLink = (proto: keyof typeof END_PROGS) => `socklb-end-${proto}`

/**
 * The iterators that end sockets whose backend left. `open` loads them (maps shared by pin) and
 * pins one link per protocol; it throws on a kernel without bpf_sock_destroy (6.5+), and the
 * agent then leaves every flow to a VIP to tc_task (whose tracking ends a flow to a gone backend).
 */
export class SockLbEnder {
  private constructor(
    private readonly obj: BpfObject,
    private readonly pins: string[],
  ) {}

  static open(objPath: string, pinRoot: string, linkDir: string): SockLbEnder {
    const obj = BpfObject.open(objPath, {pinRoot})
    try {
      obj.load()
      mkdirSync(linkDir, {recursive: true, mode: 0o700})
      const pins: string[] = []
      for (const proto of Object.keys(END_PROGS) as (keyof typeof END_PROGS)[]) {
        const pin = join(linkDir, sockLbEndLink(proto))
        libbpfLog().take()
        const fd = libbpf().bpf_link_create(obj.program(END_PROGS[proto]).fd, 0, BPF_TRACE_ITER, null)
        if (fd < 0) throw errnoError(`make the ${proto} socket iterator`, fd, {libbpfLog: libbpfLog().take()})
        try {
          // A pin from an earlier agent names its old program: this one's replaces it.
          rmSync(pin, {force: true})
          const rc = libbpf().bpf_obj_pin(fd, pin)
          if (rc < 0) throw errnoError(`pin the ${proto} socket iterator at ${pin}`, rc)
        } finally {
          libc().close(fd)
        }
        pins.push(pin)
      }
      return new SockLbEnder(obj, pins)
    } catch (e) {
      obj.close()
      throw e
    }
  }

  /** Ends, in each named namespace, the sockets the programs sent to a backend no longer in its set. */
  async run(netns: readonly string[]): Promise<void> {
    for (const ns of netns) {
      // Reading a pinned iterator runs it over the reader's namespace: cat, entered into the task's.
      await run(['nsenter', `--net=${netnsPath(ns)}`, '--', 'cat', ...this.pins], `ending sockets in ${ns}`).catch(
        () => undefined, // the task went meanwhile: nothing of it to end
      )
    }
  }

  close(): void {
    this.obj.close()
  }
}
