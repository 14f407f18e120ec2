/** What the responder counted since the agent started (the fast path's hits are the BPF counters'). */
export class DnsStats {
  queries = 0
  /** Answered from the cluster's names (NXDOMAIN included). */
  answered = 0
  nxdomain = 0
  forwarded = 0
  cacheHits = 0
  /** Forwarded and no upstream answered in time: SERVFAIL. */
  servfail = 0
  truncated = 0
  tcp = 0
  /** Malformed queries: dropped or answered FORMERR. */
  malformed = 0
  notimp = 0

  snapshot(): Record<string, number> {
    return {...this} as unknown as Record<string, number> // every field is a number
  }
}
