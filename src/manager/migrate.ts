// swarm migrate-store --to etcd: an embedded cluster's desired state copied
// into etcd, with every allocation it holds, in one transaction into an empty
// prefix. Nothing about a task changes (same ids, nodes, addresses), so the
// nodes' reconcilers see nothing to do and every task keeps running; from then
// on the manager serves and places through etcd and more managers may join.
import type {ClusterSpec} from '../model/types.js'
import {UserError} from '../model/errors.js'
import type {Json} from '../store/json.js'
import {CLUSTER_KEY} from '../store/keys.js'
import type {Store} from '../store/store.js'
import {isDesiredKey} from './backend.js'
import {EtcdBackend} from './etcd-backend.js'
import {etcdClient, type EtcdSettings} from './etcd-client.js'

export async function migrateToEtcd(o: {local: Store; settings: EtcdSettings; selfId: string}): Promise<{records: number}> {
  const cluster = o.local.get<ClusterSpec>(CLUSTER_KEY)
  if (!cluster) throw new UserError('this node holds no cluster state')
  if (cluster.store === 'etcd') throw new UserError('this cluster already keeps its state in etcd')
  const moved: ClusterSpec = {...cluster, store: 'etcd'}
  const records = o.local
    .list('')
    .filter((e) => isDesiredKey(e.key))
    .map((e) => ({key: e.key, value: e.key === CLUSTER_KEY ? moved : (e.value as Json)}))
  const client = etcdClient(o.settings)
  try {
    const b = new EtcdBackend({
      client,
      prefix: o.settings.prefix,
      local: o.local,
      selfId: o.selfId,
      endpoints: o.settings.endpoints,
    })
    await b.importRecords(records)
  } finally {
    client.close()
  }
  // Every node learns where the state now lives (a joining manager checks it).
  o.local.put(CLUSTER_KEY, moved)
  return {records: records.length}
}
