import {UserError} from './errors.js'
import {checkAlias} from './validate.js'

/** One --network value: a network (name or id), and the DNS aliases the service gets on it. */
export interface NetworkSpec {
  network: string
  aliases: string[]
}

/**
 * `--network NET` or Swarm's long form `--network name=NET,alias=A,alias=B` (`target=` is
 * accepted for `name=`, as docker does). Anything else in the long form is refused, whole.
 */
export function parseNetworkSpec(value: string): NetworkSpec {
  if (!value.includes('=')) return {network: value, aliases: []}
  let network: string | undefined
  const aliases: string[] = []
  for (const part of value.split(',')) {
    const eq = part.indexOf('=')
    if (eq < 0) throw new UserError(`invalid --network '${value}': '${part}' is not KEY=VALUE`)
    const key = part.slice(0, eq).trim().toLowerCase()
    const v = part.slice(eq + 1).trim()
    if (key === 'name' || key === 'target') {
      if (network !== undefined) throw new UserError(`invalid --network '${value}': the network is named twice`)
      if (v === '') throw new UserError(`invalid --network '${value}': the network name is empty`)
      network = v
    } else if (key === 'alias') {
      checkAlias(v)
      if (!aliases.includes(v)) aliases.push(v)
    } else throw new UserError(`invalid --network '${value}': unknown key '${key}' (name, alias)`)
  }
  if (network === undefined) throw new UserError(`invalid --network '${value}': name=NETWORK is missing`)
  return {network, aliases}
}
