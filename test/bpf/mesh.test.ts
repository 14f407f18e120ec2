// The routing mesh's programs on crafted frames: run in a namespace of its own
// (sn-m<pid>, deleted in `after`) whose underlay has known neighbours, so the
// programs' FIB lookups give known answers. The cases are in mesh-child.ts.

import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, it} from 'node:test'
import {tsxInNetns} from './netns-child.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const NS = `sn-m${process.pid}`

const ip = (args: string[]) => execFileSync('ip', ['-n', NS, ...args], {stdio: ['ignore', 'ignore', 'pipe']})

before(() => {
  execFileSync('ip', ['netns', 'add', NS])
  // The underlay (its peer end stays in the namespace: only the neighbour table matters).
  ip(['link', 'add', 'sn-mu0', 'type', 'veth', 'peer', 'name', 'sn-mu1'])
  ip(['addr', 'add', '172.30.0.11/24', 'dev', 'sn-mu0'])
  // A second address of the node on its underlay (the mesh answers on every address of a node).
  ip(['addr', 'add', '172.30.0.21/24', 'dev', 'sn-mu0'])
  ip(['link', 'set', 'sn-mu0', 'up'])
  ip(['link', 'set', 'sn-mu1', 'up'])
  ip(['link', 'set', 'lo', 'up'])
  // The gateway bridge's address: one of the node's own addresses that is no node's underlay one.
  ip(['link', 'add', 'sn-mgw', 'type', 'bridge'])
  ip(['addr', 'add', '172.18.0.1/16', 'dev', 'sn-mgw'])
  ip(['link', 'set', 'sn-mgw', 'up'])
  // The FIB helper answers only for devices that forward; a node has forwarding on (the gateway bridge needs it).
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  ip(['neigh', 'replace', '172.30.0.12', 'lladdr', '02:00:00:00:00:0c', 'dev', 'sn-mu0', 'nud', 'permanent'])
  ip(['neigh', 'replace', '172.30.0.100', 'lladdr', '02:00:00:00:00:64', 'dev', 'sn-mu0', 'nud', 'permanent'])
})

after(() => {
  spawnSync('ip', ['netns', 'del', NS], {stdio: 'ignore'})
})

describe('routing mesh programs (crafted frames, in their own namespace)', () => {
  it('every case of mesh-child.ts passes', () => {
    const r = spawnSync(
      'ip',
      tsxInNetns(NS, '--test', '--test-reporter=spec', path.join(HERE, 'mesh-child.ts')),
      // Without the parent's NODE_TEST_CONTEXT, the child reports as a run of its own (text, not the parent's protocol).
      {encoding: 'utf8', env: {...process.env, NODE_TEST_CONTEXT: undefined}},
    )
    process.stdout.write(r.stdout)
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`)
    assert.match(r.stdout, /pass [1-9][0-9]/)
    assert.match(r.stdout, /fail 0/)
  })
})
