#!/usr/bin/env node
// The oclif entry point. Commands live in dist/commands (compiled from commands/).
import {execute} from '@oclif/core'

await execute({dir: import.meta.url})
