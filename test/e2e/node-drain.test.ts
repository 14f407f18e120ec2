// Issue 23's drain and constraints in a 3-node lab: `node update --availability drain n2` moves
// n2's tasks of a 3-replica service to n1 and n3 while a client task (pinned to n1 by a
// constraint) sends 10 requests/s through the VIP and the lab's outside client 10 requests/s
// through the published port: not one request fails. --constraint node.hostname==n3 places on
// n3 only; node ls and node inspect show availability and labels; a worker cannot update a node.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {cli, eventually, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {Load} from './load.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  node: string
  desiredState: string
  state: string
  health?: string
  netns: string
}
interface NodeView {
  name: string
  availability: string
  labels: Record<string, string>
}

const ps = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc])
const meant = (svc: string) => ps(svc).filter((t) => t.desiredState === 'running')

describe('node availability and placement constraints, in a 3-node lab', {timeout: 600_000}, () => {
  const loads: Load[] = []
  withLab(['--nodes', '3'], {beforeDown: () => loads.forEach((l) => l.stop())})

  test('--constraint node.hostname==n3 places on n3 only; labels show in node inspect', async () => {
    ok('n1', ['network', 'create', 'dnet'])
    ok('n1', [
      'service',
      'create',
      '--name',
      'pin',
      '--replicas',
      '3',
      '--network',
      'dnet',
      '--constraint',
      'node.hostname==n3',
      '--',
      'sleep',
      'infinity',
    ])
    const pinned = await allRunning('pin', 3, meant, 90_000)
    assert.deepEqual(
      pinned.map((t) => t.node),
      ['n3', 'n3', 'n3'],
    )
    ok('n1', ['node', 'update', '--label-add', 'zone=b', 'n2'])
    const n2 = json<NodeView>('n1', ['node', 'inspect', 'n2'])
    assert.deepEqual([n2.availability, n2.labels], ['active', {zone: 'b'}])
    // Only managers decide: a worker's agent refuses, in one line.
    const r = cli('n2', ['node', 'update', '--availability', 'drain', 'n2'])
    assert.notEqual(r.code, 0)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
  })

  test('drain n2: its task moves to n1 and n3, no request fails through the VIP or the mesh', async () => {
    ok('n1', [
      'service',
      'create',
      '--name',
      'cli',
      '--network',
      'dnet',
      '--constraint',
      'node.hostname==n1',
      '--',
      'sleep',
      'infinity',
    ])
    ok('n1', [
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '3',
      '--network',
      'dnet',
      '-p',
      '8080:80',
      '--health-cmd',
      'curl -sf -m 2 http://127.0.0.1/ >/dev/null',
      '--health-interval',
      '1s',
      '--health-retries',
      '2',
    ])
    const client = (await allRunning('cli', 1, meant, 60_000))[0]!
    const web = await allRunning('web', 3, meant, 90_000, (t) => t.health === 'healthy')
    assert.deepEqual(web.map((t) => t.node).sort(), ['n1', 'n2', 'n3'])
    const vip = json<{vips: {ip: string}[]}>('n1', ['service', 'inspect', 'web']).vips[0]!.ip
    const vipLoad = new Load(client.netns, `http://${vip}/`)
    const meshLoad = new Load('sn-lab-client', 'http://172.30.0.11:8080/')
    loads.push(vipLoad, meshLoad)
    await eventually('both paths answer', () => vipLoad.take().sent > 0 && meshLoad.take().sent > 0, 30_000)
    await new Promise((r) => setTimeout(r, 2000))
    vipLoad.take()
    meshLoad.take()

    const onN2 = web.find((t) => t.node === 'n2')!
    ok('n1', ['node', 'update', '--availability', 'drain', 'n2'])
    await eventually(
      "n2's task gone, 3 healthy tasks on n1 and n3",
      () => {
        const all = ps('web')
        return (
          all.length === 3 &&
          !all.some((t) => t.id === onN2.id) &&
          all.every((t) => t.node !== 'n2' && t.state === 'running' && t.health === 'healthy')
        )
      },
      120_000,
    )
    await new Promise((r) => setTimeout(r, 2000))
    const v = vipLoad.take()
    const m = meshLoad.take()
    process.stdout.write(
      `# drain n2: VIP ${v.sent} sent ${v.failed.length} failed; mesh ${m.sent} sent ${m.failed.length} failed\n`,
    )
    assert.ok(v.sent > 0 && m.sent > 0)
    assert.deepEqual(v.failed, [], 'requests through the VIP failed')
    assert.deepEqual(m.failed, [], 'requests through the published port failed')
    // The pinned service stays where it is; node ls says n2 is drained.
    assert.ok(meant('pin').every((t) => t.node === 'n3'))
    const nodes = json<NodeView[]>('n1', ['node', 'ls'])
    assert.equal(nodes.find((n) => n.name === 'n2')?.availability, 'drain')
    const table = ok('n1', ['node', 'ls'])
    assert.match(table, /AVAILABILITY/)
  })
})
