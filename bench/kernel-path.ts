/**
 * The kernel's own overlay path, built the way Docker's overlay driver builds it, inside two
 * lab nodes: a vxlan device (nolearning, static FDB) enslaved to a bridge, and one "task"
 * namespace per node on a veth into that bridge, with static neighbour entries.
 *
 * A distinct VNI (5000) and UDP port (4790), so it never meets swarmnet's traffic on 4789.
 * Everything it makes is named sn-kvx0 / sn-kbr0 / sn-kbv0 (in the node namespaces) and
 * sn-kb-<node> (the task namespaces); removeKernelPath() removes exactly that.
 */
import {run} from '../src/sys/exec.js'
import {addAddress, createBridge, createVeth, deleteLink, enslave, setLinkUp} from '../src/sys/link.js'
import {addNetns, delNetns, execIn, netnsExists} from '../src/sys/netns.js'

export const KVX = 'sn-kvx0'
export const KBR = 'sn-kbr0'
export const KVETH = 'sn-kbv0'
export const KVNI = 5000
export const KPORT = 4790
export const KMTU = 1450

export interface KernelEnd {
  /** The lab node: "n1" */
  node: string
  /** The node's namespace: "sn-lab-n1" */
  nodeNetns: string
  /** The node's underlay address */
  underlay: string
  /** The "task" namespace: "sn-kb-n1" */
  netns: string
  /** The task's overlay address (no prefix) */
  ip: string
  /** The task's MAC, Docker-style 02:42:<ip> */
  mac: string
}

function dockerMac(ip: string): string {
  return ['02', '42', ...ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':')
}

export function kernelEnds(nodes: {name: string; netns: string; address: string}[]): KernelEnd[] {
  return nodes.map((n, i) => {
    const ip = `10.99.0.${i + 1}`
    return {node: n.name, nodeNetns: n.netns, underlay: n.address, netns: `sn-kb-${n.name}`, ip, mac: dockerMac(ip)}
  })
}

const ipn = (ns: string, args: string[], doing: string) => run(['ip', '-n', ns, ...args], doing)

/** Builds both ends and programs each with the other's FDB and neighbour entries. */
export async function buildKernelPath(ends: KernelEnd[]): Promise<void> {
  for (const e of ends) {
    await createBridge(KBR, e.nodeNetns)
    await setLinkUp(KBR, e.nodeNetns)
    await ipn(
      e.nodeNetns,
      [
        'link',
        'add',
        KVX,
        'type',
        'vxlan',
        'id',
        String(KVNI),
        'dstport',
        String(KPORT),
        'local',
        e.underlay,
        'nolearning',
        'dev',
        'eth0',
      ],
      `creating ${KVX} in ${e.nodeNetns}`,
    )
    await ipn(e.nodeNetns, ['link', 'set', 'dev', KVX, 'mtu', String(KMTU)], `setting mtu on ${KVX}`)
    await enslave(KVX, KBR, e.nodeNetns)
    await setLinkUp(KVX, e.nodeNetns)

    await addNetns(e.netns)
    await setLinkUp('lo', e.netns)
    await createVeth(KVETH, 'eth0', {ns: e.nodeNetns, peerNs: e.netns, mtu: KMTU})
    await enslave(KVETH, KBR, e.nodeNetns)
    await setLinkUp(KVETH, e.nodeNetns)
    await ipn(e.netns, ['link', 'set', 'dev', 'eth0', 'address', e.mac], `setting mac in ${e.netns}`)
    await addAddress('eth0', `${e.ip}/24`, e.netns)
    await setLinkUp('eth0', e.netns)
  }
  for (const e of ends) {
    for (const p of ends) {
      if (p === e) continue
      // Docker: a default (all-zero) entry per peer for BUM traffic, and one permanent entry per
      // remote MAC pointing at its node; the neighbour entry so the task never ARPs.
      await run(
        ['bridge', '-n', e.nodeNetns, 'fdb', 'append', '00:00:00:00:00:00', 'dev', KVX, 'dst', p.underlay],
        `fdb default in ${e.nodeNetns}`,
      )
      await run(
        ['bridge', '-n', e.nodeNetns, 'fdb', 'replace', p.mac, 'dev', KVX, 'dst', p.underlay, 'self', 'permanent'],
        `fdb ${p.mac} in ${e.nodeNetns}`,
      )
      await ipn(
        e.netns,
        ['neigh', 'replace', p.ip, 'lladdr', p.mac, 'dev', 'eth0', 'nud', 'permanent'],
        `neighbour ${p.ip} in ${e.netns}`,
      )
    }
  }
}

/** tx/rx packet counters of the vxlan device in a node. */
export async function vxlanCounters(
  nodeNetns: string,
): Promise<{txPackets: number; rxPackets: number; txDropped: number; rxDropped: number}> {
  const out = await execIn(nodeNetns, ['ip', '-s', '-j', 'link', 'show', 'dev', KVX], `reading ${KVX} counters`)
  const [j] = JSON.parse(out) as {stats64: {rx: {packets: number; dropped: number}; tx: {packets: number; dropped: number}}}[]
  return {
    txPackets: j!.stats64.tx.packets,
    rxPackets: j!.stats64.rx.packets,
    txDropped: j!.stats64.tx.dropped,
    rxDropped: j!.stats64.rx.dropped,
  }
}

/** Best effort and idempotent; only our names. Stop the processes you started in the task namespaces first. */
export async function removeKernelPath(ends: KernelEnd[]): Promise<string[]> {
  const errors: string[] = []
  const attempt = async (f: () => Promise<unknown>) => {
    try {
      await f()
    } catch (e) {
      errors.push(e instanceof Error ? e.message : String(e))
    }
  }
  for (const e of ends) {
    await attempt(() => delNetns(e.netns))
    if (netnsExists(e.nodeNetns)) {
      await attempt(() => deleteLink(KVETH, e.nodeNetns))
      await attempt(() => deleteLink(KVX, e.nodeNetns))
      await attempt(() => deleteLink(KBR, e.nodeNetns))
    }
  }
  return errors
}
