import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, test} from 'node:test'
import {getLink, listLinks} from '../../src/sys/link.js'
import {pairRequest} from '../../src/sys/link-pair.js'
import {addNetns, delNetns, netnsPath} from '../../src/sys/netns.js'

// All of it happens in scratch namespaces (the child makes the pair from inside A); the root
// namespace is only read.
const A = 'sn-ut-pair-a'
const B = 'sn-ut-pair-b'
const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'link-pair-child.ts')

const make = (kind: string, name: string, peer: string, mac: string, queues = 2) =>
  JSON.parse(
    execFileSync(
      'nsenter',
      [
        `--net=${netnsPath(A)}`,
        '--',
        process.execPath,
        '--import',
        'tsx',
        CHILD,
        kind,
        name,
        peer,
        B,
        '1450',
        mac,
        String(queues),
      ],
      {
        encoding: 'utf8',
      },
    ),
  ) as {ok?: true; error?: string; unsupported?: boolean}

const queuesOf = (dev: string, ns: string) =>
  JSON.parse(execFileSync('ip', ['-n', ns, '-d', '-j', 'link', 'show', 'dev', dev], {encoding: 'utf8'}))[0] as {
    num_tx_queues: number
    num_rx_queues: number
    linkinfo?: {info_kind?: string}
  }

before(async () => {
  for (const ns of [A, B]) await delNetns(ns)
  await addNetns(A)
  await addNetns(B)
})

after(async () => {
  await delNetns(A)
  await delNetns(B)
})

test('the request nests the peer as the kernel UAPI lays it out', () => {
  const req = pairRequest('netkit', 'nk0', 'eth0', {mtu: 1450, peerMac: '02:42:0a:00:00:02', queues: 2, peerNsFd: 7}, 9)
  assert.equal(req.readUInt32LE(0), req.length) // nlmsg_len
  assert.equal(req.readUInt16LE(4), 16) // RTM_NEWLINK
  assert.equal(req.readUInt16LE(6), 0x1 | 0x4 | 0x200 | 0x400) // REQUEST|ACK|EXCL|CREATE
  assert.equal(req.readUInt32LE(8), 9)
  // Walk the top-level attributes after nlmsghdr + ifinfomsg.
  const attrs = (buf: Buffer, from: number, to: number) => {
    const out = new Map<number, Buffer>()
    for (let off = from; off < to;) {
      const len = buf.readUInt16LE(off)
      out.set(buf.readUInt16LE(off + 2) & 0x3fff, buf.subarray(off + 4, off + len))
      off += (len + 3) & ~3
    }
    return out
  }
  const top = attrs(req, 32, req.length)
  assert.equal(top.get(3)!.toString(), 'nk0\0') // IFLA_IFNAME
  assert.equal(top.get(4)!.readUInt32LE(0), 1450) // IFLA_MTU
  assert.equal(top.get(31)!.readUInt32LE(0), 2) // IFLA_NUM_TX_QUEUES
  assert.equal(top.get(32)!.readUInt32LE(0), 2) // IFLA_NUM_RX_QUEUES
  const info = attrs(top.get(18)!, 0, top.get(18)!.length) // IFLA_LINKINFO
  assert.equal(info.get(1)!.toString(), 'netkit\0') // IFLA_INFO_KIND
  const data = attrs(info.get(2)!, 0, info.get(2)!.length) // IFLA_INFO_DATA
  assert.equal(data.get(5)!.readUInt32LE(0), 0) // IFLA_NETKIT_MODE: NETKIT_L2
  assert.equal(data.get(3)!.readUInt32LE(0), 0) // IFLA_NETKIT_POLICY: NETKIT_PASS
  assert.equal(data.get(4)!.readUInt32LE(0), 0) // IFLA_NETKIT_PEER_POLICY: NETKIT_PASS
  const peerInfo = data.get(1)! // IFLA_NETKIT_PEER_INFO: ifinfomsg, then the peer's attributes
  const peer = attrs(peerInfo, 16, peerInfo.length)
  assert.equal(peer.get(3)!.toString(), 'eth0\0')
  assert.deepEqual([...peer.get(1)!], [0x02, 0x42, 0x0a, 0, 0, 2]) // IFLA_ADDRESS
  assert.equal(peer.get(28)!.readUInt32LE(0), 7) // IFLA_NET_NS_FD
  assert.throws(() => pairRequest('veth', 'a', 'b', {peerMac: '02:42'}, 1), /invalid MAC address/)
})

test('a veth pair over netlink: both ends as asked, the peer in its namespace', async () => {
  assert.deepEqual(make('veth', 'sn-ut-v0', 'sn-ut-v0p', '02:42:0a:00:00:05'), {ok: true})
  const host = await getLink('sn-ut-v0', A)
  const peer = await getLink('sn-ut-v0p', B)
  assert.equal(host?.kind, 'veth')
  assert.equal(host?.mtu, 1450)
  assert.equal(peer?.mtu, 1450)
  assert.equal(peer?.address, '02:42:0a:00:00:05')
  assert.equal(queuesOf('sn-ut-v0', A).num_tx_queues, 2)
  assert.equal(queuesOf('sn-ut-v0p', B).num_rx_queues, 2)
  // The same name again: the kernel's refusal, in one line, and nothing more made.
  const again = make('veth', 'sn-ut-v0', 'sn-ut-v1p', '02:42:0a:00:00:06')
  assert.match(again.error ?? '', /^creating veth sn-ut-v0\/sn-ut-v1p: a device of that name exists$/)
  assert.equal(await getLink('sn-ut-v1p', B), undefined)
})

test('a netkit pair where the kernel has netkit; else a one-line refusal and nothing made', async () => {
  const r = make('netkit', 'sn-ut-nk0', 'sn-ut-nk0p', '02:42:0a:00:00:07', 1)
  if (r.ok) {
    assert.equal(queuesOf('sn-ut-nk0', A).linkinfo?.info_kind, 'netkit')
    assert.equal(queuesOf('sn-ut-nk0p', B).linkinfo?.info_kind, 'netkit')
    assert.equal((await getLink('sn-ut-nk0p', B))?.address, '02:42:0a:00:00:07')
    assert.equal((await getLink('sn-ut-nk0', A))?.mtu, 1450)
  } else {
    assert.equal(r.unsupported, true, r.error)
    assert.match(r.error ?? '', /^creating netkit sn-ut-nk0\/sn-ut-nk0p: this kernel has no netkit devices/)
    assert.deepEqual((await listLinks('sn-ut-nk', A)).length + (await listLinks('sn-ut-nk', B)).length, 0)
  }
})
