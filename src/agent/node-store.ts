// A node's store as the agent, init and join open it: in the node's state
// directory, refusing values that do not have their kind's shape.
import {join} from 'node:path'
import {parseDuration} from '../model/duration.js'
import {keyProblem, valueProblem} from '../model/shape.js'
import {Store, type StoreOptions} from '../store/store.js'
import {stateDir} from './paths.js'

/**
 * How long a deletion's tombstone is kept: 30 min (DEFAULT_TOMBSTONE_TTL_MS) unless
 * SWARMNET_TOMBSTONE_TTL (a duration: 2s, 500ms) says otherwise. Only the tests shorten it, to see
 * in minutes that a node away longer than a tombstone's life does not bring the deleted back.
 */
function tombstoneTtl(): Pick<StoreOptions, 'tombstoneTtlMs'> {
  const v = process.env.SWARMNET_TOMBSTONE_TTL
  return v ? {tombstoneTtlMs: parseDuration(v, 'SWARMNET_TOMBSTONE_TTL')} : {}
}

export function openNodeStore(node: string, nodeId: string, opts: Pick<StoreOptions, 'onWriteFailure'> = {}): Store {
  return new Store(join(stateDir(node), 'store'), nodeId, {
    validate: valueProblem,
    validateKey: keyProblem,
    ...tombstoneTtl(),
    ...opts,
  }).open()
}
