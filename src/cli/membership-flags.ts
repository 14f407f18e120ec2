import {Flags} from '@oclif/core'
import type {MembershipConfig} from '../membership/config.js'

/** The failure detector's timers, set at init or join and kept in the node's config. */
export const membershipFlags = {
  'probe-interval': Flags.integer({description: 'failure detection: ms between probes of one member (default 250)'}),
  'probe-timeout': Flags.integer({
    description: 'failure detection: ms to wait for a direct ack before asking helpers (default 120)',
  }),
  'suspicion-mult': Flags.integer({
    description: 'failure detection: shortest suspicion timeout in probe intervals, times log10 of the cluster size (default 2)',
  }),
  'reschedule-delay': Flags.integer({
    description: 'ms a node stays down before the manager replaces its replicated tasks (default 10000)',
  }),
  'agent-grace': Flags.integer({
    description:
      'ms a node whose agent is down but whose data path answers stays up, its tasks kept (an agent restart; default 60000)',
  }),
}

export function membershipOverrides(f: {
  'probe-interval'?: number
  'probe-timeout'?: number
  'suspicion-mult'?: number
  'reschedule-delay'?: number
  'agent-grace'?: number
}): Partial<MembershipConfig> {
  return {
    ...(f['probe-interval'] !== undefined ? {probeIntervalMs: f['probe-interval']} : {}),
    ...(f['probe-timeout'] !== undefined ? {probeTimeoutMs: f['probe-timeout']} : {}),
    ...(f['suspicion-mult'] !== undefined ? {suspicionMult: f['suspicion-mult']} : {}),
    ...(f['reschedule-delay'] !== undefined ? {rescheduleDelayMs: f['reschedule-delay']} : {}),
    ...(f['agent-grace'] !== undefined ? {agentGraceMs: f['agent-grace']} : {}),
  }
}
