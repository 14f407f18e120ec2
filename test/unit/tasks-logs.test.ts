import assert from 'node:assert/strict'
import {mkdtempSync, rmSync, writeFileSync, appendFileSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'
import {readLog, tailOffset} from '../../src/tasks/logs.js'
import {parseMountinfo} from '../../src/sys/cgroup.js'

const dir = mkdtempSync(join(tmpdir(), 'sn-logs-'))
after(() => rmSync(dir, {recursive: true, force: true}))

test('tailOffset: where the last N lines begin, with or without a final newline', () => {
  const f = join(dir, 'a')
  writeFileSync(f, 'one\ntwo\nthree\n')
  const tail = (n?: number) => readFileSync(f, 'utf8').slice(tailOffset(f, n))
  assert.equal(tail(), 'one\ntwo\nthree\n')
  assert.equal(tail(1), 'three\n')
  assert.equal(tail(2), 'two\nthree\n')
  assert.equal(tail(9), 'one\ntwo\nthree\n')
  assert.equal(tail(0), '')
  writeFileSync(f, 'one\ntwo')
  assert.equal(tail(1), 'two')
  assert.equal(tail(2), 'one\ntwo')
  // Longer than one read chunk.
  const big = Array.from({length: 20_000}, (_, i) => `line ${i}`).join('\n') + '\n'
  writeFileSync(f, big)
  assert.equal(tail(3), 'line 19997\nline 19998\nline 19999\n')
  assert.equal(tailOffset(join(dir, 'missing'), 5), 0)
})

test('readLog follows what is appended and ends when the log is removed', async () => {
  const f = join(dir, 'b')
  writeFileSync(f, 'first\n')
  let got = ''
  const r = readLog(f, 0, true, (b) => (got += b.toString()))
  assert.equal(got, 'first\n')
  appendFileSync(f, 'second\n')
  while (!got.includes('second')) await new Promise((x) => setTimeout(x, 20))
  rmSync(f)
  await r.done
  assert.equal(got, 'first\nsecond\n')
})

test('parseMountinfo finds the cgroup2 mount and v1 controllers, with escaped paths', () => {
  const text = [
    '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
    '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    '50 23 0:40 / /mnt/a\\040b rw shared:3 - tmpfs tmpfs rw',
  ].join('\n')
  const m = parseMountinfo(text)
  assert.equal(m.find((x) => x.fstype === 'cgroup2')?.mountpoint, '/sys/fs/cgroup/unified')
  assert.equal(m.find((x) => x.superOptions.split(',').includes('memory'))?.mountpoint, '/sys/fs/cgroup/memory')
  assert.equal(m[3]?.mountpoint, '/mnt/a b')
})
