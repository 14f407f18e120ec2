// Model records (src/model/types.ts) as tests and benches build them: every field a record must
// have, at a value no test is about, so each test names only the fields it checks. Plain data, no
// node:test: benches import it too.
import type {ClusterSpec, Network, NodeRecord, Service} from '../../src/model/types.js'

/** The cluster record as `swarmnet init` writes it with the default pool. */
export const clusterSpec = (more: Partial<ClusterSpec> = {}): ClusterSpec => ({
  id: 'c',
  createdAt: 0,
  dataPathPort: 4789,
  defaultAddrPool: '10.0.0.0/8',
  subnetSize: 24,
  ...more,
})

/** A node that joined as a worker and is up. */
export const nodeRecord = (id: string, addr: string, more: Partial<NodeRecord> = {}): NodeRecord => ({
  id,
  name: id,
  addr,
  gossipPort: 7946,
  role: 'worker',
  state: 'ready',
  mtu: 1500,
  joinedAt: 0,
  ...more,
})

/** Three managers and two workers at 172.30.0.11-15: the etcd-backed cluster of the etcd test and bench. */
export const etcdClusterNodes = (): NodeRecord[] =>
  ['m1', 'm2', 'm3', 'w1', 'w2'].map((id, i) =>
    nodeRecord(id, `172.30.0.${11 + i}`, {role: id.startsWith('m') ? 'manager' : 'worker'}),
  )

/** An overlay network on VNI 4097, neither attachable nor the ingress network. */
export const networkRecord = (id: string, subnet: string, more: Partial<Network> = {}): Network => ({
  id,
  name: id,
  driver: 'overlay',
  scope: 'swarm',
  vni: 4097,
  subnet,
  gateway: '',
  attachable: false,
  ingress: false,
  createdAt: 0,
  ...more,
})

/** A replicated service of two tasks, in vip mode. */
export const serviceRecord = (id: string, networks: string[], more: Partial<Service> = {}): Service => ({
  id,
  name: id,
  mode: {replicas: 2},
  networks,
  command: [],
  createdAt: 1,
  updatedAt: 1,
  ...more,
})
