// A task's /tmp is its own tmpfs, yet what it runs from may live under /tmp (a CI checkout):
// the launcher keeps such directories visible, read-only.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {after, before, test} from 'node:test'
import {launchArgv} from '../../src/tasks/launcher.js'

const NETNS = 'sn-keeptest'
let dir = ''

before(() => {
  spawnSync('ip', ['netns', 'del', NETNS])
  assert.equal(spawnSync('ip', ['netns', 'add', NETNS]).status, 0)
  dir = mkdtempSync('/tmp/sn-keep-')
  writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n')
  writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n')
  writeFileSync(
    join(dir, 'run.sh'),
    '#!/bin/sh\necho "kept $(cat "$(dirname "$0")/hosts" | wc -l)"\ntouch "$0.w" 2>/dev/null && echo writable\nls /tmp\n',
  )
  chmodSync(join(dir, 'run.sh'), 0o755)
})

after(() => {
  spawnSync('ip', ['netns', 'del', NETNS])
  if (dir) rmSync(dir, {recursive: true, force: true})
})

const launch = (keep: string[]) => {
  const argv = launchArgv({
    netns: NETNS,
    hostname: 'keep.1',
    hostsFile: join(dir, 'hosts'),
    resolvFile: join(dir, 'resolv.conf'),
    cgroups: [],
    argv: [join(dir, 'run.sh')],
    keep,
  })
  return spawnSync(argv[0]!, argv.slice(1), {encoding: 'utf8', timeout: 20_000})
}

test('a program under /tmp runs in the task when its directory is kept, read-only; /tmp is otherwise the task own', () => {
  const r = launch([dir])
  assert.equal(r.status, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  assert.equal(lines[0], 'kept 1')
  assert.ok(!lines.includes('writable'), 'the kept directory must be read-only')
  assert.deepEqual(lines.slice(1), [dir.slice('/tmp/'.length)], 'only the kept directory shows in the task /tmp')
  assert.equal(existsSync(join(dir, 'run.sh.w')), false)
})

test('without keeping it, the task cannot see it (what broke tasks of a checkout under /tmp)', () => {
  const r = launch([])
  assert.notEqual(r.status, 0)
})
