// What a manager hands the gossip layer to answer joins: the identity that
// proves the cluster, the tokens valid now (read at each join, so a rotated
// token takes effect at once), the secrets a joining manager gets, and the
// admission decision (admission.ts). A manager without the identity answers none.
import type {JoinAnswering} from '../gossip/gossip.js'
import type {KeyPair} from '../gossip/identity.js'
import type {ManagerSecrets} from '../gossip/manager-secrets.js'
import {parseToken} from '../gossip/token.js'
import type {Store} from '../store/store.js'
import {admitJoiner} from './admission.js'

/** What a manager may hold (its node config): read live, since tokens rotate and roles change. */
export type HeldSecrets = {identity?: KeyPair; token?: string; managerToken?: string}

/** All a manager needs to do all a manager does (admit joins, certify roles), or undefined when it lacks any part. */
export function secretsHeld(held: HeldSecrets): ManagerSecrets | undefined {
  return held.identity && held.token && held.managerToken
    ? {identity: held.identity, token: held.token, managerToken: held.managerToken}
    : undefined
}

/** The join side of a manager holding the identity and a worker token (every manager of an etcd cluster, since the secrets travel). */
export function joinAnswering(store: Store, selfId: string, held: HeldSecrets): JoinAnswering | undefined {
  const identity = held.identity
  if (!identity || !held.token) return undefined
  return {
    identity,
    tokens: () => [
      {token: parseToken(held.token!), role: 'worker' as const},
      ...(held.managerToken ? [{token: parseToken(held.managerToken), role: 'manager' as const}] : []),
    ],
    managerSecrets: () => secretsHeld(held),
    admit: (node, role, holdsKey) => admitJoiner({store, selfId, identity}, node, role, holdsKey),
  }
}
