// The agent's event loop delay as a metric: a callback that holds the loop shows in the next
// scrape's max (and p99), and each scrape starts a new window, so a stall is reported once.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {bareMetrics} from './metrics-fixture.js'
import {EventLoopDelay} from '../../src/metrics/event-loop.js'
import {parseExposition, sumOf} from '../../src/metrics/parse.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('swarmnet_event_loop_delay_seconds: a 300 ms stall is in the next scrape, and only in it; swarmnet_gc_pause_seconds: the collections of the same window', async () => {
  const long: string[] = []
  const loop = new EventLoopDelay(5, {longMs: 0, onLongGc: (what) => long.push(what)})
  try {
    const m = bareMetrics({
      eventLoop: () => loop.window(),
    })
    await sleep(20)
    // Holds the loop as a long placement pass would.
    const until = Date.now() + 300
    while (Date.now() < until);
    await sleep(20)
    const first = parseExposition(await m.text())
    const stat = (e: typeof first, s: string) => sumOf(e, 'swarmnet_event_loop_delay_seconds', {stat: s})
    assert.ok(stat(first, 'max') >= 0.25, `max ${stat(first, 'max')} s after a 300 ms stall`)
    assert.ok(stat(first, 'p50') <= stat(first, 'p99') && stat(first, 'p99') <= stat(first, 'max'))
    // Garbage made meanwhile: its collections are the same window's gc pauses.
    const gc = (e: typeof first, s: string) => sumOf(e, 'swarmnet_gc_pause_seconds', {stat: s})
    let keep: unknown[] = []
    for (let i = 0; i < 2_000_000; i++) keep = i % 1000 === 0 ? [] : [...keep.slice(-10), {i}]
    await sleep(20)
    const churned = parseExposition(await m.text())
    assert.ok(gc(churned, 'max') > 0, 'a collection was seen')
    assert.ok(gc(churned, 'max') <= gc(churned, 'total'))
    // Every pause of at least longMs (0 here) told, with its kind and the heap's size.
    assert.ok(long.length > 0)
    for (const l of long)
      assert.match(l, /^gc: (major|minor|incremental|weak callbacks)(\+\S+)* pause \d+ ms, heap \d+ of \d+ MiB$/)
    const t0 = Date.now()
    await sleep(30)
    const second = parseExposition(await m.text())
    // A new window: no delay in it can be longer than the window itself.
    const window = (Date.now() - t0) / 1000
    assert.ok(stat(second, 'max') <= window + 0.02, `max ${stat(second, 'max')} s in a window of ${window} s`)
  } finally {
    loop.stop()
  }
})

test('swarmnet_event_loop_stall_seconds: a stall of running code is told as ran or waited for a CPU, one of sleeping as off CPU; each of 200 ms or more in a line', async () => {
  const told: string[] = []
  const loop = new EventLoopDelay(5, {onLongStall: (what) => told.push(what)})
  try {
    const m = bareMetrics({
      eventLoop: () => loop.window(),
    })
    const part = (e: ReturnType<typeof parseExposition>, stall: string, p: string) =>
      sumOf(e, 'swarmnet_event_loop_stall_seconds', {stall, part: p})
    await sleep(50)
    await m.text() // a new window
    // Held by running code: runnable throughout, so on a CPU or waiting for one, not off it.
    const until = Date.now() + 300
    while (Date.now() < until);
    await sleep(50)
    const busy = parseExposition(await m.text())
    assert.ok(part(busy, 'longest', 'delay') >= 0.25, `delay ${part(busy, 'longest', 'delay')} s`)
    const onOrWaiting = part(busy, 'longest', 'ran') + part(busy, 'longest', 'waited')
    assert.ok(onOrWaiting >= 0.25, `ran + waited ${onOrWaiting} s of a 300 ms busy stall`)
    assert.ok(part(busy, 'longest', 'off_cpu') < 0.1, `off CPU ${part(busy, 'longest', 'off_cpu')} s while busy`)
    assert.ok(sumOf(busy, 'swarmnet_event_loop_stalls', {}) >= 1)
    assert.ok(part(busy, 'all', 'delay') >= part(busy, 'longest', 'delay'))
    // Held by a blocking wait (as a synchronous syscall would): off the CPU, not running.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300)
    await sleep(50)
    const blocked = parseExposition(await m.text())
    assert.ok(part(blocked, 'longest', 'delay') >= 0.25)
    assert.ok(part(blocked, 'longest', 'off_cpu') >= 0.25, `off CPU ${part(blocked, 'longest', 'off_cpu')} s of a 300 ms wait`)
    assert.ok(part(blocked, 'longest', 'ran') < 0.1, `ran ${part(blocked, 'longest', 'ran')} s while blocked`)
    assert.ok(told.length >= 2, told.join('; '))
    for (const l of told) assert.match(l, /^loop: stall \d+ ms: ran \d+ ms, waited for a CPU \d+ ms, off CPU \d+ ms$/)
    // Each window starts empty.
    const quiet = parseExposition(await m.text())
    assert.equal(sumOf(quiet, 'swarmnet_event_loop_stalls', {}), 0)
  } finally {
    loop.stop()
  }
})
