// Placement in a real 2-node lab: a request that does not fit is refused and
// changes nothing, the manager keeps placing afterwards (on itself too), a
// worker refuses writes naming the manager, and every name `service ps`
// prints works with `task exec`.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {closeSync, openSync, readFileSync} from 'node:fs'
import {describe, test} from 'node:test'
import {readDurableState} from '../../src/store/durable.js'
import {BIN, cli, eventually, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  name: string
  node: string
  state: string
  desiredState: string
}
interface Service {
  name: string
  desired: number
  running: number
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc])

const running = (svc: string, n: number) => allRunning(svc, n, tasksOf, 30_000)

/** Desired state as n1 holds it on disk: every key and version except the nodes' own task statuses. */
function desiredOnDisk(): string {
  const snap = readDurableState('/var/lib/swarmnet/n1/store')!
  return snap.entries
    .filter((e) => !e.key.startsWith('taskstatus/') && !e.key.startsWith('node/'))
    .map((e) => `${e.key}@${e.version.clock}/${e.version.node}`)
    .sort()
    .join('\n')
}

function refused(node: string, args: string[], why: RegExp): void {
  const r = cli(node, args)
  assert.notEqual(r.code, 0, `${args.join(' ')} must be refused`)
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`)
  assert.match(r.stderr, why)
}

describe('placement across a 2-node lab', {timeout: 300_000}, () => {
  withLab(['--nodes', '2'])

  test('a scale or create that does not fit is refused and changes nothing', async () => {
    ok('n1', ['network', 'create', '--subnet', '10.9.0.0/28', 'p']) // 13 addresses
    ok('n1', ['service', 'create', '--name', 'p', '--replicas', '2', '--network', 'p', '--', 'sleep', 'infinity']) // and its VIP
    await running('p', 2)
    const before = desiredOnDisk()
    refused(
      'n1',
      ['service', 'scale', 'p=50'],
      /^swarmnet: service p needs 48 new task addresses, but network p \(10\.9\.0\.0\/28\) has 10 free addresses: nothing was changed$/m,
    )
    refused('n1', ['service', 'scale', 'p=100000'], /at most 1000 replicas/)
    refused(
      'n1',
      ['service', 'create', '--name', 'q', '--replicas', '20', '--network', 'p', '--', 'sleep', 'infinity'],
      /needs 20 new task addresses and a VIP, but network p \(10\.9\.0\.0\/28\) has 10 free addresses: nothing was changed/,
    )
    assert.equal(desiredOnDisk(), before, "n1's store holds the same desired state")
    const svcs = json<Service[]>('n1', ['service', 'ls'])
    assert.deepEqual(
      svcs.map((s) => [s.name, s.desired]),
      [['p', 2]],
    )
    assert.equal(tasksOf('p').length, 2)
  })

  test('afterwards the manager still places, and tasks on the manager node start', async () => {
    // Longer than a reconcile period: the old manager threw on every pass from here on.
    await new Promise((r) => setTimeout(r, 4000))
    ok('n1', ['network', 'create', 'other'])
    ok('n1', ['service', 'create', '--name', 'later', '--replicas', '2', '--network', 'other', '--', 'sleep', 'infinity'])
    const later = await running('later', 2)
    assert.deepEqual(later.map((t) => t.node).sort(), ['n1', 'n2'])
    // What fits exactly still goes through.
    ok('n1', ['service', 'scale', 'p=12'])
    await running('p', 12)
    refused('n1', ['service', 'scale', 'p=13'], /has 0 free addresses/)
  })

  test('a worker refuses writes, naming the manager; it still answers reads', async () => {
    const before = desiredOnDisk()
    const worker = /^swarmnet: this node is a worker: run the command on the manager n1$/m
    refused('n2', ['network', 'create', 'fromworker'], worker)
    refused('n2', ['service', 'create', '--name', 'fromworker', '--network', 'other', '--', 'sleep', 'infinity'], worker)
    refused('n2', ['service', 'scale', 'p=1'], worker)
    refused('n2', ['service', 'rm', 'later'], worker)
    refused('n2', ['network', 'rm', 'other'], worker)
    // Give gossip the time it would take to carry anything the worker had written.
    await new Promise((r) => setTimeout(r, 2000))
    assert.equal(desiredOnDisk(), before)
    assert.deepEqual(
      json<Service[]>('n2', ['service', 'ls'])
        .map((s) => s.name)
        .sort(),
      ['later', 'p'],
    )
  })

  test('task exec takes every name service ps prints, global tasks included', async () => {
    ok('n1', ['service', 'create', '--name', 'g', '--mode', 'global', '--network', 'other', '--', 'sleep', 'infinity'])
    const tasks = [...(await running('g', 2)), ...(await running('later', 2))]
    for (const t of tasks) {
      for (const name of [t.name, t.id.slice(0, 12)]) {
        const r = cli(t.node, ['task', 'exec', name, '--', 'true'])
        assert.equal(r.code, 0, `task exec ${name} on ${t.node}: ${r.stderr}`)
      }
    }
    assert.ok(
      tasks.some((t) => /^g\.[0-9a-f]{12}$/.test(t.name)),
      'global tasks are named SERVICE.NODEID',
    )
  })

  test('SIGKILL of the manager agent during writes: every create that returned is there after a restart', async () => {
    // A user's loop of creates, each acknowledged by the CLI's exit code.
    const loop = spawn(
      'bash',
      ['-c', `for i in $(seq 1 60); do "${process.execPath}" "${BIN}" network create k$i >/dev/null 2>&1 && echo ack k$i; done`],
      {env: {...process.env, SWARMNET_HOST: 'n1'}, stdio: ['ignore', 'pipe', 'ignore']},
    )
    let out = ''
    await new Promise<void>((resolve) =>
      loop.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.split('\n').length > 5) resolve()
      }),
    )
    const pid = Number(readFileSync('/run/swarmnet/n1.pid', 'utf8').trim())
    process.kill(pid, 'SIGKILL')
    await new Promise((r) => loop.on('close', r))
    const acked = out.split('\n').flatMap((l) => (l.startsWith('ack ') ? [l.slice(4)] : []))
    assert.ok(acked.length >= 5 && acked.length < 60, `the kill landed mid-stream (${acked.length} acknowledged)`)

    const log = openSync('/var/lib/swarmnet/n1/agent.log', 'a')
    const agent = spawn('nsenter', ['--net=/run/netns/sn-lab-n1', '--', process.execPath, BIN, 'agent', '--node', 'n1'], {
      detached: true,
      stdio: ['ignore', log, log],
    })
    agent.unref()
    closeSync(log)
    await eventually('agent n1 back', () => cli('n1', ['node', 'ls']).code === 0)
    const names = new Set(json<{name: string}[]>('n1', ['network', 'ls']).map((n) => n.name))
    for (const k of acked) assert.ok(names.has(k), `network ${k} was acknowledged before the kill`)
    // The restarted manager places again: a new service gets tasks on both nodes.
    ok('n1', ['service', 'create', '--name', 'after-kill', '--replicas', '2', '--network', acked[0]!, '--', 'sleep', 'infinity'])
    assert.deepEqual((await running('after-kill', 2)).map((t) => t.node).sort(), ['n1', 'n2'])
  })
})
