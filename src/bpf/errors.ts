// One error type for everything src/bpf does. The message is one line that
// tells the user what to do; the details (errno, the full verifier log,
// libbpf's own diagnostics) stay on the object for --verbose output and tests.

import os from 'node:os'

export type BpfErrorCode =
  | 'NO_LIBBPF' // libbpf.so.1 cannot be loaded
  | 'PERMISSION' // EPERM/EACCES outside the verifier: not root, no CAP_BPF
  | 'NO_BPFFS' // /sys/fs/bpf is not a bpf filesystem
  | 'VERIFIER' // the kernel rejected a program
  | 'NO_DEVICE' // network device does not exist (in this netns)
  | 'NO_MAP' // object has no map of that name
  | 'NO_PROGRAM' // object has no program of that name
  | 'NO_OBJECT' // object file missing or not a BPF ELF
  | 'UNSUPPORTED' // kernel/driver lacks a feature
  | 'PIN_MISMATCH' // a pinned map differs from the object's definition
  | 'BAD_ARGUMENT' // caller passed something malformed (sizes, names)
  | 'BUSY' // something else already holds the hook
  | 'SYSCALL' // anything else: errno is on the object

export interface BpfErrorDetails {
  errno?: number
  /** The full verifier log, when the kernel rejected a program. */
  verifierLog?: string
  /** libbpf's own messages from the failed operation. */
  libbpfLog?: string[]
  cause?: unknown
}

export class BpfError extends Error {
  override readonly name = 'BpfError'
  readonly errno?: number
  readonly verifierLog?: string
  readonly libbpfLog?: string[]

  constructor(
    readonly code: BpfErrorCode,
    message: string,
    details: BpfErrorDetails = {},
  ) {
    super(message, details.cause === undefined ? undefined : {cause: details.cause})
    this.errno = details.errno
    this.verifierLog = details.verifierLog
    this.libbpfLog = details.libbpfLog
  }
}

// Linux errno values (asm-generic); os.constants.errno has them too, but
// the kernel's ENOTSUPP (524, not EOPNOTSUPP) is not in there.
export const E = {
  EPERM: 1,
  ENOENT: 2,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  EOPNOTSUPP: 95,
  ENOTSUPP: 524,
} as const

export function errnoName(errno: number): string {
  const n = Math.abs(errno)
  if (n === E.ENOTSUPP) return 'ENOTSUPP'
  for (const [name, value] of Object.entries(os.constants.errno)) {
    if (value === n) return name
  }
  return `errno ${n}`
}

/** A short description of the errno, e.g. "EPERM: operation not permitted". */
export function describeErrno(errno: number): string {
  const n = Math.abs(errno)
  const texts: Record<number, string> = {
    [E.EPERM]: 'operation not permitted',
    [E.ENOENT]: 'no such file or directory',
    [E.E2BIG]: 'argument too big',
    [E.EBADF]: 'bad file descriptor',
    [E.EAGAIN]: 'try again',
    [E.ENOMEM]: 'out of memory',
    [E.EACCES]: 'permission denied',
    [E.EBUSY]: 'device or resource busy',
    [E.EEXIST]: 'already exists',
    [E.ENODEV]: 'no such device',
    [E.EINVAL]: 'invalid argument',
    [E.ENOSPC]: 'no space left',
    [E.ERANGE]: 'out of range',
    [E.EOPNOTSUPP]: 'operation not supported',
    [E.ENOTSUPP]: 'operation not supported',
  }
  return `${errnoName(n)}${texts[n] ? `: ${texts[n]}` : ''}`
}

const ROOT_HINT = 'run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN'

/**
 * The common translation of a failed libbpf call. `what` says what we were
 * doing ("load swarmnet.o", "update map sn_config"), in the user's terms.
 */
export function errnoError(what: string, ret: number, details: Omit<BpfErrorDetails, 'errno'> = {}): BpfError {
  const errno = Math.abs(ret)
  const d = {...details, errno}
  switch (errno) {
    case E.EPERM:
      return new BpfError('PERMISSION', `${what}: ${describeErrno(errno)}: ${ROOT_HINT}`, d)
    case E.EOPNOTSUPP:
    case E.ENOTSUPP:
      return new BpfError('UNSUPPORTED', `${what}: not supported by this kernel (${os.release()}) or driver`, d)
    default:
      return new BpfError('SYSCALL', `${what}: ${describeErrno(errno)}`, d)
  }
}

/**
 * The last `lines` lines of a verifier log: where the kernel gave up. The
 * closing statistics ("processed N insns ...") explain nothing, so they go.
 */
export function logTail(log: string, lines = 8): string {
  const all = log
    .trimEnd()
    .split('\n')
    .filter((l) => !/^(processed \d+ insns|verification time)/.test(l))
  return all.slice(-lines).join('\n')
}
