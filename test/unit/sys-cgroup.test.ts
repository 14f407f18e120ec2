// Task cgroups are removed off the event loop (removeCgroupTreeAsync): deepest first, as
// cgroupfs wants, on the real cgroup2 hierarchy of this machine.
import assert from 'node:assert/strict'
import {existsSync, mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {test} from 'node:test'
import {cgroup2Root, removeCgroupTree, removeCgroupTreeAsync} from '../../src/sys/cgroup.js'

test('removeCgroupTreeAsync removes a nested cgroup tree, and a missing one is no error', async () => {
  const top = join(cgroup2Root(), `snut-cg-${process.pid}`)
  try {
    for (const d of ['a/b/c', 'a/d', 'e']) mkdirSync(join(top, d), {recursive: true})
    // cgroupfs refuses a recursive rm: the files in each directory are the kernel's
    assert.ok(existsSync(join(top, 'a', 'b', 'c', 'cgroup.procs')))
    await removeCgroupTreeAsync(top)
    assert.equal(existsSync(top), false)
    await removeCgroupTreeAsync(top)
  } finally {
    removeCgroupTree(top)
  }
})
