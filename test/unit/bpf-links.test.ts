// Pinned bpf_link attachments on real devices: a veth pair between two test
// namespaces, traffic from one side to the other. Each attachment step runs
// in its own short-lived process (test/fixtures/bpf/link-child.ts), so what
// is checked after it is what outlives a process, as with the agent.
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {BpfMap, ensureBpffs} from '../../src/bpf/index.js'
import {REPO, compileBpf, fixture, makeTmp} from '../fixtures/bpf/build.js'

const A = `sn-t-lka${process.pid}`
const B = `sn-t-lkb${process.pid}`
const IP_A = '10.199.0.1'
const pinRoot = `/sys/fs/bpf/swarmnet-test-links-${process.pid}`
const node = `t-lk${process.pid}`
let tmp: string
let obj: string
let foreign: string

interface Child {
  action?: string
  via?: string
  progId?: number
  tookOverLegacy?: boolean
  link?: {type: number; id: number; progId: number; ifindex: number} | null
  attached?: boolean
  attachedAsync?: boolean
  linkAsync?: Child['link']
  removed?: boolean
  ok?: boolean
  error?: {code: string; message: string}
}

function child(ns: string, ...args: string[]): Child {
  const r = spawnSync(
    'nsenter',
    [`--net=/run/netns/${ns}`, process.execPath, '--import', 'tsx', fixture('link-child.ts'), ...args],
    {
      cwd: REPO,
      encoding: 'utf8',
    },
  )
  assert.equal(r.status, 0, `child ${args.join(' ')} failed:\n${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Child
}

/**
 * linkAttached in a child, checked against linkAttachedAsync (the drift check's) and
 * pinnedLinkInfo against pinnedLinkInfoAsync on the same pin: the same answers.
 */
function attached(ns: string, pin: string, dev: string, kind: 'xdp' | 'ingress'): boolean {
  const r = child(ns, 'attached', pin, dev, kind)
  assert.equal(r.attachedAsync, r.attached, 'linkAttachedAsync agrees with linkAttached')
  assert.deepEqual(r.linkAsync, r.link, 'pinnedLinkInfoAsync agrees with pinnedLinkInfo')
  return r.attached!
}

const ip = (ns: string, ...args: string[]) => execFileSync('ip', ['-n', ns, ...args], {encoding: 'utf8'})

/** The XDP program id on a device, as iproute2 sees it (not our own query code). */
function xdpProgOf(ns: string, dev: string): number | undefined {
  const [l] = JSON.parse(ip(ns, '-d', '-j', 'link', 'show', dev)) as {
    xdp?: {prog?: {id: number}; attached?: {prog: {id: number}}[]}
  }[]
  return l?.xdp?.prog?.id ?? l?.xdp?.attached?.[0]?.prog.id
}

function bpftoolLink(pin: string): {id: number; prog_id: number; ifindex?: number} {
  return JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show', 'pinned', pin], {encoding: 'utf8'}))
}

/** Whether a program is still loaded; its release after the last reference may take a moment. */
function progExists(id: number): boolean {
  const deadline = Date.now() + 3000
  while (spawnSync('bpftool', ['prog', 'show', 'id', String(id)]).status === 0) {
    if (Date.now() > deadline) return true
    spawnSync('sleep', ['0.1'])
  }
  return false
}

/** Sum over CPUs of the fixture's per-CPU counter `slot` (0: XDP packets, 1: tc ifindex sum). */
function counter(slot: number): number {
  const m = BpfMap.openPinned(`${pinRoot}/t_percpu`)
  try {
    const k = Buffer.alloc(4)
    k.writeUInt32LE(slot)
    return (m.lookupPerCpu(k) ?? []).reduce((a, b) => a + b.readUInt32LE(), 0)
  } finally {
    m.close()
  }
}

function pingAFromB(): void {
  const r = spawnSync('ip', ['netns', 'exec', B, 'ping', '-c', '2', '-W', '1', IP_A], {encoding: 'utf8'})
  assert.equal(r.status, 0, r.stdout + r.stderr)
}

before(() => {
  ensureBpffs()
  tmp = makeTmp('sn-bpf-links')
  obj = compileBpf(fixture('pinned.c'), path.join(tmp, 'pinned.o'))
  foreign = compileBpf(fixture('foreign.c'), path.join(tmp, 'foreign.o'))
  execFileSync('ip', ['netns', 'add', A])
  execFileSync('ip', ['netns', 'add', B])
  ip(A, 'link', 'add', 'sn-la', 'type', 'veth', 'peer', 'name', 'sn-lb', 'netns', B)
  ip(A, 'addr', 'add', `${IP_A}/24`, 'dev', 'sn-la')
  ip(B, 'addr', 'add', '10.199.0.2/24', 'dev', 'sn-lb')
  ip(A, 'link', 'set', 'sn-la', 'up')
  ip(B, 'link', 'set', 'sn-lb', 'up')
})

after(() => {
  // The namespaces take the veth pair, and with it every attachment, along.
  spawnSync('ip', ['netns', 'del', A])
  spawnSync('ip', ['netns', 'del', B])
  fs.rmSync(pinRoot, {recursive: true, force: true})
  fs.rmSync(`/sys/fs/bpf/swarmnet/${node}`, {recursive: true, force: true})
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true})
})

describe('XDP links', () => {
  const pin = `${pinRoot}/links/xdp-a`
  let first: Child

  it('a pinned XDP link outlives the process that made it, and forwards', () => {
    first = child(A, 'xdp', obj, 'sn-la', pinRoot, pin)
    assert.equal(first.action, 'created')
    assert.equal(first.via, 'link')
    // The process is gone: the device still runs the program, held by the pinned link.
    assert.equal(xdpProgOf(A, 'sn-la'), first.progId)
    const l = bpftoolLink(pin)
    assert.equal(l.id, first.link!.id)
    assert.equal(l.prog_id, first.progId)
    const before = counter(0)
    pingAFromB()
    assert.ok(counter(0) >= before + 2, 'the program saw the pings')
    // And no netlink command can take it off by accident.
    const off = spawnSync('ip', ['-n', A, 'link', 'set', 'dev', 'sn-la', 'xdp', 'off'], {encoding: 'utf8'})
    assert.notEqual(off.status, 0)
    assert.equal(xdpProgOf(A, 'sn-la'), first.progId)
  })

  it('opened again, the same link is updated in place, not doubled', () => {
    const again = child(A, 'xdp', obj, 'sn-la', pinRoot, pin)
    assert.equal(again.action, 'updated')
    assert.equal(again.link!.id, first.link!.id, 'same link')
    assert.notEqual(again.progId, first.progId, 'a newly loaded program')
    assert.equal(xdpProgOf(A, 'sn-la'), again.progId)
    // Nothing holds the old program any more: no second link kept it.
    assert.equal(progExists(first.progId!), false)
    assert.equal(child(A, 'xdp', obj, 'sn-la', pinRoot, pin).action, 'updated')
  })

  it('a link detached by hand is seen as gone and made again', () => {
    execFileSync('bpftool', ['link', 'detach', 'pinned', pin])
    assert.equal(xdpProgOf(A, 'sn-la'), undefined)
    assert.equal(attached(A, pin, 'sn-la', 'xdp'), false)
    const made = child(A, 'xdp', obj, 'sn-la', pinRoot, pin)
    assert.equal(made.action, 'created')
    assert.notEqual(made.link!.id, first.link!.id)
    assert.equal(attached(A, pin, 'sn-la', 'xdp'), true)
    pingAFromB()
  })

  it('removing the link detaches the program and the pin', () => {
    assert.equal(child(A, 'remove', pin).removed, true)
    assert.equal(xdpProgOf(A, 'sn-la'), undefined)
    assert.equal(fs.existsSync(pin), false)
    const none = child(A, 'attached', pin, 'sn-la', 'xdp')
    assert.deepEqual([none.attached, none.attachedAsync, none.link, none.linkAsync], [false, false, null, null], 'no pin')
    assert.equal(child(A, 'remove', pin).removed, false)
  })

  it("another tool's XDP program is refused in one line and left in place, also by Datapath.open and teardown", () => {
    ip(B, 'link', 'set', 'dev', 'sn-lb', 'xdp', 'obj', foreign, 'sec', 'xdp')
    const theirs = xdpProgOf(B, 'sn-lb')
    assert.ok(theirs)
    try {
      const r = child(B, 'xdp', obj, 'sn-lb', pinRoot, `${pinRoot}/links/xdp-b`)
      assert.equal(r.error?.code, 'BUSY')
      assert.match(
        r.error!.message,
        new RegExp(`^sn-lb already has an XDP program that is not swarmnet's \\(foreign_xdp, id ${theirs}\\)`),
      )
      assert.equal(r.error!.message.split('\n').length, 1)
      assert.equal(xdpProgOf(B, 'sn-lb'), theirs)
      assert.equal(fs.existsSync(`${pinRoot}/links/xdp-b`), false)

      // The agent's own path: refused, nothing half-made, and leave does not take theirs off either.
      const dp = child(B, 'datapath-open', node, 'sn-lb')
      assert.equal(dp.error?.code, 'BUSY')
      assert.match(dp.error!.message, /sn-lb .*foreign_xdp/)
      assert.equal(xdpProgOf(B, 'sn-lb'), theirs)
      assert.equal(fs.existsSync(`/sys/fs/bpf/swarmnet/${node}`), false, 'no pins left by a refused open')
      assert.equal(child(B, 'datapath-teardown', node, 'sn-lb').ok, true)
      assert.equal(xdpProgOf(B, 'sn-lb'), theirs)
    } finally {
      ip(B, 'link', 'set', 'dev', 'sn-lb', 'xdp', 'off')
    }
  })

  it("another tool's XDP link (pinned elsewhere) is refused too", () => {
    const theirPin = `${pinRoot}/another-tool/xdp`
    const theirs = child(B, 'xdp', obj, 'sn-lb', pinRoot, theirPin)
    assert.equal(theirs.action, 'created')
    try {
      const r = child(B, 'xdp', obj, 'sn-lb', pinRoot, `${pinRoot}/links/xdp-b`)
      assert.equal(r.error?.code, 'BUSY')
      assert.match(r.error!.message, new RegExp(`\\(t_xdp_pass, id ${theirs.progId}\\)`))
      assert.equal(xdpProgOf(B, 'sn-lb'), theirs.progId)
    } finally {
      assert.equal(child(B, 'remove', theirPin).removed, true)
    }
  })

  it('our own program attached by netlink (an agent from before links) is taken over by the link', () => {
    assert.equal(child(B, 'legacy', obj, 'sn-lb').ok, true)
    const legacy = xdpProgOf(B, 'sn-lb')
    assert.ok(legacy)
    // Without the name it is just a program that is not ours.
    assert.equal(child(B, 'xdp', obj, 'sn-lb', pinRoot, `${pinRoot}/links/xdp-b`).error?.code, 'BUSY')
    const r = child(B, 'xdp', obj, 'sn-lb', pinRoot, `${pinRoot}/links/xdp-b`, 't_xdp_pass')
    assert.equal(r.action, 'created')
    assert.equal(r.tookOverLegacy, true)
    assert.equal(xdpProgOf(B, 'sn-lb'), r.progId)
    assert.equal(child(B, 'remove', `${pinRoot}/links/xdp-b`).removed, true)
  })
})

