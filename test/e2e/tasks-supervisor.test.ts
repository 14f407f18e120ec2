import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {after, test} from 'node:test'
import {isAlive, pidExists, procId, procStat, stopProcess} from '../../src/sys/proc.js'
import {FULL_CHECK_EVERY, Supervisor, type SupervisorEvent} from '../../src/tasks/supervisor.js'

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

test(
  'a task that became a zombie is seen exited within FULL_CHECK_EVERY polls, though its pid still exists',
  {timeout: 10_000},
  async () => {
    // sh forks a short sleep, then becomes a long one that never reaps it: the short one stays a zombie.
    const parent = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 1000'], {
      detached: true,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    pids.push(parent.pid!)
    const zombie = Number(
      await new Promise<string>((res) => parent.stdout!.once('data', (b: Buffer) => res(b.toString().trim()))),
    )
    parent.stdout!.destroy()
    parent.unref()
    const events: SupervisorEvent[] = []
    const s = new Supervisor({pollMs: 20, baseBackoffMs: 60_000, onEvent: (e) => events.push(e)})
    supervisors.push(s)
    s.watch('tz', zombie, async () => sleeper())
    s.poll() // the first poll is a full one: alive and running
    assert.equal(events.length, 0)
    await waitFor(() => procStat(zombie)?.state === 'Z')
    assert.ok(pidExists(zombie), 'kill(pid, 0) alone takes a zombie for alive')
    for (let i = 0; i < FULL_CHECK_EVERY && events.length === 0; i++) s.poll()
    assert.deepEqual(events, [{type: 'exited', taskId: 'tz', pid: zombie}])
    s.unwatch('tz')
  },
)

test('a task that is gone is seen exited at the next poll', {timeout: 10_000}, async () => {
  const events: SupervisorEvent[] = []
  const s = new Supervisor({pollMs: 20, baseBackoffMs: 60_000, onEvent: (e) => events.push(e)})
  supervisors.push(s)
  const p = sleeper()
  s.watch('tg', p, async () => sleeper())
  s.poll()
  s.poll() // now between full checks
  process.kill(p, 'SIGKILL')
  await waitFor(() => !pidExists(p))
  s.poll()
  assert.deepEqual(events, [{type: 'exited', taskId: 'tg', pid: p}])
  s.unwatch('tg')
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
