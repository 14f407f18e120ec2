import assert from 'node:assert/strict'
import {test} from 'node:test'
import {ExecError, run} from '../../src/sys/exec.js'
import {isAlive, procStat} from '../../src/sys/proc.js'

test('run resolves to stdout and passes stdin', async () => {
  assert.equal(await run(['cat'], 'echoing', {input: 'hello'}), 'hello')
})

test('a failure is one line: what we were doing, then the first stderr line', async () => {
  const err = await run(['sh', '-c', 'echo "  first problem" >&2; echo second >&2; exit 2'], 'doing a thing').catch(
    (e: unknown) => e,
  )
  assert.ok(err instanceof ExecError)
  assert.equal(err.message, 'doing a thing: first problem')
  assert.equal(err.code, 2)
  assert.match(err.stderr, /second/)
})

test('silent failures and missing commands still say something', async () => {
  await assert.rejects(run(['false'], 'failing'), {message: 'failing: false exited with code 1'})
  await assert.rejects(run(['sn-no-such-command'], 'trying'), {message: 'trying: sn-no-such-command not found'})
})

test('arguments are never interpreted by a shell', async () => {
  assert.equal(await run(['echo', '$(id) ; `x`'], 'echoing'), '$(id) ; `x`\n')
})

test('isAlive sees ourselves and guards against a reused pid', () => {
  const st = procStat(process.pid)
  assert.ok(st)
  assert.ok(isAlive(process.pid))
  assert.ok(isAlive(process.pid, st.startTime))
  assert.equal(isAlive(process.pid, st.startTime + 1), false)
  assert.equal(isAlive(2 ** 22 + 1), false)
})
