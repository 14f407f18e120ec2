// A command task's /etc in a 1-node lab: one filtered copy of the node's /etc per node
// (src/tasks/node-etc.ts), bound read-only into every command task rather than copied at each
// start, the task's own hosts/resolv.conf/hostname over it; a change to a listed file of the node
// reaches the tasks started after the next check, and lab down takes the copy away.
import assert from 'node:assert/strict'
import {readFileSync, rmSync, writeFileSync} from 'node:fs'
import {after, before, describe, test} from 'node:test'
import {ETC_CHECK_MS} from '../../src/tasks/node-etc.js'
import {cli, json, ok, type Result} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  name: string
  node: string
  state: string
  desiredState: string
  pid: number
}

/** A name the allow-list takes (python3.N) that nothing on the machine reads: no Python 3.99 exists. */
const PROBE = '/etc/python3.99'

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')
const running = (n: number) => allRunning('etc', n, tasksOf, 60_000)
const exec = (task: string, argv: string[]) => cli('n1', ['task', 'exec', task, '--', ...argv])
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The mount at /etc in a task's PID 1 (mountinfo fields: device, root in its file system, options). */
function etcMount(pid: number): {dev: string; root: string; opts: string[]} | undefined {
  const f = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((x) => x[4] === '/etc')
  return f ? {dev: f[2]!, root: f[3]!, opts: f[5]!.split(',')} : undefined
}

/** Scales the service by one after the node's next check is due, and returns what the new task reads at PROBE. */
async function probeInNewTask(n: number): Promise<Result> {
  // Longer than a check holds (and with a margin for a loaded machine): the new task's start checks again.
  await sleep(ETC_CHECK_MS + 1000)
  ok('n1', ['service', 'scale', `etc=${n}`])
  const t = (await running(n)).find((x) => x.name === `etc.${n}`)
  assert.ok(t, `etc.${n} is not among the running tasks`)
  return exec(t.name, ['cat', PROBE])
}

describe("command tasks share their node's /etc", {timeout: 600_000}, () => {
  withLab(['--nodes', '1'], {afterDown: () => rmSync(PROBE, {force: true})})
  before(() => rmSync(PROBE, {force: true}))
  after(() => rmSync(PROBE, {force: true}))

  test('two tasks bind the same read-only copy at /etc, their own files over it', async () => {
    ok('n1', ['service', 'create', '--name', 'etc', '--replicas', '2', '--', 'sleep', 'infinity'])
    const tasks = await running(2)
    const mounts = tasks.map((t) => etcMount(t.pid))
    for (const [i, m] of mounts.entries()) {
      assert.ok(m, `${tasks[i]!.name} has no mount at /etc: its /etc was copied into its own root`)
      assert.ok(m.opts.includes('ro'), `${tasks[i]!.name}'s /etc is not read-only: ${m.opts.join(',')}`)
      assert.match(m.root, /\/swarmnet\/view\/n1\/etc$/, `${tasks[i]!.name}'s /etc is not the node's copy`)
      assert.ok(!m.root.includes(tasks[i]!.id), `${tasks[i]!.name}'s /etc is in its own directory`)
    }
    assert.deepEqual(mounts[0], mounts[1], 'the two tasks bind different sources at /etc')
    for (const t of tasks) {
      assert.equal(exec(t.name, ['cat', '/etc/hostname']).stdout, `${t.name}\n`, "the task's own hostname file")
      assert.match(exec(t.name, ['getent', 'passwd', 'root']).stdout, /^root:x:0:0:/)
      assert.notEqual(exec(t.name, ['touch', '/etc/sn-probe']).code, 0, '/etc is writable')
    }
  })

  test('a change to a listed file of the node reaches the tasks started after it; a removed one goes', async () => {
    writeFileSync(PROBE, 'one\n')
    const first = await probeInNewTask(3)
    assert.equal(first.stdout, 'one\n', first.stderr)
    // The running tasks read the same copy, so they see it too.
    assert.equal(exec('etc.1', ['cat', PROBE]).stdout, 'one\n')
    // Rewritten in place (same inode and size): the time tells.
    writeFileSync(PROBE, 'two\n')
    assert.equal((await probeInNewTask(4)).stdout, 'two\n')
    rmSync(PROBE)
    assert.notEqual((await probeInNewTask(5)).code, 0, `${PROBE} is still in the copy after the node lost it`)
  })
})
