// Tasks from an image, run by runc, in a 2-node lab. The image is built here, offline: Debian's
// busybox-static and a page, packed into an OCI layout with umoci (init, new, insert, config).
// The container serves the page from its own file system, through its VIP to a task on the
// other node and through a published port; it has its image's and its service's environment,
// Docker's default capabilities and seccomp filter, only its image's files; it is restarted when
// it exits, and a kill -9 of its agent leaves it running, adopted by the next agent.
import assert from 'node:assert/strict'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  copyFileSync,
  writeFileSync,
  chmodSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, before, describe, test} from 'node:test'
import {isAlive} from '../../src/sys/proc.js'
import {BIN, cli, eventually, inNs, json, ok, sh} from './helpers.js'
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
  addresses: {network: string; ip: string}[]
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')
const running = (svc: string, n: number) => allRunning(svc, n, tasksOf, 60_000)
const exec = (task: string, argv: string[]) => cli('n1', ['task', 'exec', task, '--', ...argv])
const field = (text: string, name: string) =>
  text
    .split('\n')
    .find((l) => l.startsWith(`${name}:`))
    ?.slice(name.length + 1)
    .trim()
const NODES: Record<string, string> = {n1: '172.30.0.11', n2: '172.30.0.12'}
const agentPid = (node: string) => Number(readFileSync(`/run/swarmnet/${node}.pid`, 'utf8').trim())
/** Docker's default capabilities as a mask (CHOWN .. SETFCAP, MKNOD, AUDIT_WRITE): what `docker run busybox` shows. */
const DOCKER_CAP_MASK = '00000000a80425fb'

const work = mkdtempSync(join(tmpdir(), 'sn-image-'))
/** The image the test builds with podman, in the host's (every lab node's) podman store. */
const PODMAN_IMAGE = `localhost/sn-test-site-${process.pid}:1`
const layout = join(work, 'busybox')

