// sn_probe_keys (bpf/include/probe.h): one slot per installed cluster key, holding the probe
// key derived from it, so the data path answers probes tagged under any key a rotation has
// installed; the slots of keys no longer installed are cleared (an answer needs a set slot).

import {snProbeKey, SN_PROBE_KEY_FLAGS, u32, type BpfMap} from '../bpf/index.js'
import {probeKey} from './probe-wire.js'

export function writeProbeKeys(map: BpfMap, clusterKeys: {id: number; key: Buffer}[]): void {
  const want = new Map(clusterKeys.map((k) => [k.id, probeKey(k.key)]))
  for (const [id, key] of want)
    map.update(u32.encode(id), snProbeKey.encode({key: key.toString('hex'), flags: SN_PROBE_KEY_FLAGS.SET}))
  for (const [key, value] of map.entries()) {
    if (want.has(key.readUInt32LE(0)) || snProbeKey.decode(value).flags === 0) continue
    map.update(key, snProbeKey.encode({key: '00'.repeat(16), flags: 0}))
  }
}
