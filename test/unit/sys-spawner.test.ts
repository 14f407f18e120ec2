// The agent's spawner (src/sys/spawner.ts): commands run through it are its children, not the
// agent's, and behave exactly as when the agent forks them (run()'s output, stdin, environment,
// errors and timeout); background launches get a session of their own and their end is heard;
// the spawner never outlives its owner, SIGKILL included; without one, run() forks as before.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {after, describe, test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {ExecError, launch, processesStarted, run, useSpawner} from '../../src/sys/exec.js'
import {isAlive, procStat} from '../../src/sys/proc.js'
import {Spawner} from '../../src/sys/spawner.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** The session id of pid (field 6 of /proc/pid/stat). */
function sessionOf(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[3])
}

/** What run() gives (or throws) for each case: the same with and without a spawner. */
async function behaviour(noExec: string): Promise<unknown[]> {
  const outcome = (p: Promise<string>) =>
    p.then(
      (out) => ({out}),
      (e: unknown) =>
        e instanceof ExecError
          ? {message: e.message, code: e.code, stderr: e.stderr, argv: e.argv}
          : {other: (e as Error).message},
    )
  process.env.SN_SPAWNER_TEST = 'from the agent, set after the spawner started'
  try {
    return await Promise.all([
      outcome(run(['cat'], 'echoing', {input: 'hello\nworld'})),
      outcome(run(['printf', 'caf\\303\\251 %s', 'ünïcode'], 'printing')),
      outcome(run(['sh', '-c', 'echo "$SN_SPAWNER_TEST"'], 'reading the environment')),
      outcome(
        run(['sh', '-c', 'echo "$A:$SN_SPAWNER_TEST"'], 'reading a given environment', {
          env: {A: 'given', PATH: process.env.PATH},
        }),
      ),
      outcome(run(['sh', '-c', 'echo "  first problem" >&2; echo second >&2; exit 2'], 'doing a thing')),
      outcome(run(['false'], 'failing')),
      outcome(run(['sn-no-such-command'], 'trying')),
      outcome(run([noExec], 'running a file that is no program')),
      outcome(run(['sleep', '5'], 'sleeping', {timeoutMs: 200})),
      outcome(run(['sh', '-c', 'kill -9 $$'], 'dying')),
      outcome(run(['echo', '$(id) ; `x`'], 'echoing')),
      outcome(run(['head', '-c', '300000', '/dev/zero'], 'reading a lot').then((s) => String(s.length))),
      outcome(run(['true'], 'not reading stdin', {input: 'x'.repeat(1 << 20)})),
      outcome(run([], 'nothing')),
    ])
  } finally {
    delete process.env.SN_SPAWNER_TEST
  }
}

