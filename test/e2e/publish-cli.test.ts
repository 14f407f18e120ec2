// Published ports through the real CLI in a real 2-node lab: what a person types (repeated -p,
// both forms, flag-like words) reaches the store as meant, every mistake is one line with nothing
// written, an allocated port lies in 30000-32767 and is shown by ls and inspect, publish-add /
// publish-rm / publish / unpublish change the store as asked, and service rm frees the port.
// (Reachability over the data plane is the mesh's own test.)
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {before, describe, test} from 'node:test'
import {api, cli, eventually, json, ok} from './helpers.js'
import {withLab} from './lab.js'

interface Port {
  published: number
  target: number
  protocol: string
  mode: string
}
interface Service {
  id: string
  name: string
  networks: string[]
  ports: Port[]
  vips: {network: string; ip: string}[]
}
interface Task {
  id: string
  name: string
  node: string
  state: string
  addresses: {network: string; ip: string}[]
}

/** Desired state as n1 holds it on disk: every key and version but the nodes' own statuses. */
function desiredOnDisk(): string {
  const snap = JSON.parse(readFileSync('/var/lib/swarmnet/n1/store/state.json', 'utf8')) as {
    entries: {key: string; version: {clock: number; node: string}}[]
  }
  return snap.entries
    .filter((e) => !e.key.startsWith('taskstatus/') && !e.key.startsWith('node/'))
    .map((e) => `${e.key}@${e.version.clock}/${e.version.node}`)
    .sort()
    .join('\n')
}

