// Metrics whose values live elsewhere (a BPF map, GossipStats, DnsStats, the store): each is
// emptied and set again from what its source reads at every scrape, so nothing is counted twice
// and a label set its source no longer has leaves the scrape.
import {Counter, Gauge, type Registry} from 'prom-client'

/** What a source reads at a scrape: a value per label set. */
export type Samples<L extends string> = [Partial<Record<L, string>>, number][]

/**
 * Registers on r a metric read from its source at each scrape: a counter mirrors a total the
 * source keeps, a gauge what it holds now.
 */
export function collected<L extends string>(
  r: Registry,
  kind: 'counter' | 'gauge',
  name: string,
  help: string,
  labelNames: L[],
  read: () => Samples<L>,
): void {
  const metric = {name, help, labelNames, registers: [r]}
  if (kind === 'counter') {
    new Counter<L>({...metric, collect: refill(read, (m: Counter<L>, labels, v) => m.inc(labels, v))})
  } else {
    new Gauge<L>({...metric, collect: refill(read, (m: Gauge<L>, labels, v) => m.set(labels, v))})
  }
}

/** A collect function: the metric emptied, then every sample read now put in. */
function refill<L extends string, M extends {reset(): void}>(
  read: () => Samples<L>,
  put: (m: M, labels: Partial<Record<L, string>>, v: number) => void,
): (this: M) => void {
  return function (this: M) {
    this.reset()
    for (const [labels, v] of read()) put(this, labels, v)
  }
}