function must(argv: string[]): string {
  const r = sh(argv, {}, 120_000)
  assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** busybox (static, from Debian) and a page, as one layer of an OCI image with a config of its own. */
function buildImage(): void {
  const root = join(work, 'root')
  for (const d of ['bin', 'etc', 'www/cgi-bin']) mkdirSync(join(root, d), {recursive: true})
  copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'))
  chmodSync(join(root, 'bin', 'busybox'), 0o755)
  for (const a of ['sh', 'httpd', 'cat', 'env', 'ls', 'id', 'echo', 'sleep', 'test', 'hostname', 'wget', 'kill', 'nslookup'])
    symlinkSync('busybox', join(root, 'bin', a))
  writeFileSync(join(root, 'www', 'index.html'), 'page from the image\n')
  writeFileSync(join(root, 'etc', 'os-release'), 'ID=sn-busybox\nNAME="busybox built by the test"\n')
  writeFileSync(
    join(root, 'www', 'cgi-bin', 'env'),
    '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "GREETING=$GREETING FROM_IMAGE=$FROM_IMAGE"\n',
  )
  chmodSync(join(root, 'www', 'cgi-bin', 'env'), 0o755)
  must(['umoci', 'init', '--layout', layout])
  must(['umoci', 'new', '--image', `${layout}:latest`])
  must(['umoci', 'insert', '--image', `${layout}:latest`, root, '/'])
  must([
    'umoci',
    'config',
    '--image',
    `${layout}:latest`,
    '--config.env',
    'PATH=/bin',
    '--config.env',
    'FROM_IMAGE=yes',
    '--config.workingdir',
    '/www',
    '--config.cmd',
    'httpd',
    '--config.cmd',
    '-f',
    '--config.cmd',
    '-vv',
    '--config.cmd',
    '-p',
    '--config.cmd',
    '80',
    '--config.cmd',
    '-h',
    '--config.cmd',
    '/www',
  ])
}

describe('tasks from an image, run by runc, in a 2-node lab', {timeout: 900_000}, () => {
  withLab(['--nodes', '2'], {
    afterDown: () => {
      // lab down killed the containers through their cgroups, and runc's state, the tasks' roots and cgroups are gone.
      const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes('/var/lib/swarmnet/'))
      assert.deepEqual(mounts, [], 'a task root still mounted')
      sh(['podman', 'rmi', '--force', PODMAN_IMAGE])
      const v1 = sh(['sh', '-c', 'ls -d /sys/fs/cgroup/*/swarmnet/n* 2>/dev/null']).stdout.trim()
      assert.equal(v1, '', 'cgroups left in v1 hierarchies')
      rmSync(work, {recursive: true, force: true})
    },
  })
  let site: Task
  before(() => {
    buildImage()
    ok('n1', ['network', 'create', 'app'])
  })
  after(() => rmSync(work, {recursive: true, force: true}))

  test('refused in one line: a bad image reference, a bad --env, a bad --mount', () => {
    const refused = (args: string[], re: RegExp) => {
      const r = cli('n1', ['service', 'create', '--name', 'bad', ...args])
      assert.notEqual(r.code, 0)
      assert.match(r.stderr.trim(), re)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    }
    refused(['--image', 'oci:relative/dir'], /oci: needs an absolute directory/)
    refused(['--image', 'dir:/srv/busybox'], /transport is not supported/)
    refused(['--env', '1A=x', '--', 'sleep', '1'], /invalid --env '1A=x'/)
    refused(['--image', `oci:${layout}`, '--env', '1A=x'], /invalid --env '1A=x'/)
    refused(['--image', `oci:${layout}`, '--mount', 'type=bind,target=/x'], /a bind mount needs source=\/PATH/)
    refused(['--image', `oci:${layout}`, '--cap-add', 'NOPE'], /invalid --cap-add 'NOPE': no such capability/)
    assert.notEqual(cli('n1', ['service', 'inspect', 'bad']).code, 0, 'nothing half-made')
  })

  test("serves a page from the image's own files, through its VIP to a task on the other node and through a published port", async () => {
    ok('n1', [
      'service',
      'create',
      '--name',
      'site',
      '--network',
      'app',
      '--image',
      `oci:${layout}:latest`,
      '--env',
      'GREETING=hello',
      '-p',
      '8080:80',
    ])
    ;[site] = await running('site', 1)
    const other = site!.node === 'n1' ? 'n2' : 'n1'
    ok('n1', ['service', 'create', '--name', 'probe', '--mode', 'global', '--network', 'app', '--', 'sleep', 'infinity'])
    const probe = await eventually(
      'a probe on the other node',
      () => tasksOf('probe').find((t) => t.node === other && t.state === 'running'),
      60_000,
    )
    const vip = json<{vips: {ip: string}[]}>('n1', ['service', 'inspect', 'site']).vips[0]!.ip
    const page = await eventually(
      'the page through the VIP',
      () => {
        const r = inNs(probe.netns, ['curl', '-sf', '-m', '3', `http://${vip}/`])
        return r.code === 0 ? r.stdout : undefined
      },
      60_000,
    )
    assert.equal(page, 'page from the image\n')
    const env = inNs(probe.netns, ['curl', '-sf', '-m', '5', `http://${vip}/cgi-bin/env`])
    assert.equal(env.stdout.trim(), 'GREETING=hello FROM_IMAGE=yes', env.stderr)
    for (const node of ['n1', 'n2']) {
      const r = await eventually(
        `the published port on ${node}`,
        () => {
          const x = inNs('sn-lab-client', ['curl', '-sf', '-m', '3', `http://${NODES[node]}:8080/`])
          return x.code === 0 ? x.stdout : undefined
        },
        30_000,
      )
      assert.equal(r, 'page from the image\n')
    }
    // httpd -vv logs each request: the container's output is the task's log.
    await eventually(
      'the requests in service logs',
      () => /url:\/cgi-bin\/env/.test(ok('n1', ['service', 'logs', 'site'])),
      15_000,
    )
  })

  test("containers-storage: an image podman built offline (busybox, FROM scratch) runs from the node's podman store", async () => {
    const ctx = join(work, 'podman')
    mkdirSync(ctx)
    writeFileSync(join(ctx, 'index.html'), 'page from podman\n')
    writeFileSync(
      join(ctx, 'Containerfile'),
      'FROM scratch\nCOPY root/ /\nCOPY podman/index.html /www/index.html\nENV PATH=/bin\nWORKDIR /www\nCMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n',
    )
    must(['podman', 'build', '--quiet', '--network', 'none', '-f', join(ctx, 'Containerfile'), '-t', PODMAN_IMAGE, work])
    ok('n1', ['service', 'create', '--name', 'pod', '--network', 'app', '--image', `containers-storage:${PODMAN_IMAGE}`])
    const [t] = await running('pod', 1)
    const probe = tasksOf('probe')[0]!
    const page = await eventually(
      'the podman-built page',
      () => {
        const r = inNs(probe.netns, ['curl', '-sf', '-m', '3', `http://${t!.addresses[0]!.ip}/`])
        return r.code === 0 ? r.stdout : undefined
      },
      30_000,
    )
    assert.equal(page, 'page from podman\n')
    ok('n1', ['service', 'rm', 'pod'])
    // A name podman does not have: the task fails with what skopeo said, in one line of its status.
    ok('n1', ['service', 'create', '--name', 'nopod', '--image', 'containers-storage:localhost/sn-no-such-image:1'])
    const failed = await eventually(
      'the task failed',
      // Between attempts the status may say the (never started) process exited; each failed start says why.
      () =>
        json<(Task & {message?: string})[]>('n1', ['service', 'ps', 'nopod']).find(
          (x) => x.state === 'failed' && /podman/.test(x.message ?? ''),
        ),
      60_000,
    )
    assert.match(failed.message ?? '', /not in this node's podman store/)
    ok('n1', ['service', 'rm', 'nopod'])
  })

  test("inside: the image's files only, Docker's default capabilities and seccomp filter, its hostname and environment", () => {
    const status = readFileSync(`/proc/${site.pid}/status`, 'utf8')
    assert.equal(field(status, 'CapEff'), DOCKER_CAP_MASK)
    assert.equal(field(status, 'CapBnd'), DOCKER_CAP_MASK)
    assert.equal(field(status, 'Seccomp'), '2')
    assert.equal(readFileSync(`/proc/${site.pid}/cmdline`, 'utf8').split('\0')[0], 'httpd')
    // task exec enters through runc: the same capabilities and filter as the task's own process.
    const own = exec('site.1', ['cat', '/proc/self/status'])
    assert.equal(own.code, 0, own.stderr)
    assert.equal(field(own.stdout, 'CapEff'), DOCKER_CAP_MASK)
    assert.equal(field(own.stdout, 'Seccomp'), '2')
    assert.equal(exec('site.1', ['cat', '/etc/os-release']).stdout, 'ID=sn-busybox\nNAME="busybox built by the test"\n')
    const top = exec('site.1', ['ls', '/']).stdout.split('\n').filter(Boolean).sort()
    assert.deepEqual(top, ['bin', 'dev', 'etc', 'proc', 'sys', 'www'])
    for (const p of ['/usr', '/var/lib/swarmnet', '/run/swarmnet', '/sys/fs/bpf/swarmnet'])
      assert.notEqual(exec('site.1', ['test', '-e', p]).code, 0, `${p} is visible`)
    // Docker's default hostname: the first 12 digits of the id (a dotted task name would set a search domain)
    const host = exec('site.1', ['hostname']).stdout.trim()
    assert.match(host, /^[0-9a-f]{12}$/)
    const env = exec('site.1', ['env']).stdout.split('\n')
    for (const kv of ['GREETING=hello', 'FROM_IMAGE=yes', 'PATH=/bin', `HOSTNAME=${host}`])
      assert.ok(env.includes(kv), `${kv} in ${env.join(' ')}`)
    // Docker's seccomp default refuses what needs a capability the task does not have, e.g. a new namespace.
    const unshare = exec('site.1', ['sh', '-c', 'busybox unshare -n true'])
    assert.notEqual(unshare.code, 0, 'created a network namespace')
    // /etc/hosts as Docker writes it; the cluster's resolver answers for service names.
    const hosts = exec('site.1', ['cat', '/etc/hosts']).stdout
    assert.match(hosts, new RegExp(`^${site.addresses[0]!.ip.replace(/\./g, '\\.')}\\t${host} site\\.1$`, 'm'))
    assert.match(hosts, /^ff02::1\tip6-allnodes$/m)
    const probeVip = json<{vips: {ip: string}[]}>('n1', ['service', 'inspect', 'probe']).vips[0]!.ip
    // The short name, as a user types it: the hostname sets no search domain.
    const ns = exec('site.1', ['nslookup', 'probe'])
    assert.ok(ns.stdout.includes(probeVip), `probe's VIP ${probeVip} in ${ns.stdout}${ns.stderr}`)
  })

  test('restarted when its process exits; a kill -9 of the agent leaves it running, adopted by the next agent', async () => {
    const first = site.pid
    process.kill(first, 'SIGKILL')
    const again = await eventually(
      'restarted',
      () => tasksOf('site').find((t) => t.state === 'running' && t.pid !== first),
      60_000,
    )
    assert.notEqual(again.pid, first)
    const node = again.node
    const pid = agentPid(node)
    process.kill(pid, 'SIGKILL')
    await eventually('the agent dead', () => !isAlive(pid))
    assert.ok(isAlive(again.pid), 'the container died with its agent')
    const ip = again.addresses[0]!.ip
    assert.equal(inNs(again.netns, ['curl', '-sf', '-m', '3', `http://${ip}/`]).stdout, 'page from the image\n')
    const start = cli(undefined, ['lab', 'exec', node, '--', process.execPath, BIN, 'agent', '--node', node, '--detach'])
    assert.equal(start.code, 0, start.stderr)
    await eventually('the agent answers', () => cli(node, ['network', 'ls']).code === 0, 30_000)
    await eventually(
      'adopted',
      () => readFileSync(`/var/lib/swarmnet/${node}/agent.log`, 'utf8').includes(`task site.1 adopted (pid ${again.pid}`),
      30_000,
    )
    assert.ok(isAlive(again.pid), 'the same process runs')
    assert.equal(tasksOf('site')[0]!.pid, again.pid)
    const r = await eventually(
      'served again through the published port',
      () => {
        const x = inNs('sn-lab-client', ['curl', '-sf', '-m', '3', `http://${NODES[node]}:8080/`])
        return x.code === 0 ? x.stdout : undefined
      },
      30_000,
    )
    assert.equal(r, 'page from the image\n')
    // The adopting agent manages it: exec still enters it, and removing the service stops it.
    assert.equal(exec('site.1', ['cat', '/www/index.html']).stdout, 'page from the image\n')
    ok('n1', ['service', 'rm', 'site'])
    await eventually('the container gone', () => !isAlive(again.pid), 30_000)
    // The agent deletes the container (runc delete) once its processes are gone: a moment after.
    // (Only this task's: the probe's command tasks are runc containers too.)
    await eventually("runc's state of the task removed", () => !existsSync(`/run/swarmnet/runc/${node}/${again.id}`), 15_000)
  })

  test("image load puts an archive in each node's store; services run it by name, or from an OCI archive", async () => {
    const docker = join(work, 'site.docker.tar')
    const oci = join(work, 'site.oci.tar')
    must(['skopeo', '--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, `docker-archive:${docker}:site:1.0`])
    must(['skopeo', '--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, `oci-archive:${oci}:latest`])
    for (const node of ['n1', 'n2']) assert.equal(ok(node, ['image', 'load', docker]).trim(), 'site:1.0')
    assert.deepEqual(
      // cs-*: a containers-storage: image an earlier test's task copied in, on whichever node it ran
      json<{name: string}[]>('n2', ['image', 'ls'])
        .map((i) => i.name)
        .filter((n) => !n.startsWith('cs-')),
      ['site:1.0'],
    )
    const bad = cli('n1', ['image', 'load', oci])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr.trim(), /does not name its image: give --name NAME\[:TAG\]$/)

    ok('n1', ['service', 'create', '--name', 'named', '--mode', 'global', '--network', 'app', '--image', 'site:1.0'])
    ok('n1', [
      'service',
      'create',
      '--name',
      'archived',
      '--network',
      'app',
      '--image',
      `oci-archive:${oci}`,
      '--hostname',
      'arch-host',
    ])
    const tasks = [...(await running('named', 2)), ...(await running('archived', 1))]
    const probe = tasksOf('probe')[0]!
    for (const t of tasks) {
      const page = await eventually(
        `${t.name} serves`,
        () => {
          const r = inNs(probe.netns, ['curl', '-sf', '-m', '3', `http://${t.addresses[0]!.ip}/`])
          return r.code === 0 ? r.stdout : undefined
        },
        30_000,
      )
      assert.equal(page, 'page from the image\n')
    }
    const arch = tasksOf('archived')[0]!
    assert.equal(exec(arch.name, ['hostname']).stdout.trim(), 'arch-host')
    assert.match(
      exec(arch.name, ['cat', '/etc/hosts']).stdout,
      new RegExp(`^${arch.addresses[0]!.ip.replace(/\./g, '\\.')}\tarch-host$`, 'm'),
    )
    // Removed from the store while a task runs from it: the task keeps its root.
    ok('n2', ['image', 'rm', 'site:1.0'])
    assert.deepEqual(
      json<{name: string}[]>('n2', ['image', 'ls'])
        .map((i) => i.name)
        .filter((n) => !n.startsWith('cs-')),
      [],
    )
    const onN2 = tasksOf('named').find((t) => t.node === 'n2')!
    assert.equal(exec(onN2.name, ['cat', '/www/index.html']).stdout, 'page from the image\n')
    const gone = cli('n2', ['image', 'rm', 'site:1.0'])
    assert.notEqual(gone.code, 0)
    assert.match(gone.stderr.trim(), /^swarmnet: no image site:1.0 in node n2's store$/)
  })

  test('create flags: --user, --read-only, --mount bind/volume/tmpfs, --cap-drop, --workdir, --env-file, a command replacing CMD', async () => {
    const bind = join(work, 'bind')
    mkdirSync(bind)
    writeFileSync(join(bind, 'note'), 'from the node\n')
    const envFile = join(work, 'env')
    writeFileSync(envFile, '# set by the test\nFROM_FILE=1\n')
    ok('n1', [
      'service',
      'create',
      '--name',
      'flags',
      '--network',
      'app',
      '--image',
      `oci:${layout}`,
      '--user',
      '1000:1000',
      '--read-only',
      '--cap-drop',
      'NET_RAW',
      '--workdir',
      '/data',
      '--env-file',
      envFile,
      '--mount',
      `type=bind,source=${bind},target=/host,readonly`,
      '--mount',
      'type=volume,source=vol,target=/data',
      '--mount',
      'type=tmpfs,target=/scratch,tmpfs-size=1m',
      '--',
      'sleep',
      '1000',
    ])
    const [t] = await running('flags', 1)
    const status = readFileSync(`/proc/${t!.pid}/status`, 'utf8')
    assert.equal(field(status, 'Uid')!.split(/\s+/)[0], '1000')
    assert.equal(field(status, 'CapEff'), '0000000000000000', 'another user has no effective capabilities, as in Docker')
    assert.equal((BigInt(`0x${field(status, 'CapBnd')}`) >> 13n) & 1n, 0n, 'NET_RAW dropped')
    assert.equal(readFileSync(`/proc/${t!.pid}/cmdline`, 'utf8'), 'sleep\u00001000\u0000')
    assert.equal(exec('flags.1', ['sh', '-c', 'pwd']).stdout.trim(), '/data')
    assert.ok(exec('flags.1', ['env']).stdout.split('\n').includes('FROM_FILE=1'))
    assert.equal(exec('flags.1', ['cat', '/host/note']).stdout, 'from the node\n')
    assert.notEqual(exec('flags.1', ['sh', '-c', 'echo x > /host/note']).code, 0, 'wrote to a read-only bind')
    assert.notEqual(exec('flags.1', ['sh', '-c', 'echo x > /www/x']).code, 0, 'wrote to a read-only root')
    assert.equal(exec('flags.1', ['sh', '-c', 'echo x > /scratch/x && cat /scratch/x']).stdout, 'x\n')
    assert.equal(exec('flags.1', ['test', '-d', '/data']).code, 0)
    assert.ok(existsSync(`/var/lib/swarmnet/${t!.node}/volumes/vol/_data`), "the node's volume")
  })
})
