import assert from 'node:assert/strict'
import {after, before, test} from 'node:test'
import {
  addAddress,
  addDefaultRoute,
  addRoute,
  checkIfname,
  createBridge,
  createVeth,
  deleteLink,
  enslave,
  getLink,
  ifindexOf,
  listAddresses,
  listLinks,
  macOf,
  moveLink,
  mtuOf,
  setLinkDown,
  setLinkUp,
  setMac,
  setMtu,
} from '../../src/sys/link.js'
import {addNetns, delNetns, execIn, listNetns, netnsExists, netnsPids, nsenterArgv} from '../../src/sys/netns.js'

// All of it happens in scratch namespaces; the root namespace is only read.
const A = 'sn-ut-link-a'
const B = 'sn-ut-link-b'

before(async () => {
  for (const ns of [A, B]) await delNetns(ns)
  await addNetns(A)
  await addNetns(B)
})

after(async () => {
  await delNetns(A)
  await delNetns(B)
})

test('netns add/exists/list/del', async () => {
  assert.ok(netnsExists(A))
  assert.deepEqual(listNetns('sn-ut-link-'), [A, B])
  assert.deepEqual(nsenterArgv(A, ['ip', 'link']), ['nsenter', `--net=/run/netns/${A}`, '--', 'ip', 'link'])
  assert.deepEqual(await netnsPids(A), [])
  await delNetns('sn-ut-never-made') // idempotent
})

test('interface names longer than 15 characters are refused before ip sees them', () => {
  assert.throws(() => checkIfname('sn-0123456789abc'), /invalid interface name/)
  checkIfname('sn-0123456789ab')
})

test('veth, mtu, mac, move with rename, address, routes', async () => {
  await createVeth('sn-ut-h', 'sn-ut-p', {ns: A, mtu: 1450})
  assert.equal(await mtuOf('sn-ut-p', A), 1450)
  await setMtu('sn-ut-h', 1400, A)
  assert.equal(await mtuOf('sn-ut-h', A), 1400)
  await moveLink('sn-ut-p', B, {ns: A, newName: 'eth0'})
  assert.equal(await getLink('sn-ut-p', A), undefined)
  await setMac('eth0', '02:42:0a:00:00:02', B)
  assert.equal(await macOf('eth0', B), '02:42:0a:00:00:02')
  await addAddress('eth0', '10.9.0.2/24', B)
  await addAddress('eth0', '10.9.0.2/24', B) // idempotent
  assert.deepEqual(await listAddresses('eth0', B), ['10.9.0.2/24'])
  await setLinkUp('eth0', B)
  await setLinkUp('sn-ut-h', A)
  await addAddress('sn-ut-h', '10.9.0.1/24', A)
  await addDefaultRoute('10.9.0.1', 'eth0', B)
  await addRoute({dest: '10.10.0.0/16', via: '10.9.0.1'}, B)
  const routes = await execIn(B, ['ip', 'route'])
  assert.match(routes, /default via 10\.9\.0\.1 dev eth0/)
  assert.match(routes, /10\.10\.0\.0\/16 via 10\.9\.0\.1/)
  await execIn(B, ['ping', '-c1', '-W1', '10.9.0.1'])
  assert.ok((await ifindexOf('eth0', B)) > 1)
  await setLinkDown('eth0', B)
  assert.equal((await getLink('eth0', B))?.operstate, 'DOWN')
})

test('bridge: create idempotently, enslave, list by prefix, delete idempotently', async () => {
  await createBridge('sn-ut-br', A)
  await createBridge('sn-ut-br', A)
  assert.equal((await getLink('sn-ut-br', A))?.kind, 'bridge')
  await enslave('sn-ut-h', 'sn-ut-br', A)
  assert.equal((await getLink('sn-ut-h', A))?.master, 'sn-ut-br')
  assert.deepEqual((await listLinks('sn-ut-', A)).map((l) => l.ifname).sort(), ['sn-ut-br', 'sn-ut-h'])
  await assert.rejects(createBridge('sn-ut-h', A), /a veth of that name exists/)
  assert.equal(await deleteLink('sn-ut-h', A), true)
  assert.equal(await deleteLink('sn-ut-h', A), false)
  assert.equal(await getLink('eth0', B), undefined) // the pair went with it
})

test('errors name the operation and the namespace', async () => {
  await assert.rejects(setMtu('sn-ut-none', 1500, A), {
    message: /^setting mtu 1500 on sn-ut-none in sn-ut-link-a: Cannot find device/,
  })
})
