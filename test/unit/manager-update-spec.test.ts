// service update of what service create takes and update lacked before: --image and the container
// flags (a change rolls the tasks, rollback restores them), --constraint-add/-rm and
// --placement-pref-add/-rm (only the record: tasks on nodes that no longer fit are moved).
import assert from 'node:assert/strict'
import {test} from 'node:test'
import type {ServiceUpdate} from '../../src/manager/manager.js'
import type {Task, TaskStatus} from '../../src/model/types.js'
import {keyOf, prefixOf} from '../../src/store/keys.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture, storeFiles} from './manager-fixture.js'

const tasks = (store: Store) => store.values<Task>(prefixOf('task'))
const running = (store: Store) => tasks(store).filter((t) => t.desiredState === 'running')

/** Every task meant to run reports running; every task marked shutdown is stopped. */
function nodesAct(store: Store): void {
  for (const t of tasks(store)) {
    const key = keyOf('taskstatus', t.id)
    if (t.desiredState === 'running' && !store.get(key))
      store.put(key, {taskId: t.id, nodeId: t.nodeId, state: 'running', restarts: 0, updatedAt: 1} satisfies TaskStatus)
    if (t.desiredState === 'shutdown' && store.get(key)) store.delete(key)
  }
}

function settle(store: Store, m: {placeAll(): unknown}): void {
  for (let i = 0; i < 30; i++) {
    nodesAct(store)
    m.placeAll()
  }
}

const three = [
  ['a', '10.1.0.1'],
  ['b', '10.1.0.2'],
  ['c', '10.1.0.3'],
] as const

test('--image, --env-add/-rm, --mount-add/-rm, --cap-add/-drop, --read-only, --hostname, --workdir roll the tasks; rollback restores them', () => {
  const {store, m} = managerFixture('sn-updspec-', three)
  m.createNetwork({name: 'net'})
  m.createService({
    name: 'site',
    mode: 'replicated',
    replicas: 2,
    networks: ['net'],
    command: [],
    image: 'site:1.0',
    env: ['A=1', 'B=2'],
    mounts: ['type=tmpfs,target=/tmp', 'type=volume,source=data,target=/data'],
    capDrop: ['NET_RAW'],
    readOnly: true,
  })
  settle(store, m)
  const first = new Set(running(store).map((t) => t.id))
  m.updateService('site', {
    image: 'site:2.0',
    envAdd: ['B=3', 'C=4'],
    envRm: ['A'],
    mountRm: ['/tmp'],
    mountAdd: ['type=bind,source=/srv/www,target=/www,readonly'],
    capAdd: ['net_raw', 'SYS_TIME'],
    readOnly: false,
    hostname: 'web',
    workdir: '/www',
  })
  const svc = m.read.findService('site')
  assert.equal(svc.specVersion, 1, 'a container change raises the version')
  assert.deepEqual(svc.container, {
    image: 'site:2.0',
    env: ['B=3', 'C=4'],
    mounts: [
      {type: 'volume', source: 'data', target: '/data'},
      {type: 'bind', source: '/srv/www', target: '/www', readonly: true},
    ],
    capAdd: ['net_raw', 'sys_time'],
    hostname: 'web',
    workdir: '/www',
  })
  settle(store, m)
  assert.ok(
    running(store).every((t) => !first.has(t.id) && t.specVersion === 1),
    'every task replaced',
  )
  m.rollbackService('site')
  assert.deepEqual(m.read.findService('site').container?.image, 'site:1.0')
  assert.deepEqual(m.read.findService('site').container?.env, ['A=1', 'B=2'])
  assert.equal(m.read.findService('site').container?.readOnly, true)
  // --cap-drop takes a capability off the added ones; the same value twice changes nothing.
  m.updateService('site', {capDrop: ['SYS_TIME']})
  assert.deepEqual(m.read.findService('site').container?.capDrop, ['net_raw', 'sys_time'])
  const v = m.read.findService('site').specVersion
  m.updateService('site', {capDrop: ['SYS_TIME']})
  assert.equal(m.read.findService('site').specVersion, v, 'no change, no new version')
})

test('a command service becomes a container service with --image', () => {
  const {store, m} = managerFixture('sn-updspec-', three)
  m.createNetwork({name: 'net'})
  m.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['net'], command: ['sleep', '1000']})
  settle(store, m)
  m.updateService('web', {image: 'busybox:latest', envAdd: ['X=1']})
  assert.deepEqual(m.read.findService('web').container, {image: 'busybox:latest', env: ['X=1']})
  assert.equal(m.read.findService('web').specVersion, 1)
  m.rollbackService('web')
  assert.equal(m.read.findService('web').container, undefined, 'rollback: a command service again')
})

