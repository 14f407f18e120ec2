/**
 * A task's /etc/resolv.conf: swarmnet's resolver at the node's gateway-bridge address as its only
 * nameserver, and the node's search domains and options kept (as Docker keeps them).
 *
 * With no search domain, glibc makes one of the hostname's part after its first dot, and a
 * task's hostname is SERVICE.SLOT: `web` would be asked as `web.1` first, which is a task's name.
 * ndots:0 then makes a name be asked as written first.
 */
export function taskResolvConf(nodeResolvConf: string, nameserver: string): string {
  const kept = nodeResolvConf
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^(search|domain|options)\s/.test(l))
  const searches = kept.some((l) => /^(search|domain)\s+\S/.test(l))
  const ndots = kept.some((l) => /^options\s.*\bndots:/.test(l))
  const extra = searches || ndots ? [] : ['options ndots:0']
  return ['# swarmnet: the cluster resolver of this node', `nameserver ${nameserver}`, ...kept, ...extra].join('\n') + '\n'
}
