// Service discovery by name in a real 2-node lab: the standard resolver of a task (getent, dig,
// curl) asks swarmnet's resolver at its node's gateway-bridge address; names are scoped to the
// task's networks, follow scaling, and other names go to an upstream the test runs on the lab's
// client (a dnsmasq with one record), with SERVFAIL in under 2 s once that upstream is gone.
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {before, describe, test} from 'node:test'
import {AgentClient} from '../../src/agent/client.js'
import {parseExposition, sumOf} from '../../src/metrics/parse.js'
import {cli, eventually, json, ok} from './helpers.js'
import {withLab} from './lab.js'

interface Task {
  id: string
  name: string
  node: string
  state: string
  addresses: {network: string; ip: string}[]
}
interface Svc {
  vips: {network: string; ip: string}[]
}
interface DnsInspect {
  listen: string
  ttl: number
  upstreams: string[]
  counters: Record<string, number>
  networks: {network: string; names: {name: string; kind: string; ips: string[]}[]}[]
}

const UPSTREAM = '172.30.0.100'
const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')
const running = (svc: string, n: number) =>
  eventually(
    `${n} running tasks of ${svc}`,
    () => {
      const t = tasksOf(svc)
      return t.length === n && t.every((x) => x.state === 'running') ? t : undefined
    },
    60_000,
  )

