// Issue 23's done-when for updates, in a 3-node lab: a client task sends 10 requests/s through
// web's VIP and the lab's outside client 10 requests/s through web's published port on n1, while
// web (3 replicas, a health check) is updated start-first, then stop-first, then rolled back,
// parallelism 1: every task is replaced each time and not one request fails on either path. Last,
// an update to a command that exits at once, with --update-failure-action rollback: the first new
// task's failure rolls web back by itself (start-first: the old tasks serve throughout), and
// service inspect --json shows rollback_started with Docker's message, then rollback_completed.
// Then a global service updated with --env-add is rolled node by node to completed: every node
// runs a new task, and it has the new environment.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {cli, eventually, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'
import {Load} from './load.js'

interface Task {
  id: string
  name: string
  node: string
  desiredState: string
  state: string
  health?: string
  netns: string
}
interface Inspect {
  vips: {ip: string}[]
  ports: {published: number}[]
  command: string[]
  update?: {state: string; specVersion: number; message?: string}
}

const ps = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc])
const meant = (svc: string) => ps(svc).filter((t) => t.desiredState === 'running')

describe('rolling updates with no failed request, in a 3-node lab', {timeout: 900_000}, () => {
  const loads: Load[] = []
  withLab(['--nodes', '3'], {beforeDown: () => loads.forEach((l) => l.stop())})

  test('start-first, stop-first and rollback replace every task; no request fails through the VIP or the mesh', async () => {
    ok('n1', ['network', 'create', 'rnet'])
    ok('n1', ['service', 'create', '--name', 'cli', '--network', 'rnet', '--', 'sleep', 'infinity'])
    ok('n1', [
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '3',
      '--network',
      'rnet',
      '-p',
      '8080:80',
      '--health-cmd',
      'curl -sf -m 2 http://127.0.0.1/ >/dev/null',
      '--health-interval',
      '1s',
      '--health-retries',
      '2',
      // A task's failed checks while it starts do not count (Docker's start period): otherwise a slow
      // start on a loaded machine is unhealthy first, a failure the update monitor acts on (pause).
      '--health-start-period',
      '20s',
    ])
    const client = (await allRunning('cli', 1, meant, 60_000))[0]!
    await allRunning('web', 3, meant, 90_000, (t) => t.health === 'healthy')
    const before = json<Inspect>('n1', ['service', 'inspect', 'web'])
    const vipLoad = new Load(client.netns, `http://${before.vips[0]!.ip}/`)
    const meshLoad = new Load('sn-lab-client', 'http://172.30.0.11:8080/')
    loads.push(vipLoad, meshLoad)
    await eventually('both paths answer', () => vipLoad.take().sent > 0 && meshLoad.take().sent > 0, 30_000)
    vipLoad.take()
    meshLoad.take()

    const counts: string[] = []
    const roll = async (what: string, args: string[], done = 'completed', seen?: (s: Inspect) => void) => {
      const old = new Set(meant('web').map((t) => t.id))
      ok('n1', args)
      let last: Inspect['update']
      await eventually(
        `${what}: every task replaced, the update completed, the old tasks gone`,
        () => {
          const all = ps('web')
          const s = json<Inspect>('n1', ['service', 'inspect', 'web'])
          seen?.(s)
          last = s.update
          return (
            s.update?.state === done &&
            all.length === 3 &&
            all.every((t) => !old.has(t.id) && t.state === 'running' && t.health === 'healthy')
          )
        },
        240_000,
      ).catch((e: Error) => {
        throw new Error(`${e.message} (update: ${JSON.stringify(last)}; tasks: ${JSON.stringify(ps('web'))})`)
      })
      await new Promise((r) => setTimeout(r, 2000))
      const v = vipLoad.take()
      const m = meshLoad.take()
      counts.push(`${what}: VIP ${v.sent} sent ${v.failed.length} failed; mesh ${m.sent} sent ${m.failed.length} failed`)
      process.stdout.write(`# ${counts.at(-1)}\n`)
      assert.deepEqual(v.failed, [], `${what}: requests through the VIP failed`)
      assert.deepEqual(m.failed, [], `${what}: requests through the published port failed`)
      const now = json<Inspect>('n1', ['service', 'inspect', 'web'])
      assert.deepEqual(now.vips, before.vips, 'the VIP stays')
      assert.deepEqual(now.ports, before.ports, 'the published port stays')
    }
    await roll('start-first', [
      'service',
      'update',
      'web',
      '--update-order',
      'start-first',
      '--update-parallelism',
      '1',
      '--force',
    ])
    await roll('stop-first', [
      'service',
      'update',
      'web',
      '--update-order',
      'stop-first',
      '--',
      process.execPath,
      `${process.cwd()}/bin/run.js`,
      'whoami',
      '--port',
      '80',
    ])
    await roll('rollback', ['service', 'rollback', 'web'], 'rollback_completed')
    assert.deepEqual(json<Inspect>('n1', ['service', 'inspect', 'web']).command, [], 'rolled back to the default command')
    const states = new Set<string>()
    let why = ''
    await roll(
      'failed update rolled back',
      ['service', 'update', 'web', '--update-order', 'start-first', '--update-failure-action', 'rollback', '--', 'false'],
      'rollback_completed',
      (s) => {
        if (s.update) states.add(s.update.state)
        if (s.update?.message?.startsWith('update rolled back')) why = s.update.message
      },
    )
    assert.ok(states.has('rollback_started'), `inspect showed ${[...states].join(', ')}`)
    assert.match(why, /^update rolled back due to failure or early termination of task web\.[123] \([0-9a-f]{24}\)$/)
    assert.deepEqual(json<Inspect>('n1', ['service', 'inspect', 'web']).command, [], 'back to the previous spec')
  })

  test('a global service updated with --env-add completes: each node runs a new task with the new environment', async () => {
    ok('n1', ['network', 'create', 'gnet'])
    ok('n1', ['service', 'create', '--name', 'agent', '--mode', 'global', '--network', 'gnet', '--', 'sleep', 'infinity'])
    const old = new Set((await allRunning('agent', 3, meant, 90_000)).map((t) => t.id))
    ok('n1', ['service', 'update', 'agent', '--env-add', 'ROLLED=yes', '--update-monitor', '1s'])
    let last: Inspect['update']
    const all = await eventually(
      'every node runs a new task and the update completed',
      () => {
        const ts = ps('agent')
        last = json<Inspect>('n1', ['service', 'inspect', 'agent']).update
        const replaced =
          ts.length === 3 && new Set(ts.map((t) => t.node)).size === 3 && ts.every((t) => !old.has(t.id) && t.state === 'running')
        return last?.state === 'completed' && replaced && ts
      },
      240_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message} (update: ${JSON.stringify(last)}; tasks: ${JSON.stringify(ps('agent'))})`)
    })
    for (const t of all) {
      const env = cli(t.node, ['task', 'exec', t.name, '--', 'cat', '/proc/1/environ'], 30_000).stdout
      assert.match(env, /(^|\0)ROLLED=yes\0/, `${t.name} on ${t.node} has the new environment`)
    }
  })
})
