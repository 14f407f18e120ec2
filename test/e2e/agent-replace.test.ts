// `swarmnet agent --replace --detach` on a lab node: a new agent takes the node over from the
// running one while a client asks the API every 50 ms. Every request is answered (the old agent
// serves reads until the new one's socket takes its place); the new agent answers reads and
// writes after; the old one exits. The longest time between two answers is measured and printed
// (not asserted: a loaded machine makes any bound a guess).
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {request} from 'node:http'
import {describe, test} from 'node:test'
import {BIN, eventually, ok, sh} from './helpers.js'
import {withLab} from './lab.js'

const SOCKET = '/run/swarmnet/n1.sock'
const agentPid = () => Number(readFileSync('/run/swarmnet/n1.pid', 'utf8').trim())
const alive = (pid: number) => sh(['kill', '-0', String(pid)]).code === 0

/** GET /info over the socket: the answering agent's pid, or the error. */
function info(): Promise<{pid?: number; error?: string}> {
  return new Promise((resolve) => {
    const req = request({socketPath: SOCKET, method: 'GET', path: '/info', timeout: 10_000}, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => {
        if (res.statusCode !== 200) return resolve({error: `HTTP ${res.statusCode}: ${text}`})
        resolve({pid: (JSON.parse(text) as {pid: number}).pid})
      })
    })
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')))
    req.on('error', (e) => resolve({error: e.message}))
    req.end()
  })
}

describe('agent --replace, 1-node lab', {timeout: 300_000}, () => {
  withLab(['--nodes', '1'])

  test('hands the node over with every API request answered; the old agent exits, the new one writes', async () => {
    const before = agentPid()
    const answers: Array<{at: number; pid?: number; error?: string}> = []
    let polling = true
    const poller = (async () => {
      while (polling) {
        const r = await info()
        answers.push({at: Date.now(), ...r})
        await new Promise((res) => setTimeout(res, 50))
      }
    })()
    await new Promise((r) => setTimeout(r, 500))
    const started = Date.now()
    const replace = spawn(
      process.execPath,
      [BIN, 'lab', 'exec', 'n1', '--', process.execPath, BIN, 'agent', '--node', 'n1', '--replace', '--detach'],
      {
        env: {...process.env, NO_COLOR: '1'},
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let out = ''
    replace.stdout.on('data', (d: Buffer) => (out += d.toString()))
    replace.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const code = await new Promise<number | null>((r) => replace.once('exit', r))
    const tookOver = Date.now()
    assert.equal(code, 0, out)
    await eventually('the old agent exits', () => !alive(before), 30_000)
    await new Promise((r) => setTimeout(r, 500))
    polling = false
    await poller

    const after = agentPid()
    assert.notEqual(after, before)
    const failed = answers.filter((a) => a.error)
    assert.deepEqual(failed, [], 'every request answered')
    assert.ok(answers.some((a) => a.pid === before) && answers.some((a) => a.pid === after), 'both agents answered')
    // Once the new agent answered, the old one never again.
    const first = answers.findIndex((a) => a.pid === after)
    assert.ok(answers.slice(first).every((a) => a.pid === after))
    // Writes are refused from the old agent's handover to the new agent's start: the two log lines.
    const log = readFileSync('/var/lib/swarmnet/n1/agent.log', 'utf8').split('\n')
    const stamp = (re: RegExp) =>
      Date.parse(
        log
          .filter((l) => re.test(l))
          .at(-1)
          ?.split(' ')[0] ?? '',
      )
    const writesRefusedMs = stamp(/ready at/) - stamp(/handover: stopping all but the API/)
    let maxGap = 0
    for (let i = 1; i < answers.length; i++) maxGap = Math.max(maxGap, answers[i]!.at - answers[i - 1]!.at)
    console.log(
      `# agent --replace: ${answers.length} requests, none failed; longest time between two answers ${maxGap} ms ` +
        `(polled every 50 ms); the new agent answered ${answers[first]!.at - started} ms after --replace started, ` +
        `which returned after ${tookOver - started} ms; writes were refused for ${writesRefusedMs} ms (handover to ready, agent log)`,
    )
    // The new agent is the node's agent: it takes writes.
    ok('n1', ['network', 'create', 'after-replace'])
    assert.match(ok('n1', ['network', 'ls']), /after-replace/)
  })
})
