// The oldest Linux each of our BPF objects can load on, read from the object itself:
// the helpers its instructions call, its map types, its program types and attach
// points, and the verifier features its code needs (loops, global data, BPF-to-BPF
// calls). Each entry of the tables says in which mainline release the kernel first
// offered it (bpf.h and the commit that added it). Distributions backport, so the agent
// does not refuse a kernel by its number: it loads, and only explains a failed load by
// the floor (olderThanFloor).
// A thing found in an object that the tables do not know is an error, so a new
// helper cannot slip past the floor that README states (test/unit/bpf-kernel-floor.test.ts).
import os from 'node:os'
import {elfSections} from './elf.js'
import {BpfError} from './errors.js'
import {BpfObject} from './object.js'
import {Btf, BtfKind} from './btf.js'

export type Version = readonly [major: number, minor: number]

export interface Need {
  /** What it is, as a reader would look it up: `helper bpf_timer_init`, `map lru_hash`, `attach cgroup/getpeername4`. */
  what: string
  since: Version
}

export interface ObjectFloor {
  object: string
  needs: Need[]
  floor: Version
  /** The needs that set the floor. */
  because: Need[]
}

// enum bpf_prog_type (uapi, stable numbers)
const PROG = {sched_cls: 3, xdp: 6, cgroup_sock_addr: 18, tracing: 26} as const

/** Program sections (libbpf's SEC names) as we use them: the program type and the release that added the hook. */
const SECTIONS: Record<string, {progType: number; since: Version}> = {
  tc: {progType: PROG.sched_cls, since: [4, 5]}, // cls_bpf in direct-action mode on clsact (4.5); TCX is optional (links.ts falls back)
  xdp: {progType: PROG.xdp, since: [4, 8]},
  'cgroup/connect4': {progType: PROG.cgroup_sock_addr, since: [4, 17]},
  'cgroup/sendmsg4': {progType: PROG.cgroup_sock_addr, since: [4, 18]},
  'cgroup/recvmsg4': {progType: PROG.cgroup_sock_addr, since: [5, 2]},
  'cgroup/getpeername4': {progType: PROG.cgroup_sock_addr, since: [5, 8]},
  'iter/tcp': {progType: PROG.tracing, since: [5, 9]},
  'iter/udp': {progType: PROG.tracing, since: [5, 9]},
}

/** kfuncs (called by BTF id, named in the object's BTF as extern functions) and the release that added them. */
const KFUNCS: Record<string, Version> = {
  bpf_sock_destroy: [6, 5],
}

/**
 * Objects the agent loads only when the kernel has them, falling back without (one logged line):
 * their floor is not the data plane's, and README's number leaves them out.
 */
export const OPTIONAL_OBJECTS: Record<string, string> = {
  sock_lb_end: 'ending sockets whose backend left (bpf_sock_destroy); without it, no load balancing at connect()',
}

