// The lab's lifetime around one describe() of end-to-end tests: up before its
// tests, down after them, and nothing of swarmnet left on the machine. The lab
// uses fixed names (sn-lab-* namespaces, /var/lib/swarmnet, ...), so a lab that
// is already up (another run, or a test that did not clean up) must stop the
// tests rather than be taken over or torn down by them.
// Also what tests do from the lab's outside host (its client namespace), which is no lab node.
import assert from 'node:assert/strict'
import {rmSync} from 'node:fs'
import {join} from 'node:path'
import {cgroupMounts, removeIfEmpty} from '../../src/sys/cgroup.js'
import {after, before} from 'node:test'
import {BIN, cli, leftovers, ok, sh, type Result} from './helpers.js'

export interface LabHooks {
  /** Runs before `lab down`: stops what the test started beside the lab (processes, links it took down, namespaces). */
  beforeDown?: () => void
  /** Runs after `lab down` but before the checks: removes what the test made that the lab does not know of. */
  afterDown?: () => void
  /** The message of the leftovers check, where a test names what in particular must go. */
  leftoversMessage?: string
}

/** Asserts that no lab is up, then brings one up with `swarmnet lab up <args>`. */
export function labUp(args: string[]): void {
  assert.ok(!/sn-lab-/.test(sh(['ip', 'netns', 'list']).stdout), 'a lab is already up on this machine: `swarmnet lab down` first')
  ok(undefined, ['lab', 'up', ...args])
}

/** `swarmnet lab down`, which must succeed and leave nothing behind. */
export function labDown(hooks: LabHooks = {}): void {
  hooks.beforeDown?.()
  const down = cli(undefined, ['lab', 'down'])
  hooks.afterDown?.()
  assert.equal(down.code, 0, down.stderr)
  assert.deepEqual(leftovers(), [], hooks.leftoversMessage ?? 'lab down must leave nothing behind')
}

/**
 * A lab for the enclosing describe(): `before` brings it up with `lab up <args>`, `after` brings it
 * down. A test's own setup on the lab goes in a before() registered after this call (hooks run in
 * the order they are registered); what must go before the lab does goes in hooks.beforeDown.
 */
export function withLab(args: string[], hooks: LabHooks = {}): void {
  before(() => labUp(args))
  after(() => labDown(hooks))
}

/** `swarmnet join` run from the lab's outside host (its client namespace), as a machine that is not a lab node would. */
export function joinFromClient(node: string, token: string, addr = '172.30.0.11:7946'): Result {
  return sh([
    'nsenter',
    '--net=/run/netns/sn-lab-client',
    '--',
    process.execPath,
    BIN,
    'join',
    '--node',
    node,
    '--advertise-addr',
    'eth0',
    '--token',
    token,
    addr,
  ])
}

/** Removes what a node that joined from the outside host keeps on the machine: lab down knows only the lab's own nodes. */
export function removeOutsideNode(node: string): void {
  for (const p of [`/var/lib/swarmnet/${node}`, `/run/swarmnet/${node}.sock`, `/run/swarmnet/${node}.pid`])
    rmSync(p, {recursive: true, force: true})
  sh(['rm', '-rf', `/sys/fs/bpf/swarmnet/${node}`])
  // Its agent made its task cgroup (the connect() programs hang there) and, killed by lab down
  // with the client's namespace, could not take it away again.
  const cg2 = cgroupMounts().v2
  if (cg2) {
    removeIfEmpty(join(cg2, 'swarmnet', node))
    removeIfEmpty(join(cg2, 'swarmnet'))
  }
}
