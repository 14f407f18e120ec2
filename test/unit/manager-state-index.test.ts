// The state index (src/store/state-index.ts) against a full scan, after random sequences of
// changes (fast-check): service creates, removes and scales through the manager, task statuses,
// nodes joining, going down, leaving and coming back, placement passes with nodes declared down,
// remote entries merged from a peer, attachments, and the store reopened; and the placement
// loop's pass over what changed, after which a pass over every service writes nothing. After every step the
// index kept from the store's change events equals one built from scratch from what the store
// holds, the free addresses it answers equal freeAddresses/freeAddressCount over the scanned set,
// and service ls/ps rendered from it equal what the same views render from a plain scan; and
// for every service the plan placement makes (planService, which first checks whether the
// service is settled and then has nothing to do) equals the plan worked out in full.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import fc from 'fast-check'
import {ClusterReader} from '../../src/store/cluster-reader.js'
import {serviceListView, serviceListViewSliced, serviceTasksView} from '../../src/agent/render.js'
import {startManagerLoop, type ManagerLoop} from '../../src/manager/loop.js'
import {Manager} from '../../src/manager/manager.js'
import {indexOf, StateIndex} from '../../src/store/state-index.js'
import {placementNodes, planInFull, planService} from '../../src/manager/plan.js'
import {freeAddressCount, freeAddresses, macForIp} from '../../src/model/allocate.js'
import {broadcast, parseCidr, parseIpv4} from '../../src/model/ipv4.js'
import {isUserError} from '../../src/model/errors.js'
import type {Network, NetworkAttachment, NodeRecord, Service, Task, TaskStatus} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import type {Entry} from '../../src/store/entry.js'
import type {Store} from '../../src/store/store.js'
import {clusterStore, putNode} from './manager-fixture.js'
import {shape} from './state-index-shape.js'

const NAMES = ['a', 'b', 'c', 'd', 'e']
const NODES = ['b', 'c', 'd', 'e']

type Op =
  | {op: 'create'; name: string; replicas: number; global: boolean; nets: number; port: number | null}
  | {op: 'rm'; name: string}
  | {op: 'scale'; name: string; replicas: number}
  | {op: 'status'; pick: number; state: TaskStatus['state'] | null; shut: boolean}
  | {op: 'node'; id: string; state: NodeRecord['state'] | null}
  | {op: 'place'; down: string[]}
  | {op: 'remote'; pick: number; del: boolean; node: string; status: boolean}
  | {op: 'attach'; net: number; host: number; drop: boolean}
  | {op: 'reopen'}
  | {op: 'loop'; down: string[] | null}

const name = fc.constantFrom(...NAMES)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('create' as const),
      name,
      replicas: fc.nat(4),
      global: fc.boolean(),
      nets: fc.nat(2),
      port: fc.option(fc.constantFrom(8080, 8081)),
    }),
  },
  fc.record({op: fc.constant('rm' as const), name}),
  {weight: 2, arbitrary: fc.record({op: fc.constant('scale' as const), name, replicas: fc.nat(5)})},
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('status' as const),
      pick: fc.nat(),
      state: fc.option(fc.constantFrom('running' as const, 'starting' as const, 'failed' as const, 'shutdown' as const)),
      shut: fc.boolean(),
    }),
  },
  fc.record({
    op: fc.constant('node' as const),
    id: fc.constantFrom(...NODES),
    state: fc.option(fc.constantFrom('ready' as const, 'down' as const, 'left' as const)),
  }),
  {weight: 2, arbitrary: fc.record({op: fc.constant('place' as const), down: fc.subarray(NODES)})},
  fc.record({
    op: fc.constant('remote' as const),
    pick: fc.nat(),
    del: fc.boolean(),
    node: fc.constantFrom(...NODES),
    status: fc.boolean(),
  }),
  fc.record({op: fc.constant('attach' as const), net: fc.nat(1), host: fc.integer({min: 2, max: 14}), drop: fc.boolean()}),
  fc.record({op: fc.constant('reopen' as const)}),
  {weight: 3, arbitrary: fc.record({op: fc.constant('loop' as const), down: fc.option(fc.subarray(NODES), {freq: 4})})},
)

/** The addresses in use on a network as the old code collected them: a scan of tasks, attachments and VIPs. */
function scannedUsed(store: Store, net: Network): Set<string> {
  const tasks = store.values<Task>('task/')
  const atts = store.values<NetworkAttachment>('attachment/')
  return new Set([
    ...tasks.flatMap((t) => t.attachments.filter((a) => a.networkId === net.id).map((a) => a.ip)),
    ...atts.filter((a) => a.networkId === net.id).map((a) => a.ip),
    ...store
      .values<{vips?: {networkId: string; ip: string}[]}>('service/')
      .flatMap((s) => (s.vips ?? []).filter((v) => v.networkId === net.id).map((v) => v.ip)),
  ])
}

