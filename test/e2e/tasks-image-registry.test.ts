// Tasks from a registry's image, in a 2-node lab. The registry is Debian's docker-registry (the
// distribution project's), run in the lab's client namespace (the nodes' "outside world") and
// listening there only, on plain HTTP; its storage is the test's own directory. The image is
// busybox from Debian's busybox-static and a page, packed with umoci and pushed with skopeo.
// The manager pins the tag to its digest at create (as Docker does): each node pulls that digest
// once, a task restarted later runs it again from the node's store (the registry down, the tag
// moved meanwhile), and service update --image resolves the tag anew.
import assert from 'node:assert/strict'
import {type ChildProcess, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {before, describe, test} from 'node:test'
import {isAlive} from '../../src/sys/proc.js'
import {cli, eventually, inNs, json, ok, sh} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  state: string
  desiredState: string
  pid: number
  netns: string
  addresses: {network: string; ip: string}[]
}

const CLIENT_NS = 'sn-lab-client'
/** The registry listens on the client's address only: the lab's nodes reach it over the lab's wire. */
const REGISTRY = '172.30.0.100:5000'
const IMAGE = `${REGISTRY}/sn/site:1`

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')
const work = mkdtempSync(join(tmpdir(), 'sn-registry-'))
const storage = join(work, 'registry')
let registry: ChildProcess | undefined
let registryPid = 0

