import {createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual} from 'node:crypto'
import {DEFAULT_GOSSIP_PORT} from '../model/defaults.js'
import {UserError} from '../model/errors.js'
import {isIpv4} from '../model/ipv4.js'
import type {NodeRecord, NodeRole} from '../model/types.js'
import {isEntryList, isId, parseJsonObject} from './codec.js'
import type {Entry} from '../store/entry.js'
import type {FramedConn} from './frame.js'
import {signWith, verifyWith, type KeyPair} from './identity.js'
import {tokenDigest, parseToken, type JoinToken} from './token.js'
import {openWith, sealWith, KEY_BYTES} from './keyring.js'
import {connectFramed, JOIN_FRAME, TCP_TIMEOUT_MS} from './transport.js'
import {checkManagerSecrets, type ManagerSecrets} from './manager-secrets.js'

/**
 * The join handshake, on the gossip port over TCP, before the joiner has the
 * cluster key:
 *
 *   joiner  -> hello     {digest, cnonce}              (the token's public half)
 *   manager -> challenge {nonce, identity, sig}        sig = Ed25519(identity key, cnonce + nonce)
 *           |  refused   {reason}
 *   joiner  -> proof     {node, mac}                   mac = HMAC(K_auth, nonces + node)
 *   manager -> accept    {sealed, sig}                 AES-GCM under K_seal: key + whole state;
 *                                                      sig = Ed25519(identity key, nonces + node + sha256(answer))
 *           |  refused   {reason}
 *
 * The identity's public key must hash to the token's digest and the signature
 * over the joiner's fresh nonce must verify with it, so the joiner knows it
 * reached the cluster its token names (a host that only copied the public
 * values cannot sign) before it sends anything about itself. K_auth and
 * K_seal come from the token secret by HKDF, so the secret never crosses the
 * wire. The node's public key travels in the proof (under the MAC); the
 * manager certifies it in the node record it writes.
 *
 * The token is shared by every worker, so K_seal alone proves nothing about
 * who wrote the answer: anyone on the path holding the worker token could open
 * it, put in tasks of its choosing and seal it again. The cluster identity
 * therefore signs the transcript (both nonces, the node as the manager read
 * it, the answer's hash), and the joiner checks that signature with the
 * identity it pinned from the token's digest, as a Swarm node checks the
 * manager's TLS chain against the CA digest in its token.
 */

export type JoinRequestNode = Pick<NodeRecord, 'id' | 'name' | 'addr' | 'gossipPort' | 'mtu'> & {
  /** The joiner's node key (SPKI DER, base64), which the manager certifies. */
  pubKey: string
}

export type JoinResult = {
  key: Buffer
  keyId: number
  /** The cluster identity's public key, as proved in the challenge. */
  identity: string
  /** The whole state, the joiner's own record included. */
  entries: Entry[]
  role: NodeRole
  /** A manager's: the identity and tokens, so it can admit and certify as well (in the sealed answer). */
  secrets?: ManagerSecrets
}

export type JoinServerContext = {
  /** The cluster identity (what token digests pin); its private half signs the challenge. */
  identity: KeyPair
  /** Tokens valid right now; the one that matches decides the role. */
  tokens: () => {token: JoinToken; role: NodeRole}[]
  clusterKey: () => {key: Buffer; keyId: number}
  /**
   * Writes the joiner's node record; returns the whole state to send.
   * `holdsKey(pubKey)` says whether the joiner signed this handshake with that
   * node key: a member that comes back (after missing a key rotation) proves
   * it is the node it claims to be, on top of holding a valid token.
   */
  admit: (node: JoinRequestNode, role: NodeRole, holdsKey: (pubKey: string) => boolean) => Promise<Entry[]>
  onRefused?: (reason: string, from: string) => void
  /** What a new manager gets to do all a manager does (cluster on etcd); absent: managers cannot join. */
  managerSecrets?: () => ManagerSecrets | undefined
}

const REFUSED_TOKEN = 'invalid join token'
const SEAL_LABEL = Buffer.from('swarmnet-join')
const MAX_PUBKEY = 128

function challengeText(cnonce: Buffer, nonce: Buffer): string {
  return JSON.stringify(['swarmnet join challenge 1', cnonce.toString('base64'), nonce.toString('base64')])
}

/** What a returning member signs with its node key: bound to this handshake's nonces and its id. */
function rejoinText(cnonce: Buffer, nonce: Buffer, id: string): string {
  return JSON.stringify(['swarmnet rejoin 1', cnonce.toString('base64'), nonce.toString('base64'), id])
}

/** What the cluster identity signs in the accept: this handshake, this node, this answer. */
function answerText(cnonce: Buffer, nonce: Buffer, node: JoinRequestNode, answer: Buffer): string {
  return JSON.stringify([
    'swarmnet join answer 1',
    cnonce.toString('base64'),
    nonce.toString('base64'),
    nodeCanon(node),
    createHash('sha256').update(answer).digest('hex'),
  ])
}

