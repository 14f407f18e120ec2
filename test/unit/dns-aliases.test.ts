// --network name=N,alias=A: parsed whole or refused whole, stored per network id, checked in the store.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {parseNetworkSpec} from '../../src/model/network-spec.js'
import {valueProblem} from '../../src/model/shape.js'
import {managerFixture} from './manager-fixture.js'

test('the long form of --network, as a person types it', () => {
  assert.deepEqual(parseNetworkSpec('backend'), {network: 'backend', aliases: []})
  assert.deepEqual(parseNetworkSpec('name=backend,alias=db,alias=db2,alias=db'), {network: 'backend', aliases: ['db', 'db2']})
  assert.deepEqual(parseNetworkSpec('alias=x,target=backend'), {network: 'backend', aliases: ['x']})
  assert.throws(() => parseNetworkSpec('alias=db'), /name=NETWORK is missing/)
  assert.throws(() => parseNetworkSpec('name=a,name=b'), /named twice/)
  assert.throws(() => parseNetworkSpec('name=a,alias=-x'), /invalid alias name '-x'/)
  assert.throws(() => parseNetworkSpec('name=a,driver-opt=x'), /unknown key 'driver-opt'/)
  assert.throws(() => parseNetworkSpec('name=a,--alias'), /is not KEY=VALUE/)
  // Names a task could never ask for, or that would shadow a service's task list.
  assert.throws(() => parseNetworkSpec('name=a,alias=a..b'), /invalid alias name 'a\.\.b': a label between dots is empty/)
  assert.throws(() => parseNetworkSpec('name=a,alias=tasks.web'), /names under 'tasks\.' are task lists/)
  assert.throws(() => parseNetworkSpec('name=a,alias=Tasks.web'), /names under 'tasks\.' are task lists/)
  assert.deepEqual(parseNetworkSpec('name=a,alias=db.internal,alias=tasks'), {network: 'a', aliases: ['db.internal', 'tasks']})
})

test('the manager stores aliases per network id; the store refuses malformed ones', () => {
  const {store, m} = managerFixture('sn-alias-', [['a', '172.30.0.11']])
  const back = m.createNetwork({name: 'back'})
  m.createNetwork({name: 'front'})
  const svc = m.createService({
    name: 'db',
    mode: 'replicated',
    replicas: 1,
    networks: ['name=back,alias=pg', 'front', 'name=back,alias=sql'],
    command: [],
  })
  assert.deepEqual(svc.aliases, [{networkId: back.id, names: ['pg', 'sql']}])
  assert.equal(svc.networks.length, 2)
  assert.throws(
    () => m.createService({name: 'x', mode: 'replicated', replicas: 1, networks: ['name=nope,alias=a'], command: []}),
    /network nope not found/,
  )
  assert.equal(m.read.services().length, 1)
  assert.match(
    valueProblem(`service/${svc.id}`, {...svc, aliases: [{networkId: back.id, names: ['bad name']}]}) ?? '',
    /alias #0/,
  )
  assert.equal(valueProblem(`service/${svc.id}`, svc), undefined)
  store.close()
})