describe('DNS: names from a task, 2-node lab', {timeout: 400_000}, () => {
  let client: Task
  let vip: string
  let dnsmasq: ChildProcess | undefined
  /** A command in the client task (its own /etc/resolv.conf and /etc/hosts). */
  const inTask = (argv: string[]) => cli(client.node, ['task', 'exec', client.name, '--', ...argv], 30_000)
  const dig = (...args: string[]) => {
    const r = inTask(['dig', '+time=4', '+tries=1', ...args])
    assert.equal(r.code, 0, `dig ${args.join(' ')}: ${r.stdout}${r.stderr}`)
    return r.stdout
  }
  const short = (...args: string[]) =>
    dig('+short', ...args)
      .split('\n')
      .filter(Boolean)
  const status = (out: string) => /status: ([A-Z]+)/.exec(out)?.[1]
  const counters = () => json<DnsInspect>(client.node, ['inspect', 'dns']).counters
  /** What dig shows of an answer but its id, time and server: rcode, flags, counts, records, size. */
  const shown = (...args: string[]) =>
    dig(...args)
      .split('\n')
      .filter((l) => /^;; (->>HEADER|flags:|MSG SIZE)|^[^;\s]/.test(l))
      .map((l) => l.replace(/, id: \d+/, ''))
      .join('\n')

  withLab(['--nodes', '2', '--dns', UPSTREAM, '--dns-ttl', '2'], {beforeDown: () => dnsmasq?.kill('SIGKILL')})
  before(async () => {
    // The upstream: dnsmasq on the lab's client, one record, nothing forwarded further.
    dnsmasq = spawn(
      'nsenter',
      [
        '--net=/run/netns/sn-lab-client',
        '--',
        'dnsmasq',
        '--keep-in-foreground',
        '--no-resolv',
        '--no-hosts',
        '--bind-interfaces',
        `--listen-address=${UPSTREAM}`,
        '--except-interface=lo',
        '--user=root',
        '--pid-file=',
        '--local-ttl=60',
        '--host-record=ext.example,192.0.2.44',
      ],
      {stdio: 'ignore'},
    )
    ok('n1', ['network', 'create', 'front'])
    ok('n1', ['network', 'create', 'back'])
    ok('n1', [
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '2',
      '--network',
      'name=front,alias=www',
      '--publish',
      'published=8080,target=80',
    ])
    ok('n1', ['service', 'create', '--name', 'db', '--replicas', '1', '--network', 'back', '--', 'sleep', 'infinity'])
    ok('n1', [
      'service',
      'create',
      '--name',
      'rr',
      '--replicas',
      '3',
      '--endpoint-mode',
      'dnsrr',
      '--network',
      'front',
      '--',
      'sleep',
      'infinity',
    ])
    ok('n1', ['service', 'create', '--name', 'cl', '--replicas', '1', '--network', 'front', '--', 'sleep', 'infinity'])
    await running('web', 2)
    await running('db', 1)
    await running('rr', 3)
    client = (await running('cl', 1))[0]!
    vip = json<Svc>('n1', ['service', 'inspect', 'web']).vips.find((v) => v.network === 'front')!.ip
  })

  test("the task's resolv.conf names its node's resolver; its hosts file has its own name", () => {
    const resolv = inTask(['cat', '/etc/resolv.conf']).stdout
    assert.match(resolv, /^nameserver 172\.18\.0\.1$/m)
    assert.doesNotMatch(resolv, /nameserver (?!172\.18\.0\.1)/)
    const hosts = inTask(['cat', '/etc/hosts']).stdout
    assert.match(hosts, new RegExp(`^${client.addresses[0]!.ip.replace(/\./g, '\\.')}\\s+cl\\.1$`, 'm'))
  })

  test('getent hosts, dig and curl by service name; tasks.NAME; the alias', async () => {
    const g = await eventually('getent hosts web', () => {
      const r = inTask(['getent', 'hosts', 'web'])
      return r.code === 0 ? r.stdout : undefined
    })
    assert.match(g, new RegExp(`^${vip.replace(/\./g, '\\.')}\\s+web$`, 'm'))
    assert.deepEqual(short('web'), [vip])
    assert.deepEqual(short('www'), [vip])
    const webIps = tasksOf('web').map((t) => t.addresses.find((a) => a.network === 'front')!.ip)
    assert.deepEqual(short('tasks.web').sort(), webIps.sort())
    assert.deepEqual(short('tasks.www').sort(), webIps.sort())
    const full = dig('web')
    assert.match(full, /flags: qr aa rd ra/)
    assert.match(full, /\bweb\.\s+2\s+IN\s+A\s/)
    const curl = inTask(['curl', '-sS', '--max-time', '10', 'http://web/'])
    assert.equal(curl.code, 0, curl.stderr)
    assert.match(curl.stdout, /web\.[12]/)
  })

  test('scoping: a service on a network the task is not on is NXDOMAIN for it', () => {
    assert.equal(status(dig('db')), 'NXDOMAIN')
    assert.equal(status(dig('tasks.db')), 'NXDOMAIN')
    // ... and resolves for a task that is on it.
    const db = tasksOf('db')[0]!
    const r = cli(db.node, ['task', 'exec', db.name, '--', 'dig', '+short', '+time=4', '+tries=1', 'db'])
    assert.deepEqual(r.stdout.trim().split('\n'), [json<Svc>('n1', ['service', 'inspect', 'db']).vips[0]!.ip])
  })

  test('dnsrr: every running task, in a turning order (the responder round by round, the fast path from a random one)', () => {
    const ips = tasksOf('rr').map((t) => t.addresses[0]!.ip)
    // The responder (an EDNS option the fast path passes on): each answer starts at the next task.
    const a = short('+ednsopt=65001:00', 'rr')
    const b = short('+ednsopt=65001:00', 'rr')
    assert.deepEqual([...a].sort(), [...ips].sort())
    assert.deepEqual([...b].sort(), [...ips].sort())
    assert.notDeepEqual(a, b)
    // The fast path: every task, in turn from a random one; over 12 answers, more than one order.
    const counters = () => json<DnsInspect>(client.node, ['inspect', 'dns']).counters
    const before = counters().fastPath!
    const orders = new Set<string>()
    for (let i = 0; i < 12; i++) {
      const got = short('+nocookie', 'rr')
      assert.deepEqual([...got].sort(), [...ips].sort())
      // A turn of the responder's list: the same order, from another start.
      assert.ok([...a, ...a].join(',').includes(got.join(',')), `${got.join(',')} is not a turn of ${a.join(',')}`)
      orders.add(got.join(','))
    }
    assert.ok(orders.size > 1, `one order in 12 answers: ${[...orders].join(' | ')}`)
    assert.equal(counters().fastPath! - before, 12, 'the fast path gave all twelve')
  })

  test('task names, PTR of the VIP and of a task address, AAAA empty NOERROR, TCP', () => {
    const t = tasksOf('web').find((x) => x.name === 'web.1')!
    const ip = t.addresses[0]!.ip
    assert.deepEqual(short(`web.1.${t.id}`), [ip])
    assert.deepEqual(short('web.1'), [ip])
    assert.deepEqual(short('-x', vip), ['web.'])
    assert.deepEqual(short('-x', ip), [`web.1.${t.id}.`])
    const aaaa = dig('AAAA', 'web')
    assert.equal(status(aaaa), 'NOERROR')
    assert.match(aaaa, /ANSWER: 0,/)
    assert.deepEqual(short('+tcp', 'web'), [vip])
    assert.deepEqual(short('+tcp', 'tasks.web').length, 2)
  })

  test('SRV of a published port: _80._tcp.web and _8080._tcp.web give web:80 with its VIP; unknown port empty', () => {
    assert.deepEqual(short('SRV', '_80._tcp.web'), ['0 0 80 web.'])
    const full = dig('SRV', '_8080._tcp.web')
    assert.equal(status(full), 'NOERROR')
    assert.match(full, /^_8080\._tcp\.web\.\s+\d+\s+IN\s+SRV\s+0 0 80 web\.$/m)
    const additional = full.split(';; ADDITIONAL SECTION:')[1] ?? ''
    assert.match(additional, new RegExp(`^web\\.\\s+\\d+\\s+IN\\s+A\\s+${vip.replaceAll('.', '\\.')}$`, 'm'), full)
    const none = dig('SRV', '_81._tcp.web')
    assert.equal(status(none), 'NOERROR')
    assert.match(none, /ANSWER: 0,/)
    // db is on another network than the asking task: NXDOMAIN, as its A record.
    assert.equal(status(dig('SRV', '_80._tcp.db')), 'NXDOMAIN')
  })

  test('tasks.NAME follows scaling: as soon as the node knows a task runs (or stopped), answers say so', async () => {
    // The responder's path too (an option the fast path passes on, no cookie: the same question
    // each time but for its id), asked twice so that its batch thread keeps the answer.
    const slow = () => short('+nocookie', '+ednsopt=65001:00', 'tasks.web')
    const now = tasksOf('web').filter((t) => t.state === 'running').length
    assert.equal(slow().length, now)
    assert.equal(slow().length, now)
    ok('n1', ['service', 'scale', 'web=3'])
    // The client's node's own view: once its store says three run, the next answer has three.
    await eventually(
      'three running tasks of web in the view of the client node',
      () => {
        const t = json<Task[]>(client.node, ['service', 'ps', 'web']).filter((x) => x.state === 'running')
        return t.length === 3 || undefined
      },
      60_000,
    )
    // One question, right away: the responder's names follow the node's store (no second try, no
    // wait), and the gateway stays reachable while the node adds bridge ports.
    assert.equal(short('tasks.web').length, 3)
    assert.equal(slow().length, 3)
    assert.equal(slow().length, 3)
    ok('n1', ['service', 'scale', 'web=1'])
    await eventually(
      'one running task of web in the view of the client node',
      () => json<Task[]>(client.node, ['service', 'ps', 'web']).filter((x) => x.state !== 'shutdown').length === 1 || undefined,
      60_000,
    )
    // ... and while it removes them (the bug this once was: the gateway's MAC left with a port).
    assert.equal(short('tasks.web').length, 1)
    assert.equal(slow().length, 1)
  })

  test("the eBPF fast path answers A of a service name (dig's default cookie too); the responder the rest, with the same answer", () => {
    const counters = () => json<DnsInspect>(client.node, ['inspect', 'dns']).counters
    const before = counters()
    assert.deepEqual(short('+nocookie', 'web'), [vip])
    assert.deepEqual(short('+noedns', 'www'), [vip])
    assert.deepEqual(short('+cookie', 'web'), [vip])
    const mid = counters()
    assert.equal(mid.fastPath! - before.fastPath!, 3, 'three answers from the fast path')
    assert.equal(mid.queries, before.queries, 'no question reached the responder')
    // An EDNS option the fast path does not know goes on to the responder, answered the same way.
    assert.deepEqual(short('+ednsopt=65001:00', 'web'), [vip])
    const after = counters()
    assert.equal(after.fastPath, mid.fastPath)
    assert.equal(after.answered! - mid.answered!, 1)
  })

  test('the fast path answers AAAA of a name (NOERROR, empty) and a name of another network (NXDOMAIN) as the responder does', () => {
    for (const [q, rcode] of [
      [['AAAA', 'web'], 'NOERROR'],
      [['AAAA', 'tasks.rr'], 'NOERROR'],
      [['A', 'db'], 'NXDOMAIN'],
      [['AAAA', 'tasks.db'], 'NXDOMAIN'],
    ] as const) {
      const before = counters()
      const fast = shown('+nocookie', ...q)
      const mid = counters()
      assert.equal(mid.fastPath! - before.fastPath!, 1, `${q.join(' ')}: from the fast path`)
      assert.equal(mid.queries, before.queries, `${q.join(' ')}: no question reached the responder`)
      // The responder's answer to the same question (an EDNS option the fast path passes on).
      const slow = shown('+ednsopt=65001:00', ...q)
      const after = counters()
      assert.equal(after.fastPath, mid.fastPath)
      assert.equal(after.queries! - mid.queries!, 1, `${q.join(' ')}: the responder asked`)
      assert.match(fast, new RegExp(`status: ${rcode}$`, 'm'))
      assert.match(fast, /flags: qr aa rd ra; QUERY: 1, ANSWER: 0,/)
      assert.equal(fast, slow, `${q.join(' ')}: the fast path's answer and the responder's`)
    }
  })

  test('the fast path answers dig -x of the VIP and of a task address as the responder does; not once the task is gone', async () => {
    ok('n1', ['service', 'scale', 'web=2'])
    const t = (await running('web', 2)).find((x) => x.name !== 'web.1')!
    const ip = t.addresses.find((a) => a.network === 'front')!.ip
    // The client's node knows the new task (its names follow its own store, the maps its reconciler).
    await eventually(
      'PTR of the new task from the client',
      () => (short('+ednsopt=65001:00', '-x', ip).length > 0 ? true : undefined),
      60_000,
    )
    await eventually(
      'the new task in the fast path',
      () => {
        const before = counters().fastPath!
        short('+nocookie', '-x', ip)
        return counters().fastPath! > before || undefined
      },
      30_000,
    )
    for (const [addr, name] of [
      [vip, 'web.'],
      [ip, `${t.name}.${t.id}.`],
    ] as const) {
      const before = counters()
      const fast = shown('-x', addr)
      const mid = counters()
      assert.equal(mid.fastPath! - before.fastPath!, 1, `-x ${addr}: from the fast path`)
      assert.equal(mid.queries, before.queries, `-x ${addr}: no question reached the responder`)
      const slow = shown('+ednsopt=65001:00', '-x', addr)
      const after = counters()
      assert.equal(after.fastPath, mid.fastPath)
      assert.equal(after.queries! - mid.queries!, 1, `-x ${addr}: the responder asked`)
      assert.match(fast, /flags: qr aa rd ra; QUERY: 1, ANSWER: 1,/)
      const rev = addr.split('.').reverse().join('.')
      assert.match(
        fast,
        new RegExp(
          `^${rev.replaceAll('.', '\\.')}\\.in-addr\\.arpa\\.\\s+2\\s+IN\\s+PTR\\s+${name.replaceAll('.', '\\.')}$`,
          'm',
        ),
        fast,
      )
      assert.equal(fast, slow, `-x ${addr}: the fast path's answer and the responder's`)
    }
    // The task goes: its address leaves the map, and its reverse question goes to the responder.
    ok('n1', ['service', 'scale', 'web=1'])
    await eventually(
      'the gone task out of the fast path',
      () => {
        const before = counters()
        dig('+nocookie', '-x', ip)
        const after = counters()
        return (after.fastPath === before.fastPath && after.queries! > before.queries!) || undefined
      },
      60_000,
    )
  })

  test('inspect dns lists the names of each network and counts the questions', () => {
    const v = json<DnsInspect>(client.node, ['inspect', 'dns'])
    assert.equal(v.listen, '172.18.0.1:53')
    assert.equal(v.ttl, 2)
    assert.deepEqual(v.upstreams, [UPSTREAM])
    const front = v.networks.find((n) => n.network === 'front')!
    assert.deepEqual(
      front.names.find((n) => n.name === 'web'),
      {name: 'web', kind: 'service', ips: [vip]},
    )
    assert.ok(front.names.some((n) => n.name === 'www' && n.kind === 'alias'))
    assert.ok(v.counters.queries! > 0 && v.counters.answered! > 0 && v.counters.tcp! > 0)
    const table = ok(client.node, ['inspect', 'dns', 'front'])
    assert.match(table, /front\s+cl\s+service/)
    const bad = cli(client.node, ['inspect', 'dns', 'nope'])
    assert.notEqual(bad.code, 0)
  })

  test("the resolver's counters are in the agent's Prometheus metrics, equal to inspect dns", async () => {
    assert.deepEqual(short('+nocookie', 'web'), [vip]) // one more fast-path answer, at least one before
    const c = json<DnsInspect>(client.node, ['inspect', 'dns']).counters
    const e = parseExposition((await new AgentClient(client.node).get<{text: string}>('/metrics')).text)
    assert.equal(sumOf(e, 'swarmnet_dns_queries_total'), c.queries)
    assert.equal(sumOf(e, 'swarmnet_dns_queries_total', {transport: 'tcp'}), c.tcp)
    assert.equal(sumOf(e, 'swarmnet_dns_answered_total'), c.answered)
    assert.equal(sumOf(e, 'swarmnet_dns_nxdomain_total'), c.nxdomain)
    assert.equal(sumOf(e, 'swarmnet_dns_malformed_total'), c.malformed)
    assert.equal(sumOf(e, 'swarmnet_dns_fast_path_answers_total'), c.fastPath)
    assert.ok(c.fastPath! > 0 && c.nxdomain! > 0 && c.tcp! > 0, JSON.stringify(c))
  })

  test('other names go to the upstream; with the upstream gone, SERVFAIL in under 2 s', () => {
    assert.deepEqual(short('ext.example'), ['192.0.2.44'])
    const g = inTask(['getent', 'hosts', 'ext.example'])
    assert.match(g.stdout, /^192\.0\.2\.44\s+ext\.example$/m)
    dnsmasq?.kill('SIGKILL')
    dnsmasq = undefined
    const out = dig('gone.example')
    assert.equal(status(out), 'SERVFAIL')
    const ms = Number(/Query time: (\d+) msec/.exec(out)?.[1])
    assert.ok(ms < 2000, `SERVFAIL after ${ms} ms`)
    // Cached: the name it had still answers.
    assert.deepEqual(short('ext.example'), ['192.0.2.44'])
    const v = json<DnsInspect>(client.node, ['inspect', 'dns'])
    assert.ok(v.counters.forwarded! >= 3 && v.counters.servfail! >= 1)
  })
})
