import assert from 'node:assert/strict'
import {after, before, test} from 'node:test'
import {addNetns, delNetns} from '../../src/sys/netns.js'
import {addMasquerade, masqueradeTable, removeMasquerade, showMasquerade} from '../../src/sys/nft.js'
import {enableIpForward, setSysctl} from '../../src/sys/sysctl.js'
import {execIn} from '../../src/sys/netns.js'

const NS = 'sn-ut-nft'

before(async () => {
  await delNetns(NS)
  await addNetns(NS)
})

after(async () => {
  await delNetns(NS)
})

test('table names are nft identifiers', () => {
  assert.equal(masqueradeTable('sn-gwbridge'), 'swarmnet_sn_gwbridge')
})

test('masquerade add is idempotent, remove is idempotent', async () => {
  await addMasquerade('sn-gwbridge', '172.18.0.0/16', NS)
  await addMasquerade('sn-gwbridge', '172.18.0.0/16', NS)
  const t = await showMasquerade('sn-gwbridge', NS)
  assert.ok(t)
  assert.equal(t.match(/masquerade/g)?.length, 1)
  assert.match(t, /ip saddr 172\.18\.0\.0\/16 oifname != "sn-gwbridge" masquerade/)
  // Nothing routed from the bridge back into it: tasks never reach each other through the node.
  assert.match(t, /hook forward priority filter; policy accept;/)
  assert.equal(t.match(/iifname "sn-gwbridge" oifname "sn-gwbridge" counter packets \d+ bytes \d+ drop/g)?.length, 1)
  await removeMasquerade('sn-gwbridge', NS)
  assert.equal(await showMasquerade('sn-gwbridge', NS), undefined)
  await removeMasquerade('sn-gwbridge', NS)
})

test('other tables are left alone', async () => {
  await execIn(NS, ['nft', 'add', 'table', 'ip', 'someone_else'])
  await addMasquerade('sn-x', '10.1.0.0/16', NS)
  await removeMasquerade('sn-x', NS)
  assert.match(await execIn(NS, ['nft', 'list', 'tables']), /someone_else/)
})

test('ip_forward in another namespace', async () => {
  await setSysctl('net.ipv4.ip_forward', '0', NS)
  assert.equal((await execIn(NS, ['cat', '/proc/sys/net/ipv4/ip_forward'])).trim(), '0')
  await enableIpForward(NS)
  assert.equal((await execIn(NS, ['cat', '/proc/sys/net/ipv4/ip_forward'])).trim(), '1')
})
