// Task cgroups are removed off the event loop (removeCgroupTreeAsync): deepest first, as
// cgroupfs wants, on the real cgroup2 hierarchy of this machine.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {test} from 'node:test'
import {
  cgroup2Root,
  cgroupEmptied,
  cgroupPids,
  cgroupPopulated,
  killCgroup,
  removeCgroupTree,
  removeCgroupTreeAsync,
} from '../../src/sys/cgroup.js'

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

test('cgroupPopulated: a process below makes every level above populated; killCgroup empties it; a missing cgroup is empty', async () => {
  const top = join(cgroup2Root(), `snut-cgp-${process.pid}`)
  const child = spawn('sleep', ['1000'], {stdio: 'ignore'})
  try {
    mkdirSync(join(top, 'a', 'b'), {recursive: true})
    assert.equal(await cgroupPopulated(top), false)
    writeFileSync(join(top, 'a', 'b', 'cgroup.procs'), String(child.pid))
    assert.equal(await cgroupPopulated(join(top, 'a', 'b')), true)
    assert.equal(await cgroupPopulated(top), true)
    assert.deepEqual(cgroupPids(top), [child.pid])
    assert.equal(await killCgroup(top), true)
    assert.equal(await cgroupPopulated(top), false)
    assert.equal(await cgroupPopulated(join(top, 'nope')), false)
    await assert.rejects(cgroupPopulated('/tmp'), {message: '/tmp has no cgroup.events: not a cgroup2 directory'})
  } finally {
    child.kill('SIGKILL')
    removeCgroupTree(top)
  }
})

test('cgroupEmptied: false while a process stays past the timeout, true once it exits (told by the kernel), true for a missing cgroup', async () => {
  const top = join(cgroup2Root(), `snut-cge-${process.pid}`)
  const child = spawn('sleep', ['1000'], {stdio: 'ignore'})
  try {
    mkdirSync(join(top, 'a'), {recursive: true})
    writeFileSync(join(top, 'a', 'cgroup.procs'), String(child.pid))
    assert.equal(await cgroupEmptied(top, 300), false)
    // A long timeout: the answer comes when the process is gone, not when the time is up.
    const emptied = cgroupEmptied(top, 600_000)
    child.kill('SIGTERM')
    assert.equal(await emptied, true)
    assert.equal(await cgroupEmptied(join(top, 'nope'), 600_000), true)
  } finally {
    child.kill('SIGKILL')
    removeCgroupTree(top)
  }
})