/** Refused: non-zero, one line on stderr matching why, nothing on stdout, the store as it was. */
function refused(args: string[], why: RegExp): void {
  const before = desiredOnDisk()
  const r = cli('n1', args)
  assert.notEqual(r.code, 0, `${args.join(' ')} must be refused`)
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`)
  assert.match(r.stderr, /^swarmnet: /)
  assert.match(r.stderr.trim(), why)
  assert.equal(r.stdout, '')
  assert.equal(desiredOnDisk(), before, `${args.join(' ')} wrote something`)
}

const svc = (name: string) => json<Service>('n1', ['service', 'inspect', name])
const ports = (name: string) => svc(name).ports.map((p) => `${p.published}->${p.target}/${p.protocol}/${p.mode}`)
const taskIds = (name: string) =>
  json<Task[]>('n1', ['service', 'ps', name])
    .map((t) => t.id)
    .sort()

describe('published ports from the CLI, in a 2-node lab', {timeout: 300_000}, () => {
  withLab(['--nodes', '2'])
  before(() => {
    ok('n1', ['network', 'create', 'app'])
  })

  test('what a person mistypes: one line each, nothing written', () => {
    const create = (...p: string[]) => ['service', 'create', '--name', 'bad', '--network', 'app', ...p]
    refused(create('-p', '0:80'), /invalid --publish '0:80': published port '0' is not a port number 1-65535$/)
    refused(create('-p', '8080:65536'), /target port '65536' is not a port number 1-65535$/)
    refused(create('--publish', 'published=8080,target=80,proto=udp'), /unknown key 'proto'/)
    refused(create('--publish', 'published=8080,published=8081,target=80'), /'published' is given twice/)
    refused(create('--publish', '8080:80,protocol=udp'), /'8080:80' is not key=value/)
    refused(create('-p', '8080:80,8081:81'), /one port per value/)
    refused(create('-p', '127.0.0.1:8080:80'), /a host address/)
    refused(create('-p', '8080:80/sctp'), /sctp is not supported/)
    // a second word after one -p is not a second port: it is told where a command goes
    refused(create('-p', '8080:80', '8081:81'), /Unexpected argument: 8081:81: the command to run goes after `--`/)
    refused(create('-p', '--name', 'x'), /Flag --publish expects a value/)
    refused(create('-p'), /Flag --publish expects a value/)
    refused(create('-p', '-80'), /invalid --publish '-80'/)
    refused(create('--endpoint-mode', 'dnsrr', '-p', '8080:80'), /port 8080\/tcp: mode=ingress needs endpoint mode vip/)
    refused(create('-p', '4789:80/udp'), /port 4789\/udp is the cluster's data-path port/)
    refused(create('-p', '7946:80'), /port 7946\/tcp is the gossip port of node n\d/)
    refused(
      create('--replicas', '3', '--publish', 'published=8080,target=80,mode=host'),
      /host-mode port 8080\/tcp takes one task per node: only 2 of 3 tasks can be placed \(2 live nodes\): nothing was changed$/,
    )
    assert.equal(
      json<Service[]>('n1', ['service', 'ls']).some((s) => s.name === 'bad'),
      false,
    )
  })

  test('-p repeated, both forms, an allocated port: stored, on the ingress network, shown by ls and inspect', async () => {
    const out = ok('n1', [
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '2',
      '--network',
      'app',
      '-p',
      '8080:80',
      '-p',
      '80',
      '--publish',
      'published=8053,target=53,protocol=udp',
      '--publish=published=9443,target=443,mode=host',
    ])
    assert.match(out, /^[0-9a-f]{24}\n$/)
    assert.deepEqual(ports('web'), [
      '8080->80/tcp/ingress',
      '30000->80/tcp/ingress',
      '8053->53/udp/ingress',
      '9443->443/tcp/host',
    ])
    const s = svc('web')
    assert.deepEqual(s.networks, ['app', 'ingress'])
    assert.deepEqual(
      s.vips.map((v) => v.network),
      ['app', 'ingress'],
    )
    const tasks = await eventually(
      'two running tasks of web, one per node (host-mode port)',
      () => {
        const t = json<Task[]>('n1', ['service', 'ps', 'web'])
        return t.length === 2 && t.every((x) => x.state === 'running') ? t : undefined
      },
      30_000,
    )
    assert.deepEqual(tasks.map((t) => t.node).sort(), ['n1', 'n2'])
    for (const t of tasks)
      assert.deepEqual(
        t.addresses.map((a) => a.network),
        ['app', 'ingress'],
      )

    const ls = ok('n1', ['service', 'ls'])
    const header = ls.split('\n')[0]!
    assert.match(header, /\bPORTS\b/)
    const row = ls.split('\n').find((l) => /\bweb\b/.test(l))!
    // Docker's form, ingress ports only, by protocol then port.
    assert.ok(row.includes('*:8080->80/tcp,*:30000->80/tcp,*:8053->53/udp'), row)
    assert.ok(!row.includes('9443'), `host-mode ports are not in service ls, as in Docker: ${row}`)

    const text = ok('n1', ['service', 'inspect', 'web'])
    assert.match(text, /^Ports: +\*:8080->80\/tcp$/m)
    assert.match(text, /^ +\*:30000->80\/tcp$/m)
    assert.match(text, /^ +9443->443\/tcp \(host\)$/m)
    assert.match(text, /^ +\*:8053->53\/udp$/m)
  })

  test('a port in use is refused; the same number with the other protocol is not', () => {
    const create = (...p: string[]) => ['service', 'create', '--name', 'api', '--replicas', '0', ...p]
    refused(create('-p', '8080:81'), /port 8080\/tcp is already published by service web$/)
    refused(create('-p', '9443:81'), /port 9443\/tcp is already published by service web \(mode=host/)
    ok('n1', create('-p', '8080:81/udp', '-p', '81'))
    assert.deepEqual(ports('api'), ['8080->81/udp/ingress', '30001->81/tcp/ingress'], 'the allocator skips 30000 (web has it)')
  })

  test('publish-add / publish-rm on the live service: the store changes as asked, its tasks stay', () => {
    const before = taskIds('web')
    assert.equal(
      ok('n1', ['service', 'update', 'web', '--publish-rm', '8080', '--publish-add', '8080:81', '--publish-add', '9090:90']),
      'web\n',
    )
    assert.deepEqual(ports('web'), [
      '30000->80/tcp/ingress',
      '8053->53/udp/ingress',
      '9443->443/tcp/host',
      '8080->81/tcp/ingress',
      '9090->90/tcp/ingress',
    ])
    ok('n1', ['service', 'update', 'web', '--publish-rm', '30000', '--publish-rm', '8053/udp'])
    assert.deepEqual(ports('web'), ['9443->443/tcp/host', '8080->81/tcp/ingress', '9090->90/tcp/ingress'])
    assert.deepEqual(taskIds('web'), before, 'no task replaced')

    refused(['service', 'update', 'web', '--publish-rm', '8053'], /service web does not publish port 8053\/tcp/)
    refused(
      ['service', 'update', 'web', '--publish-rm', '8080:81'],
      /invalid --publish-rm '8080:81': give the published port alone/,
    )
    refused(['service', 'update', 'web', '--publish-add', '9090:91'], /service web already publishes port 9090\/tcp/)
    refused(['service', 'update', 'web', '--publish-add', 'target=0'], /invalid --publish-add 'target=0'/)
    refused(['service', 'update', 'web'], /nothing to change/)
    refused(['service', 'update', 'nope', '--publish-add', '80'], /nope/)
  })

  test('service publish / unpublish: the short forms, printing the port as published', () => {
    assert.equal(ok('n1', ['service', 'publish', 'web', '53/udp']), '*:30000->53/udp\n')
    assert.equal(ok('n1', ['service', 'publish', 'web', '7000:70', '--mode', 'host']), '7000->70/tcp (host)\n')
    assert.ok(ports('web').includes('30000->53/udp/ingress'))
    assert.ok(ports('web').includes('7000->70/tcp/host'))
    assert.equal(ok('n1', ['service', 'unpublish', 'web', '30000/udp']), '30000/udp\n')
    assert.equal(ok('n1', ['service', 'unpublish', 'web', '7000']), '7000/tcp\n')
    assert.deepEqual(ports('web'), ['9443->443/tcp/host', '8080->81/tcp/ingress', '9090->90/tcp/ingress'])
    refused(['service', 'publish', 'web', 'published=1,target=1'], /the long form is for --publish-add/)
    refused(['service', 'publish', 'web', '70000:70'], /invalid port '70000:70'/)
    refused(['service', 'publish', 'web', '7001:70', '--mode', 'global'], /Expected --mode=global to be one of: ingress, host/)
    refused(['service', 'unpublish', 'web', '8080:81'], /give the published port alone/)
    refused(['service', 'unpublish', 'web', '8081'], /does not publish port 8081\/tcp/)
  })

  test('inspect lb lists the published ports with their service and tasks', async () => {
    const text = await eventually(
      'the node store file has the ports',
      () => {
        const r = cli(undefined, ['inspect', 'lb', 'web', '--host', 'n1'])
        return r.code === 0 && r.stdout.includes('*:9090->90/tcp') ? r.stdout : undefined
      },
      15_000,
    )
    assert.match(text, /^web +\*:8080->81\/tcp +every node +web\.1 +n\d +10\.\d+\.\d+\.\d+:81$/m)
    assert.match(text, /^web +9443->443\/tcp \(host\) +n1,n2 +web\.1 +n\d +local:443$/m)
    const j = JSON.parse(ok(undefined, ['inspect', 'lb', 'web', '--host', 'n1', '--json'])) as {
      services: {service: string; ports: {published: number; backends: {task: string; ip?: string}[]}[]}[]
    }
    const p = j.services[0]!.ports.find((x) => x.published === 9090)!
    assert.deepEqual(p.backends.map((b) => b.task).sort(), ['web.1', 'web.2'])
    assert.ok(p.backends.every((b) => b.ip !== undefined))
  })

  test("a service's first ingress port replaces its tasks by running tasks on the ingress network; unpublishing it keeps them", async () => {
    ok('n1', ['service', 'create', '--name', 'plain', '--replicas', '2', '--network', 'app'])
    const running = (pred: (t: Task[]) => boolean) =>
      eventually(
        'plain running as expected',
        () => {
          const t = json<Task[]>('n1', ['service', 'ps', 'plain'])
          return t.length === 2 && t.every((x) => x.state === 'running') && pred(t) ? t : undefined
        },
        30_000,
      )
    const old = await running(() => true)
    assert.deepEqual(svc('plain').networks, ['app'])
    assert.equal(ok('n1', ['service', 'publish', 'plain', '8081:80']), '*:8081->80/tcp\n')
    assert.deepEqual(svc('plain').networks, ['app', 'ingress'])
    const now = await running((t) => t.every((x) => !old.some((o) => o.id === x.id)))
    for (const t of now)
      assert.deepEqual(
        t.addresses.map((a) => a.network),
        ['app', 'ingress'],
      )
    assert.equal(ok('n1', ['service', 'unpublish', 'plain', '8081']), '8081/tcp\n')
    assert.deepEqual(svc('plain').ports, [])
    assert.deepEqual(svc('plain').networks, ['app', 'ingress'], 'the ingress attachment stays')
    assert.deepEqual(taskIds('plain'), now.map((t) => t.id).sort())
  })

  test('the API refuses malformed port requests from any client with 400 and one line; a worker refuses to publish', async () => {
    const before = desiredOnDisk()
    for (const [path, body, said] of [
      ['/services/web/ports', {add: 'x'}, /^'add' must be a list$/],
      ['/services/web/ports', {add: [{target: 0}]}, /^port #1: 'target' is not a port number 1-65535$/],
      ['/services/web/ports', {add: [{target: 80, published: '80'}]}, /^port #1: 'published' is not a port number/],
      ['/services/web/ports', {add: [{target: 80, mode: 'global'}]}, /^port #1: 'mode' is not ingress or host$/],
      ['/services/web/ports', {rm: [{published: 9090, protocol: 'sctp'}]}, /^port to remove #1: 'protocol' is not tcp or udp$/],
      ['/services', {name: 'viaapi', ports: [{target: 80, extra: true}]}, /^port #1: unknown key 'extra'$/],
      ['/services', {name: 'viaapi', ports: {target: 80}}, /^'ports' must be a list$/],
    ] as const) {
      const r = await api('POST', path, body)
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}`)
      assert.match(r.error ?? '', said)
    }
    assert.equal(desiredOnDisk(), before)
    const w = cli('n2', ['service', 'publish', 'web', '7070:70'])
    assert.notEqual(w.code, 0)
    assert.match(w.stderr.trim(), /^swarmnet: this node is a worker: run the command on the manager n1$/)
    assert.equal(desiredOnDisk(), before)
  })

  test('a port freed by service rm can be published again', () => {
    refused(['service', 'create', '--name', 'next', '--replicas', '0', '-p', '9090:80'], /already published by service web/)
    ok('n1', ['service', 'rm', 'web'])
    ok('n1', ['service', 'create', '--name', 'next', '--replicas', '0', '-p', '9090:80', '-p', '80'])
    assert.deepEqual(ports('next'), ['9090->80/tcp/ingress', '30000->80/tcp/ingress'], '30000 is free again too')
  })
})
