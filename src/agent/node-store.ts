// A node's store as the agent, init and join open it: in the node's state
// directory, refusing values that do not have their kind's shape.
import {join} from 'node:path'
import {keyProblem, valueProblem} from '../model/shape.js'
import {Store, type StoreOptions} from '../store/store.js'
import {stateDir} from './paths.js'

export function openNodeStore(node: string, nodeId: string, opts: Pick<StoreOptions, 'onWriteFailure'> = {}): Store {
  return new Store(join(stateDir(node), 'store'), nodeId, {validate: valueProblem, validateKey: keyProblem, ...opts}).open()
}
