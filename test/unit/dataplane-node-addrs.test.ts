// The node's mesh addresses are read once per change, not on every reconcile, and after the first
// read never on the event loop: with a thousand task links, reading them all held the agent's
// loop. A real `ip monitor` in a scratch namespace tells the cache when to read again, `ip -4
// address show` reads, and only a list that changed wakes the reconciler.
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {test} from 'node:test'
import {addNetns, delNetns, netnsPath} from '../../src/sys/netns.js'

const NS = `snut-addrs-${process.pid}`
const ip = (...args: string[]) => {
  const r = spawnSync('ip', ['-n', NS, ...args], {encoding: 'utf8'})
  assert.equal(r.status, 0, `ip ${args.join(' ')}: ${r.stderr}`)
}

test(
  'mesh addresses: read once, again after an address change the watch saw; a skipped device never; only a new list wakes',
  {timeout: 60_000},
  async () => {
    await addNetns(NS)
    const child = spawn(
      'nsenter',
      [`--net=${netnsPath(NS)}`, '--', process.execPath, '--import', 'tsx', join(import.meta.dirname, 'node-addrs-child.ts')],
      {stdio: ['pipe', 'pipe', 'inherit']},
    )
    try {
      const lines: string[] = []
      let wake: (() => void) | undefined
      createInterface({input: child.stdout!}).on('line', (l) => (lines.push(l), wake?.()))
      const next = async (want: (l: string) => boolean, what: string): Promise<string> => {
        const deadline = Date.now() + 20_000
        for (;;) {
          const i = lines.findIndex(want)
          if (i >= 0) return lines.splice(0, i + 1).pop()!
          if (Date.now() > deadline) throw new Error(`no ${what} from the child; it said ${JSON.stringify(lines)}`)
          await new Promise<void>((r) => ((wake = r), setTimeout(r, 200)))
        }
      }
      const list = async () => {
        child.stdin!.write('list\n')
        return JSON.parse(await next((l) => l.startsWith('{'), 'list')) as {addrs: string[]; reads: number}
      }
      for (const d of ['d0', 'skip0']) {
        ip('link', 'add', d, 'type', 'bridge')
        ip('link', 'set', d, 'up')
      }
      // ip monitor subscribes a moment after the child starts: give it that before the first change.
      await new Promise((r) => setTimeout(r, 1000))
      assert.deepEqual(await list(), {addrs: [], reads: 1})
      assert.deepEqual(await list(), {addrs: [], reads: 1}, 'no change: the interfaces are not read again')

      ip('address', 'add', '10.77.0.5/24', 'dev', 'd0')
      await next((l) => l === 'change', 'change after the address was added')
      assert.deepEqual(await list(), {addrs: ['10.77.0.5'], reads: 2})
      assert.deepEqual(await list(), {addrs: ['10.77.0.5'], reads: 2})

      ip('address', 'add', '10.78.0.5/24', 'dev', 'skip0')
      // Read again, but the list is the same: no wake.
      const deadline = Date.now() + 20_000
      let after = await list()
      while (after.reads < 3 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100))
        after = await list()
      }
      assert.equal(after.reads, 3, 'the change the watch saw was read')
      assert.deepEqual(after.addrs, ['10.77.0.5'], 'the gateway bridge (here skip0) answers no published port')
      assert.ok(!lines.includes('change'), 'a read that found the same list wakes nobody')

      ip('address', 'del', '10.77.0.5/24', 'dev', 'd0')
      await next((l) => l === 'change', 'change after the address was removed')
      assert.deepEqual((await list()).addrs, [])
    } finally {
      child.stdin!.end()
      child.kill()
      await new Promise((r) => child.once('exit', r))
      await delNetns(NS)
    }
  },
)
