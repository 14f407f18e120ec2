/**
 * The protocol's timers. The defaults detect a dead node of a small cluster in
 * about 1 s (one probe interval to reach it, one for the probe, the
 * suspicion timeout) and, with four direct attempts per probe plus indirect
 * ones, raise no false suspicion at 5% loss (membership-swim.test.ts).
 */
export type MembershipConfig = {
  /** One probe of one member per interval (times the local health multiplier). */
  probeIntervalMs: number
  /** How long direct pings may take before helpers are asked (times the multiplier). */
  probeTimeoutMs: number
  /** Direct pings per probe, spread over probeTimeoutMs: a lost datagram is not a failed probe. */
  pingAttempts: number
  /** Helpers asked to ping a member that did not answer (SWIM's k). */
  indirectChecks: number
  /** The shortest suspicion timeout is suspicionMult * max(1, log10(n)) * probeInterval. */
  suspicionMult: number
  /** It starts at suspicionMaxMult times that minimum and shrinks to it as independent confirmations arrive. */
  suspicionMaxMult: number
  /** Each update is piggybacked retransmitMult * ceil(log10(n + 1)) times. */
  retransmitMult: number
  /** Local health awareness: the multiplier goes from 1 to awarenessMax + 1. */
  awarenessMax: number
  /** How often one member held dead is pinged, so a healed partition or a returning node is seen. */
  reconnectIntervalMs: number
  /**
   * How long a node stays declared down before the manager replaces its replicated tasks
   * (its endpoints leave the maps at once): an agent that restarts keeps its tasks.
   */
  rescheduleDelayMs: number
  /**
   * How long a node whose agent is declared dead but whose data path still answers probes
   * stays up (in every load balancer and in DNS, its tasks kept): an agent restart or upgrade.
   * After it the node is down, as one whose data path is gone is at once (./node-liveness.ts).
   */
  agentGraceMs: number
  /** Updates piggybacked on one message at most (a sealed datagram holds 1400 bytes). */
  maxPiggyback: number
}

export const DEFAULT_MEMBERSHIP_CONFIG: MembershipConfig = {
  probeIntervalMs: 250,
  probeTimeoutMs: 120,
  pingAttempts: 4,
  indirectChecks: 3,
  suspicionMult: 2,
  suspicionMaxMult: 2,
  retransmitMult: 4,
  awarenessMax: 8,
  reconnectIntervalMs: 1000,
  maxPiggyback: 8,
  rescheduleDelayMs: 10_000,
  agentGraceMs: 60_000,
}

/** Defaults with the given overrides, each checked: one clear line for a bad value. */
export function membershipConfig(over: Partial<MembershipConfig> = {}): MembershipConfig {
  const c = {...DEFAULT_MEMBERSHIP_CONFIG, ...over}
  for (const [k, v] of Object.entries(c)) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new Error(`membership ${k} must be a whole number >= 1, not ${String(v)}`)
  }
  if (c.probeTimeoutMs >= c.probeIntervalMs)
    throw new Error(`membership probeTimeoutMs (${c.probeTimeoutMs}) must be below probeIntervalMs (${c.probeIntervalMs})`)
  return c
}