/** enum bpf_func_id -> name and release; `by` where a program type got it later than the helper itself. */
const HELPERS: Record<number, {name: string; since: Version; by?: Partial<Record<number, Version>>}> = {
  1: {name: 'bpf_map_lookup_elem', since: [3, 19]},
  2: {name: 'bpf_map_update_elem', since: [3, 19]},
  3: {name: 'bpf_map_delete_elem', since: [3, 19]},
  5: {name: 'bpf_ktime_get_ns', since: [4, 1]},
  7: {name: 'bpf_get_prandom_u32', since: [4, 1]},
  8: {name: 'bpf_get_smp_processor_id', since: [4, 1]},
  9: {name: 'bpf_skb_store_bytes', since: [4, 1]},
  10: {name: 'bpf_l3_csum_replace', since: [4, 1]},
  11: {name: 'bpf_l4_csum_replace', since: [4, 1]},
  23: {name: 'bpf_redirect', since: [4, 4]},
  26: {name: 'bpf_skb_load_bytes', since: [4, 5]},
  28: {name: 'bpf_csum_diff', since: [4, 6]},
  32: {name: 'bpf_skb_change_type', since: [4, 8]},
  38: {name: 'bpf_skb_change_tail', since: [4, 9]},
  39: {name: 'bpf_skb_pull_data', since: [4, 9]},
  44: {name: 'bpf_xdp_adjust_head', since: [4, 10]},
  46: {name: 'bpf_get_socket_cookie', since: [4, 12], by: {[PROG.cgroup_sock_addr]: [5, 7]}},
  50: {name: 'bpf_skb_adjust_room', since: [4, 13]},
  65: {name: 'bpf_xdp_adjust_tail', since: [4, 18]},
  69: {name: 'bpf_fib_lookup', since: [4, 18]},
  80: {name: 'bpf_get_current_cgroup_id', since: [4, 18], by: {[PROG.cgroup_sock_addr]: [5, 7]}},
  122: {name: 'bpf_get_netns_cookie', since: [5, 7]},
  125: {name: 'bpf_ktime_get_boot_ns', since: [5, 8]},
  152: {name: 'bpf_redirect_neigh', since: [5, 10]},
  155: {name: 'bpf_redirect_peer', since: [5, 10]},
  160: {name: 'bpf_ktime_get_coarse_ns', since: [5, 11]},
  169: {name: 'bpf_timer_init', since: [5, 15]},
  170: {name: 'bpf_timer_set_callback', since: [5, 15]},
  171: {name: 'bpf_timer_start', since: [5, 15]},
  172: {name: 'bpf_timer_cancel', since: [5, 15]},
  188: {name: 'bpf_xdp_get_buff_len', since: [5, 18]},
  189: {name: 'bpf_xdp_load_bytes', since: [5, 18]},
  190: {name: 'bpf_xdp_store_bytes', since: [5, 18]},
}

/** enum bpf_map_type -> name and release. */
const MAPS: Record<number, {name: string; since: Version}> = {
  1: {name: 'hash', since: [3, 19]},
  2: {name: 'array', since: [3, 19]},
  5: {name: 'percpu_hash', since: [4, 6]},
  6: {name: 'percpu_array', since: [4, 6]},
  9: {name: 'lru_hash', since: [4, 10]},
  10: {name: 'lru_percpu_hash', since: [4, 10]},
  11: {name: 'lpm_trie', since: [4, 11]},
  12: {name: 'array_of_maps', since: [4, 12]},
  13: {name: 'hash_of_maps', since: [4, 12]},
  14: {name: 'devmap', since: [4, 14]},
}

/** Verifier features that the code's shape needs. */
const CODE = {
  bpfCalls: {what: 'BPF-to-BPF calls', since: [4, 16]},
  globalData: {what: 'global data (.rodata/.data/.bss)', since: [5, 2]},
  bigPrograms: {what: 'programs over 4,096 instructions', since: [5, 2]},
  loops: {what: 'bounded loops', since: [5, 3]},
  jmp32: {what: 'JMP32 instructions', since: [5, 1]},
  atomics: {what: 'atomic fetch operations', since: [5, 12]},
} as const satisfies Record<string, {what: string; since: Version}>

const later = (a: Version, b: Version) => a[0] > b[0] || (a[0] === b[0] && a[1] > b[1])
export const formatVersion = (v: Version) => `${v[0]}.${v[1]}`

