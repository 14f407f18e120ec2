// What an agent tells Prometheus: the data plane's counters (per-CPU sums), the fill of its
// maps, gossip traffic and drops, the reconcile loop and the tasks of this node. Read at scrape
// time from what already counts (sn_stats, GossipStats, the store), so nothing is counted twice.
import {Counter, Histogram, Registry} from 'prom-client'
import {COUNTER_NAMES, type Counters} from '../bpf/counters.js'
import type {GossipStats} from '../gossip/stats.js'
import {collected, type Samples} from './collected.js'
import type {LoopDelayWindow} from './event-loop.js'
import {registerDnsMetrics, type DnsMetricsSource} from './dns-metrics.js'
import {registerLbMetrics, type LbMetricsSource} from './lb-metrics.js'
import {registerMeshMetrics, type MeshMetricsSource} from './mesh-metrics.js'

export interface MetricsSources extends Partial<LbMetricsSource>, Partial<MeshMetricsSource>, Partial<DnsMetricsSource> {
  /** sn_stats summed over CPUs; undefined when the maps cannot be read. */
  counters(): Counters | undefined
  /** Store-owned maps: entries in them now against max_entries. */
  maps(): {map: string; entries: number; max: number}[]
  gossip(): GossipStats
  /** Every node record's state, as this node's store has it. */
  nodeStates(): string[]
  /** This node's tasks. */
  tasks(): {service: string; state: string; restarts: number}[]
  /** The endpoints this node's maps hold, by network name. */
  endpoints(): {network: string; local: boolean}[]
  /** The event loop's delay since the previous scrape (event-loop.ts). */
  eventLoop?(): LoopDelayWindow
  /** Processes the agent started, through its spawner or by forking itself (src/sys/exec.ts). */
  processesStarted?(): {spawner: number; fork: number}
}

/** xdp_pass -> program xdp_underlay, result pass; tc_encap -> tc_task, encap; mesh_local -> mesh, local. */
function programOf(counter: string): {program: string; result: string} {
  const [kind, ...rest] = counter.split('_')
  // mesh_* are counted by xdp_underlay and tc_gw together: the label names the routing mesh
  const program = kind === 'xdp' ? 'xdp_underlay' : kind === 'mesh' ? 'mesh' : kind === 'dns' ? 'tc_dns' : 'tc_task'
  return {program, result: rest.join('_')}
}

type Drop = {reason: string; of: keyof GossipStats}
const GOSSIP_DROPS: Drop[] = [
  {reason: 'malformed', of: 'malformed'},
  {reason: 'decrypt_failed', of: 'decryptFailed'},
  {reason: 'stale', of: 'stale'},
  {reason: 'replayed', of: 'replayed'},
  {reason: 'bad_sender', of: 'badSender'},
  {reason: 'connection_refused', of: 'connsRefused'},
  {reason: 'handler_error', of: 'handlerErrors'},
  {reason: 'digest_overflow', of: 'digestOverflows'},
  {reason: 'pushpull_refused', of: 'pushPullsRefused'},
]
const ENTRY_REFUSALS: Drop[] = [
  {reason: 'unauthorised', of: 'unauthorised'},
  {reason: 'clock_jump', of: 'clockJumps'},
  {reason: 'store_error', of: 'storeErrors'},
]

export class AgentMetrics {
  readonly registry = new Registry()
  private readonly reconcileSeconds: Histogram<'step'>
  private readonly reconcileErrors: Counter<'step'>

