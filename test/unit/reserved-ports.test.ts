// ip_local_reserved_ports as the kernel reads and writes it (src/dataplane/reserved-ports.ts).
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {formatPortList, parsePortList} from '../../src/dataplane/reserved-ports.js'

test('reads ranges and single ports, writes runs as ranges', () => {
  assert.deepEqual([...parsePortList('')], [])
  assert.deepEqual(
    [...parsePortList('8080,30000-30002\n')].sort((a, b) => a - b),
    [8080, 30000, 30001, 30002],
  )
  assert.equal(formatPortList(new Set([40001, 8080, 40000, 30002, 30000, 30001])), '8080,30000-30002,40000-40001')
  assert.equal(formatPortList(new Set()), '')
})

test('anything else is refused in one line', () => {
  assert.throws(() => parsePortList('80-70'), /ip_local_reserved_ports: cannot read "80-70"/)
  assert.throws(() => parsePortList('70000'), /cannot read/)
  assert.throws(() => parsePortList('a'), /cannot read/)
})