/** What one object needs of the kernel; throws on anything the tables above do not know. */
export function objectNeeds(path: string, name = path): Need[] {
  const needs = new Map<string, Need>()
  const add = (n: Need) => {
    if (!needs.has(n.what)) needs.set(n.what, n)
  }
  const unknown: string[] = []
  let kfuncs = 0
  const sections = elfSections(path)
  for (const s of sections) {
    if (['.rodata', '.data', '.bss'].includes(s.name) || /^\.(rodata|data|bss)\./.test(s.name)) add({...CODE.globalData})
    if (!s.exec || s.data.length === 0) continue
    if (s.name === '.text') add({...CODE.bpfCalls}) // subprograms live there
    const section = s.name === '.text' ? undefined : SECTIONS[s.name]
    if (s.name !== '.text' && !section) {
      unknown.push(`program section ${s.name}`)
      continue
    }
    if (section) add({what: `attach ${s.name}`, since: section.since})
    if (s.data.length / 8 > 4096) add({...CODE.bigPrograms})
    // .text programs run as the sections that call them: their helpers count for every program type here
    const progTypes = section
      ? [section.progType]
      : sections.flatMap((x) => (SECTIONS[x.name] ? [SECTIONS[x.name]!.progType] : []))
    for (let at = 0; at + 8 <= s.data.length; at += 8) {
      const op = s.data[at]!
      const src = s.data[at + 1]! >> 4
      const off = s.data.readInt16LE(at + 2)
      const imm = s.data.readInt32LE(at + 4)
      const cls = op & 7
      if (op === 0x85) {
        if (src === 1) add({...CODE.bpfCalls})
        else if (src === 2) kfuncs++
        else {
          const h = HELPERS[imm]
          if (!h) unknown.push(`helper #${imm}`)
          else
            for (const progType of new Set(progTypes)) {
              const since = h.by?.[progType] ?? h.since
              const what = h.by?.[progType] ? `helper ${h.name} (${progName(progType)})` : `helper ${h.name}`
              add({what, since})
            }
        }
      } else if ((cls === 5 || cls === 6) && op !== 0x95 && off < 0) add({...CODE.loops})
      if (cls === 6) add({...CODE.jmp32})
      if ((op === 0xc3 || op === 0xdb) && imm !== 0) add({...CODE.atomics})
    }
  }
  // clang leaves a kfunc call as a relocated BPF-to-BPF call for libbpf to resolve: its extern
  // declaration in BTF is what names it.
  const btf = Btf.parse(path)
  try {
    for (const [n, since] of Object.entries(KFUNCS))
      if (btf.findId(n, BtfKind.FUNC) !== undefined) add({what: `kfunc ${n}`, since})
  } finally {
    btf.close()
  }
  if (kfuncs > 0) unknown.push(`${kfuncs} kfunc call(s) by BTF id`)
  const obj = BpfObject.open(path)
  try {
    for (const m of obj.mapSpecs()) {
      const t = MAPS[m.type]
      if (!t) unknown.push(`map type #${m.type} (${m.name})`)
      else add({what: `map ${t.name}`, since: t.since})
    }
  } finally {
    obj.close()
  }
  if (unknown.length > 0)
    throw new Error(
      `${name}: the kernel-floor tables do not know ${unknown.join(', ')}: add when Linux first offered it (src/bpf/kernel-floor.ts)`,
    )
  return [...needs.values()]
}

function progName(t: number): string {
  return Object.entries(PROG).find(([, v]) => v === t)?.[0] ?? `prog type ${t}`
}

export function objectFloor(path: string, name = path): ObjectFloor {
  const needs = objectNeeds(path, name)
  let floor: Version = [0, 0]
  for (const n of needs) if (later(n.since, floor)) floor = n.since
  return {object: name, needs, floor, because: needs.filter((n) => n.since[0] === floor[0] && n.since[1] === floor[1])}
}

/** The floor of a set of objects: the latest of theirs. */
export function floorOf(floors: ObjectFloor[]): Version {
  return floors.reduce<Version>((v, f) => (!OPTIONAL_OBJECTS[f.object] && later(f.floor, v) ? f.floor : v), [0, 0])
}

/** Linux's version as major.minor, from a release string such as 6.1.0-18-amd64. */
export function parseKernelVersion(release: string): Version | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release)
  return m ? [Number(m[1]), Number(m[2])] : undefined
}

/**
 * Why an object did not load, when the kernel is older than the object's floor: one line
 * naming the object, what sets its floor and the release that added it. Only asked after a
 * load failed: a distribution kernel that reports an older version but has the features
 * backported (RHEL's 5.14) loads and is never refused by number.
 */
export function olderThanFloor(f: ObjectFloor, release: string): string | undefined {
  const have = parseKernelVersion(release)
  if (!have || !later(f.floor, have)) return undefined
  return `${f.object} cannot load on Linux ${release}: it needs ${f.because.map((n) => n.what).join(', ')} (Linux ${formatVersion(f.floor)} or newer)`
}

/** obj.load(), but a kernel older than the object's floor is said in one line instead of a verifier log. */
export function loadWithFloor(obj: BpfObject, name: string, release = os.release()): void {
  try {
    obj.load()
  } catch (e) {
    if (!(e instanceof BpfError) || (e.code !== 'VERIFIER' && e.code !== 'UNSUPPORTED' && e.code !== 'SYSCALL')) throw e
    const why = olderThanFloor(objectFloor(obj.path, name), release)
    if (why) throw new BpfError('UNSUPPORTED', why, {cause: e, errno: e.errno})
    throw e
  }
}