function nodeCanon(node: JoinRequestNode): string {
  return JSON.stringify([node.id, node.name, node.addr, node.gossipPort, node.mtu, node.pubKey])
}

function frame(x: object): Buffer {
  return Buffer.concat([Buffer.from([JOIN_FRAME]), Buffer.from(JSON.stringify(x))])
}

function unframe(f: Buffer | undefined): Record<string, unknown> | undefined {
  if (!f || f[0] !== JOIN_FRAME) return undefined
  return parseJsonObject(f.subarray(1))
}

function derive(token: JoinToken, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', token.secret, token.digest, info, KEY_BYTES))
}

function proofMac(token: JoinToken, nonce: Buffer, cnonce: Buffer, node: JoinRequestNode): Buffer {
  const canon = nodeCanon(node)
  return createHmac('sha256', derive(token, 'swarmnet join auth'))
    .update('join-proof')
    .update(nonce)
    .update(cnonce)
    .update(canon)
    .digest()
}

function sealKey(token: JoinToken, nonce: Buffer, cnonce: Buffer): Buffer {
  return derive(token, `swarmnet join seal ${nonce.toString('hex')} ${cnonce.toString('hex')}`)
}

function isJoinNode(x: unknown): x is JoinRequestNode {
  if (typeof x !== 'object' || x === null) return false
  const n = x as Record<string, unknown>
  return (
    isId(n.id) &&
    typeof n.name === 'string' &&
    n.name.length > 0 &&
    n.name.length <= 253 &&
    typeof n.addr === 'string' &&
    isIpv4(n.addr) &&
    typeof n.gossipPort === 'number' &&
    Number.isInteger(n.gossipPort) &&
    n.gossipPort > 0 &&
    n.gossipPort < 65536 &&
    typeof n.mtu === 'number' &&
    Number.isInteger(n.mtu) &&
    n.mtu >= 576 &&
    n.mtu <= 65535 &&
    typeof n.pubKey === 'string' &&
    n.pubKey.length > 0 &&
    n.pubKey.length <= MAX_PUBKEY
  )
}

function b64(x: unknown, bytes?: number): Buffer | undefined {
  if (typeof x !== 'string' || x.length > 64 * 1024 * 1024) return undefined
  const b = Buffer.from(x, 'base64')
  return bytes === undefined || b.length === bytes ? b : undefined
}

/** Manager side: runs one handshake on an accepted connection. Never throws. */
export async function serveJoin(conn: FramedConn, first: Buffer, ctx: JoinServerContext): Promise<boolean> {
  const refuse = (reason: string): false => {
    conn.send(frame({t: 'refused', reason}))
    conn.close()
    ctx.onRefused?.(reason, conn.remote)
    return false
  }
  try {
    const hello = unframe(first)
    const cnonce = hello ? b64(hello.cnonce, 32) : undefined
    if (!hello || hello.t !== 'hello' || typeof hello.digest !== 'string' || !cnonce) return refuse('malformed join request')
    if (hello.digest !== tokenDigest(ctx.identity.publicKey)) return refuse(REFUSED_TOKEN)
    const nonce = randomBytes(32)
    const sig = signWith(ctx.identity.privateKey, challengeText(cnonce, nonce))
    conn.send(frame({t: 'challenge', nonce: nonce.toString('base64'), identity: ctx.identity.publicKey, sig}))

    const proof = unframe(await conn.next(TCP_TIMEOUT_MS))
    const mac = proof ? b64(proof.mac, 32) : undefined
    if (!proof || proof.t !== 'proof' || !mac || !isJoinNode(proof.node)) return refuse('malformed join request')
    const node: JoinRequestNode = {
      id: proof.node.id,
      name: proof.node.name,
      addr: proof.node.addr,
      gossipPort: proof.node.gossipPort,
      mtu: proof.node.mtu,
      pubKey: proof.node.pubKey,
    }
    const match = ctx.tokens().find(({token}) => timingSafeEqual(proofMac(token, nonce, cnonce, node), mac))
    if (!match) return refuse(REFUSED_TOKEN)

    const rejoinSig = typeof proof.rejoin === 'string' ? proof.rejoin : undefined
    const holdsKey = (pubKey: string) =>
      rejoinSig !== undefined && verifyWith(pubKey, rejoinText(cnonce, nonce, node.id), rejoinSig)
    const secrets = match.role === 'manager' ? ctx.managerSecrets?.() : undefined
    if (match.role === 'manager' && !secrets) return refuse('this manager cannot admit managers')
    const entries = await ctx.admit(node, match.role, holdsKey)
    const {key, keyId} = ctx.clusterKey()
    const body = Buffer.from(
      JSON.stringify({key: key.toString('base64'), keyId, role: match.role, entries, ...(secrets ? {secrets} : {})}),
    )
    const sealed = sealWith(sealKey(match.token, nonce, cnonce), body, 0, SEAL_LABEL)
    const signed = signWith(ctx.identity.privateKey, answerText(cnonce, nonce, node, body))
    conn.send(frame({t: 'accept', sealed: sealed.toString('base64'), sig: signed}))
    conn.close()
    return true
  } catch (e) {
    return refuse(e instanceof UserError ? e.message : `internal error: ${(e as Error).message}`)
  }
}

