// --advertise-addr IP|IFACE -> the address and the device it lives on, as
// Docker resolves it: an interface name takes its first IPv4 address; no flag
// works only when the node has exactly one non-loopback IPv4 address.
import {run} from '../sys/exec.js'
import {isIpv4} from '../model/ipv4.js'

interface AddrJson {
  ifname: string
  addr_info?: {family: string; local: string; prefixlen: number}[]
}

export async function resolveAdvertise(flag: string | undefined): Promise<{addr: string; ifname: string}> {
  const links = JSON.parse(await run(['ip', '-j', '-4', 'addr', 'show'], 'listing addresses')) as AddrJson[]
  const all = links.flatMap((l) =>
    (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => ({addr: a.local, ifname: l.ifname})),
  )
  const usable = all.filter((a) => !a.addr.startsWith('127.'))
  if (flag === undefined) {
    if (usable.length === 1) return usable[0]!
    if (usable.length === 0) throw new Error('no IPv4 address to advertise: give --advertise-addr')
    throw new Error(
      `could not choose an IP address to advertise since this system has several (${usable.map((a) => `${a.addr} on ${a.ifname}`).join(', ')}): give --advertise-addr`,
    )
  }
  if (isIpv4(flag)) {
    const hit = all.find((a) => a.addr === flag)
    if (!hit) throw new Error(`advertise address ${flag} is not an address of this node`)
    return hit
  }
  const onIf = all.filter((a) => a.ifname === flag)
  if (onIf.length === 0) {
    throw new Error(
      links.some((l) => l.ifname === flag)
        ? `interface ${flag} has no IPv4 address`
        : `invalid --advertise-addr '${flag}': not an IPv4 address nor an interface of this node`,
    )
  }
  return onIf[0]!
}
