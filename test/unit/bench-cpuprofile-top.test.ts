// bench/cpuprofile-top.ts: only stretches in which the loop never went idle for >= min-ms count,
// and within them a function's self time is its time on top of the stack, its total its time
// anywhere on it (once per sample, recursion included).
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {loopHolders, type CpuProfileJson} from '../../bench/cpuprofile-top.js'

const frame = (functionName: string, url = '', lineNumber = -1) => ({functionName, url, lineNumber, columnNumber: 0})

/** root -> (idle); root -> outer -> inner -> inner (recursion); samples of 1 ms each. */
function profile(run: number[]): CpuProfileJson {
  const nodes = [
    {id: 1, callFrame: frame('(root)'), children: [2, 3]},
    {id: 2, callFrame: frame('(idle)')},
    {id: 3, callFrame: frame('outer', 'file:///x/src/agent/agent.js', 9), children: [4]},
    {id: 4, callFrame: frame('inner', 'file:///x/src/sys/exec.js', 0), children: [5]},
    {id: 5, callFrame: frame('inner', 'file:///x/src/sys/exec.js', 0)},
  ]
  return {nodes, startTime: 0, endTime: run.length * 1000, samples: run, timeDeltas: run.map(() => 1000)}
}

test('counts only stretches of >= min-ms without idle, self and total per function', () => {
  // 5 idle, 30 busy (10 outer, 10 inner, 10 inner-in-inner), 5 idle, 10 busy outer, 5 idle
  const run = [
    ...Array<number>(5).fill(2),
    ...Array<number>(10).fill(3),
    ...Array<number>(10).fill(4),
    ...Array<number>(10).fill(5),
    ...Array<number>(5).fill(2),
    ...Array<number>(10).fill(3),
    ...Array<number>(5).fill(2),
  ]
  const h = loopHolders(profile(run), 20)
  assert.equal(h.stretches, 1)
  assert.equal(h.stretchMs, 30)
  assert.equal(h.longestMs, 30)
  assert.equal(h.busyMs, 40)
  const row = (name: string) => h.top.find((r) => r.site.startsWith(name))!
  assert.equal(row('outer').site, 'outer (src/agent/agent.js:10)')
  assert.deepEqual([row('outer').selfMs, row('outer').totalMs], [10, 30])
  // inner is on the stack in 20 samples (twice in 10 of them: counted once), on top in 20.
  assert.deepEqual([row('inner').selfMs, row('inner').totalMs], [20, 20])
  // With a lower threshold the short stretch counts too.
  assert.equal(loopHolders(profile(run), 5).stretchMs, 40)
})
