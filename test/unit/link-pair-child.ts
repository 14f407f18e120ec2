// Child of sys-link-pair.test.ts, run by nsenter in a scratch namespace (a netlink socket makes
// devices in its own namespace): makes one pair and prints {ok}, or {error, unsupported}.
// argv: <netkit|veth> <name> <peer> <peerNs> <mtu> <peerMac> <queues>
import {createNetkit, createVethPair, PairUnsupported} from '../../src/sys/link-pair.js'

const [kind, name, peer, peerNs, mtu, peerMac, queues] = process.argv.slice(2) as string[]
const o = {peerNs: peerNs!, mtu: Number(mtu), peerMac: peerMac!, queues: Number(queues)}
try {
  if (kind === 'netkit') createNetkit(name!, peer!, o)
  else createVethPair(name!, peer!, o)
  console.log(JSON.stringify({ok: true}))
} catch (e) {
  console.log(JSON.stringify({error: (e as Error).message, unsupported: e instanceof PairUnsupported}))
}
