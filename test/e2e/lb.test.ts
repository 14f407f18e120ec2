// Service VIPs in a real 3-node lab: what `service create --endpoint-mode`, `service inspect`,
// `service ls` and `inspect lb` say, and that VIPs share the task address pool without collisions.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {closeSync, mkdtempSync, openSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {before, describe, test} from 'node:test'
import {api, cli, eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}
interface Backend {
  network: string
  task: string
  ip: string
  node: string
  state: string
}
interface Svc {
  id: string
  name: string
  mode: string
  endpointMode: string
  vips: {network: string; ip: string}[]
  backends: Backend[]
}
interface LbService {
  service: string
  frontends: {
    network: string
    vip: string
    programmed: boolean
    tableSize?: number
    backends: {ip: string; task?: string; node: string; flows: number}[]
  }[]
}
interface Net {
  endpoints: {task: string; ip: string}[]
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')

const running = (svc: string, n: number) => allRunning(svc, n, tasksOf, 60_000)

// Keep-alive HTTP connections to VIP:80, a request on each every second, every event a JSON line.
// Opens connections until two reach web.1/web.2 (which stay through the scaling) and one web.3.
const CLIENT = `
import net from 'node:net'
const log = (o) => process.stdout.write(JSON.stringify({t: Date.now(), ...o}) + '\\n')
const conns = []
const send = (c) => {
  if (c.dead) return
  if (c.pending >= 10) return end(c, {event: 'error', code: 'HANG'}, true)
  c.pending++
  c.s.write('GET / HTTP/1.1\\r\\nHost: web\\r\\n\\r\\n')
}
const end = (c, e, destroy) => {
  if (c.dead) return
  c.dead = true
  log({conn: c.conn, ...e})
  if (destroy) c.s.destroy()
  c.resolve()
}
const open = (conn) => new Promise((resolve) => {
  const s = net.connect({host: process.env.VIP, port: 80})
  const c = {conn, s, pending: 0, buf: '', resolve}
  conns.push(c)
  s.on('connect', () => send(c))
  s.on('data', (d) => {
    c.buf += d
    for (let m; (m = /Hostname: (\\S+)/.exec(c.buf)); ) {
      c.buf = c.buf.slice(m.index + m[0].length)
      c.pending = 0
      if (c.host === undefined) (c.host = m[1]), log({conn, event: 'open', host: c.host}), resolve()
      else log({conn, event: m[1] === c.host ? 'reply' : 'wrong', host: m[1]})
    }
  })
  s.on('error', (e) => end(c, {event: 'error', code: e.code}))
  s.on('end', () => end(c, {event: 'end'}))
})
const slot = (c) => Number(/^web\\.(\\d+)/.exec(c.host ?? '')?.[1])
for (let n = 0; n < 40; n++) {
  await open(n)
  const live = conns.filter((c) => !c.dead)
  if (live.filter((c) => slot(c) <= 2).length >= 2 && live.some((c) => slot(c) === 3)) break
}
log({event: 'ready', conns: conns.length})
setInterval(() => conns.forEach(send), 1000)
`

interface ConnEvent {
  t: number
  conn?: number
  event: string
  host?: string
  code?: string
}

describe('service VIPs in a 3-node lab', {timeout: 900_000}, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sn-lb-'))
  let client: Task
  let vip = ''

  withLab(['--nodes', '3'], {afterDown: () => rmSync(tmp, {recursive: true, force: true})})
  before(() => {
    ok('n1', ['network', 'create', 'lbnet'])
  })

  test('an unknown endpoint mode is refused in one line, by the CLI and by the API, and makes nothing', async () => {
    const r = cli('n1', ['service', 'create', '--name', 'bad', '--endpoint-mode', 'ipvs', '--network', 'lbnet'])
    assert.notEqual(r.code, 0)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.match(r.stderr, /^swarmnet: Expected --endpoint-mode=ipvs to be one of: vip, dnsrr/)
    const a = await api('POST', '/services', {name: 'bad', endpointMode: 'ipvs', networks: ['lbnet']})
    assert.equal(a.status, 400)
    assert.equal(a.error, 'invalid endpoint mode "ipvs": must be vip or dnsrr')
    assert.equal((await api('POST', '/services', {name: 'bad', endpointMode: 7})).status, 400)
    assert.deepEqual(json<Svc[]>('n1', ['service', 'ls']), [])
  })

  test('vip (the default): one VIP on the network; service inspect shows it and the running backends', async () => {
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '3', '--network', 'lbnet'])
    const tasks = await running('web', 3)
    assert.deepEqual(tasks.map((t) => t.node).sort(), ['n1', 'n2', 'n3'])
    // Read on a worker: the VIP travelled with the service record.
    const s = await eventually('n3 sees 3 running backends', () => {
      const v = json<Svc>('n3', ['service', 'inspect', 'web'])
      return v.backends.filter((b) => b.state === 'running').length === 3 ? v : undefined
    })
    assert.equal(s.endpointMode, 'vip')
    assert.equal(s.vips.length, 1)
    assert.equal(s.vips[0]!.network, 'lbnet')
    const vip = s.vips[0]!.ip
    assert.deepEqual(
      s.backends.map((b) => [b.network, b.task, b.ip, b.node]).sort(),
      tasks.map((t) => ['lbnet', t.name, t.addresses[0]!.ip, t.node]).sort(),
    )
    const text = ok('n1', ['service', 'inspect', 'web'])
    assert.match(text, /^Name: +web$/m)
    assert.match(text, /^Mode: +replicated \(3\/3 running\)$/m)
    assert.match(text, /^Endpoint mode: +vip$/m)
    assert.match(text, new RegExp(`^VIPs: +lbnet=${vip.replace(/\./g, '\\.')}$`, 'm'))
    assert.match(text, /^NETWORK +TASK +ADDRESS +NODE +STATE$/m)
    for (const t of tasks) assert.match(text, new RegExp(`^lbnet +${t.name} +${t.addresses[0]!.ip} +${t.node} +running$`, 'm'))
    const ls = ok('n1', ['service', 'ls'])
    assert.match(ls, /^ID +NAME +MODE +REPLICAS +NETWORKS +VIPS +PORTS +COMMAND$/m)
    assert.match(ls, new RegExp(`^\\w{12} +web +replicated +3/3 +lbnet +lbnet=${vip.replace(/\./g, '\\.')}`, 'm'))
  })

  test('dnsrr: no VIP, and inspect says so', async () => {
    ok('n1', ['service', 'create', '--name', 'rr', '--replicas', '2', '--endpoint-mode', 'dnsrr', '--network', 'lbnet'])
    await running('rr', 2)
    const s = json<Svc>('n1', ['service', 'inspect', 'rr'])
    assert.equal(s.endpointMode, 'dnsrr')
    assert.deepEqual(s.vips, [])
    assert.equal(s.backends.length, 2)
    assert.match(ok('n1', ['service', 'inspect', 'rr']), /^VIPs: +dnsrr: no VIP$/m)
    assert.match(ok('n1', ['service', 'ls']), /^\w{12} +rr +replicated +\d\/2 +lbnet +dnsrr$/m)
  })

  test("inspect lb reads the node's maps (agent not needed): the VIP as programmed, its backends, flows", async () => {
    const web = json<Svc>('n1', ['service', 'inspect', 'web'])
    const vip = web.vips[0]!.ip
    type Lb = {node: string; services: LbService[]}
    const lb = await eventually(
      'n2 programs web with 3 backends',
      () => {
        const v = json<Lb>(undefined, ['inspect', 'lb', 'web', '--host', 'n2'])
        const f = v.services[0]?.frontends[0]
        return f?.programmed && f.backends.length === 3 ? v : undefined
      },
      30_000,
    )
    assert.equal(lb.node, 'n2')
    assert.deepEqual(
      lb.services.map((s) => s.service),
      ['web'],
    )
    const f = lb.services[0]!.frontends[0]!
    assert.deepEqual([f.network, f.vip], ['lbnet', vip])
    assert.equal(f.tableSize, 1021, 'Maglev: the tier of 3 backends (capacity 10): the largest prime <= 1024')
    assert.deepEqual(f.backends.map((b) => [b.ip, b.task, b.node]).sort(), web.backends.map((b) => [b.ip, b.task, b.node]).sort())
    for (const b of f.backends) assert.equal(typeof b.flows, 'number')
    // every service with a VIP, the dnsrr one not among them
    const all = json<Lb>(undefined, ['inspect', 'lb', '--host', 'n2'])
    assert.deepEqual(
      all.services.map((s) => s.service),
      ['web'],
    )
    const text = ok(undefined, ['inspect', 'lb', '--host', 'n2'])
    assert.match(text, /^SERVICE +NETWORK +FRONTEND +BACKEND +TASK +NODE +FLOWS$/m)
    const ip = (x: string) => x.replace(/\./g, '\\.')
    const first = f.backends[0]!
    assert.match(text, new RegExp(`^web +lbnet +${ip(vip)} +${ip(first.ip)} +${first.task} +${first.node} +${first.flows}$`, 'm'))
    const r = cli(undefined, ['inspect', 'lb', 'nosuch', '--host', 'n2'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr.trim(), /^swarmnet: service nosuch has no VIP on node n2$/)
  })

  test('VIPs never collide with task addresses; a removed service frees its VIP', async () => {
    const addresses = () => {
      const vips = json<Svc[]>('n1', ['service', 'ls']).flatMap((s) => s.vips.map((v) => v.ip))
      const eps = json<Net>('n1', ['network', 'inspect', 'lbnet']).endpoints.map((e) => e.ip)
      return {vips, eps}
    }
    ok('n1', ['service', 'create', '--name', 'extra', '--replicas', '2', '--network', 'lbnet', '--', 'sleep', 'infinity'])
    await running('extra', 2)
    ok('n1', ['service', 'scale', 'web=5'])
    await running('web', 5)
    const {vips, eps} = addresses()
    assert.equal(vips.length, 2, 'web and extra have a VIP, rr none')
    assert.equal(eps.length, 5 + 2 + 2)
    const all = [...vips, ...eps]
    assert.equal(new Set(all).size, all.length, `an address is used twice: ${all.join(' ')}`)
    const extraVip = json<Svc>('n1', ['service', 'inspect', 'extra']).vips[0]!.ip
    ok('n1', ['service', 'rm', 'extra'])
    ok('n1', ['service', 'create', '--name', 'again', '--replicas', '0', '--network', 'lbnet'])
    assert.equal(json<Svc>('n1', ['service', 'inspect', 'again']).vips[0]!.ip, extraVip)
    ok('n1', ['service', 'rm', 'again'])
    ok('n1', ['service', 'scale', 'web=3'])
    await running('web', 3)
  })

  // ---- through the data plane: a client task reaching web's VIP ----

  test('60 HTTP requests from a client task to VIP:80 reach all three backends; ping to the VIP answers', async () => {
    ok('n1', ['service', 'create', '--name', 'client', '--network', 'lbnet', '--', 'sleep', 'infinity'])
    client = (await running('client', 1))[0]!
    await running('web', 3)
    vip = json<Svc>('n1', ['service', 'inspect', 'web']).vips[0]!.ip
    // whoami may need a moment after `running` to listen, and the maps a reconcile pass
    await eventually('the VIP answers', () => inNs(client.netns, ['curl', '-s', '-m', '2', `http://${vip}/`]).code === 0, 30_000)
    const r = inNs(
      client.netns,
      ['sh', '-c', `for i in $(seq 60); do curl -s -m 5 http://${vip}/ | grep '^Hostname:' || echo FAILED; done`],
      120_000,
    )
    const lines = r.stdout.trim().split('\n')
    assert.equal(lines.length, 60, r.stdout + r.stderr)
    assert.ok(!lines.includes('FAILED'), r.stdout)
    const hosts = new Set(lines.map((l) => l.replace(/^Hostname: (web\.\d+).*$/, '$1')))
    assert.deepEqual([...hosts].sort(), ['web.1', 'web.2', 'web.3'])
    const ping = inNs(client.netns, ['ping', '-c', '2', '-W', '2', vip])
    assert.equal(ping.code, 0, ping.stdout + ping.stderr)
    assert.match(ping.stdout, new RegExp(`from ${vip.replace(/\./g, '\\.')}`))
  })

  test('long-lived connections survive 3 -> 6 -> 2 while their backend stays; a removed backend resets its flows', async () => {
    const log = join(tmp, 'conns.log')
    const fd = openSync(log, 'w')
    const proc = spawn(
      'nsenter',
      [`--net=/run/netns/${client.netns}`, '--', process.execPath, '--input-type=module', '-e', CLIENT],
      {
        env: {...process.env, VIP: vip},
        stdio: ['ignore', fd, 'inherit'],
      },
    )
    closeSync(fd)
    try {
      const events = () =>
        readFileSync(log, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as ConnEvent)
      const opened = await eventually(
        'connections on web.1/web.2 and on web.3',
        () => events().find((e) => e.event === 'ready'),
        60_000,
      )
      const hostOf = new Map(
        events()
          .filter((e) => e.event === 'open')
          .map((e) => [e.conn!, e.host!]),
      )
      const staying = [...hostOf].filter(([, h]) => /^web\.[12]\b/.test(h)).map(([c]) => c)
      const leaving = [...hostOf].filter(([, h]) => /^web\.3\b/.test(h)).map(([c]) => c)
      assert.ok(staying.length >= 2 && leaving.length >= 1, JSON.stringify(opened))
      const repliesSince = (t: number, conn: number) => events().filter((e) => e.conn === conn && e.event === 'reply' && e.t > t)
      const problems = () => events().filter((e) => e.event === 'error' || e.event === 'end' || e.event === 'wrong')

      // flows per backend, read from n's conntrack by inspect lb
      const lb = json<{services: {service: string; frontends: {backends: {task?: string; flows: number}[]}[]}[]}>(undefined, [
        'inspect',
        'lb',
        'web',
        '--host',
        client.node,
      ])
      const flows = new Map(lb.services[0]!.frontends[0]!.backends.map((b) => [b.task, b.flows]))
      for (const slot of [1, 2, 3]) {
        const mine = [...hostOf.values()].filter((h) => h.startsWith(`web.${slot}`)).length
        assert.ok((flows.get(`web.${slot}`) ?? 0) >= mine, `web.${slot}: ${flows.get(`web.${slot}`)} flows, ${mine} open here`)
      }

      let t = Date.now()
      ok('n1', ['service', 'scale', 'web=6'])
      await running('web', 6)
      for (const c of hostOf.keys())
        await eventually(`conn ${c} answers after 3 -> 6`, () => repliesSince(t + 2000, c).length >= 2, 30_000)
      assert.deepEqual(problems(), [], 'no connection broke while backends were added')

      t = Date.now()
      ok('n1', ['service', 'scale', 'web=2'])
      await running('web', 2)
      for (const c of leaving)
        await eventually(
          `conn ${c} (to web.3) is ended`,
          () => events().find((e) => e.conn === c && (e.event === 'error' || e.event === 'end')),
          30_000,
        )
      for (const c of staying)
        await eventually(`conn ${c} answers after 6 -> 2`, () => repliesSince(t + 2000, c).length >= 3, 30_000)
      const ended = problems()
      assert.deepEqual(
        ended.map((e) => e.conn).sort(),
        [...leaving].sort(),
        `only the connections to the removed backend end: ${JSON.stringify(ended)}`,
      )
      // A removed backend stops gracefully (src/tasks/stop.ts): whoami closes its idle connections (FIN); a reset when killed.
      for (const e of ended) assert.ok(e.event === 'end' || e.code === 'ECONNRESET', `ended cleanly, not ${JSON.stringify(e)}`)
    } finally {
      proc.kill('SIGKILL')
    }
  })

  test('a task that is its own backend reaches itself through the VIP (hairpin), seeing the VIP as its peer', async () => {
    ok('n1', ['service', 'create', '--name', 'solo', '--network', 'lbnet'])
    const solo = (await running('solo', 1))[0]!
    const soloVip = json<Svc>('n1', ['service', 'inspect', 'solo']).vips[0]!.ip
    // Its only backend is itself: every connection it makes to its VIP comes back to it.
    const r = await eventually(
      'solo answers itself on its VIP',
      () => {
        const x = inNs(solo.netns, ['curl', '-s', '-m', '3', `http://${soloVip}/`])
        return x.code === 0 ? x : undefined
      },
      30_000,
    )
    assert.match(r.stdout, /^Hostname: solo\.1/m)
    // whoami prints the peer it saw: the VIP, not the task's own address (which its stack would drop).
    assert.match(r.stdout, new RegExp(`^RemoteAddr: ${soloVip.replace(/\./g, '\\.')}:\\d+`, 'm'))
    ok('n1', ['service', 'rm', 'solo'])
  })

  test('an idle connection through the VIP keeps working: no idle timer in the data plane', async () => {
    const IDLE_S = 20
    // A TCP echo service with no idle timeout of its own (node's HTTP server closes idle keep-alives after 5 s).
    const ECHO = "require('net').createServer((s) => s.pipe(s)).listen(7000)"
    ok('n1', ['service', 'create', '--name', 'echo', '--replicas', '2', '--network', 'lbnet', '--', process.execPath, '-e', ECHO])
    await running('echo', 2)
    const echoVip = json<Svc>('n1', ['service', 'inspect', 'echo']).vips[0]!.ip
    const script = (idleMs: number) => `
import net from 'node:net'
const s = net.connect({host: '${echoVip}', port: 7000})
const got = []
s.on('data', (d) => {
  got.push(String(d))
  if (got.length === 1) setTimeout(() => s.write('after-idle'), ${idleMs})
  else (console.log(JSON.stringify(got)), s.end())
})
s.on('connect', () => s.write('first'))
s.on('error', (e) => (console.log(JSON.stringify({error: e.code})), process.exit(1)))
`
    const node = (idleMs: number, timeoutMs: number) =>
      inNs(client.netns, [process.execPath, '--input-type=module', '-e', script(idleMs)], timeoutMs)
    const want = JSON.stringify(['first', 'after-idle'])
    await eventually('the echo service answers on its VIP', () => node(0, 15_000).stdout.trim() === want, 30_000)
    const idle = node(IDLE_S * 1000, (IDLE_S + 30) * 1000)
    assert.equal(idle.code, 0, idle.stdout + idle.stderr)
    assert.equal(idle.stdout.trim(), want, `the connection answered after ${IDLE_S} s idle`)
    ok('n1', ['service', 'rm', 'echo'])
  })
})
