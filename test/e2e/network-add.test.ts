// service update --network-add / --network-rm on a live service, 2-node lab: the service gets a
// VIP on the new network and its running tasks an interface there, plugged in live (the same
// tasks, the same processes), so a client on that network reaches it by name through the VIP
// within 5 s (waited for, with that as the limit: not a speed assertion); --network-rm takes it off.
import assert from 'node:assert/strict'
import {before, describe, test} from 'node:test'
import {cli, eventually, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  name: string
  node: string
  state: string
  pid?: number
  addresses: {network: string; ip: string}[]
}
interface Svc {
  vips: {network: string; ip: string}[]
  networks: string[]
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')

describe('service update --network-add / --network-rm, 2-node lab', {timeout: 300_000}, () => {
  let client: Task
  const fromClient = (url: string) =>
    cli(client.node, ['task', 'exec', client.name, '--', 'curl', '-s', '--max-time', '2', url], 30_000)

  withLab(['--nodes', '2'])
  before(async () => {
    ok('n1', ['network', 'create', 'front'])
    ok('n1', ['network', 'create', 'back'])
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '2', '--network', 'front'])
    ok('n1', ['service', 'create', '--name', 'cl', '--network', 'back', '--', 'sleep', 'infinity'])
    await allRunning('web', 2, tasksOf, 90_000)
    client = (await allRunning('cl', 1, tasksOf, 90_000))[0]!
  })

  test('network-add: a VIP on the new network reachable by name within 5 s; the same tasks keep running', async () => {
    const before = tasksOf('web')
    assert.notEqual(fromClient('http://web/').code, 0, 'not reachable from back before')
    ok('n1', ['service', 'update', 'web', '--network-add', 'name=back,alias=www'])
    const added = Date.now()
    const svc = json<Svc>('n1', ['service', 'inspect', 'web'])
    assert.deepEqual(svc.networks, ['front', 'back'])
    const vip = svc.vips.find((v) => v.network === 'back')?.ip
    assert.ok(vip, 'a VIP on back')
    // Up to 5 s from the update (the figure): the limit of the wait, not a measured speed.
    const seen = new Set<string>()
    await eventually(
      'web through its VIP on back, by name and alias',
      () => {
        for (const url of ['http://web/', 'http://www/', `http://${vip}/`]) {
          const h = /Hostname: (web\.\d)/.exec(fromClient(url).stdout)?.[1]
          if (!h) return false
          seen.add(h)
        }
        return true
      },
      Math.max(1, 5_000 - (Date.now() - added)),
    )
    const after = tasksOf('web')
    assert.deepEqual(
      after.map((t) => `${t.id} ${t.pid}`).sort(),
      before.map((t) => `${t.id} ${t.pid}`).sort(),
      'the same tasks, the same processes',
    )
    for (const t of after) assert.ok(t.addresses.some((a) => a.network === 'back'))
    // Every task answers on back, across nodes: each one's own address there.
    for (const t of after) {
      const ip = t.addresses.find((a) => a.network === 'back')!.ip
      await eventually(`${t.name} at ${ip}`, () => fromClient(`http://${ip}/`).stdout.includes(`Hostname: ${t.name}`), 15_000)
    }
  })

  test('network-rm: the service leaves back (no VIP, no name there), its tasks replaced, still on front', async () => {
    ok('n1', ['service', 'update', 'web', '--network-rm', 'back'])
    const svc = json<Svc>('n1', ['service', 'inspect', 'web'])
    assert.deepEqual(svc.networks, ['front'])
    assert.deepEqual(
      svc.vips.map((v) => v.network),
      ['front'],
    )
    await eventually(
      'tasks without back',
      () => {
        const t = tasksOf('web')
        return t.length === 2 && t.every((x) => x.state === 'running' && x.addresses.every((a) => a.network === 'front'))
      },
      60_000,
    )
    await eventually('web gone from back', () => fromClient('http://web/').code !== 0, 30_000)
  })
})
