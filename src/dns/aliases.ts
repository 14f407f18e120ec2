import type {NetworkSpec} from '../model/network-spec.js'
import type {ServiceAlias} from '../model/types.js'

/** The --network values' aliases as the service stores them: per network id, merged, in the order given. */
export function serviceAliases(specs: NetworkSpec[], idOf: (ref: string) => string): ServiceAlias[] {
  const byNet = new Map<string, string[]>()
  for (const s of specs) {
    if (s.aliases.length === 0) continue
    const id = idOf(s.network)
    const names = byNet.get(id) ?? []
    for (const a of s.aliases) if (!names.includes(a)) names.push(a)
    byNet.set(id, names)
  }
  return [...byNet].map(([networkId, names]) => ({networkId, names}))
}
