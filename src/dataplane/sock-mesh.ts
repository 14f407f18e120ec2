// The routing mesh from the node itself (bpf/sock_mesh.c): the cgroup
// sock_addr programs on the cgroup2 root, one pinned link per hook under the
// node's links folder (so `leave` and `lab down` detach them with the rest),
// and the one config entry that says which network namespace is the node's.
// Every lab node attaches its own programs to the same root cgroup; each acts
// only on sockets of its own namespace.
import {join} from 'node:path'
import {attachCgroupLink, CGROUP_ATTACH, type CgroupHook} from '../bpf/cgroup-links.js'
import {snSockConfig, u32} from '../bpf/codecs.js'
import type {BpfMap} from '../bpf/map.js'
import type {BpfObject} from '../bpf/object.js'
import {cgroup2Root} from '../sys/cgroup.js'
import {ownNetnsCookie} from '../sys/netns-cookie.js'

export const SOCK_PROGS: Record<CgroupHook, string> = {
  connect4: 'sn_sock_connect4',
  sendmsg4: 'sn_sock_sendmsg4',
  recvmsg4: 'sn_sock_recvmsg4',
  getpeername4: 'sn_sock_getpeername4',
}

export const sockLink = (hook: CgroupHook) => `sock-${hook}`

/** Attach the four programs to `cgroup` (the cgroup2 root unless a test names another). */
export function attachSockMesh(obj: BpfObject, linkDir: string, cgroup = cgroup2Root()): void {
  const root = cgroup
  for (const hook of Object.keys(CGROUP_ATTACH) as CgroupHook[]) {
    attachCgroupLink(root, obj.program(SOCK_PROGS[hook]).fd, hook, join(linkDir, sockLink(hook)))
  }
}

/** The agent runs in its node's namespace: its own cookie is the node's. */
export function setSockConfig(map: BpfMap, nodeIp: string): void {
  map.update(u32.encode(0), snSockConfig.encode({netns_cookie: ownNetnsCookie(), node_ip: nodeIp, flags: 0}))
}
