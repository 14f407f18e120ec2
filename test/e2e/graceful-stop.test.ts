// Graceful stop in a 3-node lab (issue 23, moby#38841): a task being stopped leaves the VIP's
// Maglev tables and DNS first, its established connections go on, and only then does it get its
// stop signal, SIGKILL after --stop-grace-period. web's tasks run whoami as PID 1 with
// --stop-signal SIGUSR2, which it does not handle (ignored by a PID 1): the task serves on
// through its whole grace period, so any new connection the load balancer still gave it would
// be answered by it, and the test would see it.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {closeSync, mkdtempSync, openSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, test} from 'node:test'
import {cli, eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  desiredState: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}

const ps = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc])

// New connections to VIP:80 every 100 ms, one kept-alive connection to the task at LEAVING asked
// every 500 ms, and tasks.web asked of the task's resolver every 100 ms: every event a JSON line.
const CLIENT = `
import net from 'node:net'
import http from 'node:http'
import {Resolver} from 'node:dns/promises'
const log = (o) => process.stdout.write(JSON.stringify({t: Date.now(), ...o}) + '\\n')
const {VIP, LEAVING} = process.env
const host = (text) => /Hostname: (\\S+)/.exec(text)?.[1]
// The kept connection: opened again until the VIP gives it to the task that will leave.
let kept
for (let i = 0; i < 60 && !kept; i++) {
  kept = await new Promise((resolve) => {
    const s = net.connect({host: VIP, port: 80})
    let buf = ''
    s.on('connect', () => s.write('GET / HTTP/1.1\\r\\nHost: web\\r\\n\\r\\n'))
    s.on('data', (d) => {
      buf += d
      const h = host(buf)
      if (!h) return
      s.removeAllListeners('data')
      if (h.startsWith(LEAVING + '.') || h === LEAVING) resolve(s)
      else (s.destroy(), resolve(undefined))
    })
    s.on('error', () => resolve(undefined))
  })
}
if (!kept) (log({event: 'no-kept'}), process.exit(1))
let buf = ''
kept.on('data', (d) => {
  buf += d
  for (let m; (m = /Hostname: (\\S+)/.exec(buf)); ) (buf = buf.slice(m.index + m[0].length), log({event: 'kept', host: m[1]}))
})
kept.on('error', (e) => log({event: 'kept-end', code: e.code}))
kept.on('close', () => log({event: 'kept-end'}))
let pending = 0
kept.on('data', () => (pending = 0))
setInterval(() => {
  if (!kept.writable) return
  // Six requests without an answer: the connection hangs (a flow sent where nothing answers).
  if (++pending > 6) return (log({event: 'kept-end', code: 'HANG'}), kept.destroy())
  kept.write('GET / HTTP/1.1\\r\\nHost: web\\r\\n\\r\\n')
}, 500)
const r = new Resolver({timeout: 1000, tries: 1})
r.setServers(['172.18.0.1'])
setInterval(() => r.resolve4('tasks.web').then((ips) => log({event: 'dns', ips}), (e) => log({event: 'dns-error', code: e.code})), 100)
setInterval(() => {
  const req = http.get({host: VIP, port: 80, path: '/', agent: false, timeout: 5000}, (res) => {
    let text = ''
    res.on('data', (d) => (text += d))
    res.on('end', () => log({event: 'new', host: host(text), status: res.statusCode}))
  })
  req.on('timeout', () => req.destroy(new Error('timeout')))
  req.on('error', (e) => log({event: 'new-error', code: e.code ?? e.message}))
}, 100)
log({event: 'ready'})
`

interface Ev {
  t: number
  event: string
  host?: string
  ips?: string[]
  code?: string
}

