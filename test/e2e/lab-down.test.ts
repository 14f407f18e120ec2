import assert from 'node:assert/strict'
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import {after, test} from 'node:test'
import {labDown, labUp} from '../../src/lab/lab.js'
import {LAB_STATE_FILE, nodePidFile, nodeStateDir, RUN_DIR} from '../../src/lab/topology.js'
import {addNetns, delNetns, listNetns} from '../../src/sys/netns.js'

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