  constructor(node: string, src: MetricsSources) {
    const r = this.registry
    r.setDefaultLabels({node})
    const mirror = <L extends string>(name: string, help: string, labelNames: L[], read: () => Samples<L>) =>
      collected(r, 'counter', name, help, labelNames, read)
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], read: () => Samples<L>) =>
      collected(r, 'gauge', name, help, labelNames, read)

    mirror(
      'swarmnet_datapath_packets_total',
      'Packets the BPF programs handled, by program and result (summed over CPUs)',
      ['program', 'result'],
      () => {
        const c = src.counters()
        return c ? COUNTER_NAMES.map((n) => [programOf(n), Number(c[n])]) : []
      },
    )
    gauge('swarmnet_bpf_map_entries', 'Entries in a store-owned BPF map now', ['map'], () =>
      src.maps().map((m) => [{map: m.map}, m.entries]),
    )
    gauge('swarmnet_bpf_map_max_entries', 'The most entries a BPF map can hold', ['map'], () =>
      src.maps().map((m) => [{map: m.map}, m.max]),
    )
    gauge(
      'swarmnet_network_endpoints',
      "Endpoints in this node's maps, by network, local (on this node) or remote",
      ['network', 'location'],
      () => {
        const by = new Map<string, number>()
        for (const e of src.endpoints()) {
          const k = `${e.network}\0${e.local ? 'local' : 'remote'}`
          by.set(k, (by.get(k) ?? 0) + 1)
        }
        return [...by].map(([k, n]) => {
          const [network, location] = k.split('\0') as [string, string]
          return [{network, location}, n]
        })
      },
    )
    mirror('swarmnet_gossip_messages_received_total', 'Valid gossip messages received', [], () => [[{}, src.gossip().received]])
    mirror('swarmnet_gossip_messages_sent_total', 'Gossip messages sent, per peer', [], () => [[{}, src.gossip().sent]])
    mirror('swarmnet_gossip_received_bytes_total', 'Sealed gossip bytes that arrived, valid or not', [], () => [
      [{}, src.gossip().bytesReceived],
    ])
    mirror('swarmnet_gossip_sent_bytes_total', 'Sealed gossip bytes sent', [], () => [[{}, src.gossip().bytesSent]])
    mirror('swarmnet_gossip_messages_dropped_total', 'Gossip messages or connections dropped, by reason', ['reason'], () =>
      GOSSIP_DROPS.map((d) => [{reason: d.reason}, src.gossip()[d.of]]),
    )
    mirror('swarmnet_gossip_entries_refused_total', 'Gossiped entries not merged, by reason', ['reason'], () =>
      ENTRY_REFUSALS.map((d) => [{reason: d.reason}, src.gossip()[d.of]]),
    )
    mirror('swarmnet_gossip_entries_merged_total', 'Gossiped entries that changed the store', [], () => [
      [{}, src.gossip().merged],
    ])
    mirror('swarmnet_gossip_send_errors_total', 'Gossip sends that failed', [], () => [[{}, src.gossip().sendErrors]])
    mirror(
      'swarmnet_swim_pings_answered_off_loop_total',
      "SWIM pings for this node answered by the gossip UDP thread, off the event loop (answered: it did; withheld: the main thread's heartbeat was too old)",
      ['result'],
      () => [
        [{result: 'answered'}, src.gossip().swimAckedOffLoop],
        [{result: 'withheld'}, src.gossip().swimAcksWithheld],
      ],
    )
    mirror('swarmnet_gossip_push_pulls_total', 'Full-state exchanges completed, as either side', [], () => [
      [{}, src.gossip().pushPulls],
    ])
    gauge('swarmnet_cluster_nodes', 'Nodes of the cluster by state, as this node knows them', ['state'], () => {
      const by = new Map<string, number>()
      for (const s of src.nodeStates()) by.set(s, (by.get(s) ?? 0) + 1)
      return [...by].map(([state, n]) => [{state}, n])
    })
    gauge('swarmnet_tasks', "This node's tasks by state", ['state'], () => {
      const by = new Map<string, number>()
      for (const t of src.tasks()) by.set(t.state, (by.get(t.state) ?? 0) + 1)
      return [...by].map(([state, n]) => [{state}, n])
    })
    mirror('swarmnet_task_restarts_total', "Restarts of this node's tasks, by service", ['service'], () => {
      const by = new Map<string, number>()
      for (const t of src.tasks()) by.set(t.service, (by.get(t.service) ?? 0) + t.restarts)
      return [...by].map(([service, n]) => [{service}, n])
    })
    const loop = src.eventLoop
    let gcWindow: LoopDelayWindow | undefined
    if (loop)
      gauge(
        'swarmnet_event_loop_delay_seconds',
        "How long the agent's event loop kept callbacks waiting since the previous scrape: p50, p99 and max",
        ['stat'],
        () => {
          const w = loop()
          gcWindow = w
          return [
            [{stat: 'p50'}, w.p50],
            [{stat: 'p99'}, w.p99],
            [{stat: 'max'}, w.max],
          ]
        },
      )
    // The same window's garbage collection pauses (read after the gauge above took the window).
    if (loop)
      gauge(
        'swarmnet_gc_pause_seconds',
        "The main thread's garbage collection pauses in the event loop delay's window: the longest, and all together",
        ['stat'],
        () => [
          [{stat: 'max'}, gcWindow?.gcMax ?? 0],
          [{stat: 'total'}, gcWindow?.gcTotal ?? 0],
        ],
      )
    // The same window's stalls (loop-stalls.ts): what the longest and all of them together were made of.
    if (loop)
      gauge(
        'swarmnet_event_loop_stall_seconds',
        "Event loop stalls of 50 ms or more in the delay's window: the longest (stall=longest) and all together (stall=all); part=delay is how late the loop was, ran / waited / off_cpu split the stall's wall time into the main thread on a CPU, runnable but waiting for one, and neither",
        ['stall', 'part'],
        () => {
          const st = gcWindow?.stalls
          if (!st) return []
          const l = st.longest
          const ms = (x: number | undefined) => (x ?? 0) / 1000
          return [
            [{stall: 'longest', part: 'delay'}, ms(l?.delayMs)],
            [{stall: 'longest', part: 'ran'}, ms(l?.ranMs)],
            [{stall: 'longest', part: 'waited'}, ms(l?.waitedMs)],
            [{stall: 'longest', part: 'off_cpu'}, ms(l?.offCpuMs)],
            [{stall: 'all', part: 'delay'}, ms(st.delayMs)],
            [{stall: 'all', part: 'ran'}, ms(st.ranMs)],
            [{stall: 'all', part: 'waited'}, ms(st.waitedMs)],
            [{stall: 'all', part: 'off_cpu'}, ms(st.offCpuMs)],
          ]
        },
      )
    if (loop)
      gauge('swarmnet_event_loop_stalls', "Event loop stalls of 50 ms or more in the delay's window", [], () => [
        [{}, gcWindow?.stalls?.count ?? 0],
      ])
    const started = src.processesStarted
    if (started)
      mirror(
        'swarmnet_processes_started_total',
        "Commands and processes the agent started, by the way they went: its spawner, or a fork of the agent's own process",
        ['via'],
        () => {
          const n = started()
          return [
            [{via: 'spawner'}, n.spawner],
            [{via: 'fork'}, n.fork],
          ]
        },
      )
    if (src.lb) registerLbMetrics(r, {lb: src.lb})
    if (src.publishedPorts) registerMeshMetrics(r, {publishedPorts: src.publishedPorts})
    if (src.dns) registerDnsMetrics(r, {dns: src.dns})
    this.reconcileSeconds = new Histogram({
      name: 'swarmnet_reconcile_duration_seconds',
      help: 'How long a reconcile step took, by step (maps, tasks, attachments)',
      labelNames: ['step'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
      registers: [r],
    })
    this.reconcileErrors = new Counter({
      name: 'swarmnet_reconcile_errors_total',
      help: 'Reconcile steps that failed, by step',
      labelNames: ['step'],
      registers: [r],
    })
  }

  observeStep(step: string, seconds: number, failed: boolean): void {
    this.reconcileSeconds.observe({step}, seconds)
    // Present from the first pass on, so a rate() over it is defined before anything fails.
    this.reconcileErrors.inc({step}, failed ? 1 : 0)
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}
