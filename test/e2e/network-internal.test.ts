// `network create --internal` in a 2-node lab: a task only on an internal network has no default
// route and nothing it sends leaves its node (not even with a route added into its namespace by
// root: the node forwards nothing for it, so nothing is masqueraded out), while its names resolve
// and the tasks on the network reach each other across nodes. A task also on a network that is
// not internal keeps its way out (Docker's rule), and so does a task on an ordinary network: the
// control that shows the outside is reachable from a task at all.
import assert from 'node:assert/strict'
import {before, describe, test} from 'node:test'
import {cli, eventually, inNs, json, ok, type Result} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  state: string
  netns?: string
  addresses: {network: string; ip: string}[]
}

const OUTSIDE = '172.30.0.100'
const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')
const exec = (t: Task, argv: string[]): Result => cli(t.node, ['task', 'exec', t.name, '--', ...argv], 30_000)
const routes = (t: Task) => {
  const r = exec(t, ['ip', '-4', 'route', 'show'])
  assert.equal(r.code, 0, r.stderr)
  return r.stdout
}
const ping = (t: Task, to: string) => exec(t, ['ping', '-c', '1', '-W', '2', to])

describe('network create --internal, 2-node lab', {timeout: 300_000}, () => {
  let priv: Task[]
  let out: Task
  let both: Task

  withLab(['--nodes', '2'])
  before(async () => {
    ok('n1', ['network', 'create', '--internal', 'priv'])
    ok('n1', ['network', 'create', 'pub'])
    ok('n1', ['service', 'create', '--name', 'iweb', '--replicas', '2', '--network', 'priv'])
    ok('n1', ['service', 'create', '--name', 'out', '--network', 'pub', '--', 'sleep', 'infinity'])
    ok('n1', ['service', 'create', '--name', 'both', '--network', 'priv', '--network', 'pub', '--', 'sleep', 'infinity'])
    priv = await allRunning('iweb', 2, tasksOf, 90_000)
    out = (await allRunning('out', 1, tasksOf, 90_000))[0]!
    both = (await allRunning('both', 1, tasksOf, 90_000))[0]!
  })

  test('the network says it is internal', () => {
    assert.equal(json<{internal?: boolean}>('n1', ['network', 'inspect', 'priv']).internal, true)
    assert.match(ok('n1', ['network', 'inspect', 'priv']), /Internal: true/)
    assert.equal(json<{internal?: boolean}>('n1', ['network', 'inspect', 'pub']).internal, undefined)
  })

  test('a task only on it has no default route and cannot reach the outside; the others can', () => {
    assert.deepEqual(new Set(priv.map((t) => t.node)), new Set(['n1', 'n2']), 'one task on each node')
    for (const t of priv) {
      assert.doesNotMatch(routes(t), /^default/m, `${t.name} has no default route`)
      assert.notEqual(ping(t, OUTSIDE).code, 0, `${t.name} cannot reach ${OUTSIDE}`)
    }
    assert.match(routes(out), /^default via 172\.18\.0\.1/m)
    const r = ping(out, OUTSIDE)
    assert.equal(r.code, 0, `the control: a task on an ordinary network reaches the outside: ${r.stdout}${r.stderr}`)
    assert.match(routes(both), /^default via 172\.18\.0\.1/m, 'a task also on a network that is not internal has a way out')
    assert.equal(ping(both, OUTSIDE).code, 0)
  })

  test('a route added into its namespace by root does not get it out: the node forwards nothing for it', () => {
    const t = priv[0]!
    assert.ok(t.netns, 'service ps names the namespace')
    const add = inNs(t.netns!, ['ip', 'route', 'add', 'default', 'via', '172.18.0.1'])
    assert.equal(add.code, 0, add.stderr)
    try {
      assert.notEqual(inNs(t.netns!, ['ping', '-c', '2', '-W', '2', OUTSIDE]).code, 0, 'no way out with a route either')
    } finally {
      inNs(t.netns!, ['ip', 'route', 'del', 'default'])
    }
  })

  test('names on it resolve, and its tasks reach each other across nodes, by address and through the VIP', async () => {
    const [a, b] = priv as [Task, Task]
    const vip = json<{vips: {network: string; ip: string}[]}>('n1', ['service', 'inspect', 'iweb']).vips.find(
      (v) => v.network === 'priv',
    )!.ip
    const dig = exec(a, ['dig', '+short', '+time=4', '+tries=2', 'iweb'])
    assert.equal(dig.stdout.trim(), vip, `${dig.stdout}${dig.stderr}`)
    const peers = exec(a, ['dig', '+short', '+time=4', '+tries=2', 'tasks.iweb'])
    assert.deepEqual(peers.stdout.trim().split('\n').sort(), priv.map((t) => t.addresses[0]!.ip).sort())
    const bIp = b.addresses.find((x) => x.network === 'priv')!.ip
    const direct = exec(a, ['curl', '-s', '--max-time', '5', `http://${bIp}/`])
    assert.match(direct.stdout, new RegExp(`Hostname: ${b.name.replace('.', '\\.')}`), `${a.name} -> ${b.name} across nodes`)
    // Through the VIP by name: both tasks answer in time (Maglev picks by source port; new connections vary it).
    const seen = new Set<string>()
    await eventually(
      'both tasks through the VIP',
      () => {
        const r = exec(a, ['curl', '-s', '--max-time', '5', 'http://iweb/'])
        const h = /Hostname: (\S+)/.exec(r.stdout)?.[1]
        if (h) seen.add(h)
        return seen.size === 2
      },
      60_000,
    )
    // The task also on the ordinary network reaches the internal one's tasks too.
    assert.match(exec(both, ['curl', '-s', '--max-time', '5', 'http://iweb/']).stdout, /Hostname: iweb\.\d/)
  })
})
