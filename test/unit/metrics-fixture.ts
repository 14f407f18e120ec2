// An agent's metrics with no node behind them: every required source empty, plus what a test gives.
import {emptyStats} from '../../src/gossip/stats.js'
import {AgentMetrics, type MetricsSources} from '../../src/metrics/agent-metrics.js'

export function bareMetrics(extra: Partial<MetricsSources>): AgentMetrics {
  return new AgentMetrics('n1', {
    counters: () => undefined,
    maps: () => [],
    gossip: () => emptyStats(),
    nodeStates: () => [],
    tasks: () => [],
    endpoints: () => [],
    ...extra,
  })
}
