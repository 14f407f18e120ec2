// The manager's agent dies (kill -9): what goes on without it and what waits.
// Goes on: tasks on the workers keep talking to each other across nodes (the
// data plane is in the kernel), the manager node's own tasks too (its data path
// still answers probes: the workers hold it ready with its agent down), a worker's
// own task that dies is restarted by that worker, the workers keep gossiping (each
// holds the other ready, a task status written on one reaches the other). Waits: desired
// state (a worker refuses `service create` and names the manager), and the
// manager's tasks are not moved.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {describe, test} from 'node:test'
import {AgentClient} from '../../src/agent/client.js'
import type {NodeView} from '../../src/agent/views.js'
import {cli, eventually, inNs, json, ok, stateOn, until} from './helpers.js'
import {withLab} from './lab.js'

interface Task {
  id: string
  node: string
  desiredState: string
  state: string
  netns: string
  pid: number
  addresses: {network: string; ip: string}[]
}

const ps = (on: string, svc: string) => json<Task[]>(on, ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')
const ipOf = (t: Task) => t.addresses[0]!.ip
describe('the manager down: what continues and what waits', {timeout: 600_000}, () => {
  withLab(['--nodes', '3'])

  test('kill -9 of the manager agent: workers tasks talk, restart, gossip; desired state waits', async () => {
    ok('n1', ['network', 'create', 'md'])
    ok('n1', ['service', 'create', '--name', 'web', '--mode', 'global', '--network', 'md'])
    const web = await eventually(
      'web on every node',
      () => {
        const t = ps('n1', 'web')
        return t.length === 3 && t.every((x) => x.state === 'running') ? t : undefined
      },
      60_000,
    )
    const on = (n: string) => web.find((t) => t.node === n)!
    await eventually(
      'n2 task reaches n3 task',
      () => inNs(on('n2').netns, ['curl', '-s', '-m', '2', `http://${ipOf(on('n3'))}/`]).code === 0,
    )

    const manager = Number(readFileSync('/run/swarmnet/n1.pid', 'utf8').trim())
    process.kill(manager, 'SIGKILL')
    const agentOn = async (viewer: string) =>
      (await new AgentClient(viewer).get<NodeView[]>('/nodes')).find((n) => n.name === 'n1')
    await until(
      'n1 agent down on n2 and n3, n1 itself ready (its data path answers)',
      async () => {
        const v = [await agentOn('n2'), await agentOn('n3')]
        return v.every((x) => x?.agent === 'down' && x.state === 'ready')
      },
      30_000,
    )

    // Gossip among workers goes on.
    assert.equal(await stateOn('n2', 'n3'), 'ready')
    assert.equal(await stateOn('n3', 'n2'), 'ready')

    // The data plane: tasks on the two workers still talk, both ways.
    for (const [from, to] of [
      ['n2', 'n3'],
      ['n3', 'n2'],
    ] as const) {
      const r = inNs(on(from).netns, ['curl', '-s', '-m', '3', `http://${ipOf(on(to))}/`])
      assert.equal(r.code, 0, `${from} task -> ${to} task with the manager down: ${r.stderr}`)
    }
    // The manager node's own task, still running there, is still in the workers' reach.
    const m = inNs(on('n2').netns, ['curl', '-s', '-m', '3', `http://${ipOf(on('n1'))}/`])
    assert.equal(m.code, 0, `n2 task -> n1 task with the manager's agent down: ${m.stderr}`)

    // A worker restarts its own task that died; the other worker hears of it by gossip.
    const old = on('n2')
    process.kill(old.pid, 'SIGKILL')
    const restarted = await eventually(
      'the task on n2 restarted by n2',
      () => {
        const t = ps('n2', 'web').find((x) => x.id === old.id)
        return t && t.state === 'running' && t.pid !== old.pid ? t : undefined
      },
      30_000,
    )
    await eventually('n3 knows the restarted task', () => {
      const t = ps('n3', 'web').find((x) => x.id === old.id)
      return t?.pid === restarted.pid
    })
    // Running means its process started, as in Docker; its server listens a moment later.
    await eventually(
      'the restarted task answers n3',
      () => inNs(on('n3').netns, ['curl', '-s', '-m', '3', `http://${ipOf(restarted)}/`]).code === 0,
      15_000,
    )

    // What waits: desired state is the manager's.
    const create = cli('n2', ['service', 'create', '--name', 'late', '--network', 'md'])
    assert.notEqual(create.code, 0)
    assert.match(create.stderr, /this node is a worker: run the command on the manager n1/)
    const net = cli('n3', ['network', 'create', 'late'])
    assert.notEqual(net.code, 0)
    assert.match(net.stderr, /this node is a worker: run the command on the manager n1/)
    // The manager's own task is not moved anywhere (nobody reschedules).
    await new Promise((res) => setTimeout(res, 2000))
    assert.equal(ps('n2', 'web').filter((t) => t.node === 'n1').length, 1)
    assert.equal(ps('n2', 'web').length, 3)
    console.log('# with the manager down: worker tasks talk, a worker task restarted, workers gossip; creates refused')
  })
})
