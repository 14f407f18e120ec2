// Docker's --update-* flags, shared by service create and service update: parsed here, checked
// by the agent (src/manager/update-config.ts), so a bad value is one line from either path.
import {Flags} from '@oclif/core'

export const updateFlags = {
  'update-parallelism': Flags.integer({description: 'slots replaced at once (default 1)', min: 1}),
  'update-order': Flags.string({
    description: 'start-first: the new task serves before the old stops; stop-first: the old stops first (default)',
    options: ['start-first', 'stop-first'],
  }),
  'update-delay': Flags.string({description: "time between a group's new tasks serving and the next group (default 0s)"}),
  'update-monitor': Flags.string({
    description: 'time each new task is watched for failure after it serves (default 5s)',
  }),
  'update-failure-action': Flags.string({
    description: 'when too many new tasks fail: pause the update, continue, or rollback (default pause)',
    options: ['pause', 'continue', 'rollback'],
  }),
  'update-max-failure-ratio': Flags.string({
    description: 'share of the replicas that may fail before the failure action, 0 to 1 (default 0)',
  }),
}

type UpdateFlagValues = {
  'update-parallelism'?: number
  'update-order'?: string
  'update-delay'?: string
  'update-monitor'?: string
  'update-failure-action'?: string
  'update-max-failure-ratio'?: string
}

/** The API body's fields for these flags. */
export function updateBody(f: UpdateFlagValues) {
  return {
    updateParallelism: f['update-parallelism'],
    updateOrder: f['update-order'],
    updateDelay: f['update-delay'],
    updateMonitor: f['update-monitor'],
    updateFailureAction: f['update-failure-action'],
    updateMaxFailureRatio: f['update-max-failure-ratio'],
  }
}
