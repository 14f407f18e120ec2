// Progress of lab up, join and lab down, as a person and a script see it: listr2's rendering on
// a terminal (a real pseudo-terminal from `script`), plain lines on a pipe, nothing but the
// result with --json (a terminal or not), and never anything on stderr but an error.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {after, before, describe, test} from 'node:test'
import {BIN, cli, json, sh} from './helpers.js'
import {labDown, removeOutsideNode} from './lab.js'

/** Runs argv on a pseudo-terminal (util-linux script): what a person at a terminal sees. */
function onTerminal(argv: string[], timeoutMs = 180_000): {code: number; out: string} {
  const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
  // script's terminal has no size until given one, as a terminal window has
  const r = spawnSync('script', ['-qefc', `stty cols 120 rows 40; exec ${quoted}`, '/dev/null'], {
    encoding: 'utf8',
    env: {...process.env, TERM: 'xterm', NO_COLOR: '1', COLUMNS: '120'},
    timeout: timeoutMs,
  })
  return {code: r.status ?? -1, out: (r.stdout ?? '').replace(/\r/g, '')}
}

const ESC = '\u001b'
const JOIN = ['--node', 'outside', '--advertise-addr', 'eth0', '172.30.0.11:7946']
const inClient = (argv: string[]) => ['nsenter', '--net=/run/netns/sn-lab-client', '--', process.execPath, BIN, ...argv]

describe('progress of lab up, join and lab down', {timeout: 600_000}, () => {
  before(() => {
    assert.ok(!/sn-lab-/.test(sh(['ip', 'netns', 'list']).stdout), 'a lab is already up on this machine')
  })

  // the tests bring the lab up themselves (its progress is what they look at); it goes down here
  after(() =>
    labDown({
      beforeDown: () => sh(inClient(['leave', '--host', 'outside'])),
      afterDown: () => removeOutsideNode('outside'),
    }),
  )

  test('lab up on a pipe: plain lines, each step named, then the nodes; stderr empty', () => {
    const r = cli(undefined, ['lab', 'up', '--nodes', '2'], 180_000)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, '')
    assert.ok(!r.stdout.includes(ESC), 'no terminal codes on a pipe')
    const lines = r.stdout.split('\n')
    assert.equal(lines[0], 'Building a 2-node lab ...')
    assert.ok(
      lines.some((l) => /^ {2}switch sn-lab-\S+$/.test(l)),
      r.stdout,
    )
    for (const l of ['  n1: swarmnet init', '  n2: swarmnet join']) assert.ok(lines.includes(l), `${l} in\n${r.stdout}`)
    const done = lines.findIndex((l) => /^Building a 2-node lab: done \(\d+\.\d s\)$/.test(l))
    assert.ok(done > 0, r.stdout)
    assert.match(lines[done + 1]!, /^n1 {2}172\.30\.0\.11 {2}\(netns sn-lab-n1\)$/)
    // lab up returns once the manager sees every node ready, so a service created next is
    // placed on all of them: node ls right after, with no wait, already says so.
    assert.ok(lines.includes('  every node ready on n1'), r.stdout)
    const nodes = json<{name: string; state: string; agent: string}[]>('n1', ['node', 'ls'])
    for (const n of ['n1', 'n2'])
      assert.ok(
        nodes.some((v) => v.name === n && v.state === 'ready' && v.agent === 'up'),
        JSON.stringify(nodes),
      )
  })

  test('join on a terminal: listr2 renders the steps; with --json only the JSON, on a terminal too', () => {
    const token = json<{token: string}>('n1', ['swarm', 'join-token']).token
    const r = onTerminal(inClient(['join', '--token', token, ...JOIN]))
    assert.equal(r.code, 0, r.out)
    // listr2's default renderer: the finished steps with their tick, then the result.
    assert.match(r.out, /✔ Joining the cluster through 172\.30\.0\.11:7946/)
    assert.match(r.out, /✔ Starting the agent and the data plane/)
    assert.ok(r.out.includes(ESC), 'rendered with terminal codes (cursor moves)')
    assert.ok(!r.out.includes('Joining the cluster through 172.30.0.11:7946 ...'), 'not the plain lines')
    assert.match(r.out, /This node joined a swarm as a worker\.\n/)
    // Leave and join again with --json, still on a terminal: nothing but JSON.
    assert.equal(sh(inClient(['leave', '--host', 'outside'])).code, 0)
    const j = onTerminal(inClient(['join', '--token', token, ...JOIN, '--json']))
    assert.equal(j.code, 0, j.out)
    assert.deepEqual(Object.keys(JSON.parse(j.out) as object).sort(), ['advertiseAddr', 'node', 'nodeId', 'rejoined', 'role'])
  })

  test('lab down on a terminal: listr2 renders it; lab up --json on a pipe: only JSON; lab down on a pipe: plain lines', () => {
    const down = onTerminal([process.execPath, BIN, 'lab', 'down'])
    assert.equal(down.code, 0, down.out)
    assert.match(down.out, /✔ Removing the lab/)
    assert.ok(down.out.includes(ESC))
    assert.match(down.out, /Removed: .*netns sn-lab-n1/)
    const up = cli(undefined, ['lab', 'up', '--nodes', '1', '--json'], 180_000)
    assert.equal(up.code, 0, up.stderr)
    assert.equal(up.stderr, '')
    assert.equal((JSON.parse(up.stdout) as {nodes: unknown[]}).nodes.length, 1)
    const plain = cli(undefined, ['lab', 'down'])
    assert.equal(plain.code, 0, plain.stderr)
    const lines = plain.stdout.split('\n')
    assert.deepEqual(lines.slice(0, 6), [
      'Removing the lab ...',
      '  stopping agents and tasks',
      '  removing containers',
      '  removing cgroups',
      '  removing namespaces',
      '  removing pins and state',
    ])
    assert.match(lines[6]!, /^Removing the lab: done \(\d+\.\d s\)$/)
    assert.match(lines[7]!, /^Removed: /)
  })
})
