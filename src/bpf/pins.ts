// Where a node's maps live on bpffs. Pins outlive the agent on purpose (the
// data plane keeps its state across restarts), so everything a node pins is
// under one folder that `leave` can remove in one go.

import fs from 'node:fs'
import path from 'node:path'
import {BpfError, describeErrno} from './errors.js'
import {libc} from '../sys/libc.js'
import {lastErrno} from './libbpf.js'

export const BPFFS = '/sys/fs/bpf'
export const PIN_BASE = `${BPFFS}/swarmnet`

const NODE_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/

export function isValidNodeName(node: string): boolean {
  return NODE_NAME.test(node)
}

export function assertNodeName(node: string): void {
  // The name becomes a path component under /sys/fs/bpf: reject anything
  // that could escape the folder or collide with another node's.
  if (!isValidNodeName(node)) {
    throw new BpfError(
      'BAD_ARGUMENT',
      `invalid node name ${JSON.stringify(node)}: use 1-32 of a-z, 0-9 and '-', starting with a letter or digit`,
    )
  }
}

export function nodePinDir(node: string): string {
  assertNodeName(node)
  return `${PIN_BASE}/${node}`
}

/** Mount points of type bpf, from /proc/mounts. */
export function bpffsMounts(): string[] {
  let text: string
  try {
    text = fs.readFileSync('/proc/mounts', 'utf8')
  } catch {
    return []
  }
  const out: string[] = []
  for (const line of text.split('\n')) {
    const [, mnt, type] = line.split(' ')
    // /proc/mounts escapes spaces in paths as \040.
    if (type === 'bpf' && mnt) out.push(mnt.replace(/\\040/g, ' '))
  }
  return out
}

export function isBpffsMounted(at = BPFFS): boolean {
  return bpffsMounts().includes(at)
}

/** True when `p` lies on some mounted bpffs (pins can only be made there). */
export function isOnBpffs(p: string): boolean {
  const abs = path.resolve(p)
  return bpffsMounts().some((m) => abs === m || abs.startsWith(m.endsWith('/') ? m : `${m}/`))
}

export function bpffsHint(dir: string): string {
  return `${dir} is not on a bpf filesystem: mount it with \`mount -t bpf bpf ${BPFFS}\``
}

/** Mount bpffs at /sys/fs/bpf unless it already is; needs CAP_SYS_ADMIN. */
export function ensureBpffs(): void {
  if (isBpffsMounted()) return
  fs.mkdirSync(BPFFS, {recursive: true})
  const rc = libc().mount('bpf', BPFFS, 'bpf', 0, 'mode=0700')
  if (rc !== 0) {
    const errno = lastErrno()
    throw new BpfError(
      errno === 1 ? 'PERMISSION' : 'NO_BPFFS',
      `cannot mount bpffs at ${BPFFS}: ${describeErrno(errno)}${errno === 1 ? ' (run as root)' : ''}`,
      {errno},
    )
  }
}

/** Remove every pin of a node; true if there was anything to remove. */
export function removeNodePins(node: string): boolean {
  const dir = nodePinDir(node)
  if (!fs.existsSync(dir)) return false
  // Unlinking a pin drops only that reference: programs still attached keep
  // their maps alive until detached.
  fs.rmSync(dir, {recursive: true, force: true})
  return true
}
