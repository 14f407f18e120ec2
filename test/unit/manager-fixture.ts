// The manager tests' cluster: a store on disk in a temp dir holding the cluster record and its
// nodes, and a Manager on it running as node 'a' (the one manager; the others are workers).
// Every temp dir is removed after the importing test file, also when a test fails.
import {mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after} from 'node:test'
import {Manager} from '../../src/manager/manager.js'
import type {MembershipView} from '../../src/membership/view.js'
import {valueProblem} from '../../src/model/shape.js'
import type {NodeRecord} from '../../src/model/types.js'
import {CLUSTER_KEY, keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {clusterSpec, nodeRecord} from './model-records.js'

const dirs: string[] = []
after(() => dirs.forEach((d) => rmSync(d, {recursive: true, force: true})))

/** A fresh store (validated as the agent's is, no reaper) with the cluster record, as `init` leaves it. */
export function clusterStore(prefix: string): {dir: string; store: Store} {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  const store = new Store(dir, 'a', {validate: valueProblem, reapIntervalMs: 0}).open()
  store.put(CLUSTER_KEY, clusterSpec())
  return {dir, store}
}

/** Writes node `id`'s record, named n-<id>; node 'a' is the manager. */
export function putNode(store: Store, id: string, addr: string, state: NodeRecord['state'] = 'ready'): void {
  store.put(keyOf('node', id), nodeRecord(id, addr, {name: `n-${id}`, role: id === 'a' ? 'manager' : 'worker', state}))
}

/** The cluster store with these nodes up, and node a's Manager on it. */
export function managerFixture(
  prefix: string,
  nodes: readonly (readonly [id: string, addr: string])[],
  membership?: MembershipView,
  opts?: ConstructorParameters<typeof Manager>[3],
): {dir: string; store: Store; m: Manager} {
  const {dir, store} = clusterStore(prefix)
  for (const [id, addr] of nodes) putNode(store, id, addr)
  return {dir, store, m: new Manager(store, 'a', membership, opts)}
}

/** Every file of the store (snapshot and log), to show that a refused change wrote nothing. */
export const storeFiles = (dir: string): string =>
  readdirSync(dir)
    .sort()
    .map((f) => `${f}:${readFileSync(join(dir, f), 'utf8')}`)
    .join('\n')
