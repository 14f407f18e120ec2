/**
 * How long a task's start takes: startTaskProcess of `sleep infinity` in a network namespace of
 * its own (no links), from the call to its PID 1 found, then a stop; median of N (default 20).
 * Run as root: `node --import tsx bench/task-start.ts [N]`.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {addNetns, delNetns} from '../src/sys/netns.js'
import {startTaskProcess, stopTaskProcess} from '../src/tasks/runner.js'
import {removeIfEmpty, nodeCgroupDirs} from '../src/sys/cgroup.js'
import {removeNodeContainers} from '../src/tasks/container.js'

const NODE = 'snbench'
const NETNS = 'sn-snbench.00000000'
const n = Number(process.argv[2] ?? 20)
const dir = mkdtempSync(join(tmpdir(), 'sn-start-'))
const times: number[] = []
await addNetns(NETNS)
try {
  for (let i = 0; i < n; i++) {
    const id = (0xabc000 + i).toString(16).padStart(24, '0')
    const t0 = performance.now()
    const p = await startTaskProcess({
      node: NODE,
      taskId: id,
      netns: NETNS,
      name: `b.${i}`,
      ips: [],
      argv: ['sleep', 'infinity'],
      dir: join(dir, id),
    })
    times.push(performance.now() - t0)
    await stopTaskProcess(NODE, id, p, 0, 'SIGKILL')
  }
} finally {
  await removeNodeContainers(NODE)
  await delNetns(NETNS)
  removeIfEmpty(nodeCgroupDirs(NODE).v2)
  rmSync(dir, {recursive: true, force: true})
}
times.sort((a, b) => a - b)
console.log(
  `task start, ${n} runs: median ${times[Math.floor(n / 2)]!.toFixed(1)} ms, min ${times[0]!.toFixed(1)}, max ${times[n - 1]!.toFixed(1)}`,
)