/** `MANAGER[:PORT]`, port 7946 when not given. */
export function parseManagerAddr(text: string): {addr: string; port: number} {
  const m = /^([^:]+)(?::([0-9]{1,5}))?$/.exec(text.trim())
  const port = m?.[2] === undefined ? DEFAULT_GOSSIP_PORT : Number(m[2])
  if (!m || port < 1 || port > 65535) throw new UserError(`invalid manager address '${text}': expected HOST[:PORT]`)
  return {addr: m[1] as string, port}
}

/**
 * Joiner side. Throws UserError: "join refused: invalid join token", an
 * unreachable manager (with its address), or a manager of another cluster.
 */
export async function requestJoin(opts: {
  manager: string | {addr: string; port: number}
  token: string | JoinToken
  node: JoinRequestNode
  timeoutMs?: number
  /** A member coming back under its own id: its node key's private half, to prove it. */
  rejoinKey?: string
}): Promise<JoinResult> {
  const token = typeof opts.token === 'string' ? parseToken(opts.token) : opts.token
  const to = typeof opts.manager === 'string' ? parseManagerAddr(opts.manager) : opts.manager
  const where = `${to.addr}:${to.port}`
  const timeout = opts.timeoutMs ?? TCP_TIMEOUT_MS
  let conn: FramedConn
  try {
    conn = await connectFramed(to, timeout)
  } catch (e) {
    throw new UserError(
      `cannot reach the manager at ${where}: ${(e as Error).message.replace(/^cannot reach [^:]+:[0-9]+: /, '')}`,
    )
  }
  try {
    const read = async (): Promise<Record<string, unknown>> => {
      const f = await conn.next(timeout)
      if (!f)
        throw new UserError(
          `join failed: the manager at ${where} ${conn.error === 'timed out' ? 'did not answer' : 'closed the connection'}`,
        )
      const x = unframe(f)
      if (!x) throw new UserError(`join failed: the manager at ${where} sent a malformed answer`)
      if (x.t === 'refused') throw new UserError(`join refused: ${typeof x.reason === 'string' ? x.reason : 'no reason given'}`)
      return x
    }
    const cnonce = randomBytes(32)
    conn.send(frame({t: 'hello', digest: token.digest, cnonce: cnonce.toString('base64')}))
    const ch = await read()
    const nonce = b64(ch.nonce, 32)
    if (ch.t !== 'challenge' || !nonce || typeof ch.identity !== 'string' || typeof ch.sig !== 'string') {
      throw new UserError(`join failed: the manager at ${where} sent a malformed challenge`)
    }
    if (tokenDigest(ch.identity) !== token.digest) {
      throw new UserError(`join refused: the node at ${where} belongs to another cluster than the token's`)
    }
    if (!verifyWith(ch.identity, challengeText(cnonce, nonce), ch.sig)) {
      throw new UserError(
        `join refused: the node at ${where} could not prove it holds the identity of the token's cluster (not its manager)`,
      )
    }
    const identity = ch.identity
    conn.send(
      frame({
        t: 'proof',
        node: opts.node,
        mac: proofMac(token, nonce, cnonce, opts.node).toString('base64'),
        ...(opts.rejoinKey ? {rejoin: signWith(opts.rejoinKey, rejoinText(cnonce, nonce, opts.node.id))} : {}),
      }),
    )
    const acc = await read()
    const sealed = acc.t === 'accept' ? b64(acc.sealed) : undefined
    const plain = sealed ? openWith(sealKey(token, nonce, cnonce), sealed, SEAL_LABEL) : undefined
    // Sealed with a key every holder of the token can make: only the identity's signature says a manager wrote it.
    if (plain && (typeof acc.sig !== 'string' || !verifyWith(identity, answerText(cnonce, nonce, opts.node, plain), acc.sig)))
      throw new UserError(`join refused: the answer from ${where} is not signed by the cluster's identity`)
    const body = plain ? parseJsonObject(plain) : undefined
    const key = body ? b64(body.key, KEY_BYTES) : undefined
    if (
      !body ||
      !key ||
      typeof body.keyId !== 'number' ||
      !Number.isInteger(body.keyId) ||
      body.keyId < 0 ||
      body.keyId > 255 ||
      (body.role !== 'manager' && body.role !== 'worker') ||
      !isEntryList(body.entries)
    ) {
      throw new UserError(`join failed: the manager at ${where} sent an answer that does not authenticate`)
    }
    const secrets = body.role === 'manager' ? checkManagerSecrets(body.secrets) : undefined
    if (body.role === 'manager' && secrets?.identity.publicKey !== identity)
      throw new UserError(`join failed: the manager at ${where} sent no usable cluster identity for a new manager`)
    return {key, keyId: body.keyId, identity, role: body.role, entries: body.entries, ...(secrets ? {secrets} : {})}
  } finally {
    conn.destroy()
  }
}
