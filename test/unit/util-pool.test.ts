import assert from 'node:assert/strict'
import {test} from 'node:test'
import {setTimeout as sleep} from 'node:timers/promises'
import {forEachLimited} from '../../src/util/pool.js'

test('forEachLimited: every item once, never more than the limit at a time', async () => {
  let now = 0
  let most = 0
  const seen: number[] = []
  await forEachLimited([...Array(20).keys()], 4, async (i) => {
    now++
    most = Math.max(most, now)
    await sleep(i % 3)
    seen.push(i)
    now--
  })
  assert.equal(most, 4)
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    [...Array(20).keys()],
  )
})

test('forEachLimited: a failure does not stop the others; errors come back once all settled', async () => {
  const done: number[] = []
  await assert.rejects(
    forEachLimited([1, 2, 3, 4, 5], 2, async (i) => {
      await sleep(1)
      if (i % 2 === 0) throw new Error(`item ${i}`)
      done.push(i)
    }),
    (e: unknown) => e instanceof AggregateError && e.errors.length === 2,
  )
  assert.deepEqual(done.sort(), [1, 3, 5])
  await assert.rejects(
    forEachLimited([1], 1, async () => {
      throw new Error('only')
    }),
    /^Error: only$/,
  )
  await assert.rejects(
    forEachLimited([1], 0, async () => undefined),
    /pool limit 0/,
  )
})
