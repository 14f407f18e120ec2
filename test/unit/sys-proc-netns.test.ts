// procsInNetnsAsync: what `ip netns pids` shows, found off the event loop, with callers that ask
// together sharing one walk over /proc. A real namespace of this machine and real processes in it.
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {after, test} from 'node:test'
import {netnsPath} from '../../src/sys/netns.js'
import {procsInNetns, procsInNetnsAsync} from '../../src/sys/proc.js'

// Not sn-*: the lab tests count sn-* namespaces as leftovers of their own.
const ns = `snut-pn-${process.pid}`
const children: number[] = []

after(() => {
  for (const pid of children) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
  spawnSync('ip', ['netns', 'del', ns])
})

function sleeperIn(): number {
  const c = spawn('ip', ['netns', 'exec', ns, 'sleep', '1000'], {stdio: 'ignore'})
  children.push(c.pid!)
  return c.pid!
}

const pidsOf = (procs: {pid: number}[]) => procs.map((p) => p.pid).sort((a, b) => a - b)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('the processes of a namespace, as the synchronous walk finds them; callers together share a walk and all get the answer', async () => {
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0)
  const path = netnsPath(ns)
  assert.deepEqual(await procsInNetnsAsync(path), [])
  const a = sleeperIn()
  const b = sleeperIn()
  // ip netns exec enters the namespace before it execs sleep: wait until both are inside.
  for (let i = 0; i < 200 && pidsOf(procsInNetns(path)).length < 2; i++) await sleep(10)
  const want = [a, b].sort((x, y) => x - y)
  assert.deepEqual(pidsOf(procsInNetns(path)), want)
  const together = await Promise.all(Array.from({length: 20}, () => procsInNetnsAsync(path)))
  for (const got of together) assert.deepEqual(pidsOf(got), want)
  // A process that entered before the call is found, even while an earlier walk was under way.
  const first = procsInNetnsAsync(path)
  const c = sleeperIn()
  for (let i = 0; i < 200 && pidsOf(procsInNetns(path)).length < 3; i++) await sleep(10)
  assert.deepEqual(
    pidsOf(await procsInNetnsAsync(path)),
    [...want, c].sort((x, y) => x - y),
  )
  await first
  // Start times name the processes for good: what signalProc needs.
  for (const p of await procsInNetnsAsync(path)) assert.ok(p.startTime > 0)
})

test('a namespace that does not exist has no processes', async () => {
  assert.deepEqual(await procsInNetnsAsync('/run/netns/snut-none-here'), [])
})
