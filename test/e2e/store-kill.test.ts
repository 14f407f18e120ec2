// An acknowledged write survives kill -9 of the agent that acknowledged it:
// 8 clients create networks through a real agent's API (1,000 in all) and the
// agent is killed with SIGKILL mid-stream; after a restart every network whose
// create was answered is there. The store group-commits: the agent's own
// counters show many writes per fdatasync.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {closeSync, openSync, readFileSync} from 'node:fs'
import {describe, test} from 'node:test'
import {AgentClient} from '../../src/agent/client.js'
import type {LogStats} from '../../src/store/log.js'
import {BIN, cli, eventually, json} from './helpers.js'
import {withLab} from './lab.js'

type Info = {store: {log?: LogStats}}

describe('store durability: kill -9 of a real agent during 1,000 writes', {timeout: 600_000}, () => {
  withLab(['--nodes', '1'])

  test('every network whose create was answered is there after kill -9 and a restart', async () => {
    const client = new AgentClient('n1')
    const acked: string[] = []
    const failed: string[] = []
    let next = 0
    let killed = false
    const pid = Number(readFileSync('/run/swarmnet/n1.pid', 'utf8').trim())
    const t0 = Date.now()
    const worker = async () => {
      while (next < 1000) {
        const name = `dur${next++}`
        try {
          await client.post('/networks', {name})
          acked.push(name)
          if (acked.length === 400 && !killed) {
            killed = true
            process.kill(pid, 'SIGKILL')
          }
        } catch {
          failed.push(name)
        }
      }
    }
    await Promise.all(Array.from({length: 8}, worker))
    const secs = (Date.now() - t0) / 1000
    assert.ok(killed, 'the agent was killed mid-stream')
    assert.ok(failed.length > 0, 'writes after the kill failed: it was mid-stream')
    console.log(
      `# ${acked.length} creates acknowledged before/around the kill (${failed.length} failed after it), ${secs.toFixed(1)} s`,
    )
    const gone = () => {
      try {
        return /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
      } catch {
        return true
      }
    }
    await eventually('the agent is gone (or a zombie)', gone)

    const log = openSync('/var/lib/swarmnet/n1/agent.log', 'a')
    const a = spawn('nsenter', ['--net=/run/netns/sn-lab-n1', '--', process.execPath, BIN, 'agent', '--node', 'n1'], {
      detached: true,
      stdio: ['ignore', log, log],
    })
    a.unref()
    closeSync(log)
    await eventually('the agent answers again', () => cli('n1', ['info']).code === 0, 60_000)
    const names = new Set(json<{name: string}[]>('n1', ['network', 'ls']).map((n) => n.name))
    const lost = acked.filter((n) => !names.has(n))
    assert.deepEqual(lost, [], 'every acknowledged create survived kill -9')
    const extra = [...names].filter((n) => n.startsWith('dur') && !acked.includes(n))
    console.log(
      `# after restart: all ${acked.length} acknowledged networks present (${extra.length} unacknowledged ones made it too)`,
    )

    // The store commits in batches: many writes per fdatasync under concurrent clients.
    const before = (await client.get<Info>('/info')).store.log!
    const more = Array.from({length: 8}, (_, w) =>
      (async () => {
        for (let i = 0; i < 25; i++) await client.post('/networks', {name: `more${w}x${i}`})
      })(),
    )
    await Promise.all(more)
    const now = (await client.get<Info>('/info')).store.log!
    const writes = now.appended - before.appended
    const commits = now.commits - before.commits
    console.log(`# 200 creates by 8 clients: ${writes} entries in ${commits} commits, largest batch ${now.largestBatch}`)
    assert.ok(writes >= 200)
    assert.ok(commits < writes, 'several writes share a commit')
  })
})
