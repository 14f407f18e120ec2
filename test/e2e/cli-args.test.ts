// What a person types reaches where it was meant to: the words after `--` untouched, mistakes
// answered with one line that says the fix. The real compiled CLI, against a real 1-node lab
// where an agent is needed.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {request} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, describe, test} from 'node:test'
import {BIN, cli, eventually, json, leftovers, ok, sh, type Result} from './helpers.js'
import {joinFromClient, removeOutsideNode, withLab} from './lab.js'

const oneLine = (r: Result) => {
  assert.notEqual(r.code, 0, `should fail: ${r.stdout}`)
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line expected: ${r.stderr}`)
  assert.match(r.stderr, /^swarmnet: /)
}

test('an unknown command is one swarmnet line naming the word and where the list is', () => {
  for (const [args, said] of [
    [['frob'], /^swarmnet: 'frob' is not a `swarmnet` command: see `swarmnet --help`/],
    [['service', 'frob', 'web'], /^swarmnet: 'frob' is not a `swarmnet service` command: see `swarmnet service --help`/],
    [['frob', '--help'], /^swarmnet: Command frob not found/],
    // oclif glues `extra` into the command's name; the command itself now says what is wrong
    [['network', 'ls', 'extra'], /^swarmnet: Unexpected argument: extra/],
  ] as const) {
    const r = cli(undefined, [...args])
    oneLine(r)
    assert.match(r.stderr, said)
  }
})

test('a flag value that does not parse says why', () => {
  for (const [args, said] of [
    [['--replicas', 'abc'], /^swarmnet: Parsing --replicas: Expected an integer but received: abc \(see --help\)$/],
    [['--replicas', '-1'], /^swarmnet: Parsing --replicas: Expected an integer greater than or equal to 0 but received: -1/],
    [['--mode', 'bogus'], /^swarmnet: Expected --mode=bogus to be one of: replicated, global/],
  ] as const) {
    const r = cli(undefined, ['service', 'create', '--name', 'x', ...args])
    oneLine(r)
    assert.match(r.stderr.trim(), said)
  }
  const r = cli(undefined, ['service', 'create'])
  oneLine(r)
  assert.match(r.stderr, /^swarmnet: Missing required flag name/)
})

test('a command to run without -- is told where it goes', () => {
  for (const args of [
    ['lab', 'exec', 'n1', 'echo', 'hi'],
    ['task', 'exec', 'web.1', 'echo', 'hi'],
    ['service', 'create', '--name', 'x', 'sleep', '1'],
  ]) {
    const r = cli(undefined, args)
    oneLine(r)
    assert.match(r.stderr, /the command to run goes after `--`/)
  }
})

test('lab up refuses a bad --dns or --dns-ttl before it makes anything', () => {
  const before = leftovers()
  for (const [args, said] of [
    [['--dns', '300.1.1.1'], /^swarmnet: invalid --dns '300\.1\.1\.1': must be an IPv4 address$/],
    [['--dns', '1.2.3.4:53'], /^swarmnet: invalid --dns '1\.2\.3\.4:53': must be an IPv4 address$/],
    [['--dns-ttl', '-3'], /^swarmnet: Parsing --dns-ttl: Expected an integer greater than or equal to 0/],
    [['--dns-ttl', 'abc'], /^swarmnet: Parsing --dns-ttl: Expected an integer but received: abc/],
    [['--dns-ttl', '99999'], /^swarmnet: Parsing --dns-ttl: Expected an integer less than or equal to 3600/],
  ] as const) {
    const r = cli(undefined, ['lab', 'up', '--nodes', '1', ...args])
    oneLine(r)
    assert.match(r.stderr.trim(), said)
    assert.deepEqual(leftovers(), before, `lab up ${args.join(' ')} left something behind`)
  }
})

describe('no agent: init and join for a node never made, the agent for one that is', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sn-cli-noagent-'))
  const env = {SWARMNET_STATE_DIR: join(dir, 'state'), SWARMNET_RUN_DIR: join(dir, 'run'), SWARMNET_HOST: ''}
  const run = (args: string[]) => sh([process.execPath, BIN, ...args], env)
  after(() => rmSync(dir, {recursive: true, force: true}))

  test('nothing on this host, or an unknown node: init or join', () => {
    for (const args of [
      ['network', 'ls'],
      ['network', 'ls', '--host', 'n8'],
    ]) {
      const r = run(args)
      oneLine(r)
      assert.match(r.stderr, /make (one|it one) with `swarmnet init` or `swarmnet join`/)
    }
  })

  test('join with a token or an address that cannot be valid: one line before any progress, nothing made', () => {
    const good = `SWMTKN-1-${'a'.repeat(50)}-${'b'.repeat(25)}`
    for (const [token, manager, said] of [
      ['garbage', '10.1.0.5', /^swarmnet: invalid join token: it must start with SWMTKN-1-$/],
      ['SWMTKN-1-abc', '10.1.0.5', /^swarmnet: invalid join token: expected SWMTKN-1-<digest>-<secret>$/],
      [`SWMTKN-1-${'a'.repeat(50)}-short`, '10.1.0.5', /the secret must be 25 base36 characters/],
      [good, '10.1.0.5:99999', /^swarmnet: invalid manager address '10.1.0.5:99999': expected HOST\[:PORT\]$/],
    ] as const) {
      const r = run(['join', '--node', 'n7', '--token', token, manager])
      oneLine(r)
      assert.match(r.stderr.trim(), said)
      assert.equal(r.stdout, '', `no progress for ${token} ${manager}`)
      assert.ok(!existsSync(join(dir, 'state', 'n7')), 'no state made for the node')
    }
  })

  test('an initialised node whose agent is gone: how to start the agent, not init', async () => {
    mkdirSync(join(dir, 'state', 'n9'), {recursive: true})
    writeFileSync(join(dir, 'state', 'n9', 'node.json'), '{}')
    const said = /the agent of node 'n9' is not running: start it with `swarmnet agent --node n9 --detach`/
    for (const args of [
      ['network', 'ls'],
      ['network', 'ls', '--host', 'n9'],
    ]) {
      const r = run(args)
      oneLine(r)
      assert.match(r.stderr, said)
    }
    // killed with -9, the agent leaves its socket behind: connecting is refused
    mkdirSync(join(dir, 'run'), {recursive: true})
    const sock = join(dir, 'run', 'n9.sock')
    const holder = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`,
    ])
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()))
    holder.kill('SIGKILL')
    await new Promise((r) => holder.once('exit', r))
    assert.equal(sh(['test', '-S', sock]).code, 0, 'the stale socket is there')
    const r = run(['network', 'ls'])
    oneLine(r)
    assert.match(r.stderr, said)
  })
})

