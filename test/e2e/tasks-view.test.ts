// What a command task sees of its node, without a lab: the runner's own start (runc, the
// allow-list of src/tasks/node-view.ts) in a namespace of the test's. A program under /tmp (a
// CI checkout) runs when its directory is given with --mount, read-only; the task's /tmp is
// otherwise its own; swarmnet's package stays visible for the default command.
import assert from 'node:assert/strict'
import {chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {after, before, test} from 'node:test'
import {addNetns, delNetns, netnsExists} from '../../src/sys/netns.js'
import {nodeCgroupDirs, removeCgroupTree, removeIfEmpty} from '../../src/sys/cgroup.js'
import {startTaskProcess, stopTaskProcess} from '../../src/tasks/runner.js'
import {removeNodeContainers} from '../../src/tasks/container.js'
import type {ServiceMount} from '../../src/model/container.js'
import {packageRoot} from '../../src/util/root.js'

const NODE = 'viewtest'
const NETNS = 'sn-viewtest.00000000'
let dir = ''
let n = 0

before(async () => {
  if (netnsExists(NETNS)) await delNetns(NETNS)
  await addNetns(NETNS)
  dir = mkdtempSync('/tmp/sn-view-')
  writeFileSync(
    join(dir, 'run.sh'),
    '#!/bin/sh\necho "ran from $(dirname "$0")"\ntouch "$0.w" 2>/dev/null && echo writable\nls -A /tmp\n',
  )
  chmodSync(join(dir, 'run.sh'), 0o755)
})

after(async () => {
  await removeNodeContainers(NODE)
  removeCgroupTree(nodeCgroupDirs(NODE).v2)
  removeIfEmpty(join(nodeCgroupDirs(NODE).v2, '..'))
  if (netnsExists(NETNS)) await delNetns(NETNS)
  if (dir) rmSync(dir, {recursive: true, force: true})
})

/** Runs argv as a command task to its end; its output (the task's log). */
async function runTask(argv: string[], mounts?: ServiceMount[]): Promise<string> {
  const id = (0xfeed00 + n++).toString(16).padStart(24, '0')
  const tdir = join(dir, 'tasks', id)
  const p = await startTaskProcess({
    node: NODE,
    taskId: id,
    netns: NETNS,
    name: 'view.1',
    ips: [],
    argv,
    dir: tdir,
    ...(mounts ? {container: {mounts}} : {}),
  }).catch((e: Error) => e)
  if (!(p instanceof Error)) {
    for (let i = 0; i < 200 && existsSync(`/proc/${p.pid}`); i++) await new Promise((r) => setTimeout(r, 50))
    await stopTaskProcess(NODE, id, p, 0, 'SIGKILL')
  }
  return existsSync(join(tdir, 'log')) ? readFileSync(join(tdir, 'log'), 'utf8') : ''
}

test('a program under /tmp runs from a read-only --mount; the task /tmp is otherwise its own', async () => {
  const out = await runTask([join(dir, 'run.sh')], [{type: 'bind', source: dir, target: dir, readonly: true}])
  const lines = out.trim().split('\n')
  assert.equal(lines[0], `ran from ${dir}`, out)
  assert.ok(!lines.includes('writable'), 'the bound directory must be read-only')
  // swarmnet's own package is bound at its path too: a checkout under /tmp (a CI clone) shows there.
  const pkg = packageRoot().startsWith('/tmp/') ? [packageRoot().slice('/tmp/'.length).split('/')[0]!] : []
  assert.deepEqual(
    lines.slice(1),
    [dir.slice('/tmp/'.length), ...pkg].sort(),
    'only the bound directory (and a checkout under /tmp) shows in the task /tmp',
  )
  assert.equal(existsSync(join(dir, 'run.sh.w')), false)
})

test('without the mount, the task cannot see it; swarmnet itself stays visible, read-only', async () => {
  const out = await runTask([
    'sh',
    '-c',
    `test -e ${dir}/run.sh && echo seen; test -e ${packageRoot()}/bin/run.js && echo pkg; touch ${packageRoot()}/x 2>/dev/null && echo w; true`,
  ])
  assert.equal(out.trim(), 'pkg')
})
