// The name table kept from the store's changes (src/dns/name-keeper.ts) against buildNames from
// scratch, after random sequences of changes (fast-check) to a real store: services (names and
// aliases that collide, vip and dnsrr, VIPs, published ports, creation times that tie), tasks
// (moved between services and nodes, slots that collide, one or two attachments, running or being
// stopped), task statuses (running, starting, failed, healthy or not, with a gateway address,
// some shared), networks (overlay or not, renamed, removed), attachments and their statuses, nodes
// (ready, down, left, gone), published ports, liveness (a node declared down, then the keeper told), records
// deleted, and the store reopened. After every step the table equals buildNames over what the
// store holds, and it is another object whenever its content changed (the responder drops the
// answers it kept by that); and the fast path's entries kept from the table's changes
// (FastPathKeeper) equal desiredDns over the table from scratch, each map another object when
// its entries changed (the map sync remembers what it wrote by them).
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'
import fc from 'fast-check'
import {buildNames, type NameTable} from '../../src/dns/names.js'
import {NameKeeper} from '../../src/dns/name-keeper.js'
import {desiredDns, FastPathKeeper} from '../../src/dns/fastpath.js'
import type {DesiredDns} from '../../src/dataplane/desired.js'
import type {AttachmentStatus, Network, NetworkAttachment, NodeRecord, Service, Task, TaskStatus} from '../../src/model/types.js'
import {ClusterReader} from '../../src/store/cluster-reader.js'
import {keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {networkRecord, nodeRecord, serviceRecord} from './model-records.js'

const dirs: string[] = []
after(() => dirs.forEach((d) => rmSync(d, {recursive: true, force: true})))

const SELF = 'n1'
const NODES = ['n1', 'n2', 'n3']
const NETS = ['na', 'nb', 'nc']
const SVCS = ['s1', 's2', 's3', 's4']
const TASKS = ['t1', 't2', 't3', 't4', 't5', 't6', 't7', 't8']
const ATTS = ['x1', 'x2', 'x3']
/** Few names, so that services, aliases, tasks and attachments collide. */
const NAMES = ['web', 'Web', 'db', 'tasks.web', 'web.1', 'x1']
const IPS = ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']
const GWS = ['172.18.0.2', '172.18.0.3']

type Op =
  | {op: 'node'; id: string; state: NodeRecord['state'] | null}
  | {op: 'net'; id: string; overlay: boolean; name: number; vni: number | null; del: boolean}
  | {
      op: 'svc'
      id: string
      name: string
      at: number
      dnsrr: boolean
      nets: string[]
      vip: boolean[]
      aliases: string[][]
      port: boolean
      del: boolean
    }
  | {op: 'task'; id: string; svc: string; slot: number; node: string; running: boolean; atts: [string, string][]; del: boolean}
  | {
      op: 'status'
      id: string
      state: TaskStatus['state']
      node: string
      gw: string | null
      health: TaskStatus['health'] | null
      del: boolean
    }
  | {op: 'att'; id: string; name: string; net: string; node: string; ip: string; del: boolean}
  | {op: 'attstatus'; id: string; state: AttachmentStatus['state']; del: boolean}
  /** A service's published ports changed, nothing else (its SRV records only). */
  | {op: 'ports'; id: string; target: number}
  | {op: 'down'; ids: string[]}
  | {op: 'reopen'}

const pick = <T>(xs: readonly T[]) => fc.constantFrom(...xs)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({op: fc.constant('node' as const), id: pick(NODES), state: fc.option(pick(['ready', 'down', 'left'] as const))}),
  fc.record({
    op: fc.constant('net' as const),
    id: pick(NETS),
    overlay: fc.boolean(),
    name: fc.nat(1),
    vni: fc.option(fc.nat(1)),
    del: fc.boolean(),
  }),
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('svc' as const),
      id: pick(SVCS),
      name: pick(NAMES),
      at: fc.nat(2),
      dnsrr: fc.boolean(),
      nets: fc.subarray(NETS),
      vip: fc.array(fc.boolean(), {minLength: 3, maxLength: 3}),
      aliases: fc.array(fc.subarray(NAMES, {maxLength: 2}), {minLength: 3, maxLength: 3}),
      port: fc.boolean(),
      del: fc.boolean(),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('task' as const),
      id: pick(TASKS),
      svc: pick(SVCS),
      slot: fc.nat(2),
      node: pick(NODES),
      running: fc.boolean(),
      atts: fc.array(fc.tuple(pick(NETS), pick(IPS)), {maxLength: 2}),
      del: fc.boolean(),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('status' as const),
      id: pick(TASKS),
      state: pick(['running', 'running', 'starting', 'failed'] as const),
      node: pick(NODES),
      gw: fc.option(pick(GWS)),
      health: fc.option(pick(['healthy', 'unhealthy', 'starting'] as const)),
      del: fc.boolean(),
    }),
  },
  fc.record({
    op: fc.constant('att' as const),
    id: pick(ATTS),
    name: pick(NAMES),
    net: pick(NETS),
    node: pick(NODES),
    ip: pick(IPS),
    del: fc.boolean(),
  }),
  fc.record({
    op: fc.constant('attstatus' as const),
    id: pick(ATTS),
    state: pick(['attached', 'failed', 'gone'] as const),
    del: fc.boolean(),
  }),
  fc.record({op: fc.constant('ports' as const), id: pick(SVCS), target: fc.constantFrom(80, 81)}),
  fc.record({op: fc.constant('down' as const), ids: fc.subarray(NODES)}),
  {weight: 1, arbitrary: fc.constant({op: 'reopen' as const})},
)

