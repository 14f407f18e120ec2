// How bench/vip-lab.ts orders its paths and reads the kernel's BPF statistics, without a lab: the
// VIP and direct paths must sit side by side with their order swapped every run (neither is
// always first, the flaw of the first measurement), and a program's cost is what it did between
// two snapshots, programs of one name summed.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {runOrder} from '../../bench/vip-lab.js'
import {counterDelta, runTimeDelta, type ProgRunTime} from '../../bench/bpf-run-time.js'

test('VIP and direct are adjacent in every run, each first in half of the runs', () => {
  const orders = Array.from({length: 6}, (_, i) => runOrder(i))
  for (const o of orders) {
    assert.deepEqual([...o].sort(), ['direct', 'kernel', 'vip'])
    assert.equal(Math.abs(o.indexOf('vip') - o.indexOf('direct')), 1)
  }
  const vipFirst = orders.filter((o) => o.indexOf('vip') < o.indexOf('direct')).length
  assert.equal(vipFirst, 3)
  for (let i = 1; i < orders.length; i++)
    assert.notEqual(
      orders[i]!.indexOf('vip') < orders[i]!.indexOf('direct'),
      orders[i - 1]!.indexOf('vip') < orders[i - 1]!.indexOf('direct'),
    )
})

test('run time between snapshots: by name, programs of one name summed, idle ones left out', () => {
  const a = new Map<number, ProgRunTime>([
    [10, {name: 'sn_tc_task', runs: 100, ns: 9_000}],
    [11, {name: 'sn_xdp_underlay', runs: 50, ns: 5_000}],
    [12, {name: 'sn_sock_lb_conn', runs: 3, ns: 300}],
  ])
  const b = new Map<number, ProgRunTime>([
    [10, {name: 'sn_tc_task', runs: 300, ns: 27_000}],
    [11, {name: 'sn_xdp_underlay', runs: 50, ns: 5_000}],
    [12, {name: 'sn_sock_lb_conn', runs: 5, ns: 500}],
    // A program loaded between the snapshots (a second tc_task of the same name): all its runs count.
    [13, {name: 'sn_tc_task', runs: 10, ns: 1_000}],
  ])
  assert.deepEqual(
    [...runTimeDelta(a, b)],
    [
      ['sn_tc_task', {runs: 210, ns: 19_000}],
      ['sn_sock_lb_conn', {runs: 2, ns: 200}],
    ],
  )
})

test('counters that moved, filtered', () => {
  assert.equal(
    counterDelta({lb_new_flow: 1, sock_lb_connect: 4, tc_encap: 9}, {lb_new_flow: 1, sock_lb_connect: 6, tc_encap: 20}, (k) =>
      k.includes('lb_'),
    ),
    'sock_lb_connect+2',
  )
  assert.equal(
    counterDelta({}, {lb_new_flow: 0}, () => true),
    'none moved',
  )
})