describe('graceful stop in a 3-node lab', {timeout: 600_000}, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sn-stop-'))
  withLab(['--nodes', '3'], {afterDown: () => rmSync(tmp, {recursive: true, force: true})})

  test('bad stop flags are refused in one line and make nothing', () => {
    ok('n1', ['network', 'create', 'stopnet'])
    for (const [flag, value, msg] of [
      ['--stop-grace-period', '10', /^swarmnet: invalid --stop-grace-period '10': a duration such as 10s, 1m30s or 500ms$/],
      ['--stop-signal', 'SIGNOPE', /^swarmnet: invalid --stop-signal 'SIGNOPE': a signal such as SIGTERM/],
      ['--stop-signal', 'KILL', /^swarmnet: invalid --stop-signal 'KILL': SIGKILL cannot be caught$/],
    ] as const) {
      const r = cli('n1', ['service', 'create', '--name', 'bad', '--network', 'stopnet', flag, value])
      assert.notEqual(r.code, 0)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.match(r.stderr.trim(), msg)
    }
    assert.deepEqual(json<unknown[]>('n1', ['service', 'ls']), [])
  })

  test('scale down: the leaving task gets no new connection once out of DNS, keeps its established one, dies after its grace', async () => {
    ok(
      'n1',
      ['service', 'create', '--name', 'web', '--replicas', '3', '--network', 'stopnet'].concat([
        '--stop-signal',
        'SIGUSR2',
        '--stop-grace-period',
        '6s',
      ]),
    )
    ok('n1', ['service', 'create', '--name', 'cli', '--network', 'stopnet', '--', 'sleep', 'infinity'])
    const client = (await allRunning('cli', 1, ps, 60_000))[0]!
    const web = await allRunning('web', 3, ps, 60_000)
    const leaving = web.find((t) => t.name.startsWith('web.3'))!
    const leavingIp = leaving.addresses[0]!.ip
    const vip = json<{vips: {ip: string}[]}>('n1', ['service', 'inspect', 'web']).vips[0]!.ip
    // whoami may need a moment after `running` to listen
    for (const t of web)
      await eventually(
        `${t.name} answers`,
        () => inNs(client.netns, ['curl', '-s', '-m', '2', `http://${t.addresses[0]!.ip}/`]).code === 0,
        30_000,
      )

    const logFile = join(tmp, 'client.log')
    const fd = openSync(logFile, 'w')
    const proc = spawn(
      'nsenter',
      [`--net=/run/netns/${client.netns}`, '--', process.execPath, '--input-type=module', '-e', CLIENT],
      {
        env: {...process.env, VIP: vip, LEAVING: 'web.3'},
        stdio: ['ignore', fd, 'inherit'],
      },
    )
    closeSync(fd)
    const events = () =>
      readFileSync(logFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Ev)
    try {
      await eventually('the client holds a connection to web.3', () => events().find((e) => e.event === 'ready'), 60_000)
      await new Promise((r) => setTimeout(r, 1500)) // requests before the change too
      ok('n1', ['service', 'scale', 'web=2'])
      const marked = await eventually('web.3 stopping (desired shutdown, still running)', () =>
        ps('web').find((t) => t.name === leaving.name && t.desiredState === 'shutdown' && t.state === 'running'),
      )
      assert.ok(marked)
      await eventually(
        'the kept connection ends (SIGKILL after the grace)',
        () => events().find((e) => e.event === 'kept-end'),
        60_000,
      )
      await eventually('web.3 is gone from service ps', () => !ps('web').some((t) => t.name === leaving.name), 30_000)
      await new Promise((r) => setTimeout(r, 1000))
    } finally {
      proc.kill('SIGKILL')
    }
    const ev = events()
    const fresh = ev.filter((e) => e.event === 'new' || e.event === 'new-error')
    const failed = fresh.filter((e) => e.event === 'new-error' || !e.host)
    const gone = ev.find((e) => e.event === 'dns' && !e.ips!.includes(leavingIp))
    assert.ok(gone, 'tasks.web stopped naming web.3')
    const keptEnd = ev.find((e) => e.event === 'kept-end')!
    const lateNew = fresh.filter((e) => e.t > gone.t && e.host?.startsWith('web.3'))
    const keptAfter = ev.filter((e) => e.event === 'kept' && e.t > gone.t && e.host?.startsWith('web.3'))
    process.stdout.write(
      `# new connections: ${fresh.length} sent, ${failed.length} failed; to web.3 after it left DNS: ${lateNew.length}; ` +
        `kept connection answered ${keptAfter.length} times after, ended ${keptEnd.t - gone.t} ms after\n`,
    )
    assert.deepEqual(failed, [], 'no new connection failed')
    assert.deepEqual(lateNew, [], 'no new connection reached web.3 once it was out of DNS (moby#38841)')
    assert.ok(keptAfter.length >= 2, 'the established connection went on while web.3 drained')
    assert.notEqual(keptEnd.code, 'HANG', 'the kept connection was ended (closed or reset), not left hanging')
    // SIGUSR2 did not stop it: only SIGKILL at the end of its grace did (the drain, then 6 s).
    assert.ok(keptEnd.t - gone.t >= 4000, `ended ${keptEnd.t - gone.t} ms after leaving DNS: before its grace was over`)
    // The signal waited for every node's word that its maps left web.3 out (src/dataplane/drain-acks.ts):
    // each node has a task on stopnet, so all three said so; none was waited for by the clock.
    const drained = readFileSync(`/var/lib/swarmnet/${leaving.node}/agent.log`, 'utf8')
      .split('\n')
      .find((l) => l.includes('task web.3: drained in'))
    assert.match(drained ?? 'no drain line', /task web\.3: drained in \d+ ms: confirmed by n[123], n[123], n[123]; SIGUSR2 now$/)
    const dig = inNs(client.netns, ['dig', '+short', '@172.18.0.1', 'tasks.web'])
    assert.equal(dig.stdout.trim().split('\n').length, 2, dig.stdout)
  })

  test('--init: tini is PID 1 and hands it SIGTERM, so a plain sleep stops at once; --no-init makes it PID 1 again', async () => {
    // A 10-minute grace: a stop that waited it out would not end within the test's minute.
    ok('n1', ['service', 'create', '--name', 'sleeper', '--init', '--stop-grace-period', '10m', '--', 'sleep', '100000'])
    const live = () => ps('sleeper').filter((x) => x.state === 'running')
    const pid1 = (want: RegExp) =>
      eventually(
        `the one running task of sleeper, its PID 1 matching ${want}`,
        () => {
          const t = live()
          if (t.length !== 1 || t[0]!.desiredState !== 'running') return undefined
          const r = cli(t[0]!.node, ['task', 'exec', t[0]!.name, '--', 'cat', '/proc/1/cmdline'])
          const line = r.stdout.split('\0').filter(Boolean).join(' ')
          return r.code === 0 && want.test(line) ? line : undefined
        },
        60_000,
      )
    assert.equal(await pid1(/^\/dev\/init /), '/dev/init -- sleep 100000')
    // stop-first (the default): the old task is stopped, SIGTERM to tini and on to sleep, before its
    // replacement starts; had it waited out its 10-minute grace, none would run within the minute.
    ok('n1', ['service', 'update', 'sleeper', '--no-init'])
    assert.equal(await pid1(/^sleep /), 'sleep 100000')
    ok('n1', ['service', 'rm', 'sleeper'])
  })
})
