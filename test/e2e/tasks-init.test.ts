// --init, as Docker's: without it the command is PID 1 of the task's PID namespace, where the
// kernel drops a signal it has no handler for (a plain `sleep` ignores SIGTERM, so a stop waits
// out the grace period) and orphans are left as zombies; with it tini is PID 1, forwards the stop
// signal and reaps. The runner's own start (runc) in a namespace of the test's, no lab.
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, readdirSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {after, before, test} from 'node:test'
import {addNetns, delNetns, netnsExists} from '../../src/sys/netns.js'
import {cgroupPids, nodeCgroupDirs, removeCgroupTree, removeIfEmpty} from '../../src/sys/cgroup.js'
import {startTaskProcess, stopTaskProcess, taskCgroup} from '../../src/tasks/runner.js'
import {removeNodeContainers} from '../../src/tasks/container.js'
import type {ProcId} from '../../src/sys/proc.js'

const NODE = 'inittest'
const NETNS = 'sn-inittest.00000000'
let dir = ''
let n = 0
const started: string[] = []

before(async () => {
  if (netnsExists(NETNS)) await delNetns(NETNS)
  await addNetns(NETNS)
  dir = mkdtempSync('/tmp/sn-init-')
})

after(async () => {
  await removeNodeContainers(NODE)
  for (const id of started) removeCgroupTree(taskCgroup(NODE, id))
  removeCgroupTree(nodeCgroupDirs(NODE).v2)
  removeIfEmpty(join(nodeCgroupDirs(NODE).v2, '..'))
  if (netnsExists(NETNS)) await delNetns(NETNS)
  if (dir) rmSync(dir, {recursive: true, force: true})
})

async function start(argv: string[], init: boolean): Promise<{id: string; p: ProcId}> {
  const id = (0x1a1700 + n++).toString(16).padStart(24, '0')
  started.push(id)
  const p = await startTaskProcess({
    node: NODE,
    taskId: id,
    netns: NETNS,
    name: 'init.1',
    ips: [],
    argv,
    dir: join(dir, 'tasks', id),
    ...(init ? {container: {init: true}} : {}),
  })
  return {id, p}
}

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)
/** A process's state letter and parent, from /proc/PID/stat (undefined: gone). */
function stat(pid: number): {state: string; ppid: number} | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /, '')
      .split(' ')
    return {state: f[0]!, ppid: Number(f[1])}
  } catch {
    return undefined
  }
}
// An exited process leaves its cgroup at once; as a zombie it is only in its parent's children.
const zombiesOf = (parent: number) =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      const s = stat(pid)
      return s?.ppid === parent && s.state === 'Z'
    })
const running = (pid: number) => {
  const s = stat(pid)
  return s !== undefined && s.state !== 'Z'
}

async function eventually<T>(what: string, fn: () => T | undefined, ms: number): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

// A stop that would take its whole grace period is cut short here, and the test fails.
const GRACE_MS = 120_000

test('with --init: tini is PID 1, the stop signal reaches the command, orphans are reaped', async () => {
  // The subshell leaves `sleep 0.2` an orphan, handed to the namespace's PID 1.
  const {id, p} = await start(['sh', '-c', '(sleep 0.2 &); exec sleep 100000'], true)
  // PID 1 is `runc init` until runc has started the container: a moment after start resolves.
  await eventually('tini as PID 1', () => (cmdline(p.pid)[0] === '/dev/init' ? true : undefined), 10_000)
  assert.deepEqual(cmdline(p.pid), ['/dev/init', '--', 'sh', '-c', '(sleep 0.2 &); exec sleep 100000'])
  const child = await eventually(
    'the command under tini',
    () =>
      cgroupPids(taskCgroup(NODE, id)).find(
        (pid) => pid !== p.pid && cmdline(pid)[0] === 'sleep' && cmdline(pid)[1] === '100000',
      ),
    10_000,
  )
  assert.ok(child)
  // The orphan has ended by now (0.2 s); tini waited for it, so no zombie stays.
  await new Promise((r) => setTimeout(r, 1500))
  assert.deepEqual(zombiesOf(p.pid), [], 'an orphan left a zombie under tini')
  let stopped = false
  const stop = stopTaskProcess(NODE, id, p, GRACE_MS, 'SIGTERM').then(() => (stopped = true))
  // SIGTERM goes to tini, tini sends it to sleep, which is not PID 1 and dies of it: the task ends
  // long before the grace period (stopTaskProcess only kills the cgroup once the grace runs out).
  await eventually('the task gone on SIGTERM', () => (stopped ? true : undefined), 60_000)
  await stop
  assert.ok(!running(p.pid))
})

test('without --init: the command is PID 1, ignores SIGTERM, and leaves orphans as zombies (as in Docker)', async () => {
  const {id, p} = await start(['sh', '-c', '(sleep 0.2 &); exec sleep 100000'], false)
  await eventually('sleep as PID 1', () => (cmdline(p.pid).join(' ') === 'sleep 100000' ? true : undefined), 10_000)
  await eventually('the orphan a zombie', () => (zombiesOf(p.pid).length === 1 ? true : undefined), 10_000)
  // Sent from outside the namespace, the signal to PID 1 is dropped: it is still running a while later.
  process.kill(p.pid, 'SIGTERM')
  await new Promise((r) => setTimeout(r, 1500))
  assert.ok(running(p.pid), 'sleep as PID 1 died of SIGTERM')
  await stopTaskProcess(NODE, id, p, 0, 'SIGKILL')
  assert.ok(!running(p.pid))
})
