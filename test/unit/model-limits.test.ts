import assert from 'node:assert/strict'
import {test} from 'node:test'
import {parseCpus, parseMemory, parseUser, sandboxSpec, sandboxSpecProblem} from '../../src/model/limits.js'

test('--limit-memory: binary units as docker spells them', () => {
  assert.equal(parseMemory('64M'), 64 * 1024 * 1024)
  assert.equal(parseMemory('64m'), 64 * 1024 * 1024)
  assert.equal(parseMemory('64MB'), 64 * 1024 * 1024)
  assert.equal(parseMemory('64MiB'), 64 * 1024 * 1024)
  assert.equal(parseMemory('1.5g'), 1.5 * 1024 ** 3)
  assert.equal(parseMemory('8192k'), 8 * 1024 * 1024)
  assert.equal(parseMemory('6291456'), 6 * 1024 * 1024)
  for (const bad of ['', 'M', '64X', '-64M', '64 MM', '0x40M', '1e9', '64M '.repeat(2)])
    assert.throws(() => parseMemory(bad), /invalid --limit-memory/, bad)
  assert.throws(() => parseMemory('5M'), /minimum is 6M/)
  assert.throws(() => parseMemory('99999999999999999999t'), /invalid --limit-memory/)
})

test('--limit-cpu: CPUs to nano CPUs, 0.01 to 1024', () => {
  assert.equal(parseCpus('0.5'), 500_000_000)
  assert.equal(parseCpus('2'), 2_000_000_000)
  assert.equal(parseCpus('0.01'), 10_000_000)
  assert.equal(parseCpus('.5'), 500_000_000)
  for (const bad of ['', '0', '0.001', 'abc', '-1', '1025', '1,5', '5.', '1e1', 'Infinity'])
    assert.throws(() => parseCpus(bad), /invalid --limit-cpu/, bad)
})

test('--user: UID[:GID] or NAME[:GROUP], nothing else', () => {
  for (const good of ['1000', '1000:1000', 'www-data', 'www-data:www-data', 'nobody:65534', '0'])
    assert.equal(parseUser(good), good)
  for (const bad of ['', ':', '1000:', ':1000', 'a:b:c', 'ro ot', '-x', '../etc', '4294967295', 'a;b'])
    assert.throws(() => parseUser(bad), /invalid --user/, bad)
})

test('the stored form, and its check for values that arrive by gossip', () => {
  const spec = sandboxSpec({user: '1000:1000', limitMemory: '64M', limitCpu: '0.5'})
  assert.deepEqual(spec, {user: '1000:1000', limits: {memoryBytes: 64 * 1024 * 1024, nanoCpus: 500_000_000}})
  assert.deepEqual(sandboxSpec({}), {})
  assert.equal(sandboxSpecProblem(spec), undefined)
  assert.equal(sandboxSpecProblem({}), undefined)
  assert.match(sandboxSpecProblem({user: 7})!, /user/)
  assert.match(sandboxSpecProblem({user: 'a:b:c'})!, /invalid --user/)
  assert.match(sandboxSpecProblem({limits: []})!, /limits/)
  assert.match(sandboxSpecProblem({limits: {memoryBytes: 1}})!, /memoryBytes/)
  assert.match(sandboxSpecProblem({limits: {nanoCpus: 0.5}})!, /nanoCpus/)
})
