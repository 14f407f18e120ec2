// The words after `--` are a command to run and reach it untouched; the words before it are
// parsed by oclif with the command's own flags. Inputs are what a person types.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {Parser} from '@oclif/core'
import LabExec from '../../commands/lab/exec.js'
import ServiceCreate from '../../commands/service/create.js'
import TaskExec from '../../commands/task/exec.js'
import {splitAtDoubleDash} from '../../src/cli/passthrough.js'

// `swarmnet lab exec n1 -- echo a -- b`: oclif hands the command the words after its name.
const words = (line: string) => line.split(' ')

test('everything after the first -- is kept verbatim: repeated words, flag-like words, a second --', () => {
  for (const [line, own, rest] of [
    ['n1 -- echo a -- b', ['n1'], ['echo', 'a', '--', 'b']],
    ['box.1 -- echo box.1', ['box.1'], ['echo', 'box.1']],
    [
      'n1 -- swarmnet service create --name p --replicas 1 -- sleep 1',
      ['n1'],
      words('swarmnet service create --name p --replicas 1 -- sleep 1'),
    ],
    ['--name p --replicas 1 --network app -- sleep 1', words('--name p --replicas 1 --network app'), ['sleep', '1']],
    ['n1 -- sh -c --json -c -- --replicas n1', ['n1'], words('sh -c --json -c -- --replicas n1')],
    ['n1 -- --', ['n1'], ['--']],
    ['n1 --', ['n1'], []],
  ] as const) {
    assert.deepEqual(splitAtDoubleDash(words(line)), {own: own, passthrough: rest}, line)
  }
  assert.deepEqual(splitAtDoubleDash(['n1', 'echo']), {own: ['n1', 'echo'], passthrough: undefined})
  assert.deepEqual(splitAtDoubleDash([]), {own: [], passthrough: undefined})
  // a space inside one word stays inside it
  assert.deepEqual(splitAtDoubleDash(['n1', '--', 'sh', '-c', 'echo a -- b']).passthrough, ['sh', '-c', 'echo a -- b'])
})

test("the words before -- are parsed with the command's own flags, the rest is left alone", async () => {
  const line = words('--replicas 1 --network app --name box -- sleep 1 --replicas 2 --network -- app')
  const {own, passthrough} = splitAtDoubleDash(line)
  const parsed = await Parser.parse(own, {flags: ServiceCreate.flags, args: ServiceCreate.args, strict: true})
  assert.equal(parsed.flags.replicas, 1)
  assert.deepEqual(parsed.flags.network, ['app'])
  assert.equal(parsed.flags.name, 'box')
  assert.deepEqual(passthrough, words('sleep 1 --replicas 2 --network -- app'))

  const s = splitAtDoubleDash(words('box.1 -- echo box.1 --host n2'))
  const task = await Parser.parse(s.own, {flags: TaskExec.flags, args: TaskExec.args, strict: true})
  assert.equal(task.args.task, 'box.1')
  assert.equal(task.flags.host, undefined, '--host after -- is not ours')
  assert.deepEqual(s.passthrough, ['echo', 'box.1', '--host', 'n2'])
  const lab = await Parser.parse(s.own, {args: LabExec.args, strict: true})
  assert.equal(lab.args.target, 'box.1')
})
