// Two managers demoting each other at the same moment, for real (issue 20): `lab up --nodes 3
// --managers 2 --store etcd`, then the demotion of each other sent to both agents' APIs in the
// same turn (two CLI processes start a second apart on a loaded machine: the first demotion would
// reach the other node by gossip before its request, which never races).
// A role change is one transaction in etcd, serialized with every other one: one demotion holds,
// the other is refused in one line, and one manager is left, every round.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import type {NodeView} from '../../src/agent/views.js'
import {AgentClient} from '../../src/agent/client.js'
import {cli, eventually, json, ok} from './helpers.js'
import {withLab} from './lab.js'

const nodes = (on: string) => json<NodeView[]>(on, ['node', 'ls'])
const managersSeenFrom = (on: string) =>
  nodes(on)
    .filter((n) => n.role === 'manager')
    .map((n) => n.name)
    .sort()

/** node demote, as the CLI sends it: the answer, or the agent's one-line refusal. */
const demote = (on: string, ref: string): Promise<{ok: boolean; message: string}> =>
  new AgentClient(on).post(`/nodes/${ref}/demote`, {}).then(
    () => ({ok: true, message: ''}),
    (e: Error) => ({ok: false, message: e.message}),
  )

describe('two managers on etcd demoting each other at once', () => {
  withLab(['--nodes', '3', '--managers', '2', '--store', 'etcd'])

  test('one demotion holds, the other is refused in one line, one manager is left (3 rounds)', async () => {
    await eventually('n1 and n2 managers, seen from n3', () => managersSeenFrom('n3').join() === 'n1,n2' || undefined, 60_000)
    for (let round = 0; round < 3; round++) {
      const [r1, r2] = await Promise.all([demote('n1', 'n2'), demote('n2', 'n1')])
      const won = [r1, r2].filter((r) => r.ok)
      assert.equal(won.length, 1, `round ${round}: exactly one demotion holds: n1 ${r1.message} / n2 ${r2.message}`)
      const [winner, loser] = r1.ok ? ['n1', 'n2'] : ['n2', 'n1']
      const refused = (r1.ok ? r2 : r1).message
      assert.equal(refused.split('\n').length, 1, `one line: ${refused}`)
      assert.match(refused, /no longer a manager|this node is a worker|last manager/)
      console.log(`round ${round}: ${winner} demoted ${loser}; ${loser} said: ${refused}`)
      await eventually(
        `only ${winner} a manager, seen from n3`,
        () => managersSeenFrom('n3').join() === winner || undefined,
        30_000,
      )
      await eventually(
        `${loser} refuses writes`,
        () => /this node is a worker/.test(cli(loser, ['network', 'create', `r${round}`]).stderr) || undefined,
        30_000,
      )
      // The next round starts from two managers again.
      assert.match(ok(winner, ['node', 'promote', loser]), new RegExp(`Node ${loser} is now a manager`))
      let i = 0
      await eventually(
        `${loser} serves writes again`,
        () => cli(loser, ['network', 'create', `p${round}-${i++}`]).code === 0 || undefined,
        30_000,
      )
      await eventually(
        'n1 and n2 managers again, seen from n3',
        () => managersSeenFrom('n3').join() === 'n1,n2' || undefined,
        30_000,
      )
    }
  })
})