/** One call to the agent's API over its socket, as any HTTP client would make it. */
function api(method: string, path: string, body?: unknown): Promise<{status: number; error?: string}> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = request({socketPath: '/run/swarmnet/n1.sock', method, path}, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({status: res.statusCode ?? 0, ...(JSON.parse(text) as {error?: string})}))
    })
    req.on('error', reject)
    req.end(payload)
  })
}

interface Svc {
  name: string
  command: string[]
}
interface Task {
  name: string
  state: string
}

describe('in a 1-node lab', {timeout: 300_000}, () => {
  let joined = false
  withLab(['--nodes', '1'], {
    beforeDown: () => {
      if (joined) cli(undefined, ['lab', 'exec', 'client', '--', process.execPath, BIN, 'leave', '--host', 'outside'])
    },
    afterDown: () => {
      // the node that joined from the outside host is not one of the lab's: its files go here
      removeOutsideNode('outside')
    },
  })

  test('lab exec: the words after -- run as typed, a second -- and flag-like words included', () => {
    const r = cli(undefined, [
      'lab',
      'exec',
      'n1',
      '--',
      'sh',
      '-c',
      'printf "[%s]" "$@"',
      'sh',
      'echo',
      'a',
      '--',
      'b',
      '--json',
      '-c',
      'echo',
      'n1',
    ])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, '[echo][a][--][b][--json][-c][echo][n1]')
  })

  test('service create stores the command as typed, directly and through lab exec (the README pattern)', async () => {
    ok('n1', ['network', 'create', 'app'])
    ok('n1', ['service', 'create', '--name', 'idle', '--replicas', '0', '--network', 'app', '--', 'sleep', '0'])
    const box = ['sh', '-c', 'exec sleep 100000', 'box.1', '--replicas', '1', '--', '-c', 'app']
    const r = cli(undefined, [
      'lab',
      'exec',
      'n1',
      '--',
      process.execPath,
      BIN,
      'service',
      'create',
      '--name',
      'box',
      '--replicas',
      '1',
      '--network',
      'app',
      '--',
      ...box,
    ])
    assert.equal(r.code, 0, r.stderr)
    const svcs = json<Svc[]>('n1', ['service', 'ls'])
    assert.deepEqual(svcs.find((s) => s.name === 'idle')?.command, ['sleep', '0'])
    assert.deepEqual(svcs.find((s) => s.name === 'box')?.command, box)
  })

  test('task exec runs the words after -- in the task, the task name among them', async () => {
    await eventually(
      'box.1 running',
      () => json<Task[]>('n1', ['service', 'ps', 'box']).some((t) => t.name === 'box.1' && t.state === 'running'),
      30_000,
    )
    const r = cli('n1', ['task', 'exec', 'box.1', '--', 'echo', 'box.1', '--json', '-c', '--', '--host', 'n1'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'box.1 --json -c -- --host n1\n')
  })

  test('the API answers a malformed path 400, an unknown route 404, an unknown mode 400', async () => {
    assert.equal((await api('GET', '/networks/%E0%A4%A')).status, 400)
    assert.equal((await api('DELETE', '/services/%')).status, 400)
    assert.equal((await api('GET', '/nope')).status, 404)
    const bad = await api('POST', '/services', {name: 'moded', mode: 'globall'})
    assert.equal(bad.status, 400)
    assert.match(bad.error ?? '', /invalid service mode "globall": must be replicated or global/)
    assert.equal((await api('POST', '/services', {name: 'counted', replicas: '3'})).status, 400)
    const names = json<Svc[]>('n1', ['service', 'ls']).map((s) => s.name)
    assert.ok(!names.includes('moded') && !names.includes('counted'), 'nothing made by a refused request')
  })

  test('network rm ingress is refused without --force', () => {
    const r = cli('n1', ['network', 'rm', 'ingress'])
    oneLine(r)
    assert.match(r.stderr, /ingress is the cluster's ingress network, which cannot be created again once removed: use --force/)
    const names = () => json<{name: string}[]>('n1', ['network', 'ls']).map((n) => n.name)
    assert.ok(names().includes('ingress'))
    ok('n1', ['network', 'rm', '--force', 'ingress'])
    assert.ok(!names().includes('ingress'))
  })

  test('info shows the gossip counters', () => {
    const info = json<{node: string; gossip: Record<string, number>}>('n1', ['info'])
    assert.equal(info.node, 'n1')
    for (const k of ['received', 'sent', 'malformed', 'decryptFailed', 'pushPulls', 'joinsAccepted'])
      assert.equal(typeof info.gossip[k], 'number', k)
    assert.match(ok('n1', ['info']), /Gossip:\n\s+received\s+\d+/)
  })

  test('a stopped agent: the CLI says how to start it again, and that command does', async () => {
    const pid = Number(readFileSync('/run/swarmnet/n1.pid', 'utf8'))
    process.kill(pid, 'SIGTERM')
    await eventually('the agent to stop', () => sh(['kill', '-0', String(pid)]).code !== 0)
    const r = cli('n1', ['network', 'ls'])
    oneLine(r)
    assert.match(r.stderr, /the agent of node 'n1' is not running: start it with `swarmnet agent --node n1 --detach`/)
    // init, the old advice, refuses an initialised node
    assert.match(
      cli(undefined, ['lab', 'exec', 'n1', '--', process.execPath, BIN, 'init', '--node', 'n1']).stderr,
      /already part of a cluster/,
    )

    // the key id in the node's config is the one its gossip seals with, and the one a joiner is given
    const cfgPath = '/var/lib/swarmnet/n1/node.json'
    writeFileSync(cfgPath, JSON.stringify({...JSON.parse(readFileSync(cfgPath, 'utf8')), keyId: 7}))

    const start = cli(undefined, ['lab', 'exec', 'n1', '--', process.execPath, BIN, 'agent', '--node', 'n1', '--detach'])
    assert.equal(start.code, 0, start.stderr)
    assert.match(start.stdout, /agent of node n1 running/)
    ok('n1', ['network', 'ls'])
    const again = cli(undefined, ['lab', 'exec', 'n1', '--', process.execPath, BIN, 'agent', '--node', 'n1', '--detach'])
    oneLine(again)
    assert.match(again.stderr, /the agent of node 'n1' is already running/)

    const token = json<{token: string}>('n1', ['swarm', 'join-token']).token
    joined = true
    const join = joinFromClient('outside', token)
    assert.equal(join.code, 0, join.stderr)
    assert.equal((JSON.parse(readFileSync('/var/lib/swarmnet/outside/node.json', 'utf8')) as {keyId: number}).keyId, 7)
    // gossip sealed under id 7 goes both ways: a network made after the join reaches the joiner,
    // and the joiner's push-pulls open at the manager
    ok('n1', ['network', 'create', 'late'])
    await eventually('outside to learn of a network made after it joined', () =>
      json<{name: string}[]>('outside', ['network', 'ls']).some((n) => n.name === 'late'),
    )
    const stats = () => json<{gossip: Record<string, number>}>('n1', ['info']).gossip
    await eventually('n1 to receive from outside', () => stats().received > 0)
    assert.equal(stats().decryptFailed, 0)
  })
})