describe('TCX links', () => {
  const pin = `${pinRoot}/links/tcx-a`

  it('sit next to a foreign tc filter, outlive their process, run on traffic, update in place', () => {
    execFileSync('tc', ['-n', A, 'qdisc', 'add', 'dev', 'sn-la', 'clsact'])
    execFileSync('tc', ['-n', A, 'filter', 'add', 'dev', 'sn-la', 'ingress', 'bpf', 'da', 'obj', foreign, 'sec', 'tc'])
    const first = child(A, 'tcx', obj, 'sn-la', pinRoot, pin)
    assert.equal(first.action, 'created')
    assert.equal(first.via, 'link')
    assert.equal(bpftoolLink(pin).prog_id, first.progId)
    assert.match(execFileSync('tc', ['-n', A, 'filter', 'show', 'dev', 'sn-la', 'ingress'], {encoding: 'utf8'}), /foreign_tc/)
    const before = counter(1)
    pingAFromB()
    // t_tc_pass adds the ifindex of each frame's device.
    assert.ok(counter(1) > before, 'the TCX program ran on the pings after its process exited')

    const again = child(A, 'tcx', obj, 'sn-la', pinRoot, pin)
    assert.equal(again.action, 'updated')
    assert.equal(again.link!.id, first.link!.id)
    assert.equal(progExists(first.progId!), false)

    execFileSync('bpftool', ['link', 'detach', 'pinned', pin])
    assert.equal(attached(A, pin, 'sn-la', 'ingress'), false)
    assert.equal(child(A, 'tcx', obj, 'sn-la', pinRoot, pin).action, 'created')
    assert.equal(attached(A, pin, 'sn-la', 'ingress'), true)
    assert.equal(attached(A, pin, 'sn-la', 'xdp'), false, 'a TCX link is not an XDP one')
    assert.equal(attached(A, pin, 'lo', 'ingress'), false, 'nor on another device')
    assert.equal(child(A, 'remove', pin).removed, true)
    assert.match(execFileSync('tc', ['-n', A, 'filter', 'show', 'dev', 'sn-la', 'ingress'], {encoding: 'utf8'}), /foreign_tc/)
  })

  it("off the event loop (attachTcxLinkAsync, the agent's path for task devices): the same link, the same refusals", () => {
    const first = child(A, 'tcx-async', obj, 'sn-la', pinRoot, pin)
    assert.equal(first.action, 'created')
    assert.equal(first.via, 'link')
    assert.equal(bpftoolLink(pin).prog_id, first.progId)
    const before = counter(1)
    pingAFromB()
    assert.ok(counter(1) > before, 'the TCX program ran on the pings after its process exited')
    const again = child(A, 'tcx-async', obj, 'sn-la', pinRoot, pin)
    assert.equal(again.action, 'updated')
    assert.equal(again.link!.id, first.link!.id)
    // Detached by hand: made again (bpf_link_create on the thread pool, the pin in its turn).
    execFileSync('bpftool', ['link', 'detach', 'pinned', pin])
    assert.equal(child(A, 'tcx-async', obj, 'sn-la', pinRoot, pin).action, 'created')
    assert.equal(attached(A, pin, 'sn-la', 'ingress'), true)
    const nope = child(A, 'tcx-async', obj, 'sn-nope', pinRoot, `${pinRoot}/links/tcx-nope`)
    assert.equal(nope.error?.code, 'NO_DEVICE')
    assert.equal(child(A, 'remove', pin).removed, true)
  })

  it('our own clsact filter from before links is removed once the TCX link is in place; a foreign one stays', () => {
    assert.equal(child(A, 'legacy-tc', obj, 'sn-la').ok, true)
    const filters = () => execFileSync('tc', ['-n', A, 'filter', 'show', 'dev', 'sn-la', 'ingress'], {encoding: 'utf8'})
    assert.match(filters(), /t_tc_pass/)
    const r = child(A, 'tcx', obj, 'sn-la', pinRoot, pin, 't_tc_pass')
    assert.equal(r.action, 'created')
    assert.equal(r.tookOverLegacy, true)
    assert.doesNotMatch(filters(), /t_tc_pass/)
    assert.match(filters(), /foreign_tc/)
    assert.equal(child(A, 'remove', pin).removed, true)
  })
})