/** The table as plain sorted data: equal tables give equal shapes, whatever order their maps were filled in. */
function shape(t: NameTable): unknown {
  const sorted = <V>(m: Map<string, V>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return {
    networks: sorted(t.networks).map(([id, n]) => ({id, name: n.name, a: sorted(n.a), ptr: sorted(n.ptr), srv: sorted(n.srv)})),
    scopes: sorted(t.scopes),
    known: [...t.known].sort(),
    askers: sorted(t.askers),
  }
}

function apply(store: Store, down: Set<string>, keeper: NameKeeper | undefined, o: Op): void {
  const put = (key: string, v: object | null) =>
    v ? store.put(key, v as never) : store.get(key) !== undefined && store.delete(key)
  switch (o.op) {
    case 'node':
      put(keyOf('node', o.id), o.state ? nodeRecord(o.id, `192.168.0.${o.id.slice(1)}`, {state: o.state}) : null)
      break
    case 'net': {
      // Each network's VNI its own (two networks never share one), or none.
      const vni = o.vni === null ? undefined : 4096 + NETS.indexOf(o.id) + 10 * o.vni
      const n: Network = networkRecord(o.id, '10.0.0.0/24', {name: `${o.id}-${o.name}`, driver: o.overlay ? 'overlay' : 'bridge'})
      if (vni === undefined) delete n.vni
      else n.vni = vni
      put(keyOf('network', o.id), o.del ? null : n)
      break
    }
    case 'svc': {
      const s: Service = serviceRecord(o.id, o.nets, {
        name: o.name,
        createdAt: o.at,
        endpointMode: o.dnsrr ? 'dnsrr' : 'vip',
        vips: o.nets.filter((_, i) => o.vip[i]).map((networkId, i) => ({networkId, ip: `10.0.0.${100 + i}`})),
        aliases: o.nets.map((networkId, i) => ({networkId, names: o.aliases[i]!})).filter((a) => a.names.length > 0),
        ...(o.port ? {ports: [{protocol: 'tcp' as const, target: 80, published: 30080, mode: 'ingress' as const}]} : {}),
      })
      put(keyOf('service', o.id), o.del ? null : s)
      break
    }
    case 'task': {
      const t: Task = {
        id: o.id,
        serviceId: o.svc,
        serviceName: o.svc === 's1' ? 'web' : o.svc,
        slot: o.slot,
        nodeId: o.node,
        desiredState: o.running ? 'running' : 'shutdown',
        attachments: o.atts.map(([networkId, ip]) => ({networkId, ip, mac: '02:42:00:00:00:01'})),
        createdAt: 0,
      }
      put(keyOf('task', o.id), o.del ? null : t)
      break
    }
    case 'status': {
      const st: TaskStatus = {
        taskId: o.id,
        nodeId: o.node,
        state: o.state,
        restarts: 0,
        updatedAt: 0,
        ...(o.gw ? {gwIp: o.gw} : {}),
        ...(o.health ? {health: o.health} : {}),
      }
      put(keyOf('taskstatus', o.id), o.del ? null : st)
      break
    }
    case 'att': {
      const x: NetworkAttachment = {
        id: o.id,
        name: o.name,
        networkId: o.net,
        nodeId: o.node,
        netns: '/run/netns/x',
        ip: o.ip,
        mac: '02:42:00:00:00:02',
        createdAt: 0,
      }
      put(keyOf('attachment', o.id), o.del ? null : x)
      break
    }
    case 'attstatus':
      put(keyOf('attachmentstatus', o.id), o.del ? null : {id: o.id, nodeId: 'n1', state: o.state, updatedAt: 0})
      break
    case 'ports': {
      const s = store.get<Service>(keyOf('service', o.id))
      const ports = [{protocol: 'tcp' as const, target: o.target, published: 30080, mode: 'ingress' as const}]
      if (s) store.put(keyOf('service', o.id), {...s, ports})
      break
    }
    case 'down':
      down.clear()
      for (const id of o.ids) down.add(id)
      keeper?.invalidate()
      break
    case 'reopen':
      store.close()
      store.open()
      break
  }
}

const START: Op[] = [
  ...NODES.map((id): Op => ({op: 'node', id, state: 'ready'})),
  ...NETS.map((id, i): Op => ({op: 'net', id, overlay: i < 2, name: 0, vni: 0, del: false})),
  ...SVCS.map((id, i): Op => ({
    op: 'svc',
    id,
    name: NAMES[i]!,
    at: i % 2,
    dnsrr: i === 2,
    nets: NETS.slice(0, 1 + (i % 3)),
    vip: [true, i !== 1, true],
    aliases: [[NAMES[(i + 1) % NAMES.length]!], [], []],
    port: i !== 3,
    del: false,
  })),
  ...TASKS.flatMap((id, i): Op[] => [
    {
      op: 'task',
      id,
      svc: SVCS[i % SVCS.length]!,
      slot: 1 + (i % 2),
      node: NODES[i % 3]!,
      running: true,
      atts: [[NETS[i % 2]!, IPS[i % IPS.length]!]],
      del: false,
    },
    {op: 'status', id, state: 'running', node: NODES[i % 3]!, gw: GWS[i % 2]!, health: null, del: false},
  ]),
  ...ATTS.map((id, i): Op => ({op: 'att', id, name: NAMES[i + 2]!, net: NETS[i]!, node: NODES[i]!, ip: IPS[i]!, del: false})),
  ...ATTS.map((id): Op => ({op: 'attstatus', id, state: 'attached', del: false})),
]

/** The fast path's entries as sorted hex pairs. */
const entriesShape = (d: DesiredDns) =>
  Object.fromEntries(
    (['names', 'ptrs', 'scopes'] as const).map((m) => [
      m,
      [...d[m]]
        .map(([k, [, v]]) => `${k}=${v.toString('hex')}`)
        .sort()
        .join(' '),
    ]),
  )

function fastPathInput(store: Store, table: NameTable) {
  return {
    table,
    networks: new ClusterReader(store, SELF).networks(),
    resolver: '172.18.0.1',
    ttl: 600,
    // One task's device is not there (yet): its scope is left out.
    gwIfindex: (id: string) => (id === 't3' ? undefined : 10 + TASKS.indexOf(id)),
  }
}

function fromScratch(store: Store, down: Set<string>): NameTable {
  const r = new ClusterReader(store, SELF)
  return buildNames({
    selfId: SELF,
    nodes: r.nodes(),
    networks: r.networks(),
    services: r.services(),
    tasks: r.tasks(),
    statuses: r.statuses(),
    attachments: r.attachments(),
    attachmentStatus: (id) => r.attachmentStatus(id),
    membership: {isDown: (id) => down.has(id)},
  })
}

test('the kept name table and fast path entries equal buildNames and desiredDns from scratch after random changes', () => {
  fc.assert(
    fc.property(fc.array(opArb, {maxLength: 60}), fc.nat(3), (ops, readEvery) => {
      const dir = mkdtempSync(join(tmpdir(), 'sn-dns-keeper-'))
      dirs.push(dir)
      const store = new Store(dir, SELF, {reapIntervalMs: 0}).open()
      const down = new Set<string>()
      // A cluster to start from, so that the changes have names to take away as well as to give.
      for (const o of START) apply(store, down, undefined, o)
      let signalled = 0
      const keeper = new NameKeeper({
        source: store,
        selfId: SELF,
        membership: {isDown: (id) => down.has(id)},
        onChange: () => signalled++,
      })
      const fast = new FastPathKeeper(() => keeper.drainChanges())
      try {
        let last = keeper.table()
        let lastShape = JSON.stringify(shape(last))
        let lastFast = fast.desired(fastPathInput(store, last))
        let lastFastShape = entriesShape(lastFast)
        let signalledAt = signalled
        for (const [i, o] of ops.entries()) {
          apply(store, down, keeper, o)
          // Reads now and then: several changes between two reads are taken together.
          if (i % (readEvery + 1) !== 0 && i !== ops.length - 1) continue
          const t = keeper.table()
          const now = JSON.stringify(shape(t))
          const scratch = fromScratch(store, down)
          assert.equal(now, JSON.stringify(shape(scratch)))
          // The fast path's entries kept from the table's changes: those desiredDns makes from scratch.
          const f = fast.desired(fastPathInput(store, t))
          const fs = entriesShape(f)
          assert.deepEqual(fs, entriesShape(desiredDns(fastPathInput(store, scratch))))
          // A map whose entries changed is another object (the map sync remembers what it wrote by them).
          for (const m of ['names', 'ptrs'] as const)
            if (fs[m] !== lastFastShape[m]) assert.notEqual(f[m], lastFast[m], `${m} changed in place`)
          lastFast = f
          lastFastShape = fs
          if (now !== lastShape) {
            assert.notEqual(t, last, 'a changed table is another object')
            // A change the keeper saw was signalled (liveness is the caller's: it tells both).
            if (!ops.slice(0, i + 1).some((x) => x.op === 'down' || x.op === 'reopen')) assert.ok(signalled > signalledAt)
          }
          last = t
          lastShape = now
          signalledAt = signalled
        }
      } finally {
        keeper.stop()
        store.close()
      }
    }),
    {numRuns: 300},
  )
})