test('bad container and placement values are refused in one line and nothing is written', async () => {
  const {dir, store, m} = managerFixture('sn-updspec-', three)
  m.createNetwork({name: 'net'})
  m.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['net'], command: []})
  m.createService({
    name: 'site',
    mode: 'replicated',
    replicas: 1,
    networks: ['net'],
    command: [],
    image: 'site:1.0',
    env: ['A=1'],
    mounts: ['type=tmpfs,target=/tmp'],
    constraints: ['node.role==worker'],
  })
  // The store group-commits off the event loop: what is written so far is on disk before the snapshot.
  await store.sync()
  const before = storeFiles(dir)
  const bad: [string, ServiceUpdate, RegExp][] = [
    ['web', {envAdd: ['=oops']}, /invalid --env-add '=oops': KEY=VALUE/],
    ['web', {envRm: ['NOPE']}, /--env-rm NOPE: service web has no variable NOPE/],
    ['site', {envAdd: ['=oops']}, /invalid --env-add '=oops': KEY=VALUE/],
    ['site', {envRm: ['NOPE']}, /--env-rm NOPE: service site has no variable NOPE/],
    ['site', {mountRm: ['/nope']}, /--mount-rm \/nope: service site has no mount at \/nope/],
    ['site', {mountAdd: ['type=tmpfs,target=/tmp']}, /--mount-add: service site already has a mount at \/tmp/],
    ['site', {mountAdd: ['type=tmpfs']}, /invalid --mount-add 'type=tmpfs': target= is required/],
    ['site', {capAdd: ['CAP_NOPE']}, /invalid --cap-add 'CAP_NOPE': no such capability/],
    ['site', {capAdd: ['NET_ADMIN'], capDrop: ['net_admin']}, /--cap-add and --cap-drop both name net_admin/],
    ['site', {workdir: 'relative'}, /invalid --workdir 'relative'/],
    ['site', {hostname: 'bad_name!'}, /invalid --hostname 'bad_name!'/],
    ['site', {image: 'oci:'}, /image oci:: oci: needs an absolute directory/],
    ['site', {constraintAdd: ['node.colour==red']}, /invalid constraint 'node\.colour==red': unknown field/],
    ['site', {constraintRm: ['node.role==manager']}, /--constraint-rm node.role==manager: service site has no constraint/],
    ['site', {placementPrefAdd: ['spread=node.id']}, /invalid placement preference 'spread=node\.id'/],
    ['site', {placementPrefRm: ['spread=node.labels.zone']}, /--placement-pref-rm spread=node.labels.zone: service site has no/],
    // One bad value among good ones: none of them is written.
    ['site', {envAdd: ['B=2'], capAdd: ['CAP_NOPE']}, /no such capability/],
  ]
  for (const [svc, req, why] of bad) assert.throws(() => m.updateService(svc, req), why, JSON.stringify(req))
  await store.sync()
  assert.equal(storeFiles(dir), before)
})

test('--constraint-add moves only the tasks whose node no longer fits; --constraint-rm and prefs change only the record', () => {
  const {store, m} = managerFixture('sn-updspec-', three)
  m.createNetwork({name: 'net'})
  m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  settle(store, m)
  const onB = running(store).filter((t) => t.nodeId === 'b')
  assert.ok(onB.length > 0)
  const others = running(store).filter((t) => t.nodeId !== 'b')
  m.updateService('web', {constraintAdd: ['node.hostname!=n-b']})
  const svc = m.read.findService('web')
  assert.deepEqual(svc.constraints, ['node.hostname!=n-b'])
  assert.equal(svc.specVersion, undefined, 'no new version: the spec its tasks run is the same')
  settle(store, m)
  const now = running(store)
  assert.equal(now.length, 3)
  assert.ok(!now.some((t) => t.nodeId === 'b'), 'nothing runs on n-b')
  for (const t of others)
    assert.ok(
      now.some((x) => x.id === t.id),
      `task ${t.id} on ${t.nodeId} kept`,
    )
  m.updateService('web', {constraintRm: ['node.hostname!=n-b'], placementPrefAdd: ['spread=node.labels.zone']})
  assert.equal(m.read.findService('web').constraints, undefined)
  assert.deepEqual(m.read.findService('web').placementPrefs, ['spread=node.labels.zone'])
  const kept = new Set(running(store).map((t) => t.id))
  settle(store, m)
  assert.deepEqual(new Set(running(store).map((t) => t.id)), kept, 'no task moved for a removed constraint')
  m.updateService('web', {placementPrefRm: ['spread=node.labels.zone']})
  assert.equal(m.read.findService('web').placementPrefs, undefined)
})