function must(argv: string[]): string {
  const r = sh(argv, {}, 120_000)
  assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** busybox and a page in an OCI layout (tag latest); tag v2 has another page. */
function buildImage(layout: string): void {
  const root = join(work, 'root')
  for (const d of ['bin', 'www']) mkdirSync(join(root, d), {recursive: true})
  copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'))
  chmodSync(join(root, 'bin', 'busybox'), 0o755)
  for (const a of ['sh', 'httpd', 'cat']) symlinkSync('busybox', join(root, 'bin', a))
  writeFileSync(join(root, 'www', 'index.html'), 'page v1 from the registry\n')
  must(['umoci', 'init', '--layout', layout])
  must(['umoci', 'new', '--image', `${layout}:latest`])
  must(['umoci', 'insert', '--image', `${layout}:latest`, root, '/'])
  const cmd = ['httpd', '-f', '-p', '80', '-h', '/www'].flatMap((c) => ['--config.cmd', c])
  must(['umoci', 'config', '--image', `${layout}:latest`, '--config.env', 'PATH=/bin', ...cmd])
  const page2 = join(work, 'page2.html')
  writeFileSync(page2, 'page v2 from the registry\n')
  must(['umoci', 'insert', '--image', `${layout}:latest`, '--tag', 'v2', page2, '/www/index.html'])
}

function startRegistry(): void {
  const log = openSync(join(work, 'registry.log'), 'a')
  // nsenter execs the registry: the child's pid is the registry's.
  registry = spawn('nsenter', [`--net=/run/netns/${CLIENT_NS}`, '--', 'docker-registry', 'serve', join(work, 'config.yml')], {
    stdio: ['ignore', log, log],
  })
  closeSync(log)
  registryPid = registry.pid!
}

function stopRegistry(): void {
  registry?.kill('SIGKILL')
  registry = undefined
}

const registryUp = () =>
  eventually(
    'the registry answers',
    () => inNs(CLIENT_NS, ['curl', '-sf', '-m', '3', `http://${REGISTRY}/v2/`]).code === 0,
    30_000,
  )

/** Pushes tag of the layout as sn/site:1; resolves to the digest the registry serves it as. */
function push(layout: string, tag: string): string {
  const r = inNs(
    CLIENT_NS,
    ['skopeo', '--insecure-policy', 'copy', '-q', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${IMAGE}`],
    120_000,
  )
  assert.equal(r.code, 0, r.stderr)
  const raw = inNs(CLIENT_NS, ['skopeo', 'inspect', '--raw', '--tls-verify=false', `docker://${IMAGE}`])
  assert.equal(raw.code, 0, raw.stderr)
  return `sha256:${createHash('sha256').update(raw.stdout).digest('hex')}`
}

const page = (t: Task) =>
  eventually(
    `${t.name} on ${t.node} serves`,
    () => {
      const r = inNs(t.netns, ['curl', '-sf', '-m', '3', `http://${t.addresses[0]!.ip}/`])
      return r.code === 0 ? r.stdout : undefined
    },
    30_000,
  )

const pulled = (node: string) => json<{name: string}[]>(node, ['image', 'ls']).map((i) => i.name)

describe("tasks from a registry's image, in a 2-node lab", {timeout: 900_000}, () => {
  withLab(['--nodes', '2'], {
    // The registry goes before the lab does: a process left in the client's namespace would keep it.
    beforeDown: () => {
      stopRegistry()
      rmSync(work, {recursive: true, force: true})
    },
    afterDown: () => {
      assert.ok(!registryPid || !isAlive(registryPid), 'the registry still runs')
      assert.ok(!existsSync(storage), "the registry's storage is left")
    },
  })
  const layout = join(work, 'site')
  let v1 = ''
  before(async () => {
    buildImage(layout)
    writeFileSync(
      join(work, 'config.yml'),
      `version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\nhttp:\n  addr: ${REGISTRY}\n`,
    )
    startRegistry()
    await registryUp()
    v1 = push(layout, 'latest')
    ok('n1', ['network', 'create', 'app'])
  })

  test('refused in one line, nothing made: no such image, no registry there, plain HTTP without --tls-verify=false', () => {
    const refused = (args: string[], re: RegExp) => {
      const r = cli('n1', ['service', 'create', '--name', 'bad', '--network', 'app', ...args])
      assert.notEqual(r.code, 0)
      assert.match(r.stderr.trim(), re)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    }
    refused(
      ['--image', `${REGISTRY}/sn/nope:1`, '--tls-verify=false'],
      /^swarmnet: image 172\.30\.0\.100:5000\/sn\/nope:1: .*manifest unknown/,
    )
    refused(['--image', `${REGISTRY}/sn/site:2`, '--tls-verify=false'], /manifest unknown/)
    refused(['--image', '172.30.0.100:5999/sn/site:1', '--tls-verify=false'], /connection refused/)
    // TLS is verified unless the service says otherwise: this registry speaks plain HTTP.
    refused(['--image', IMAGE], /server gave HTTP response to HTTPS client/)
    refused(['--image', `oci:${layout}`, '--tls-verify=false'], /--tls-verify is for an image on a registry/)
    assert.notEqual(cli('n1', ['service', 'inspect', 'bad']).code, 0, 'a service was made')
    for (const node of ['n1', 'n2']) assert.deepEqual(pulled(node), [], `${node} pulled something`)
  })

  test('pinned to its digest at create, pulled once by each node, served on both', async () => {
    ok('n1', [
      'service',
      'create',
      '--name',
      'site',
      '--replicas',
      '2',
      '--network',
      'app',
      '--image',
      `docker://${IMAGE}`,
      '--tls-verify=false',
    ])
    const svc = json<{container: {image: string}}>('n1', ['service', 'inspect', 'site'])
    assert.equal(svc.container.image, `${IMAGE}@${v1}`)
    const tasks = await allRunning('site', 2, tasksOf, 120_000)
    assert.deepEqual(tasks.map((t) => t.node).sort(), ['n1', 'n2'])
    for (const t of tasks) assert.equal(await page(t), 'page v1 from the registry\n')
    for (const node of ['n1', 'n2']) assert.deepEqual(pulled(node), [`${REGISTRY}/sn/site@${v1}`])
  })

  test("the tag moved and the registry down: a restarted task runs its pinned digest from the node's store", async () => {
    const v2 = push(layout, 'v2')
    assert.notEqual(v2, v1)
    stopRegistry()
    const [t] = tasksOf('site')
    process.kill(t!.pid, 'SIGKILL')
    const again = await eventually(
      'restarted',
      () => tasksOf('site').find((x) => x.node === t!.node && x.state === 'running' && x.pid !== t!.pid),
      60_000,
    )
    assert.equal(await page(again), 'page v1 from the registry\n')
  })

  test('service update --image resolves the tag again: the new digest on both nodes', async () => {
    startRegistry()
    await registryUp()
    const v2 = push(layout, 'v2')
    ok('n1', ['service', 'update', 'site', '--image', IMAGE])
    assert.equal(json<{container: {image: string}}>('n1', ['service', 'inspect', 'site']).container.image, `${IMAGE}@${v2}`)
    const served = await eventually(
      'both tasks serve v2',
      () => {
        const ts = tasksOf('site').filter((t) => t.state === 'running')
        if (ts.length !== 2) return undefined
        const pages = ts.map((t) => inNs(t.netns, ['curl', '-sf', '-m', '3', `http://${t.addresses[0]!.ip}/`]).stdout)
        return pages.every((p) => p === 'page v2 from the registry\n') ? ts : undefined
      },
      180_000,
    ).catch((e: Error) => {
      // What the update did, for the failure's message.
      const ps = cli('n1', ['service', 'ps', 'site', '--json']).stdout
      const logs = ['n1', 'n2'].map((n) => sh(['tail', '-n', '40', `/var/lib/swarmnet/${n}/agent.log`]).stdout).join('\n')
      throw new Error(`${e.message}\n${ps}\n${cli('n1', ['service', 'inspect', 'site']).stdout}\n${logs}`)
    })
    // Each node that runs a new task pulled the new digest (a replicated service's rolling update places them anew).
    for (const t of served) assert.ok(pulled(t.node).includes(`${REGISTRY}/sn/site@${v2}`), t.node)
  })
})
