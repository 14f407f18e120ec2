// --userns remap in a 1-node lab: a task from an image (busybox built here with umoci, as
// tasks-image.test.ts does) in a user namespace of its own. Inside, it is root (id -u 0) with the
// node's mapping in /proc/self/uid_map; on the node its process is host uid 100000; it still binds
// port 80 and serves its page through its VIP to another task; a file it writes in a volume is
// owned by 100000 on the node. `service update --userns host` gives the node's ids back.
import assert from 'node:assert/strict'
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, before, describe, test} from 'node:test'
import {cli, eventually, inNs, json, ok, sh} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  name: string
  node: string
  state: string
  desiredState: string
  pid: number
  netns: string
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')
const running = (svc: string, n: number) => allRunning(svc, n, tasksOf, 60_000)
const exec = (task: string, argv: string[]) => cli('n1', ['task', 'exec', task, '--', ...argv])
/** The real, effective, saved and filesystem uids of a process of the node, from its /proc status. */
const uidsOf = (pid: number) =>
  readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Uid:'))!
    .slice(4)
    .trim()
    .split(/\s+/)
    .map(Number)

const work = mkdtempSync(join(tmpdir(), 'sn-userns-'))
const layout = join(work, 'busybox')

function must(argv: string[]): string {
  const r = sh(argv, {}, 120_000)
  assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** busybox (static, from Debian) and a page: one layer of an OCI image, its files root's. */
function buildImage(): void {
  const root = join(work, 'root')
  for (const d of ['bin', 'www', 'tmp']) mkdirSync(join(root, d), {recursive: true})
  chmodSync(join(root, 'tmp'), 0o1777)
  copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'))
  chmodSync(join(root, 'bin', 'busybox'), 0o755)
  for (const a of ['sh', 'httpd', 'cat', 'id', 'echo', 'sleep', 'touch', 'ls']) symlinkSync('busybox', join(root, 'bin', a))
  writeFileSync(join(root, 'www', 'index.html'), 'page from a remapped root\n')
  must(['umoci', 'init', '--layout', layout])
  must(['umoci', 'new', '--image', `${layout}:latest`])
  must(['umoci', 'insert', '--image', `${layout}:latest`, root, '/'])
  must(['umoci', 'config', '--image', `${layout}:latest`, '--config.env', 'PATH=/bin'])
}

describe('--userns remap: a task in a user namespace of its own', {timeout: 600_000}, () => {
  withLab(['--nodes', '1'], {
    afterDown: () => {
      const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes('/var/lib/swarmnet/'))
      assert.deepEqual(mounts, [], 'a task root still mounted')
      rmSync(work, {recursive: true, force: true})
    },
  })
  before(() => {
    buildImage()
    ok('n1', ['network', 'create', 'app'])
  })
  after(() => rmSync(work, {recursive: true, force: true}))

  test('refused in one line: an unknown mode, remap for a command task', () => {
    const refused = (args: string[], re: RegExp) => {
      const r = cli('n1', ['service', 'create', '--name', 'bad', ...args])
      assert.notEqual(r.code, 0)
      assert.match(r.stderr.trim(), re)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    }
    refused(['--image', `oci:${layout}`, '--userns', 'auto'], /invalid --userns 'auto': host or remap/)
    refused(['--userns', 'remap', '--', 'sleep', 'infinity'], /--userns remap needs --image/)
    assert.notEqual(cli('n1', ['service', 'inspect', 'bad']).code, 0, 'nothing half-made')
  })

  test('root inside, host uid 100000 outside; serves through its VIP; its files on the node are 100000', async () => {
    ok('n1', [
      'service',
      'create',
      '--name',
      'rsite',
      '--network',
      'app',
      '--image',
      `oci:${layout}:latest`,
      '--userns',
      'remap',
      '--mount',
      'type=volume,source=rdata,target=/data',
      '--',
      'sh',
      '-c',
      // What it sees inside, written where the node reads it (task exec cannot enter it: runc exec
      // joins its user namespace first, and from there not the node's network namespace).
      'id -u > /data/id; cat /proc/self/uid_map > /data/uid_map; echo made > /data/by-task && exec httpd -f -p 80 -h /www',
    ])
    const spec = json<{container?: {userns?: string}}>('n1', ['service', 'inspect', 'rsite'])
    assert.equal(spec.container?.userns, 'remap', 'service inspect shows it')
    const [site] = await running('rsite', 1)

    const data = `/var/lib/swarmnet/${site!.node}/volumes/rdata/_data`
    await eventually('what the task wrote', () => statSync(`${data}/by-task`, {throwIfNoEntry: false}), 15_000)
    assert.equal(readFileSync(`${data}/id`, 'utf8').trim(), '0')
    assert.deepEqual(readFileSync(`${data}/uid_map`, 'utf8').trim().split(/\s+/), ['0', '100000', '65536'])

    // From the node: the task's PID 1 (and ps agrees) runs as host uid 100000, not root.
    assert.deepEqual(uidsOf(site!.pid), [100000, 100000, 100000, 100000])
    assert.equal(must(['ps', '-o', 'uid=', '-p', String(site!.pid)]).trim(), '100000')

    // Port 80, bound by the remapped root, through the VIP to another task.
    ok('n1', ['service', 'create', '--name', 'probe', '--network', 'app', '--', 'sleep', 'infinity'])
    const [probe] = await running('probe', 1)
    const vip = json<{vips: {ip: string}[]}>('n1', ['service', 'inspect', 'rsite']).vips[0]!.ip
    const page = await eventually(
      'the page through the VIP',
      () => {
        const r = inNs(probe!.netns, ['curl', '-sf', '-m', '3', `http://${vip}/`])
        return r.code === 0 ? r.stdout : undefined
      },
      60_000,
    )
    assert.equal(page, 'page from a remapped root\n')

    // What it wrote in its volume is the mapped root's on the node.
    const f = `${data}/by-task`
    assert.deepEqual([statSync(f).uid, statSync(f).gid], [100000, 100000])
    assert.equal(readFileSync(f, 'utf8'), 'made\n')
  })

  test("service update --userns host: the new task runs with the node's ids", async () => {
    const [old] = tasksOf('rsite')
    ok('n1', ['service', 'update', 'rsite', '--userns', 'host'])
    const spec = json<{container?: {userns?: string}}>('n1', ['service', 'inspect', 'rsite'])
    assert.equal(spec.container?.userns, undefined)
    const fresh = await eventually(
      'the replaced task',
      () => tasksOf('rsite').find((t) => t.id !== old!.id && t.state === 'running'),
      60_000,
    )
    assert.equal(uidsOf(fresh.pid)[0], 0)
    assert.deepEqual(exec(fresh.name, ['cat', '/proc/self/uid_map']).stdout.trim().split(/\s+/), ['0', '0', '4294967295'])
  })
})