describe('the spawner', () => {
  const spawner = new Spawner()
  const dir = mkdtempSync(join(tmpdir(), 'sn-spawner-'))
  const noExec = join(dir, 'not-a-program')
  writeFileSync(noExec, 'data\n', {mode: 0o644})
  after(() => {
    useSpawner(undefined)
    spawner.close()
    rmSync(dir, {recursive: true, force: true})
  })

  let forked: unknown[] = []
  test('without a spawner run() forks as before: a command is our child, counted as a fork', async () => {
    useSpawner(undefined)
    const before = processesStarted()
    assert.equal(await run(['sh', '-c', 'echo $PPID'], 'asking'), `${process.pid}\n`)
    forked = await behaviour(noExec)
    const now = processesStarted()
    // Each case but the empty command started a process.
    assert.equal(now.fork - before.fork, 1 + forked.length - 1)
    assert.equal(now.spawner, before.spawner)
  })

  test("with a spawner a command is the spawner's child, counted as such", async () => {
    useSpawner(spawner)
    const before = processesStarted()
    const ppid = Number(await run(['sh', '-c', 'echo $PPID'], 'asking'))
    assert.equal(ppid, spawner.pid)
    assert.notEqual(ppid, process.pid)
    // Its parent is ours, and it is small.
    assert.equal(procStat(ppid)?.ppid, process.pid)
    const now = processesStarted()
    assert.equal(now.spawner - before.spawner, 1)
    assert.equal(now.fork, before.fork)
  })

  test('output, stdin, environment, errors, exit codes, a missing program and the timeout: as when forked', async () => {
    useSpawner(spawner)
    const through = await behaviour(noExec)
    assert.deepEqual(through, forked)
    // And they are what run() always gave (sys-exec.test.ts says the same without a spawner).
    assert.deepEqual(through[0], {out: 'hello\nworld'})
    assert.deepEqual(through[1], {out: 'café ünïcode'})
    assert.deepEqual(through[2], {out: 'from the agent, set after the spawner started\n'})
    assert.deepEqual(through[3], {out: 'given:\n'})
    assert.equal((through[4] as {message: string}).message, 'doing a thing: first problem')
    assert.equal((through[4] as {code: number}).code, 2)
    assert.match((through[4] as {stderr: string}).stderr, /second/)
    assert.equal((through[5] as {message: string}).message, 'failing: false exited with code 1')
    assert.equal((through[6] as {message: string}).message, 'trying: sn-no-such-command not found')
    assert.equal((through[7] as {message: string}).message, `running a file that is no program: spawn ${noExec} EACCES`)
    assert.equal((through[8] as {message: string}).message, 'sleeping: sleep killed by SIGTERM')
    assert.equal((through[9] as {message: string}).message, 'dying: sh killed by SIGKILL')
    assert.deepEqual(through[10], {out: '$(id) ; `x`\n'})
    assert.deepEqual(through[11], {out: '300000'})
    assert.deepEqual(through[12], {out: ''})
    assert.deepEqual(through[13], {other: 'nothing: empty command'})
  })

  test("commands run in the owner's namespaces and cgroup", async () => {
    useSpawner(spawner)
    for (const ns of ['net', 'mnt', 'pid', 'uts', 'user'])
      assert.equal((await run(['readlink', `/proc/self/ns/${ns}`], 'reading')).trim(), readlinkSync(`/proc/self/ns/${ns}`))
    assert.equal(await run(['cat', '/proc/self/cgroup'], 'reading'), readFileSync('/proc/self/cgroup', 'utf8'))
  })

  test('a background launch gets a session of its own, its output goes to its log, its exit is seen', async () => {
    useSpawner(spawner)
    const log = join(dir, 'task.log')
    let pid = 0
    const done = launch(
      {
        argv: ['sh', '-c', 'echo started; echo oops >&2; sleep 0.3; exit 3'],
        env: {PATH: process.env.PATH},
        logFile: log,
        detached: true,
      },
      (p) => (pid = p),
    )
    await until('its pid', () => pid > 0)
    assert.equal(sessionOf(pid), pid, 'a session leader')
    assert.notEqual(sessionOf(pid), sessionOf(process.pid))
    assert.equal(procStat(pid)?.ppid, spawner.pid)
    const r = await done
    assert.equal(r.code, 3)
    assert.equal(r.error, undefined)
    assert.equal(readFileSync(log, 'utf8'), 'started\noops\n')
    assert.equal(isAlive(pid), false)
    // One that cannot start says why, and is seen as ended all the same.
    const bad = await launch({argv: ['sn-no-such-runtime'], env: {}, logFile: log, detached: true})
    assert.equal(bad.error?.code, 'ENOENT')
  })

  test("a health check's timeout kills its whole process group; its output is the last of both streams", async () => {
    useSpawner(spawner)
    let pid = 0
    const r = await launch(
      {
        argv: ['sh', '-c', 'head -c 10000 /dev/zero | tr "\\0" a; echo err >&2; sleep 30 & sleep 30'],
        env: process.env,
        detached: true,
        timeoutMs: 500,
        killGroup: true,
        merge: true,
        tail: 100,
      },
      (p) => (pid = p),
    )
    assert.equal(r.timedOut, true)
    assert.equal(r.signal, 'SIGKILL')
    assert.equal(r.stdout.length, 100)
    assert.match(r.stdout, /a+err\n$/)
    // The background sleep was in its group: nothing of the group is left.
    await until('the group gone', () => {
      try {
        process.kill(-pid, 0)
        return false
      } catch {
        return true
      }
    })
  })

  test('signals for the process group (Ctrl-C, a stop) leave the spawner to its owner', async () => {
    useSpawner(spawner)
    const pid = spawner.pid!
    process.kill(pid, 'SIGTERM')
    process.kill(pid, 'SIGINT')
    await sleep(200)
    assert.ok(isAlive(pid))
    assert.equal(await run(['echo', 'still here'], 'asking'), 'still here\n')
    assert.equal(spawner.pid, pid)
  })

  test('a spawner that dies fails what it had under way and is replaced by the next command', async () => {
    const own = new Spawner()
    try {
      useSpawner(own)
      const first = own.pid!
      let sleeper = 0
      const under = launch({argv: ['sleep', '30'], env: process.env}, (p) => (sleeper = p))
      await until('the command running', () => sleeper > 0)
      process.kill(first, 'SIGKILL')
      assert.deepEqual((await under).error, {message: 'the spawner exited'})
      process.kill(sleeper, 'SIGKILL')
      assert.equal(Number(await run(['sh', '-c', 'echo $PPID'], 'asking')), own.pid)
      assert.notEqual(own.pid, first)
      assert.equal(own.starts, 2)
    } finally {
      useSpawner(undefined)
      own.close()
    }
  })

  test('the spawner dies with its owner, also when the owner is killed with SIGKILL', async () => {
    const owner = spawn(process.execPath, ['--import', 'tsx', join(HERE, '..', 'fixtures', 'spawner-owner.ts')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let command = 0
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = ''
        owner.stdout.on('data', (d: Buffer) => {
          out += d.toString()
          if (out.includes('\n')) resolve(out)
        })
        owner.on('exit', () => reject(new Error(`the owner exited: ${out}`)))
      })
      const pids = JSON.parse(line) as {spawner: number; command: number}
      command = pids.command
      assert.ok(isAlive(pids.spawner))
      assert.equal(procStat(pids.spawner)?.ppid, owner.pid)
      owner.kill('SIGKILL')
      await until('the spawner gone', () => !isAlive(pids.spawner))
    } finally {
      owner.kill('SIGKILL')
      if (command > 0 && isAlive(command)) process.kill(command, 'SIGKILL')
    }
  })
})
