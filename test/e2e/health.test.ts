// Health checks in a 3-node lab (issue 23): --health-cmd runs inside the task; a task joins the
// VIP's tables and DNS only once healthy, leaves them when unhealthy (no new connection reaches
// it, tasks.NAME leaves it out) and comes back when healthy again; service ps shows the verdict.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {cli, eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  desiredState: string
  state: string
  health?: string
  netns: string
  addresses: {network: string; ip: string}[]
}

const ps = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')
const dig = (netns: string, name: string) =>
  inNs(netns, ['dig', '+short', '+time=2', '+tries=1', '@172.18.0.1', name]).stdout.trim().split('\n').filter(Boolean).sort()

describe('health checks in a 3-node lab', {timeout: 600_000}, () => {
  withLab(['--nodes', '3'])

  test('bad health flags are refused in one line and make nothing', () => {
    ok('n1', ['network', 'create', 'hnet'])
    for (const [args, msg] of [
      [
        ['--health-retries', '2'],
        /^swarmnet: --health-interval, --health-timeout, --health-retries and --health-start-period need --health-cmd$/,
      ],
      [['--health-cmd', 'true', '--health-interval', '10'], /^swarmnet: invalid --health-interval '10': a duration such as 10s/],
      [['--health-cmd', 'true', '--no-healthcheck'], /^swarmnet: --no-healthcheck conflicts with --health-\* options$/],
      [['--health-cmd', 'true', '--health-retries', '0'], /^swarmnet: invalid --health-retries '0'/],
    ] as const) {
      const r = cli('n1', ['service', 'create', '--name', 'bad', '--network', 'hnet', ...args])
      assert.notEqual(r.code, 0, args.join(' '))
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.match(r.stderr.trim(), msg)
    }
    assert.deepEqual(json<unknown[]>('n1', ['service', 'ls']), [])
  })

  test('unhealthy: out of the VIP and tasks.NAME, no new connection; healthy again: back', async () => {
    ok('n1', ['service', 'create', '--name', 'cli', '--network', 'hnet', '--', 'sleep', 'infinity'])
    ok('n1', [
      'service',
      'create',
      '--name',
      'hc',
      '--replicas',
      '2',
      '--network',
      'hnet',
      '--health-cmd',
      'test ! -e /tmp/sick',
      '--health-interval',
      '1s',
      '--health-timeout',
      '3s',
      '--health-retries',
      '2',
    ])
    // A check that never passes: running, never a backend nor a name.
    ok('n1', ['service', 'create', '--name', 'never', '--network', 'hnet', '--health-cmd', 'false', '--health-interval', '1s'])
    const client = (await allRunning('cli', 1, ps, 60_000))[0]!
    const hc = await allRunning('hc', 2, ps, 60_000, (t) => t.health === 'healthy')
    const ipOf = new Map(hc.map((t) => [t.name.split('.').slice(0, 2).join('.'), t.addresses[0]!.ip]))
    const vip = json<{vips: {ip: string}[]}>('n1', ['service', 'inspect', 'hc']).vips[0]!.ip
    assert.match(ok('n1', ['service', 'ps', 'hc']), /running \(healthy\)/)
    await eventually('tasks.hc names both', () => dig(client.netns, 'tasks.hc').length === 2, 30_000)
    await allRunning('never', 1, ps, 60_000, (t) => t.health === 'unhealthy')
    assert.deepEqual(dig(client.netns, 'tasks.never'), [], 'a task that never passed its check has no name')
    const never = json<{vips: {ip: string}[]}>('n1', ['service', 'inspect', 'never']).vips[0]!.ip
    assert.notEqual(inNs(client.netns, ['curl', '-s', '-m', '3', `http://${never}/`]).code, 0, 'nor a backend')

    const hosts = (n: number) => {
      const r = inNs(
        client.netns,
        ['sh', '-c', `for i in $(seq ${n}); do curl -s -m 5 http://${vip}/ | grep '^Hostname:' || echo FAILED; done`],
        120_000,
      )
      return r.stdout
        .trim()
        .split('\n')
        .map((l) => l.replace(/^Hostname: (hc\.\d+).*$/, '$1'))
    }
    await eventually('the VIP answers from both', () => new Set(hosts(20)).size === 2, 30_000)

    ok('n1', ['task', 'exec', 'hc.1', '--', 'touch', '/tmp/sick'])
    await eventually('hc.1 unhealthy', () => ps('hc').find((t) => t.name.startsWith('hc.1') && t.health === 'unhealthy'), 30_000)
    assert.match(ok('n1', ['service', 'ps', 'hc']), /running \(unhealthy\)/)
    await eventually('tasks.hc leaves hc.1 out', () => dig(client.netns, 'tasks.hc').join() === ipOf.get('hc.2'), 30_000)
    const sick = hosts(30)
    process.stdout.write(
      `# while hc.1 is unhealthy: ${sick.length} requests, ${sick.filter((h) => h === 'FAILED').length} failed, ${sick.filter((h) => h === 'hc.1').length} to hc.1\n`,
    )
    assert.deepEqual([...new Set(sick)], ['hc.2'], 'every new connection goes to the healthy task, none fails')

    ok('n1', ['task', 'exec', 'hc.1', '--', 'rm', '/tmp/sick'])
    await eventually(
      'hc.1 healthy again',
      () => ps('hc').find((t) => t.name.startsWith('hc.1') && t.health === 'healthy'),
      30_000,
    )
    await eventually('tasks.hc names both again', () => dig(client.netns, 'tasks.hc').length === 2, 30_000)
    await eventually('the VIP answers from both again', () => new Set(hosts(20)).size === 2, 30_000)
  })
})
