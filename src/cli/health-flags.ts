// Docker's --health-* flags, shared by service create and service update: parsed here, checked
// by the agent (src/tasks/health.ts healthSpec), so a bad value is one line from either path.
import {Flags} from '@oclif/core'

export const healthFlags = {
  'health-cmd': Flags.string({description: 'command run in each task (with /bin/sh -c) to check its health'}),
  'health-interval': Flags.string({description: 'time between checks, e.g. 5s (default 30s)'}),
  'health-timeout': Flags.string({description: 'longest a check may run before it counts as failed (default 30s)'}),
  'health-retries': Flags.integer({description: 'failures in a row that make a task unhealthy (default 3)'}),
  'health-start-period': Flags.string({description: 'time after a start in which failures do not count (default 0s)'}),
  'no-healthcheck': Flags.boolean({description: 'no health check: a task serves as soon as it runs'}),
}

type HealthFlagValues = {
  'health-cmd'?: string
  'health-interval'?: string
  'health-timeout'?: string
  'health-retries'?: number
  'health-start-period'?: string
  'no-healthcheck'?: boolean
}

/** The API body's fields for these flags. */
export function healthBody(f: HealthFlagValues) {
  return {
    healthCmd: f['health-cmd'],
    healthInterval: f['health-interval'],
    healthTimeout: f['health-timeout'],
    healthRetries: f['health-retries'],
    healthStartPeriod: f['health-start-period'],
    noHealthcheck: f['no-healthcheck'] === true,
  }
}
