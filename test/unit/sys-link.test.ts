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
  ipBatch,
  ifindexOf,
  linkExists,
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

test('ipBatch: several commands in one ip process, in order; the first failure is the error and stops the rest', async () => {
  await ipBatch(
    A,
    [
      ['link', 'add', 'sn-ut-bat0', 'type', 'veth', 'peer', 'name', 'sn-ut-bat1', 'address', '02:42:0a:00:00:07'],
      ['link', 'set', 'dev', 'sn-ut-bat1', 'netns', B, 'name', 'eth7'],
      ['link', 'set', 'dev', 'sn-ut-bat0', 'up'],
    ],
    'making a pair',
  )
  assert.equal((await getLink('eth7', B))?.address, '02:42:0a:00:00:07')
  assert.ok((await getLink('sn-ut-bat0', A))?.flags.includes('UP'))
  await assert.rejects(
    ipBatch(
      B,
      [
        ['link', 'set', 'dev', 'nosuchdev', 'up'],
        ['addr', 'add', '10.9.9.9/24', 'dev', 'eth7'],
      ],
      'raising',
    ),
    /^ExecError: raising: Cannot find device "nosuchdev"$/,
  )
  assert.deepEqual(await listAddresses('eth7', B), [], 'the command after the failed one did not run')
  await assert.rejects(ipBatch(B, [['link', 'set', 'dev', 'eth7 up']], 'spaced'), /cannot go into an ip batch/)
  await deleteLink('sn-ut-bat0', A)
})

test('ifindexOf and linkExists in the caller namespace: no ip process, the same answer as ip', async () => {
  const lo = await getLink('lo')
  assert.equal(await ifindexOf('lo'), lo!.ifindex)
  assert.equal(await linkExists('lo'), true)
  assert.equal(await linkExists('sn-ut-none0'), false)
  await assert.rejects(ifindexOf('sn-ut-none0'), /reading link sn-ut-none0: no such device/)
})
