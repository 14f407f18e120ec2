// cgroup BPF programs attached through bpf_links pinned on bpffs: several
// links on one cgroup run side by side (each lab node attaches its own to the
// shared root cgroup), a pin outlives the agent, a restarted agent swaps the
// program in place (bpf_link_update), and unpinning is detaching.
import fs from 'node:fs'
import path from 'node:path'
import {errnoError} from './errors.js'
import {libc} from '../sys/libc.js'
import {libbpf, libbpfLog} from './libbpf.js'
import {objInfoByFd} from './obj-info.js'
import {progIdOf} from './links.js'

/** enum bpf_attach_type values of the cgroup sock_addr hooks (linux/bpf.h). */
export const CGROUP_ATTACH = {connect4: 10, sendmsg4: 14, recvmsg4: 19, getpeername4: 29} as const
export type CgroupHook = keyof typeof CGROUP_ATTACH

const LINK_TYPE_CGROUP = 3

/** The cgroup link pinned at pinPath: its program id and hook, undefined when there is none. */
export function pinnedCgroupLink(pinPath: string): {progId: number; attachType: number; cgroupId: bigint} | undefined {
  if (!fs.existsSync(pinPath)) return undefined
  const fd = libbpf().bpf_obj_get(pinPath)
  if (fd < 0) throw errnoError(`open pinned link ${pinPath}`, fd)
  try {
    const info = objInfoByFd(fd, 'bpf_link_info', 'read bpf_link info')
    if (info.readUInt32LE(0) !== LINK_TYPE_CGROUP) return undefined
    // struct bpf_link_info: type, id, prog_id, then the cgroup union member {cgroup_id u64; attach_type u32}.
    return {progId: info.readUInt32LE(8), cgroupId: info.readBigUInt64LE(16), attachType: info.readUInt32LE(24)}
  } finally {
    libc().close(fd)
  }
}

/**
 * Attach progFd to the cgroup at `cgroupDir` on `hook` through a link pinned
 * at pinPath: made once, updated in place when the program changed.
 */
export function attachCgroupLink(
  cgroupDir: string,
  progFd: number,
  hook: CgroupHook,
  pinPath: string,
): 'created' | 'updated' | 'unchanged' {
  const progId = progIdOf(progFd)
  const type = CGROUP_ATTACH[hook]
  const cur = pinnedCgroupLink(pinPath)
  if (cur && cur.attachType === type && cur.cgroupId === fs.statSync(cgroupDir, {bigint: true}).ino) {
    if (cur.progId === progId) return 'unchanged'
    const fd = libbpf().bpf_obj_get(pinPath)
    if (fd < 0) throw errnoError(`open pinned link ${pinPath}`, fd)
    try {
      const rc = libbpf().bpf_link_update(fd, progFd, null)
      if (rc < 0) throw errnoError(`update the program of cgroup ${hook} at ${cgroupDir}`, rc)
    } finally {
      libc().close(fd)
    }
    return 'updated'
  }
  // A pin of something else (a hook or cgroup we no longer use): unpinning detaches it.
  fs.rmSync(pinPath, {force: true})
  const cg = fs.openSync(cgroupDir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
  try {
    libbpfLog().take()
    const fd = libbpf().bpf_link_create(progFd, cg, type, null)
    if (fd < 0) throw errnoError(`attach cgroup ${hook} link to ${cgroupDir}`, fd, {libbpfLog: libbpfLog().take()})
    try {
      fs.mkdirSync(path.dirname(pinPath), {recursive: true, mode: 0o700})
      const rc = libbpf().bpf_obj_pin(fd, pinPath)
      if (rc < 0) throw errnoError(`pin the cgroup ${hook} link at ${pinPath}`, rc)
    } finally {
      // The pin holds the link now; without one, closing detaches.
      libc().close(fd)
    }
  } finally {
    fs.closeSync(cg)
  }
  return 'created'
}
