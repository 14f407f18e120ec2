// The node's DNS for its tasks, wired to the store: the name table is kept from the store's
// changes (name-keeper.ts: what a change touches is recomputed at the next read, so answers follow
// scaling as soon as the change arrives, and the reconciler's pass reads the table as it reads the
// store), and never kept anywhere the store does not hold it.
import {readFileSync} from 'node:fs'
import {ClusterReader} from '../store/cluster-reader.js'
import type {MembershipView} from '../membership/view.js'
import type {ClusterSpec} from '../model/types.js'
import type {Store} from '../store/store.js'
import {dnsTtl, nodeUpstreams} from './config.js'
import type {NameTable} from './names.js'
import {NameKeeper} from './name-keeper.js'
import {DnsServer} from './server.js'
import {FastPathKeeper} from './fastpath.js'
import type {DesiredDns} from '../dataplane/desired.js'
import {hostIfName} from '../dataplane/tasks.js'
import {ifindexOf} from '../bpf/attach.js'
import {dnsInspectView, type DnsInspectView} from './inspect.js'

export interface NodeDnsOptions {
  selfId: string
  store: Store
  cluster: ClusterSpec
  /** The gateway bridge's address on this node: where tasks send their questions. */
  addr: string
  membership: MembershipView
  log: (m: string) => void
}

export class NodeDns {
  readonly server: DnsServer
  private readonly keeper: NameKeeper
  /** The store's records, read as the API reads them. */
  private readonly records: ClusterReader
  /** The fast path's entries, kept from the name table's changes. */
  private readonly fast: FastPathKeeper

  constructor(private readonly o: NodeDnsOptions) {
    let resolv = ''
    try {
      resolv = readFileSync('/etc/resolv.conf', 'utf8')
    } catch {
      // no resolv.conf: nothing to forward to unless --dns was given
    }
    this.server = new DnsServer({
      addr: o.addr,
      ttl: dnsTtl(o.cluster.dns),
      upstreams: nodeUpstreams(o.cluster.dns, resolv, o.addr),
      names: () => this.names(),
      log: o.log,
    })
    this.records = new ClusterReader(o.store, o.selfId)
    this.keeper = new NameKeeper({
      source: o.store,
      selfId: o.selfId,
      membership: o.membership,
      onChange: () => this.server.invalidate(),
    })
    this.fast = new FastPathKeeper(() => this.keeper.drainChanges())
  }

  /** Liveness changed (a node down or back): the next answer reads which nodes serve again. */
  invalidate(): void {
    this.keeper.invalidate()
    this.server.invalidate()
  }

  names(): NameTable {
    return this.keeper.table()
  }

  inspect(node: string): DnsInspectView {
    const counters = {...this.server.stats.snapshot(), ...(this.fastPathHits ? {fastPath: this.fastPathHits()} : {})}
    const ups = this.server.upstreams.map((u) => (u.port === 53 ? u.host : `${u.host}:${u.port}`))
    return dnsInspectView(node, `${this.o.addr}:53`, this.server.ttl, ups, this.names(), counters)
  }

  /** Answers the fast path gave (the BPF counter), once it is attached. */
  fastPathHits?: () => number

  /** What the fast path's maps should hold now (the map reconciler writes it with the others). */
  fastPath(): DesiredDns {
    return this.fast.desired({
      table: this.names(),
      networks: this.records.networks(),
      resolver: this.o.addr,
      ttl: this.server.ttl,
      gwIfindex: (taskId) => {
        try {
          return ifindexOf(hostIfName(taskId, 'g'))
        } catch {
          return undefined // not made yet, or gone: its questions go to the slow path
        }
      },
    })
  }

  async start(): Promise<void> {
    await this.server.start()
    const ups = this.server.upstreams.map((u) => u.host).join(', ') || 'none'
    this.o.log(`dns: answering tasks at ${this.o.addr}:53 (udp, tcp), forwarding to ${ups}`)
  }

  stop(): Promise<void> {
    this.keeper.stop()
    return this.server.stop()
  }
}
