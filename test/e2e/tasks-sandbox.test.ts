// Tasks that cannot touch their node, in a 2-node lab: what a task sees and may do, its cgroup
// and limits, its user, task exec, and its logs (kept while it runs, removed with it).
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {before, describe, test} from 'node:test'
import {cgroupMounts} from '../../src/sys/cgroup.js'
import {isAlive, nsPids, procStat} from '../../src/sys/proc.js'
import {BIN, cli, eventually, json, ok, sh} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  name: string
  node: string
  state: string
  desiredState: string
  pid: number
  addresses: {network: string; ip: string}[]
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')

const running = (svc: string, n: number) => allRunning(svc, n, tasksOf, 30_000)

const exec = (task: string, argv: string[]) => cli('n1', ['task', 'exec', task, '--', ...argv])

const status = (pid: number) => readFileSync(`/proc/${pid}/status`, 'utf8')
const field = (text: string, name: string) =>
  text
    .split('\n')
    .find((l) => l.startsWith(`${name}:`))!
    .slice(name.length + 1)
    .trim()
const capBit = (hex: string, bit: number) => (BigInt(`0x${hex}`) >> BigInt(bit)) & 1n
const CAP = {NET_ADMIN: 12, SYS_ADMIN: 21, BPF: 39, SYS_PTRACE: 19, SYS_MODULE: 16, NET_BIND_SERVICE: 10}
/** Docker's default capabilities as a mask (CHOWN .. SETFCAP, MKNOD, AUDIT_WRITE): what `docker run busybox` shows. */
const DOCKER_CAP_MASK = '00000000a80425fb'

/** A process's cgroup directories: v2, and the v1 memory and cpu ones (hybrid hosts). */
function cgroupDirs(pid: number): {v2: string; memory?: string; cpu?: string} {
  const m = cgroupMounts()
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')
  const path = (ctl: string) => lines.find((l) => l.split(':')[1]?.split(',').includes(ctl))?.split(':')[2]
  const v2 = join(m.v2!, lines.find((l) => l.startsWith('0::'))!.slice(3))
  const memory = m.v1.memory && path('memory') ? join(m.v1.memory, path('memory')!) : undefined
  const cpu = m.v1.cpu && path('cpu') ? join(m.v1.cpu, path('cpu')!) : undefined
  return {v2, ...(memory ? {memory} : {}), ...(cpu ? {cpu} : {})}
}