function check(store: Store, down: ReadonlySet<string> = new Set()): void {
  const live = indexOf(store)
  const scanned = StateIndex.build(store.list(''))
  assert.deepEqual(shape(live), shape(scanned))
  for (const net of store.values<Network>('network/')) {
    if (net.driver !== 'overlay') continue
    const used = scannedUsed(store, net)
    const pool = live.pool(net, new Set(), [], [])
    assert.equal(pool.count(), freeAddressCount(net.subnet, net.gateway, used), `free count on ${net.name}`)
    const first = (g: Generator<string>) => [...Array(4)].map(() => g.next().value as string | undefined)
    assert.deepEqual(first(pool.free()), first(freeAddresses(net.subnet, net.gateway, used)), `free addresses on ${net.name}`)
    // From a start inside the subnet (managers on etcd): the same free addresses, from there up, then from the bottom.
    const all = [...freeAddresses(net.subnet, net.gateway, used)]
    const c = parseCidr(net.subnet)
    const from = c.addr + 1 + Math.floor(0.5 * (broadcast(c) - c.addr - 1))
    const rotated = [...all.filter((ip) => parseIpv4(ip) >= from), ...all.filter((ip) => parseIpv4(ip) < from)]
    assert.deepEqual(
      first(pool.free(0.5)),
      first(rotated[Symbol.iterator]() as Generator<string>),
      `from the middle of ${net.name}`,
    )
  }
  // The views from the index and from a scan (a reader without change events is scanned).
  const indexed = new ClusterReader(store, 'a')
  const plain = new ClusterReader({get: (k) => store.get(k), values: (p) => store.values(p)}, 'a')
  assert.ok(indexed.index && !plain.index)
  assert.deepEqual(serviceListView(indexed), serviceListView(plain))
  for (const s of plain.services()) assert.deepEqual(serviceTasksView(s, indexed), serviceTasksView(s, plain))
  // Placement's shortcut for a settled service finds what the full plan finds (nothing), and
  // only then is taken. Ids and time minted alike for both, so the plans compare whole.
  const membership = {isDown: (id: string) => down.has(id)}
  const nodes = placementNodes(live, membership)
  for (const svc of live.list<Service>('service')) {
    const mint = () => {
      let n = 0
      return {id: () => `t${n++}`, now: 1}
    }
    const state = {index: live, membership, nodes}
    assert.deepEqual(planService(svc, state, mint()), planInFull(svc, state, mint()), `plan of ${svc.name}`)
  }
}

function run(store: Store, ops: Op[]): void {
  const down = new Set<string>()
  const m = new Manager(store, 'a', {isDown: (id) => down.has(id)})
  // The placement loop, its passes run by hand: only what changed since its last pass.
  const loop = startManagerLoop(m, store, () => undefined, {intervalMs: 3_600_000, debounceMs: 3_600_000})
  try {
    steps(store, m, down, loop, ops)
  } finally {
    loop.stop()
  }
}

