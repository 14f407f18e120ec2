// Task ids become paths on every node (the task's directory, its cgroup): one
// rule, 24 hex digits (src/model/ids.ts), held where they come in. A manager's
// task records with the ids `.` and `..`, gossiped to a node whose store checks
// keys as the agent's does, are refused, records and deletes alike; and the
// path helpers refuse to make a path of them.
import assert from 'node:assert/strict'
import {after, test} from 'node:test'
import {keyProblem, valueProblem} from '../../src/model/shape.js'
import {taskDir} from '../../src/tasks/logs.js'
import {taskCgroup} from '../../src/tasks/runner.js'
import {GossipLab, waitFor} from './gossip-lab.js'

const lab = new GossipLab()
after(() => lab.close())

const task = (id: string) => ({
  id,
  serviceId: 's',
  serviceName: 'web',
  slot: 1,
  nodeId: 'w',
  desiredState: 'running',
  attachments: [],
  createdAt: 1,
})

test('task records whose ids are not 24 hex digits are refused from gossip, records and deletes alike', async () => {
  const m = await lab.manager('m')
  // The worker's store checks values and keys, as the agent's (src/agent/node-store.ts).
  const w = await lab.worker('w', m, {store: {validate: valueProblem, validateKey: keyProblem}})
  const good = 'a1b2c3d4e5f6a1b2c3d4e5f6'
  for (const id of ['..', '.']) m.store.put(`task/${id}`, task(id))
  m.store.put('task/0', task('0'))
  m.store.delete('task/0')
  m.store.put(`task/${good}`, task(good))
  await waitFor('w has the good task', () => w.store.get(`task/${good}`) !== undefined, 5000)
  // Push-pull (every 300 ms here) brings everything again: still refused.
  const pulls = w.gossip.stats.pushPulls
  await waitFor('two push-pulls since', () => w.gossip.stats.pushPulls >= pulls + 2, 5000)
  for (const id of ['..', '.', '0']) assert.equal(w.store.entry(`task/${id}`), undefined, `task/${id} is not held`)
  assert.match(keyProblem('task/..') ?? '', /is not a task id/)
  assert.throws(() => taskDir('n1', '..'), /not a task id/)
  assert.throws(() => taskCgroup('n1', '.'), /not a task id/)
  assert.ok(taskDir('n1', good).endsWith(`/tasks/${good}`))
})
