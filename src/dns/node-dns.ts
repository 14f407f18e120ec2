// The node's DNS for its tasks, wired to the store: the name table is rebuilt from the store on
// the first question after any change (so answers follow scaling as soon as the change arrives),
// and never kept anywhere the store does not hold it.
import {readFileSync} from 'node:fs'
import {ClusterReader} from '../store/cluster-reader.js'
import type {MembershipView} from '../membership/view.js'
import type {ClusterSpec} from '../model/types.js'
import type {Store} from '../store/store.js'
import {dnsTtl, nodeUpstreams} from './config.js'
import {buildNames, type NameTable} from './names.js'
import {DnsServer} from './server.js'
import {desiredDns} from './fastpath.js'
import {EntryCache} from '../dataplane/entry-cache.js'
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
  private table?: NameTable
  private readonly unsubscribe: () => void
  /** The store's records, read as the API reads them. */
  private readonly records: ClusterReader
  /** The fast path's entries of the last call, taken again where their inputs are the same. */
  private readonly fastPathCache = new EntryCache()

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
    this.unsubscribe = o.store.onChange(() => this.invalidate())
  }

  /** Liveness changed (a node down or back): the next answer is built again. */
  invalidate(): void {
    this.table = undefined
    this.server.invalidate()
  }

  names(): NameTable {
    if (this.table) return this.table
    const r = this.records
    this.table = buildNames({
      selfId: this.o.selfId,
      nodes: r.nodes(),
      networks: r.networks(),
      services: r.services(),
      tasks: r.tasks(),
      statuses: r.statuses(),
      attachments: r.attachments(),
      attachmentStatus: (id) => r.attachmentStatus(id),
      membership: this.o.membership,
    })
    return this.table
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
    return desiredDns({
      table: this.names(),
      networks: this.records.networks(),
      resolver: this.o.addr,
      ttl: this.server.ttl,
      cache: this.fastPathCache,
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
    this.unsubscribe()
    return this.server.stop()
  }
}
