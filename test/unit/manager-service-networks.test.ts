// service update --network-add / --network-rm in the manager: a VIP on the new network and each
// running task an address there, the same tasks (plugged live by their nodes); a removed network's
// tasks replaced and its VIP freed; the refusals one line with nothing written.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {beforeEach, test} from 'node:test'
import type {Manager} from '../../src/manager/manager.js'
import {valueProblem} from '../../src/model/shape.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture} from './manager-fixture.js'

let m: Manager
let store: Store
let dir: string

beforeEach(() => {
  ;({dir, store, m} = managerFixture('sn-svcnet-', [
    ['a', '172.30.0.11'],
    ['b', '172.30.0.12'],
  ]))
  m.createNetwork({name: 'ingress', ingress: true})
  m.createNetwork({name: 'front'})
  m.createNetwork({name: 'back'})
})

const id = (name: string) => m.read.findNetwork(name).id
const running = (svc: string) =>
  m.read
    .tasks()
    .filter((t) => t.serviceName === svc && t.desiredState === 'running')
    .sort((x, y) => x.slot - y.slot)
const web = () =>
  m.createService({
    name: 'web',
    mode: 'replicated',
    replicas: 3,
    networks: ['front'],
    command: [],
    ports: [{published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'}],
  })

test('network-add: a VIP there, every running task the same task with an address on it last, ingress kept last', () => {
  web()
  const before = running('web')
  const svc = m.updateNetworks('web', {add: ['name=back,alias=api'], rm: []})
  assert.deepEqual(svc.networks, [id('front'), id('back'), id('ingress')])
  assert.deepEqual(svc.aliases, [{networkId: id('back'), names: ['api']}])
  const vip = svc.vips!.find((v) => v.networkId === id('back'))
  assert.ok(vip, 'a VIP on the new network')
  const after = running('web')
  assert.deepEqual(
    after.map((t) => t.id),
    before.map((t) => t.id),
    'no task replaced',
  )
  const ips = new Set<string>([vip.ip])
  for (const [i, t] of after.entries()) {
    assert.deepEqual(t.attachments.slice(0, -1), before[i]!.attachments, 'the old attachments unchanged')
    const last = t.attachments.at(-1)!
    assert.equal(last.networkId, id('back'))
    assert.ok(!ips.has(last.ip), 'each address once')
    ips.add(last.ip)
  }
  // placement leaves it as it is: nothing more to write
  const clock = store.clock
  m.placeAll()
  assert.equal(store.clock, clock)
  for (const e of store.list()) assert.equal(valueProblem(e.key, e.value), undefined, e.key)
})

test('network-rm: its VIP gone, the tasks on it replaced by tasks without it', () => {
  m.createService({name: 'web', mode: 'replicated', replicas: 2, networks: ['front', 'back'], command: []})
  const before = running('web').map((t) => t.id)
  const svc = m.updateNetworks('web', {add: [], rm: ['back']})
  assert.deepEqual(svc.networks, [id('front')])
  assert.deepEqual(
    svc.vips!.map((v) => v.networkId),
    [id('front')],
  )
  const after = running('web')
  assert.equal(after.length, 2)
  for (const t of after) {
    assert.ok(!before.includes(t.id), 'replaced')
    assert.deepEqual(
      t.attachments.map((a) => a.networkId),
      [id('front')],
    )
  }
})

test('refusals: one line, nothing written', () => {
  web()
  const state = () => readFileSync(join(dir, 'state.json'), 'utf8')
  for (const [req, said] of [
    [{add: ['front'], rm: []}, /^service web is already attached to network front$/],
    [{add: [], rm: ['back']}, /^service web is not attached to network back$/],
    [{add: ['ingress'], rm: []}, /ingress network is attached through --publish/],
    [{add: [], rm: ['ingress']}, /--publish-rm/],
    [{add: ['back', 'back'], rm: []}, /^network back is given twice to add$/],
    [{add: ['nope'], rm: []}, /nope/],
    [{add: ['name=back,color=red'], rm: []}, /unknown key 'color'/],
    [{add: [], rm: []}, /^nothing to change/],
  ] as const) {
    const before = state()
    const clock = store.clock
    assert.throws(
      () => m.updateNetworks('web', {add: [...req.add], rm: [...req.rm]}),
      (e: Error) => e.name === 'UserError' && e.message.split('\n').length === 1 && said.test(e.message),
      String(said),
    )
    assert.equal(store.clock, clock)
    assert.equal(state(), before)
  }
  // removed and added again in one command: attached as before, its aliases as now given
  const svc = m.updateNetworks('web', {add: ['name=front,alias=www'], rm: ['front']})
  assert.deepEqual(svc.aliases, [{networkId: id('front'), names: ['www']}])
})
