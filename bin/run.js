#!/usr/bin/env node
// The oclif entry point. Commands live in dist/commands (compiled from commands/).
// Commands report their own errors (src/cli/base.ts); what fails before a command runs (oclif's
// own errors, e.g. help asked of a command that does not exist) is one line here too.
import {Errors, run} from '@oclif/core'
import {oneLine} from '../dist/src/cli/base.js'

try {
  await run(process.argv.slice(2), import.meta.url)
} catch (err) {
  if (err instanceof Errors.ExitError) process.exit(err.oclif.exit)
  if (process.env.DEBUG) process.stderr.write(`${err?.stack ?? err}\n`)
  process.stderr.write(`swarmnet: ${oneLine(err?.message ?? String(err))}\n`)
  process.exit(err?.oclif?.exit || 1)
}