describe('task sandbox in a 2-node lab', {timeout: 600_000}, () => {
  withLab(['--nodes', '2'])
  before(() => {
    ok('n1', ['network', 'create', 'app'])
  })

  test("a task cannot reach its node's state, socket, pins or links; it is PID 1 of its own view", async () => {
    ok('n1', ['service', 'create', '--name', 'box', '--network', 'app', '--', 'sleep', 'infinity'])
    const [t] = await running('box', 1)
    const node = t!.node
    // All of these exist on the node: the task must not see them.
    for (const p of [`/var/lib/swarmnet/${node}/node.json`, `/run/swarmnet/${node}.sock`, `/sys/fs/bpf/swarmnet/${node}`])
      assert.ok(existsSync(p), p)
    assert.notEqual(exec('box.1', ['cat', `/var/lib/swarmnet/${node}/node.json`]).code, 0, 'the cluster key is readable')
    assert.notEqual(exec('box.1', ['test', '-e', `/run/swarmnet/${node}.sock`]).code, 0, "the agent's socket is there")
    const bpf = exec('box.1', ['ls', '-A', '/sys/fs/bpf'])
    assert.equal(bpf.stdout.trim(), '', `pins visible: ${bpf.stdout}`)
    const mtu = exec('box.1', ['ip', 'link', 'set', 'eth0', 'mtu', '9000'])
    assert.notEqual(mtu.code, 0, 'a task changed its MTU')
    assert.match(mtu.stderr, /Operation not permitted/)
    assert.notEqual(exec('box.1', ['ip', 'link', 'add', 'sn-probe', 'type', 'dummy']).code, 0, 'a task made a link')
    assert.notEqual(exec('box.1', ['touch', '/usr/sn-probe']).code, 0, "a task wrote to the node's file system")
    assert.equal(existsSync('/usr/sn-probe'), false)

    assert.equal(exec('box.1', ['ls', '-A', '/run/netns']).stdout.trim(), '', 'the named namespaces are visible')
    // /run is the task's own (the node's daemons keep their sockets there): at most mount(8)'s utab.
    const run = exec('box.1', ['ls', '-A', '/run']).stdout.split('\n').filter(Boolean)
    assert.deepEqual(
      run.filter((x) => x !== 'mount'),
      [],
      `the node's /run: ${run.join(' ')}`,
    )
    assert.notEqual(exec('box.1', ['test', '-w', '/proc/sysrq-trigger']).code, 0, 'the task can write sysrq-trigger')
    assert.notEqual(exec('box.1', ['test', '-w', '/proc/sys/kernel/hostname']).code, 0, 'the task can write /proc/sys')
    assert.equal(exec('box.1', ['touch', '/tmp/sn-probe']).code, 0, 'no writable /tmp')
    assert.equal(existsSync('/tmp/sn-probe'), false, "the task's /tmp is the node's")

    assert.equal(exec('box.1', ['hostname']).stdout.trim(), 'box.1')
    // /etc/hosts and /etc/resolv.conf are the task's own files, from its directory on the node.
    const mounts = exec('box.1', ['cat', '/proc/self/mountinfo']).stdout.split('\n')
    for (const f of ['hosts', 'resolv.conf']) {
      const m = mounts.map((l) => l.split(' ')).find((x) => x[4] === `/etc/${f}`)
      assert.ok(m && m[3]!.endsWith(`/tasks/${t!.id}/${f}`), `/etc/${f} is not the task's: ${m?.join(' ')}`)
    }
    // The task's resolver is its node's cluster resolver on the gateway bridge, not the node's own.
    const resolv = exec('box.1', ['cat', '/etc/resolv.conf']).stdout
    assert.match(resolv, /^nameserver 172\.18\.0\.1$/m)
    assert.equal(resolv.match(/^nameserver /gm)?.length, 1, resolv)
    const hosts = exec('box.1', ['cat', '/etc/hosts']).stdout
    assert.match(hosts, new RegExp(`^${t!.addresses[0]!.ip.replace(/\./g, '\\.')}\\s+box\\.1$`, 'm'))
    assert.equal(exec('box.1', ['cat', '/proc/1/cmdline']).stdout, 'sleep\0infinity\0')
    const ns = nsPids(t!.pid)
    assert.equal(ns[0], t!.pid)
    assert.equal(ns[ns.length - 1], 1, 'the pid service ps shows is PID 1 in the task')

    const st = status(t!.pid)
    const eff = field(st, 'CapEff')
    for (const c of ['NET_ADMIN', 'SYS_ADMIN', 'BPF', 'SYS_PTRACE', 'SYS_MODULE'] as const)
      assert.equal(capBit(eff, CAP[c]), 0n, `task has CAP_${c}`)
    assert.equal(capBit(field(st, 'CapBnd'), CAP.NET_ADMIN), 0n, 'NET_ADMIN left in the bounding set')
    assert.equal(capBit(eff, CAP.NET_BIND_SERVICE), 1n)
    assert.equal(field(st, 'NoNewPrivs'), '1')
    // task exec: the same view and the same capabilities as the task.
    const mine = exec('box.1', ['grep', 'CapEff', '/proc/self/status'])
    assert.equal(mine.stdout.trim().split(/\s+/)[1], eff)
    assert.equal(exec('box.1', ['ps', '-o', 'pid=', '-p', '1']).stdout.trim(), '1')
  })

  test("a command task sees an allow-list of its node, with Docker's capabilities and seccomp filter, --env, --workdir and --mount", async () => {
    const data = mkdtempSync(join(tmpdir(), 'sn-data-'))
    try {
      writeFileSync(join(data, 'page'), 'from the node\n')
      ok('n1', [
        'service',
        'create',
        '--name',
        'view',
        '--network',
        'app',
        '--env',
        'GREETING=hi',
        '--workdir',
        '/tmp',
        '--mount',
        `type=bind,source=${data},target=/data,readonly`,
        '--mount',
        'type=tmpfs,target=/scratch',
        '--',
        'sleep',
        'infinity',
      ])
      const [t] = await running('view', 1)
      const node = t!.node
      // All of these exist on the node; the task sees none of them.
      const hidden = [
        `/var/lib/swarmnet/${node}/node.json`,
        '/var/lib/swarmnet',
        `/run/swarmnet/${node}.sock`,
        '/etc/shadow',
        '/etc/gshadow',
        '/etc/ssh/ssh_config',
        '/etc/ssl/private',
        '/home',
        data,
      ]
      for (const p of hidden) {
        assert.ok(existsSync(p), `${p} is not on the node`)
        assert.notEqual(exec('view.1', ['test', '-e', p]).code, 0, `${p} is visible in the task`)
      }
      // Also not through its PID 1's root, nor as the node's root: /proc is the task's own.
      assert.notEqual(exec('view.1', ['test', '-e', `/proc/1/root/var/lib/swarmnet/${node}`]).code, 0)
      assert.equal(exec('view.1', ['ls', '-A', '/root']).stdout, '', "the node's /root is visible")
      // Its cgroup tree is its own: no other task's, no node's.
      assert.equal(exec('view.1', ['cat', '/proc/self/cgroup']).stdout.match(/^0::(.*)$/m)?.[1], '/')
      assert.equal(exec('view.1', ['find', '/sys/fs/cgroup', '-maxdepth', '3', '-name', 'swarmnet']).stdout, '')
      // What a program of the node needs is there, read-only.
      assert.equal(exec('view.1', ['python3', '-c', 'print(6 * 7)']).stdout.trim(), '42')
      assert.match(exec('view.1', ['getent', 'passwd', 'root']).stdout, /^root:x:0:0:/)
      assert.notEqual(exec('view.1', ['touch', '/etc/sn-probe']).code, 0, '/etc is writable')
      // Docker's defaults, in the task and in task exec.
      const st = exec('view.1', ['cat', '/proc/1/status']).stdout
      assert.equal(field(st, 'CapEff'), DOCKER_CAP_MASK)
      assert.equal(field(st, 'Seccomp'), '2')
      const own = exec('view.1', ['cat', '/proc/self/status']).stdout
      assert.equal(field(own, 'CapEff'), DOCKER_CAP_MASK)
      assert.equal(field(own, 'Seccomp'), '2')
      // --env, --workdir, --mount.
      assert.match(exec('view.1', ['cat', '/proc/1/environ']).stdout, /(^|\0)GREETING=hi\0/)
      assert.equal(exec('view.1', ['pwd']).stdout.trim(), '/tmp')
      assert.equal(exec('view.1', ['cat', '/data/page']).stdout, 'from the node\n')
      assert.notEqual(exec('view.1', ['touch', '/data/x']).code, 0, 'a readonly bind is writable')
      assert.equal(exec('view.1', ['touch', '/scratch/x']).code, 0, 'the tmpfs is not writable')
      // /etc/hosts as Docker writes it (localhost, the IPv6 names, the task's name on each of its
      // addresses), and the cluster's resolver as the only nameserver, answering for the service's name.
      const hosts = exec('view.1', ['cat', '/etc/hosts']).stdout.split('\n')
      assert.deepEqual(hosts.slice(0, 7), [
        '127.0.0.1\tlocalhost',
        '::1\tlocalhost ip6-localhost ip6-loopback',
        'fe00::0\tip6-localnet',
        'ff00::0\tip6-mcastprefix',
        'ff02::1\tip6-allnodes',
        'ff02::2\tip6-allrouters',
        `${t!.addresses[0]!.ip}\tview.1`,
      ])
      assert.match(hosts[7]!, /^172\.18\.\d+\.\d+\tview\.1$/)
      assert.deepEqual(hosts.slice(8), [''])
      const resolv = exec('view.1', ['cat', '/etc/resolv.conf']).stdout
      assert.deepEqual(resolv.match(/^nameserver .*$/gm), ['nameserver 172.18.0.1'])
      const vip = json<{vips: {ip: string}[]}>('n1', ['service', 'inspect', 'view']).vips[0]!.ip
      assert.equal(exec('view.1', ['getent', 'hosts', 'view']).stdout.split(/\s+/)[0], vip)
      ok('n1', ['service', 'rm', 'view'])
    } finally {
      rmSync(data, {recursive: true, force: true})
    }
  })

  test("a forked child is in the task's cgroup; removing the task kills it and the cgroup", async () => {
    ok('n1', ['service', 'create', '--name', 'fork', '--', 'sh', '-c', 'setsid sleep 4343 & exec sleep infinity'])
    const [t] = await running('fork', 1)
    const cg = cgroupDirs(t!.pid).v2
    assert.match(cg, /\/swarmnet\/n[12]\/[0-9a-f]{24}$/)
    const pids = await eventually('the child in the cgroup', () => {
      const p = readFileSync(join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
      return p.some((x) => readFileSync(`/proc/${x}/cmdline`, 'utf8') === 'sleep\x004343\x00') ? p : undefined
    })
    const child = pids.find((x) => readFileSync(`/proc/${x}/cmdline`, 'utf8') === 'sleep\x004343\x00')!
    const started = procStat(child)!.startTime
    ok('n1', ['service', 'rm', 'fork'])
    // A stop is graceful (src/tasks/stop.ts): sleep as PID 1 ignores SIGTERM, so SIGKILL comes after the 10 s grace.
    await eventually('the child gone', () => !isAlive(child, started), 40_000)
    await eventually('the cgroup removed', () => !existsSync(cg), 20_000)
  })

  test('--limit-memory and --limit-cpu set the limits of the task cgroup (v2, else v1)', async () => {
    ok('n1', ['service', 'create', '--name', 'lim', '--limit-memory', '64M', '--limit-cpu', '0.5', '--', 'sleep', 'infinity'])
    const [t] = await running('lim', 1)
    const d = cgroupDirs(t!.pid)
    for (const dir of [d.v2, d.memory, d.cpu]) if (dir) assert.match(dir, new RegExp(`/swarmnet/${t!.node}/${t!.id}$`))
    const v2mem = join(d.v2, 'memory.max')
    if (existsSync(v2mem)) assert.equal(readFileSync(v2mem, 'utf8').trim(), String(64 * 1024 * 1024))
    else assert.equal(readFileSync(join(d.memory!, 'memory.limit_in_bytes'), 'utf8').trim(), String(64 * 1024 * 1024))
    const v2cpu = join(d.v2, 'cpu.max')
    if (existsSync(v2cpu)) assert.equal(readFileSync(v2cpu, 'utf8').trim(), '50000 100000')
    else assert.equal(readFileSync(join(d.cpu!, 'cpu.cfs_quota_us'), 'utf8').trim(), '50000')
    ok('n1', ['service', 'rm', 'lim'])
  })

  test('bad --user and --limit-* values are refused in one line and create nothing', () => {
    const before = json<unknown[]>('n1', ['service', 'ls']).length
    for (const [flag, value, msg] of [
      ['--limit-memory', '64X', /invalid --limit-memory '64X'/],
      ['--limit-memory', '1k', /minimum is 6M/],
      ['--limit-cpu', 'abc', /invalid --limit-cpu 'abc'/],
      ['--limit-cpu', '0', /invalid --limit-cpu '0'/],
      ['--user', 'a:b:c', /invalid --user 'a:b:c'/],
      ['--user', 'ro ot', /invalid --user/],
    ] as const) {
      const r = cli('n1', ['service', 'create', '--name', 'bad', flag, value, '--', 'sleep', 'infinity'])
      assert.notEqual(r.code, 0, `${flag} ${value} accepted`)
      assert.match(r.stderr, msg)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    }
    assert.equal(json<unknown[]>('n1', ['service', 'ls']).length, before)
  })

  test('--user 1000 runs the task, and task exec, as uid 1000 without capabilities', async () => {
    ok('n1', ['service', 'create', '--name', 'usr', '--user', '1000', '--', 'sleep', 'infinity'])
    const [t] = await running('usr', 1)
    const st = status(t!.pid)
    assert.equal(field(st, 'Uid').split(/\s+/)[0], '1000')
    assert.equal(BigInt(`0x${field(st, 'CapEff')}`), 0n)
    assert.equal(exec('usr.1', ['id', '-u']).stdout.trim(), '1000')
    // No overlay network: the name still resolves, to the task's address on the gateway bridge.
    assert.match(exec('usr.1', ['cat', '/etc/hosts']).stdout, /^172\.18\.\d+\.\d+\s+usr\.1$/m)
    ok('n1', ['service', 'rm', 'usr'])
  })

  test('service logs and task logs show what tasks print; a removed task takes its log along', async () => {
    const script = 'echo hello from $HOSTNAME; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.3; done'
    ok('n1', ['service', 'create', '--name', 'talk', '--replicas', '2', '--network', 'app', '--', 'sh', '-c', script])
    const tasks = await running('talk', 2)
    assert.deepEqual(tasks.map((t) => t.node).sort(), ['n1', 'n2'], 'one task on each node: logs come from both agents')
    const all = await eventually('both tasks in service logs', () => {
      const r = cli('n1', ['service', 'logs', 'talk'])
      return r.code === 0 &&
        /^talk\.1 \| hello from talk\.1$/m.test(r.stdout) &&
        /^talk\.2 \| hello from talk\.2$/m.test(r.stdout)
        ? r
        : undefined
    })
    assert.equal(all.stderr, '')
    assert.ok(
      all.stdout
        .split('\n')
        .filter(Boolean)
        .every((l) => /^talk\.[12] \| /.test(l)),
      all.stdout,
    )
    // As on a host where only n1 runs: talk.2's log is on n2, and the command says so in one line.
    const solo = mkdtempSync(join(tmpdir(), 'sn-run-'))
    try {
      symlinkSync('/run/swarmnet/n1.sock', join(solo, 'n1.sock'))
      const r = sh([process.execPath, BIN, 'service', 'logs', 'talk'], {SWARMNET_HOST: 'n1', SWARMNET_RUN_DIR: solo})
      assert.equal(r.code, 0, r.stderr)
      const away = tasks.find((t) => t.node === 'n2')!.name
      assert.equal(
        r.stderr,
        `swarmnet: logs of ${away} (node n2) are not reachable from this host: run the command on those nodes\n`,
      )
      assert.doesNotMatch(r.stdout, new RegExp(`^${away.replace('.', '\\.')} `, 'm'))
      assert.match(r.stdout, /^talk\.\d \| hello from talk/m)
    } finally {
      rmSync(solo, {recursive: true, force: true})
    }
    const one = cli('n2', ['task', 'logs', 'talk.1', '--tail', '1'])
    assert.equal(one.code, 0, one.stderr)
    assert.match(one.stdout, /^tick \d+\n$/)

    // --follow keeps printing what is written after it started.
    const f = spawn(process.execPath, [BIN, 'task', 'logs', 'talk.2', '--follow', '--tail', '0'], {
      env: {...process.env, SWARMNET_HOST: 'n1', NO_COLOR: '1'},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let seen = ''
    f.stdout.on('data', (b: Buffer) => (seen += b.toString()))
    try {
      await eventually('two new lines through --follow', () => (seen.match(/^tick \d+$/gm) ?? []).length >= 2)
    } finally {
      f.kill()
    }
    assert.doesNotMatch(seen, /hello/, '--tail 0 starts at the end')

    const dirs = tasks.map((t) => `/var/lib/swarmnet/${t.node}/tasks/${t.id}`)
    for (const d of dirs) assert.ok(existsSync(join(d, 'log')), d)
    ok('n1', ['service', 'rm', 'talk'])
    await eventually('the task logs removed with the tasks', () => dirs.every((d) => !existsSync(d)), 40_000)
  })
})
