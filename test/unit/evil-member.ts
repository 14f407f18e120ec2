// The "evil member": a member of the cluster that joined as any worker does
// (the real handshake: it holds the cluster key, its own node key, and its
// node record with the manager's certificate), but speaks the protocol with
// its own hand: sealed datagrams and TCP frames on loopback, built here, with
// headers, rumours and entries of its choosing. What it can do to real nodes
// (src/ Gossip and Membership on their own sockets) is what any holder of a
// worker's keys can do. It never starts a Gossip of its own.
import * as dgram from 'node:dgram'
import {Gossip} from '../../src/gossip/gossip.js'
import type {Body, Message} from '../../src/gossip/codec.js'
import {connectFramed, sealMessage} from '../../src/gossip/transport.js'
import type {FramedConn} from '../../src/gossip/frame.js'
import {generateNodeKey, signWith, type KeyPair} from '../../src/gossip/identity.js'
import {requestJoin} from '../../src/gossip/join.js'
import {Keyring} from '../../src/gossip/keyring.js'
import type {SwimMessage, Update} from '../../src/membership/messages.js'
import {Membership} from '../../src/membership/swim.js'
import type {NodeRecord} from '../../src/model/types.js'
import {signedText, type Entry} from '../../src/store/entry.js'
import {prefixOf} from '../../src/store/keys.js'
import {freePort, type GossipLab, type LabNode} from './gossip-lab.js'

export type Target = {addr: string; port: number}

export class EvilMember {
  /** Its boot epoch, as a node's would be. */
  readonly epoch = Date.now()
  /** The last datagrams nodes sent it (sealed, as they came), newest last. */
  readonly received: Buffer[] = []
  private seq = 0
  private constructor(
    readonly id: string,
    readonly addr: string,
    readonly port: number,
    readonly clusterKey: Buffer,
    readonly nodeKey: KeyPair,
    /** Its own certified record, as the join answer carried it. */
    readonly record: NodeRecord,
    /** Everything the join answer carried. */
    readonly entries: Entry[],
    private readonly udp: dgram.Socket,
  ) {}

  /** Joins through the real handshake with the lab's worker token, as `swarmnet join` would. */
  static async join(lab: GossipLab, id: string, manager: LabNode): Promise<EvilMember> {
    const addr = lab.newAddr()
    const port = await freePort(addr)
    const nodeKey = generateNodeKey()
    lab.keys.set(id, nodeKey)
    const r = await requestJoin({
      manager: {addr: manager.addr, port: manager.port},
      token: lab.token,
      node: {id, name: id, addr, gossipPort: port, mtu: 1500, pubKey: nodeKey.publicKey},
    })
    const own = r.entries.find((e) => e.key === `node/${id}`)
    if (!own) throw new Error(`the join answer carried no record for ${id}`)
    const udp = dgram.createSocket('udp4')
    await new Promise<void>((res) => udp.bind(port, addr, () => res()))
    const evil = new EvilMember(id, addr, port, r.key, nodeKey, own.value as NodeRecord, r.entries, udp)
    // What nodes send it (probes) is kept for the tests to read: it answers nothing unless told to.
    udp.on('message', (b) => {
      evil.received.push(b)
      if (evil.received.length > 64) evil.received.shift()
    })
    return evil
  }

  /** A header as this member's transport would stamp it; any field can be forged. */
  header(over: Partial<Message> = {}): {from: string; epoch: number; seq: number; ts: number} {
    return {from: this.id, epoch: this.epoch, seq: ++this.seq, ts: Date.now(), ...over} as never
  }

  /** Seals a message with the cluster key, signed with `signer` (default: its own node key, the only one it holds). */
  packet(body: Body, over: Partial<Message> = {}, signer: KeyPair = this.nodeKey): Buffer {
    const m = {...body, ...this.header(over)} as Message
    return sealMessage(new Keyring(this.clusterKey), signer.privateKey, m)
  }

  /** One datagram from its own socket. */
  async send(to: Target, body: Body, over: Partial<Message> = {}, signer?: KeyPair): Promise<void> {
    await this.sendRaw(to, this.packet(body, over, signer))
  }

  async sendRaw(to: Target, packet: Buffer): Promise<void> {
    await new Promise<void>((res, rej) => this.udp.send(packet, to.port, to.addr, (e) => (e ? rej(e) : res())))
  }

  /** A SWIM message, as its membership would send one (its own `alive` signed). */
  async swim(to: Target, m: SwimMessage, over: Partial<Message> = {}): Promise<void> {
    const isig = this.signRumour({k: 'alive', id: this.id, inc: m.inc})
    await this.send(to, {t: 'swim', swim: {...m, isig} as SwimMessage}, over)
  }

  /** A rumour signed with its own key (whatever it claims). */
  rumour(u: Omit<Update, 'sig'>): Update {
    return {...u, sig: this.signRumour(u)}
  }

  private signRumour(u: Omit<Update, 'sig'>): string {
    // The text a rumour's signature covers (src/membership/messages.ts rumourText), spelt out as an attacker would.
    return signWith(this.nodeKey.privateKey, JSON.stringify(['swarmnet rumour 1', u.k, u.id, u.inc, u.by ?? null]))
  }

  /** An entry written and signed by this member. */
  entry(e: Omit<Entry, 'sig'>): Entry {
    return {...e, sig: signWith(this.nodeKey.privateKey, signedText(e))}
  }

  /** A sealed TCP connection to a node, opened as its transport would (the `open` frame first). */
  async connect(to: Target): Promise<FramedConn> {
    const conn = await connectFramed(to, 5000)
    conn.send(this.packet({t: 'open'}))
    return conn
  }

  close(): void {
    this.udp.close()
  }
}

/** Failure detection on a lab node, as the agent wires it: fed by the node's own store's records, rumours signed and checked. */
export function attachMembership(n: LabNode, config: ConstructorParameters<typeof Membership>[0]['config'] = {}): Membership {
  const g: Gossip = n.gossip
  const m = new Membership({
    self: {id: n.id, addr: n.addr, port: n.port},
    incarnation: g.epoch,
    net: {send: (to, msg, id) => g.sendSwim(to, msg, id)},
    config,
    sign: (text) => g.signRumour(text),
    verify: (id, text, sig) => g.verifyRumour(id, text, sig),
  })
  g.onSwim = (msg, from, addr) => m.receive(msg, from, addr)
  const roster = () =>
    m.setRoster(
      n.store
        .values<NodeRecord>(prefixOf('node'))
        .map((r) => ({id: r.id, addr: r.addr, port: r.gossipPort, left: r.state === 'left'})),
    )
  roster()
  n.store.onChange((k) => k.startsWith('node/') && roster())
  m.start()
  return m
}
