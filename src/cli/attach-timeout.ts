// `--timeout` of `network connect` / `disconnect`: how long the agent waits for the node that
// wires the namespace (src/agent/attach-wait.ts), and the client a little longer than that.
import {Flags} from '@oclif/core'
import {DEFAULT_ATTACH_TIMEOUT_MS, MAX_ATTACH_TIMEOUT_MS} from '../agent/attach-wait.js'

export const attachTimeoutFlag = Flags.integer({
  description: 'seconds to wait for the node that holds the namespace',
  default: DEFAULT_ATTACH_TIMEOUT_MS / 1000,
  min: 1,
  max: MAX_ATTACH_TIMEOUT_MS / 1000,
})

/** The HTTP call outlives the agent's wait, so the agent's own answer (and its error) is what the user sees. */
export const callTimeoutMs = (seconds: number) => seconds * 1000 + 15_000
