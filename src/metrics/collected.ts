// Metrics whose values live elsewhere (a BPF map, GossipStats, DnsStats, the store): each is
// emptied and set again from what its source reads at every scrape, so nothing is counted twice
// and a label set its source no longer has leaves the scrape.
import {Counter, Gauge, type Registry} from 'prom-client'

/** What a source reads at a scrape: a value per label set. */
export type Samples<L extends string> = [Partial<Record<L, string>>, number][]

/** A counter that mirrors a total its source keeps. */
export function collectedCounter<L extends string>(
  r: Registry,
  name: string,
  help: string,
  labelNames: L[],
  read: () => Samples<L>,
): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers: [r],
    collect() {
      this.reset()
      for (const [labels, v] of read()) this.inc(labels, v)
    },
  })
}

/** A gauge of what its source holds now. */
export function collectedGauge<L extends string>(
  r: Registry,
  name: string,
  help: string,
  labelNames: L[],
  read: () => Samples<L>,
): Gauge<L> {
  return new Gauge<L>({
    name,
    help,
    labelNames,
    registers: [r],
    collect() {
      this.reset()
      for (const [labels, v] of read()) this.set(labels, v)
    },
  })
}
