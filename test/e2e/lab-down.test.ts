import assert from 'node:assert/strict'
import {existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {after, test} from 'node:test'
import {labDown, labUp} from '../../src/lab/lab.js'
import {LAB_STATE_FILE, nodePidFile, nodeStateDir, RUN_DIR} from '../../src/lab/topology.js'
import {addNetns, delNetns, listNetns} from '../../src/sys/netns.js'
import {listTaskNetns, taskNetnsName} from '../../src/tasks/runner.js'
import {cli, leftovers, ok, sh} from './helpers.js'

let ours = false

after(async () => {
  if (ours) await labDown()
})

test('a failed lab up says how to clean up, and lab down removes the partial lab', async () => {
  assert.equal(existsSync(LAB_STATE_FILE), false, 'a lab is up already; not touching it')
  ours = true
  await assert.rejects(
    labUp({
      nodes: 2,
      startNode: async (n) => {
        if (n.name === 'n2') throw new Error('agent did not start')
      },
    }),
    /lab up: agent did not start .*swarmnet lab down/,
  )
  assert.ok(existsSync(LAB_STATE_FILE))
  const removed = await labDown()
  assert.ok(removed.includes('netns sn-lab-n2'))
  assert.deepEqual(listNetns('sn-lab-'), [])
})

test('lab down works when half the lab is gone (no state file, some namespaces missing)', async () => {
  await labUp({nodes: 2, startNode: async () => undefined})
  // What a node and its tasks leave behind.
  await addNetns('sn-n2-deadbeef')
  mkdirSync(nodeStateDir('n2'), {recursive: true})
  mkdirSync(RUN_DIR, {recursive: true})
  writeFileSync(nodePidFile('n2'), '999999\n')
  await delNetns('sn-lab-n1')
  await delNetns('sn-lab-client')
  assert.ok(existsSync(LAB_STATE_FILE))
  // rm the state file by hand: down must still find the rest from the namespaces.
  await import('node:fs').then((fs) => fs.rmSync(LAB_STATE_FILE))
  const removed = await labDown()
  for (const r of ['netns sn-n2-deadbeef', 'netns sn-lab-n2', 'netns sn-lab-sw', nodeStateDir('n2'), nodePidFile('n2')]) {
    assert.ok(removed.includes(r), `${r} not in ${removed.join(', ')}`)
  }
  assert.deepEqual(listNetns('sn-lab-'), [])
  assert.deepEqual(listNetns('sn-n2-'), [])
  assert.deepEqual(await labDown(), [])
})

test('what lab down cannot remove makes it fail with one line; a later lab down finishes the job', async () => {
  assert.equal(existsSync(LAB_STATE_FILE), false, 'a lab is up already; not touching it')
  ours = true
  await labUp({nodes: 1, startNode: async () => undefined})
  // A mount point inside the node's state cannot be removed while mounted.
  const busy = `${nodeStateDir('n1')}/busy`
  mkdirSync(busy, {recursive: true})
  assert.equal(sh(['mount', '-t', 'tmpfs', 'tmpfs', busy]).code, 0)
  try {
    const r = cli(undefined, ['lab', 'down'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /^swarmnet: lab down: .*busy/)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
  } finally {
    sh(['umount', busy])
  }
  const again = cli(undefined, ['lab', 'down'])
  assert.equal(again.code, 0, again.stderr)
  assert.deepEqual(leftovers(), [])
})

test("a node's task namespaces are its own: n1 does not claim those of n1-1", async () => {
  const mine = taskNetnsName('n1', 'aaaaaaaa0000000000000000')
  const other = taskNetnsName('n1-1', 'bbbbbbbb0000000000000000')
  try {
    await addNetns(mine)
    await addNetns(other)
    assert.deepEqual(listTaskNetns('n1'), [mine])
    assert.deepEqual(listTaskNetns('n1-1'), [other])
  } finally {
    await delNetns(mine)
    await delNetns(other)
  }
})

/** Processes whose command line holds this word: the tasks of the test below, wherever they are. */
function withMarker(marker: string): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(marker)
      } catch {
        return false
      }
    })
    .map(Number)
}

test('lab down while the agents are starting tasks leaves nothing, every time', {timeout: 300_000}, (t) => {
  assert.equal(existsSync(LAB_STATE_FILE), false, 'a lab is up already; not touching it')
  ours = true
  for (let round = 1; round <= 3; round++) {
    const marker = `${9000 + round}`
    ok(undefined, ['lab', 'up', '--nodes', '2'])
    ok('n1', ['network', 'create', 'app'])
    ok('n1', ['service', 'create', '--name', 'burst', '--replicas', '6', '--network', 'app', '--', 'sleep', marker])
    // Right away: the agents are creating namespaces, cgroups and processes as lab down runs.
    const down = cli(undefined, ['lab', 'down'])
    assert.equal(down.code, 0, `round ${round}: ${down.stderr}`)
    // How far the agents had got (timing, not asserted): what down found of their tasks.
    t.diagnostic(`round ${round}: removed ${(down.stdout.match(/netns sn-n\d+\./g) ?? []).length} task namespaces`)
    assert.deepEqual(leftovers(), [], `round ${round}`)
    assert.deepEqual(withMarker(marker), [], `round ${round}: task processes still run`)
  }
})
