// The cookie of this process's network namespace (SO_NETNS_COOKIE, Linux
// 5.14+): the number bpf_get_netns_cookie() gives a BPF program for a socket
// of that namespace. The agent runs inside its node's namespace, so this is
// how its cgroup programs (bpf/sock_mesh.c) know which sockets are the node's.
import {libc} from './libc.js'

const SOL_SOCKET = 1
const SO_NETNS_COOKIE = 71
const AF_INET = 2
const SOCK_DGRAM = 2

/** This process's network namespace cookie; throws (one line) on a kernel without SO_NETNS_COOKIE. */
export function ownNetnsCookie(): bigint {
  const l = libc()
  const fd = l.socket(AF_INET, SOCK_DGRAM, 0)
  if (fd < 0) throw new Error('netns cookie: could not open a socket')
  try {
    const value = Buffer.alloc(8)
    const len = Buffer.alloc(4)
    len.writeUInt32LE(8)
    if (l.getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, value, len) !== 0) {
      throw new Error('netns cookie: getsockopt(SO_NETNS_COOKIE) failed (needs Linux 5.14 or later)')
    }
    return value.readBigUInt64LE(0)
  } finally {
    l.close(fd)
  }
}
