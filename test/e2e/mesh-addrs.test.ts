// The routing mesh on every address of a node, in a real 2-node lab (as Docker's answers a
// published port on each address of each node): a second address on a node's eth0, added after
// the service was published or before any service existed, answers from the lab's client
// (sn-lab-client, 172.30.0.100) with the client's own address seen by the task, and from the node
// itself; once removed, it answers no more. The addresses are added inside the nodes' namespaces
// and removed in `after` (and with the lab) even when a test fails.
import assert from 'node:assert/strict'
import {after, describe, test} from 'node:test'
import {eventually, inNs, json, ok, type Result} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  state: string
}

const CLIENT_NS = 'sn-lab-client'
const CLIENT_IP = '172.30.0.100'
/** Added after the service is published (on n2), and before any service exists (on n1). */
const AFTER = {node: 'n2', addr: '172.30.0.21'} as const
const BEFORE = {node: 'n1', addr: '172.30.0.31'} as const
const PORT = 8080

const nodeNs = (node: string) => `sn-lab-${node}`
const addrCmd = (verb: 'add' | 'del', node: string, addr: string): Result =>
  inNs(nodeNs(node), ['ip', 'addr', verb, `${addr}/24`, 'dev', 'eth0'])

/** whoami's answer from `ns`, or undefined while it does not come. */
function whoami(ns: string, addr: string): {host: string; remote: string} | undefined {
  const r = inNs(ns, ['curl', '-sS', '-m', '2', `http://${addr}:${PORT}/`], 10_000)
  if (r.code !== 0) return undefined
  const host = /Hostname: (\S+)/.exec(r.stdout)?.[1]
  const remote = /RemoteAddr: (\S+):\d+/.exec(r.stdout)?.[1]
  return host && remote ? {host, remote} : undefined
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')

describe('the routing mesh on every address of a node, in a 2-node lab', {timeout: 600_000}, () => {
  const added: Array<{node: string; addr: string}> = []
  const cleanup = () => {
    for (const a of added.splice(0)) addrCmd('del', a.node, a.addr)
  }
  withLab(['--nodes', '2'], {beforeDown: cleanup})
  after(cleanup)

  const add = (a: {node: string; addr: string}) => {
    const r = addrCmd('add', a.node, a.addr)
    assert.equal(r.code, 0, r.stderr)
    added.push(a)
  }

  test('an address added before any service exists answers the port once it is published', async () => {
    add(BEFORE)
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '1', '--publish', `published=${PORT},target=80`])
    await allRunning('web', 1, tasksOf, 60_000)
    const w = await eventually(
      `whoami through ${BEFORE.node}'s ${BEFORE.addr}:${PORT}`,
      () => whoami(CLIENT_NS, BEFORE.addr),
      15_000,
    )
    assert.equal(w.remote, CLIENT_IP, 'the task sees the client itself (no SNAT)')
    assert.equal(w.host, 'web.1')
  })

  test('an address added after the service is published answers, from outside (client kept) and from the node itself', async () => {
    // Nothing answers there before it is the node's.
    assert.equal(whoami(CLIENT_NS, AFTER.addr), undefined)
    add(AFTER)
    const w = await eventually(
      `whoami through ${AFTER.node}'s ${AFTER.addr}:${PORT}`,
      () => whoami(CLIENT_NS, AFTER.addr),
      15_000,
    )
    assert.equal(w.remote, CLIENT_IP, 'the task sees the client itself (no SNAT)')
    // The node's own process, to its own second address (bpf/sock_mesh.c).
    const own = await eventually(
      `whoami from inside ${AFTER.node} on ${AFTER.addr}:${PORT}`,
      () => whoami(nodeNs(AFTER.node), AFTER.addr),
      15_000,
    )
    assert.equal(own.host, 'web.1')
    // Another node's process reaches it as any client does (n2's XDP).
    const other = 'n1'
    const via = await eventually(`whoami from ${other} on ${AFTER.addr}:${PORT}`, () => whoami(nodeNs(other), AFTER.addr), 15_000)
    assert.equal(via.host, 'web.1')
  })

  test('an address removed answers no more', async () => {
    const r = addrCmd('del', AFTER.node, AFTER.addr)
    assert.equal(r.code, 0, r.stderr)
    added.splice(
      added.findIndex((a) => a.addr === AFTER.addr),
      1,
    )
    await eventually(`${AFTER.addr}:${PORT} closed`, () => whoami(CLIENT_NS, AFTER.addr) === undefined, 15_000)
    // The node's underlay address and the other second address still answer.
    assert.equal(
      (await eventually('whoami through 172.30.0.12', () => whoami(CLIENT_NS, '172.30.0.12'), 15_000)).remote,
      CLIENT_IP,
    )
    assert.equal(whoami(CLIENT_NS, BEFORE.addr)?.remote, CLIENT_IP)
  })
})
