import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {after, test} from 'node:test'
import {isAlive, procId, stopProcess} from '../../src/sys/proc.js'
import {Supervisor, type SupervisorEvent} from '../../src/tasks/supervisor.js'

// Plain local processes (sleep): the supervisor only deals in pids.
const pids: number[] = []
const supervisors: Supervisor[] = []

after(async () => {
  for (const s of supervisors) s.stop()
  for (const p of pids) {
    const id = procId(p)
    if (id) await stopProcess(id)
  }
})

function sleeper(): number {
  const c = spawn('sleep', ['1000'], {detached: true, stdio: 'ignore'})
  c.unref()
  pids.push(c.pid!)
  return c.pid!
}

const waitFor = async (f: () => boolean) => {
  while (!f()) await new Promise((r) => setTimeout(r, 10))
}

function make(events: SupervisorEvent[]): Supervisor {
  const s = new Supervisor({pollMs: 20, baseBackoffMs: 40, maxBackoffMs: 160, onEvent: (e) => events.push(e)})
  supervisors.push(s)
  return s
}

test('adopts a pid started by someone else and restarts it when it dies', {timeout: 10_000}, async () => {
  const events: SupervisorEvent[] = []
  const s = make(events)
  const adopted = sleeper() // as if started by the agent before it restarted
  s.watch('t1', adopted, async () => sleeper(), 4)
  s.start()
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(events.length, 0) // alive: left alone
  process.kill(adopted, 'SIGKILL')
  await waitFor(() => events.some((e) => e.type === 'restarted'))
  const r = events.find((e) => e.type === 'restarted')
  assert.ok(r?.type === 'restarted' && r.restarts === 5 && r.pid !== adopted && isAlive(r.pid))
  assert.deepEqual(s.list(), [{taskId: 't1', pid: r.pid, restarts: 5}])
  s.unwatch('t1')
})

test('failing restarts back off exponentially up to the cap', {timeout: 10_000}, async () => {
  const events: SupervisorEvent[] = []
  const s = make(events)
  const times: number[] = []
  const dead = sleeper()
  process.kill(dead, 'SIGKILL')
  s.watch('t2', dead, async () => {
    times.push(Date.now())
    if (times.length < 5) throw new Error('image missing')
    return sleeper()
  })
  s.start()
  await waitFor(() => events.some((e) => e.type === 'restarted'))
  assert.equal(events.filter((e) => e.type === 'restart-failed').length, 4)
  const gaps = times.slice(1).map((t, i) => t - times[i]!)
  // 80, 160, 160, 160 ms (+ poll jitter): growing, then capped.
  assert.ok(gaps[1]! >= gaps[0]! && gaps[0]! >= 70, `gaps ${gaps.join(',')}`)
  assert.ok(
    gaps.every((g) => g < 160 + 100),
    `gaps ${gaps.join(',')}`,
  )
  s.unwatch('t2')
})

test('an unwatched task is not restarted', {timeout: 5_000}, async () => {
  const events: SupervisorEvent[] = []
  const s = make(events)
  const pid = sleeper()
  let calls = 0
  s.watch('t3', pid, async () => ++calls)
  s.start()
  s.unwatch('t3')
  process.kill(pid, 'SIGKILL')
  await new Promise((r) => setTimeout(r, 150))
  assert.equal(calls, 0)
  assert.deepEqual(events, [])
})
