import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import {after, before, test} from 'node:test'
import {labDown, labExec, labStatus, labUp, LabAlreadyUpError} from '../../src/lab/lab.js'
import {LAB_STATE_FILE} from '../../src/lab/topology.js'
import {run} from '../../src/sys/exec.js'
import {listLinks} from '../../src/sys/link.js'
import {execIn, listNetns} from '../../src/sys/netns.js'

const started: string[] = []
let ours = false

// A lab that is already up belongs to someone else: labUp refuses it and we leave it alone.
before(async () => {
  await labUp({nodes: 3, startNode: async (n) => void started.push(n.name)})
  ours = true
})

after(async () => {
  if (ours) await labDown()
})

const ping = (ns: string, to: string) => execIn(ns, ['ping', '-c1', '-W1', to], `pinging ${to} from ${ns}`)

test('nodes are started in order', () => {
  assert.deepEqual(started, ['n1', 'n2', 'n3'])
})

test('n1 reaches n2 and the client reaches n3 over the switch', async () => {
  await ping('sn-lab-n1', '172.30.0.12')
  await ping('sn-lab-client', '172.30.0.13')
})

test('nodes forward, their underlay has the right address and MTU', async () => {
  const fwd = await execIn('sn-lab-n2', ['cat', '/proc/sys/net/ipv4/ip_forward'])
  assert.equal(fwd.trim(), '1')
  const [eth0] = await listLinks('eth0', 'sn-lab-n2')
  assert.equal(eth0?.mtu, 1500)
})

test('lab status', async () => {
  const s = await labStatus()
  assert.equal(s.up, true)
  assert.equal(s.switch.exists, true)
  assert.equal(s.client.exists, true)
  assert.deepEqual(
    s.nodes.map((n) => [n.name, n.netnsExists, n.underlay]),
    [
      ['n1', true, ['172.30.0.11/24']],
      ['n2', true, ['172.30.0.12/24']],
      ['n3', true, ['172.30.0.13/24']],
    ],
  )
  assert.equal(s.nodes[0]?.agentAlive, false) // no agent in this test
})

test('a second lab up is refused', async () => {
  await assert.rejects(labUp({nodes: 1, startNode: async () => undefined}), LabAlreadyUpError)
})

test('lab exec returns the exit code and sets SWARMNET_HOST', async () => {
  assert.equal(await labExec('n2', ['sh', '-c', 'test "$SWARMNET_HOST" = n2']), 0)
  assert.equal(await labExec('client', ['sh', '-c', 'exit 3']), 3)
})

test('lab down removes everything, twice is fine', async () => {
  // Something left running inside a node must not keep its namespace alive.
  await run(['nsenter', '--net=/run/netns/sn-lab-n1', '--', 'sh', '-c', 'sleep 1000 >/dev/null 2>&1 &'], 'starting a straggler')
  const removed = await labDown()
  assert.ok(removed.includes('netns sn-lab-sw'))
  assert.ok(removed.some((r) => r.startsWith('process ')))
  assert.deepEqual(listNetns('sn-lab-'), [])
  assert.deepEqual(await listLinks('sn-lab-'), [])
  assert.equal(existsSync(LAB_STATE_FILE), false)
  assert.deepEqual(await labDown(), [])
  const s = await labStatus()
  assert.equal(s.up, false)
  assert.deepEqual(s.nodes, [])
})
