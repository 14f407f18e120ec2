// A small gossip cluster on loopback for the gossip tests: a real manager
// (init's records, certificates), workers that join over the real handshake,
// each with its own store and sockets. Each node has its own 127.0.0.x
// address, as real nodes have their own (a join refuses a taken address).
import assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {Gossip, type GossipOptions, type JoinAnswering} from '../../src/gossip/gossip.js'
import {admitJoiner} from '../../src/manager/admission.js'
import {certifyNode, generateIdentity, generateNodeKey, signWith, type KeyPair} from '../../src/gossip/identity.js'
import {requestJoin} from '../../src/gossip/join.js'
import type {Message} from '../../src/gossip/codec.js'
import {sealMessage} from '../../src/gossip/transport.js'
import {generateKey, Keyring} from '../../src/gossip/keyring.js'
import {signedText, type Entry} from '../../src/store/entry.js'
import {generateToken} from '../../src/gossip/token.js'
import type {NodeRecord} from '../../src/model/types.js'
import {Store, type StoreOptions} from '../../src/store/store.js'

export type LabNode = {id: string; addr: string; store: Store; gossip: Gossip; port: number; nodeKey: KeyPair}

/** A lab node's gossip options; its join side admits as the agent's manager does (src/manager/admission.ts). */
export type LabGossipOptions = Partial<Omit<GossipOptions, 'join'>> & {join?: Omit<JoinAnswering, 'admit'>}

export class GossipLab {
  readonly root = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmnet-gossip-'))
  readonly identity = generateIdentity()
  readonly token = generateToken(this.identity.publicKey)
  readonly clusterKey = generateKey()
  readonly running = new Set<LabNode>()
  readonly keys = new Map<string, KeyPair>()
  private nextAddr = 1

  newAddr(): string {
    return `127.0.0.${this.nextAddr++}`
  }

  /** The manager's decision behind the handshake: the same admission an agent's manager runs. */
  answering(store: Store, id: string, join: Omit<JoinAnswering, 'admit'> | undefined): JoinAnswering | undefined {
    return (
      join && {
        ...join,
        admit: (node, role, holdsKey) => admitJoiner({store, selfId: id, identity: join.identity}, node, role, holdsKey),
      }
    )
  }

  openStore(id: string, opts: StoreOptions = {}): Store {
    return new Store(path.join(this.root, id), id, {reapIntervalMs: 0, ...opts}).open()
  }

  async start(
    id: string,
    addr: string,
    port: number,
    opts: {manager?: boolean; store?: Store; gossip?: LabGossipOptions} = {},
  ): Promise<LabNode> {
    const store = opts.store ?? this.openStore(id)
    let nodeKey = this.keys.get(id)
    if (!nodeKey) this.keys.set(id, (nodeKey = generateNodeKey()))
    const gossip = new Gossip({
      store,
      nodeId: id,
      bindAddr: addr,
      port,
      key: this.clusterKey,
      identity: this.identity.publicKey,
      nodeKey,
      pushPullIntervalMs: 300,
      ...opts.gossip,
      join: this.answering(
        store,
        id,
        opts.gossip?.join ??
          (opts.manager ? {identity: this.identity, tokens: () => [{token: this.token, role: 'worker'}]} : undefined),
      ),
    })
    const bound = await gossip.start()
    const node = {id, addr, store, gossip, port: bound, nodeKey}
    this.running.add(node)
    return node
  }

  /** A manager as init makes it: its certified record, the cluster, one network. */
  async manager(id = 'm', opts: {store?: Store; gossip?: LabGossipOptions} = {}): Promise<LabNode> {
    const addr = this.newAddr()
    const nodeKey = generateNodeKey()
    this.keys.set(id, nodeKey)
    const m = await this.start(id, addr, 0, {manager: true, ...opts})
    const rec: NodeRecord = {
      id,
      name: id,
      addr,
      gossipPort: m.port,
      role: 'manager',
      state: 'ready',
      mtu: 1500,
      joinedAt: 1,
      pubKey: nodeKey.publicKey,
      cert: certifyNode(this.identity, id, nodeKey.publicKey, 'manager'),
    }
    m.store.put(`node/${id}`, rec)
    m.store.put('cluster', {id: 'c1', createdAt: 1, dataPathPort: 4789, defaultAddrPool: '10.0.0.0/8', subnetSize: 24})
    m.store.put('network/ingress', {id: 'ingress', name: 'ingress', vni: 4096, subnet: '10.0.0.0/24'})
    return m
  }

  /** Joins through the real handshake, then starts the node on what it got. */
  async worker(id: string, manager: LabNode, opts: {store?: StoreOptions; gossip?: LabGossipOptions} = {}): Promise<LabNode> {
    const addr = this.newAddr()
    const port = await freePort(addr)
    const nodeKey = generateNodeKey()
    this.keys.set(id, nodeKey)
    const r = await requestJoin({
      manager: {addr: manager.addr, port: manager.port},
      token: this.token,
      node: {id, name: id, addr, gossipPort: port, mtu: 1500, pubKey: nodeKey.publicKey},
    })
    const s = this.openStore(id, opts.store)
    s.merge(r.entries)
    return this.start(id, addr, port, {store: s, gossip: opts.gossip})
  }

  async stop(n: LabNode): Promise<void> {
    this.running.delete(n)
    await n.gossip.stop()
    n.store.close()
  }

  async close(): Promise<void> {
    for (const n of [...this.running]) await this.stop(n)
    fs.rmSync(this.root, {recursive: true, force: true})
  }
}

/** A port free for both TCP and UDP on addr right now (a joiner names its port before binding). */
export async function freePort(addr: string): Promise<number> {
  for (;;) {
    const srv = net.createServer()
    await new Promise<void>((r) => srv.listen(0, addr, r))
    const port = (srv.address() as net.AddressInfo).port
    const udp = dgram.createSocket('udp4')
    const ok = await new Promise<boolean>((r) => {
      udp.once('error', () => r(false))
      udp.bind(port, addr, () => r(true))
    })
    await new Promise<void>((r) => srv.close(() => r()))
    if (ok) {
      await new Promise<void>((r) => udp.close(() => r()))
      return port
    }
  }
}

export async function waitFor(what: string, ok: () => boolean, ms: number): Promise<number> {
  const t0 = Date.now()
  while (!ok()) {
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
  return Date.now() - t0
}

/** A sealed message as a node would send it, with a header of our choosing, signed by `signer` (tests of what receivers refuse). */
export function sealAs(key: Buffer, m: Message, signer: KeyPair): Buffer {
  return sealMessage(new Keyring(key), signer.privateKey, m)
}

/** An entry signed by `writer` (its key from the lab), as its store would sign it. */
export function signedEntry(lab: GossipLab, writer: string, e: Omit<Entry, 'sig'>): Entry {
  const key = lab.keys.get(writer)
  assert.ok(key, `no key for ${writer}`)
  return {...e, sig: signWith(key.privateKey, signedText(e))}
}

export async function sendUdp(packet: Buffer, to: {addr: string; port: number}): Promise<void> {
  const udp = dgram.createSocket('udp4')
  await new Promise<void>((r) => udp.send(packet, to.port, to.addr, () => r()))
  await new Promise<void>((r) => udp.close(() => r()))
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