function steps(store: Store, m: Manager, down: Set<string>, loop: ManagerLoop, ops: Op[]): void {
  const nets = [m.createNetwork({name: 'n0', subnet: '10.9.0.0/28'}), m.createNetwork({name: 'n1', subnet: '10.9.1.0/27'})]
  let remoteClock = 1_000_000
  check(store)
  for (const o of ops) {
    try {
      switch (o.op) {
        case 'create': {
          const networks = o.nets === 2 ? ['n0', 'n1'] : [`n${o.nets}`]
          const ports = o.port === null ? [] : [{target: 80, published: o.port, protocol: 'tcp' as const, mode: 'host' as const}]
          m.createService({
            name: o.name,
            mode: o.global ? 'global' : 'replicated',
            replicas: o.replicas,
            networks,
            command: [],
            ports,
          })
          break
        }
        case 'rm':
          m.removeService(o.name)
          break
        case 'scale':
          m.scaleService(o.name, o.replicas)
          break
        case 'status': {
          // Often a replaced task's: its node saying it stopped is what lets it go.
          const all = store.values<Task>('task/')
          const shut = all.filter((t) => t.desiredState === 'shutdown')
          const tasks = o.shut && shut.length > 0 ? shut : all
          const t = tasks[o.pick % Math.max(1, tasks.length)]
          if (!t) break
          if (o.state === null) store.delete(keyOf('taskstatus', t.id))
          else {
            const st: TaskStatus = {taskId: t.id, nodeId: t.nodeId, state: o.state, restarts: 0, updatedAt: 1}
            store.put(keyOf('taskstatus', t.id), st)
          }
          break
        }
        case 'node':
          if (o.state === null) store.delete(keyOf('node', o.id))
          else putNode(store, o.id, `172.30.0.${20 + NODES.indexOf(o.id)}`, o.state)
          break
        case 'place':
          down.clear()
          for (const id of o.down) down.add(id)
          m.placeAll()
          break
        case 'remote': {
          // A peer's write arriving by gossip: a task moved to another node, or deleted, with others in one merge.
          const tasks = store.values<Task>('task/')
          const t = tasks[o.pick % Math.max(1, tasks.length)]
          if (!t) break
          const v = {clock: ++remoteClock, node: 'peer'}
          const entries: Entry[] = o.del
            ? [{key: keyOf('task', t.id), value: null, version: v, deletedAt: Date.now()}]
            : [{key: keyOf('task', t.id), value: {...t, nodeId: o.node}, version: v}]
          const other = tasks[(o.pick + 1) % tasks.length]!
          if (o.status && other.id !== t.id)
            entries.push({
              key: keyOf('taskstatus', other.id),
              value: {taskId: other.id, nodeId: other.nodeId, state: 'running', restarts: 0, updatedAt: 2} satisfies TaskStatus,
              version: {clock: ++remoteClock, node: 'peer'},
            })
          store.merge(entries)
          break
        }
        case 'attach': {
          // An attachment record as the manager writes it; its address may clash with a task's (counted twice, held once).
          const net = nets[o.net]!
          const ip = `10.9.${o.net}.${o.host}`
          const id = `att${o.net}${o.host}`
          if (o.drop) store.delete(keyOf('attachment', id))
          else {
            const att: NetworkAttachment = {
              id,
              name: id,
              networkId: net.id,
              nodeId: 'b',
              netns: '/run/netns/x',
              ip,
              mac: macForIp(ip),
              createdAt: 1,
            }
            store.put(keyOf('attachment', id), att)
          }
          break
        }
        case 'reopen':
          store.close()
          store.open()
          break
        case 'loop': {
          // Mostly with the same nodes down: a change there makes the loop place every service.
          if (o.down) {
            down.clear()
            for (const id of o.down) down.add(id)
          }
          // A pass may take a step that calls for another (a failed task marked shutdown, then
          // removed once its node says it stopped): its own writes make those services changed
          // again, and the loop's next pass (20 ms later, on its own) takes them. Until it writes nothing:
          for (let i = 0; i < 5; i++) {
            const own: string[] = []
            const stop = store.onChange((k) => own.push(k))
            try {
              loop.passChanged()
            } finally {
              stop()
            }
            if (own.length === 0) break
          }
          // What the passes over the changed services left is what a pass over every service leaves.
          const writes: string[] = []
          const off = store.onChange((k) => writes.push(k))
          try {
            m.placeAll()
          } finally {
            off()
          }
          assert.deepEqual(writes, [], 'a full pass after the loop pass over what changed writes nothing')
          break
        }
      }
    } catch (e) {
      // A refusal (no room, no such service, a duplicate name) changes nothing; anything else is a bug.
      if (!isUserError(e as Error)) throw e
    }
    check(store, down)
  }
}

test('the index equals a full scan after any sequence of changes', () => {
  fc.assert(
    fc.property(fc.array(opArb, {minLength: 5, maxLength: 40, size: 'max'}), (ops) => {
      const {store} = clusterStore('sn-index-')
      for (const id of NODES) putNode(store, id, `172.30.0.${20 + NODES.indexOf(id)}`)
      putNode(store, 'a', '172.30.0.11')
      try {
        run(store, ops)
      } finally {
        store.close()
      }
    }),
    {numRuns: 150},
  )
})

test('service ls rendered in slices: the same rows as at once, and the event loop runs between slices', async () => {
  const {store} = clusterStore('sn-index-ls-')
  for (const id of NODES) putNode(store, id, `172.30.0.${20 + NODES.indexOf(id)}`)
  putNode(store, 'a', '172.30.0.11')
  try {
    const m = new Manager(store, 'a')
    m.createNetwork({name: 'net'})
    for (let i = 0; i < 7; i++)
      m.createService({name: `s${i}`, mode: 'replicated', replicas: i % 3, networks: ['net'], command: ['sleep', '1']})
    const c = new ClusterReader(store, 'a')
    let ranBetween = false
    setImmediate(() => (ranBetween = true))
    const sliced = serviceListViewSliced(c, 2)
    assert.equal(ranBetween, false)
    const rows = await sliced
    assert.ok(ranBetween, 'a callback queued before the list ran before it was done')
    assert.deepEqual(rows, serviceListView(c))
    assert.equal(rows.length, 7)
  } finally {
    store.close()
  }
})
