// What a node away must not undo when it comes back (issue 20), in a 3-node lab whose agents reap
// a deletion's tombstone after 2 s (SWARMNET_TOMBSTONE_TTL, inherited from `lab up`): a service
// deleted while n3 was away, its tombstone reaped everywhere, stays deleted when n3 returns with
// its old copy (and n3 stops the task it ran of it); a node removed with `node rm` while away
// stays removed when its agent starts again.
import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import {describe, test} from 'node:test'
import {restartLabAgent} from '../../src/lab/nodes.js'
import {cli, eventually, json, ok, sh, stateOn, until} from './helpers.js'
import {withLab} from './lab.js'

const TTL_MS = 2000
process.env.SWARMNET_TOMBSTONE_TTL = `${TTL_MS}ms`

interface Task {
  id: string
  name: string
  node: string
  state: string
}
interface NodeRow {
  name: string
  state: string
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** kill -9 of the node's agent and its underlay link down: away, as after a crash or a cut cable. */
function away(node: string): void {
  const pid = Number(sh(['cat', `/run/swarmnet/${node}.pid`]).stdout.trim())
  assert.ok(pid > 0, `no pid file for ${node}`)
  process.kill(pid, 'SIGKILL')
  assert.equal(sh(['ip', '-n', `sn-lab-${node}`, 'link', 'set', 'eth0', 'down']).code, 0)
}

/** Back: the link up and the agent started again, as the lab starts it (its namespace, its cgroup). */
async function back(node: string): Promise<void> {
  assert.equal(sh(['ip', '-n', `sn-lab-${node}`, 'link', 'set', 'eth0', 'up']).code, 0)
  await restartLabAgent({name: node, netns: `sn-lab-${node}`})
}

describe('a node away does not undo what was decided meanwhile', {timeout: 600_000}, () => {
  withLab(['--nodes', '3'])

  test('a service deleted while n3 was away, its tombstone reaped, stays deleted when n3 is back; n3 stops its task', async () => {
    ok('n1', ['network', 'create', 'app'])
    ok('n1', [
      'service',
      'create',
      '--name',
      'gone',
      '--network',
      'app',
      '--constraint',
      'node.hostname==n3',
      '--',
      'sleep',
      '100000',
    ])
    const [task] = await eventually(
      'gone.1 running on n3',
      () => {
        const t = json<Task[]>('n1', ['service', 'ps', 'gone']).filter((x) => x.state === 'running')
        return t.length === 1 && t[0]!.node === 'n3' ? t : undefined
      },
      60_000,
    )
    assert.ok(existsSync(`/run/swarmnet/runc/n3/${task!.id}`), 'the task is a runc container on n3')
    away('n3')
    await until('n3 down on n1', async () => (await stateOn('n1', 'n3')) === 'down', 30_000)
    ok('n1', ['service', 'rm', 'gone'])
    // Several times the tombstone's life: n1 and n2 have reaped it.
    await sleep(TTL_MS * 5)
    await back('n3')
    await until('n3 ready on n1', async () => (await stateOn('n1', 'n3')) === 'ready', 60_000)
    // n3 pushes its copy (the service, its task) at once; for 15 s it must never be taken back.
    for (let i = 0; i < 30; i++) {
      const ls = json<{name: string}[]>('n1', ['service', 'ls']).map((s) => s.name)
      assert.ok(!ls.includes('gone'), `the deleted service came back (${i * 0.5} s after n3 was ready)`)
      await sleep(500)
    }
    const ps = cli('n1', ['service', 'ps', 'gone'])
    assert.notEqual(ps.code, 0)
    // n3 learnt the deletion: its task is stopped and its container gone.
    await eventually('n3 stopped gone.1', () => (!existsSync(`/run/swarmnet/runc/n3/${task!.id}`) ? true : undefined), 60_000)
  })

  test('a node removed with node rm while away stays removed when its agent starts again', async () => {
    away('n2')
    await until('n2 down on n1', async () => (await stateOn('n1', 'n2')) === 'down', 30_000)
    ok('n1', ['node', 'rm', 'n2'])
    await back('n2')
    // Its agent runs and gossips again, with its own record saying ready: the manager never believes it.
    await sleep(3000)
    for (let i = 0; i < 20; i++) {
      const row = json<NodeRow[]>('n1', ['node', 'ls']).find((n) => n.name === 'n2')
      assert.ok(row === undefined || row.state === 'left', `n2 is ${row?.state} on n1 after node rm`)
      await sleep(500)
    }
  })
})
