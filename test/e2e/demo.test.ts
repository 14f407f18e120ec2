// `swarmnet lab demo` as a newcomer runs it (npm run demo), its output not a terminal: every line
// of the story is there, and what each line claims is checked against the lab it leaves up (the
// VIP by name, 6 requests over three tasks, the outside fetch through a node with no task keeping
// the client's address, the dead node's measured delays and its task elsewhere, the node back),
// and the commands it suggests work. The demo brings the lab up itself; the lab always goes after.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {after, before, describe, test} from 'node:test'
import {BIN, cli, json, sh, stateOn} from './helpers.js'
import {labDown} from './lab.js'

interface Task {
  name: string
  node: string
  desiredState: string
  state: string
  addresses: {network: string; ip: string}[]
}
interface Svc {
  vips: {network: string; ip: string}[]
}

const NODES: Record<string, string> = {n1: '172.30.0.11', n2: '172.30.0.12', n3: '172.30.0.13'}
const live = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')

/** The first match of re in out, its groups; fails naming the line that is missing. */
function line(out: string, re: RegExp, what: string): string[] {
  const m = re.exec(out)
  assert.ok(m, `no line for ${what} (${re}) in the demo's output:\n${out}`)
  return m.slice(1)
}

describe('lab demo: the whole story in a 3-node lab, as a user runs it', {timeout: 400_000}, () => {
  let ran = false
  before(() => {
    assert.ok(
      !/sn-lab-/.test(sh(['ip', 'netns', 'list']).stdout),
      'a lab is already up on this machine: `swarmnet lab down` first',
    )
  })
  // The cut link first, should the demo have stopped between cutting and restoring it (n2 or n3).
  after(() => {
    if (ran)
      labDown({
        beforeDown: () => {
          for (const n of ['n2', 'n3']) sh(['ip', '-n', `sn-lab-${n}`, 'link', 'set', 'eth0', 'up'])
        },
      })
  })

  test('each step has its line, true of the lab it leaves up; the lab is whole afterwards', async () => {
    ran = true
    // As a user's shell runs it, piped: no NO_COLOR (which sh() sets), so plain text must come from stdout not being a terminal.
    const env = {...process.env}
    delete env.NO_COLOR
    delete env.FORCE_COLOR
    const r = spawnSync(process.execPath, [BIN, 'lab', 'demo'], {encoding: 'utf8', env, timeout: 300_000})
    const out = r.stdout ?? ''
    console.log(out.replace(/^/gm, '# '))
    assert.equal(r.status, 0, `lab demo failed: ${r.stderr}\n${out}`)
    assert.doesNotMatch(out, /\x1b\[/, 'no terminal escapes in piped output')

    // 1-3: the lab, the overlay, the service with one task per node.
    line(
      out,
      /^1\. lab: 3 nodes.*\n\s+n1 172\.30\.0\.11, n2 172\.30\.0\.12, n3 172\.30\.0\.13; an outside client at 172\.30\.0\.100/m,
      'the lab',
    )
    line(out, /^2\. overlay network demo: 10\.\d+\.\d+\.0\/24, VXLAN VNI \d+/m, 'the overlay')
    const [placed] = line(out, /^3\. service web: 3 replicas.*\n\s+(web\.1 on n\d .*)$/m, 'the service')
    assert.deepEqual([...placed!.matchAll(/on (n\d)/g)].map((m) => m[1]).sort(), ['n1', 'n2', 'n3'], 'one task per node')

    // 4: front's task asks for web by name: the VIP; 6 requests through it over the three tasks.
    const vip = json<Svc>('n1', ['service', 'inspect', 'web']).vips.find((v) => v.network === 'demo')!.ip
    const [frontNode, answer] = line(
      out,
      /^4\. front\.1 on (n\d) \(service front, on demo too\) asks for web by name: dig \+short web -> (\S+), web's VIP$/m,
      'the DNS answer',
    )
    assert.equal(answer, vip, "the name's answer is web's VIP")
    const front = live('front')
    assert.equal(front.length, 1)
    assert.equal(front[0]!.node, frontNode, 'front stays where it was (no node of its died)')
    const [to, spread] = line(out, /^\s+6 requests to web \((\S+)\) with curl: ((?:web\.\d x\d(?:, )?)+)/m, 'the 6 requests')
    assert.equal(to, vip)
    const counts = [...spread!.matchAll(/(web\.\d) x(\d)/g)].map((m) => [m[1]!, Number(m[2])] as const)
    assert.equal(new Set(counts.map(([t]) => t)).size, 3, `over three distinct tasks: ${spread}`)
    // The ports were picked from the front node's table: the data path sends each flow where the table says.
    assert.deepEqual(
      counts.map(([, c]) => c),
      [2, 2, 2],
      `two each, as web's Maglev table sends them: ${spread}`,
    )

    // 5: the outside client through a node with no task of front; the task sees the client itself.
    line(out, /^5\. front is published on port 8080 of every node/m, 'the published port')
    const [addr, idle] = line(
      out,
      /^\s+outside client 172\.30\.0\.100: curl http:\/\/(172\.30\.0\.\d+):8080\/ \((n\d), no task of front\) -> Hostname: front\.1, RemoteAddr: 172\.30\.0\.100:\d+$/m,
      'the outside fetch',
    )
    assert.equal(NODES[idle!], addr)
    assert.notEqual(idle, frontNode, `${idle} runs no task of front`)

    // 6: a node (not n1, the manager, nor front's) killed and cut: the measured delays, and its web task running elsewhere.
    const [dead, downs] = line(
      out,
      /^6\. (n[23]) dies \(kill -9 of its agent, pid \d+; ip -n sn-lab-\1 link set eth0 down\): down on n\d, n\d after (\d+\.\d s, \d+\.\d s)$/m,
      'the node down on the others',
    )
    assert.notEqual(dead, frontNode)
    const others = Object.keys(NODES).filter((n) => n !== dead)
    const [gone, moved, onto, ip, movedIn] = line(
      out,
      /^\s+its endpoints out of their maps on n\d, n\d after (\d+\.\d s, \d+\.\d s); (web\.\d) running again on (n\d) \((\S+)\) after (\d+\.\d) s/m,
      'the endpoints gone and the task moved',
    )
    for (const d of [...downs!.split(', '), ...gone!.split(', ')]) assert.ok(parseFloat(d) > 0, d)
    assert.ok(parseFloat(movedIn!) > 0)
    assert.ok(others.includes(onto!), `${moved} moved to ${onto}, a live node`)
    const web = live('web')
    assert.equal(web.length, 3)
    assert.ok(!web.some((t) => t.node === dead), `no web task on ${dead} any more`)
    const mover = web.find((t) => t.name === moved)!
    assert.equal(mover.node, onto)
    assert.equal(mover.addresses.find((a) => a.network === 'demo')!.ip, ip)

    // 7: the node back and ready; 8: where to go next, and those commands work.
    line(
      out,
      new RegExp(`^7\\. ${dead} back: link up, agent restarted .*ready on the others after \\d+\\.\\d s$`, 'm'),
      'the node back',
    )
    line(
      out,
      new RegExp(
        `^\\s+it stopped its old ${moved!.replace('.', '\\.')}, replaced while it was away: out of every node's maps after \\d+\\.\\d s$`,
        'm',
      ),
      'the stale task stopped',
    )
    for (const n of others) assert.equal(await stateOn(n, dead!), 'ready')
    const [pins, host, taskExec] = line(
      out,
      /^8\. next: SWARMNET_HOST=n1 swarmnet service ps web; swarmnet inspect lb web --host (n\d); SWARMNET_HOST=(n\d) swarmnet task exec front\.1 -- (curl -s web)$/m,
      'where to go next',
    )
    line(out, /^\s+the lab stays up \(demo: \d+\.\d s\); swarmnet lab down removes it and everything it made$/m, 'lab down')
    const tried = cli(host, ['task', 'exec', 'front.1', '--', ...taskExec!.split(' ')])
    assert.equal(tried.code, 0, tried.stderr)
    assert.match(tried.stdout, /^Hostname: web\.\d$/m)
    assert.match(cli('n1', ['service', 'ps', 'web']).stdout, /web\.1/)
    const lb = cli(undefined, ['inspect', 'lb', 'web', '--host', pins!])
    assert.equal(lb.code, 0, lb.stderr)
    assert.equal(lb.stdout.match(/ web\.\d /g)?.length, 3, lb.stdout)
  })
})
