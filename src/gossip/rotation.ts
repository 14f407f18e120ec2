import {createHash, randomBytes} from 'node:crypto'
import {signWith, verifyWith} from './identity.js'
import {KEY_BYTES, type Keyring} from './keyring.js'

/**
 * Cluster key rotation, driven by the manager, in three phases:
 *
 *   install  every live node installs the new key next to the current one
 *            (the directive travels sealed under the current key) and acks;
 *   use      once every live node has acked, the manager seals with the new
 *            key and tells every node to do the same; the old key still opens
 *            (grace period: packets sealed before the switch, nodes that
 *            switch a little later);
 *   retire   after the grace period, every node removes the old key.
 *
 * What the manager sends is not a step but the whole wanted keyring change (a
 * directive: install this key, seal with that one, remove those), signed by the
 * manager's node key and resent every tick to each live node that has not acked
 * it, so a lost datagram or a node that comes back mid-rotation ends in the
 * same place. A node that was down until after the old key was retired can
 * read nothing any more: it gets the current key by joining again with the
 * join token (src/gossip/join.ts, `rejoin`).
 */
export type KeyDirective = {
  /** Increases with every directive of this manager: a node ignores one older than the last it applied. */
  gen: number
  install?: {id: number; key: string}
  /** The key id to seal with (must be installed by then). */
  primary?: number
  retire: number[]
  /** The manager that signs it (its node record carries its key). */
  by: string
  sig: string
}

export type RotationPhase = 'idle' | 'install' | 'use' | 'retire'

export type RotationStatus = {
  phase: RotationPhase
  /** The key being installed or just put in use; the one being retired. */
  newId?: number
  oldId?: number
  /** Live nodes that have not yet acked the current directive. */
  waitingFor: string[]
  /** When the old key is retired (phase 'use'). */
  retireAt?: number
  lastRotatedAt?: number
  rotations: number
}

/**
 * What an ack names, with the key id: the bytes the node holds under the key id being rotated to. Two
 * rotations at once (two managers) can pick the same id with different bytes; an ack
 * counts only for the bytes this manager made, so it never seals with a key a node lacks.
 */
export function keyHash(key: Buffer | undefined): string {
  return key ? createHash('sha256').update(key).digest('hex').slice(0, 32) : ''
}

export function directiveText(d: Omit<KeyDirective, 'sig'>): string {
  return JSON.stringify([
    'swarmnet keys 1',
    d.gen,
    d.install?.id ?? null,
    d.install?.key ?? null,
    d.primary ?? null,
    d.retire,
    d.by,
  ])
}

export function signDirective(d: Omit<KeyDirective, 'sig'>, privateKey: string): KeyDirective {
  return {...d, sig: signWith(privateKey, directiveText(d))}
}

export function verifyDirective(d: KeyDirective, publicKey: string): boolean {
  return verifyWith(publicKey, directiveText(d), d.sig)
}

function isKeyId(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 255
}

export function isKeyDirective(x: unknown): x is KeyDirective {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false
  const d = x as Record<string, unknown>
  if (typeof d.gen !== 'number' || !Number.isSafeInteger(d.gen) || d.gen < 0) return false
  if (d.install !== undefined) {
    const i = d.install as Record<string, unknown> | null
    if (typeof i !== 'object' || i === null || !isKeyId(i.id) || typeof i.key !== 'string') return false
    if (Buffer.from(i.key, 'base64').length !== KEY_BYTES) return false
  }
  if (d.primary !== undefined && !isKeyId(d.primary)) return false
  if (!Array.isArray(d.retire) || d.retire.length > 256 || !d.retire.every(isKeyId)) return false
  return typeof d.by === 'string' && d.by.length > 0 && d.by.length <= 128 && typeof d.sig === 'string' && d.sig.length <= 256
}

/**
 * Applies a directive to a node's keyring: install, then switch, then remove.
 * Never replaces the key the node seals with by other bytes, never removes it,
 * never switches to a key it does not hold: such a directive is refused whole
 * (returns a reason) and the ring is left as it was. Returns whether it changed.
 */
export function applyDirective(ring: Keyring, d: KeyDirective): {changed: boolean; refused?: string} {
  const installKey = d.install ? Buffer.from(d.install.key, 'base64') : undefined
  if (d.install && d.install.id === ring.primary && !ring.key(ring.primary)!.equals(installKey!))
    return {changed: false, refused: `key ${d.install.id} is the key in use here: not replaced`}
  const willHold = (id: number) => ring.has(id) || d.install?.id === id
  if (d.primary !== undefined && !willHold(d.primary)) return {changed: false, refused: `key ${d.primary} is not installed`}
  const primary = d.primary ?? ring.primary
  if (d.retire.includes(primary)) return {changed: false, refused: `key ${primary} cannot be retired: it is in use`}
  let changed = false
  if (d.install && installKey && !ring.key(d.install.id)?.equals(installKey)) {
    ring.install(d.install.id, installKey)
    changed = true
  }
  if (primary !== ring.primary) {
    ring.use(primary)
    changed = true
  }
  for (const id of d.retire) {
    if (ring.has(id)) {
      ring.remove(id)
      changed = true
    }
  }
  return {changed}
}

export type KeyRotationOptions = {
  ring: Keyring
  /** This manager: its node id and private key sign every directive. */
  selfId: string
  privateKey: string
  /** The nodes that must have the new key before anyone seals with it: the live ones. */
  peers: () => {id: string}[]
  send: (peerId: string, d: KeyDirective) => void
  /** The ring changed: persist it before anything is sealed with it. */
  persist: (ring: Keyring) => void
  /** The old key's grace period after the switch (ms). */
  graceMs: number
  /** How often the directive is resent to those that have not acked (ms). */
  resendMs?: number
  /** How long a retire directive is resent before the rotation is called done anyway (ms). */
  retireWaitMs?: number
  now?: () => number
  log?: (m: string) => void
}

export const DEFAULT_KEY_GRACE_MS = 5 * 60_000
export const DEFAULT_KEY_ROTATION_MS = 12 * 3_600_000

/** The manager's side: one rotation at a time, advanced by tick() (driven by a timer, or by a test). */
export class KeyRotation {
  private phase: RotationPhase = 'idle'
  private newId: number | undefined
  private oldId: number | undefined
  private newKey: Buffer | undefined
  private current: KeyDirective | undefined
  private readonly acked = new Set<string>()
  private readonly lastSent = new Map<string, number>()
  private retireAt = 0
  private retireGiveUpAt = 0
  private gen: number
  private graceMs: number
  private readonly resendMs: number
  private readonly retireWaitMs: number
  private readonly now: () => number
  private waiters: {phase: RotationPhase[]; resolve: () => void}[] = []
  lastRotatedAt: number | undefined
  rotations = 0

  constructor(private readonly o: KeyRotationOptions) {
    this.now = o.now ?? Date.now
    this.gen = this.now()
    this.graceMs = o.graceMs
    this.resendMs = o.resendMs ?? 500
    this.retireWaitMs = o.retireWaitMs ?? 10_000
  }

  get busy(): boolean {
    return this.phase !== 'idle'
  }

  status(): RotationStatus {
    return {
      phase: this.phase,
      ...(this.newId !== undefined ? {newId: this.newId} : {}),
      ...(this.oldId !== undefined ? {oldId: this.oldId} : {}),
      waitingFor: this.phase === 'idle' ? [] : this.live().filter((id) => !this.acked.has(id)),
      ...(this.phase === 'use' ? {retireAt: this.retireAt} : {}),
      ...(this.lastRotatedAt !== undefined ? {lastRotatedAt: this.lastRotatedAt} : {}),
      rotations: this.rotations,
    }
  }

  /**
   * Starts a rotation: a new key under the next free id, installed here at
   * once (so this node opens what others seal with it), sent everywhere.
   * Throws while another rotation is under way.
   */
  start(graceMs = this.o.graceMs): {newId: number; oldId: number} {
    if (this.busy) throw new Error(`a key rotation is already under way (phase ${this.phase})`)
    const ring = this.o.ring
    const oldId = ring.primary
    let newId = (oldId + 1) % 256
    while (ring.has(newId)) newId = (newId + 1) % 256
    this.newKey = randomBytes(KEY_BYTES)
    ring.install(newId, this.newKey)
    this.o.persist(ring)
    this.newId = newId
    this.oldId = oldId
    this.graceMs = graceMs
    this.rotations++
    this.enter('install')
    this.o.log?.(`keys: rotation to key ${newId} started (installing on ${this.live().length} node(s))`)
    this.tick()
    return {newId, oldId}
  }

  /**
   * After a restart with more than one key installed (a rotation cut short):
   * keep sealing with the primary and retire the others after the grace period.
   */
  resume(): void {
    const ring = this.o.ring
    const others = ring.ids().filter((id) => id !== ring.primary)
    if (this.busy || others.length === 0) return
    this.newId = ring.primary
    this.newKey = ring.key(ring.primary)
    this.oldId = others[0]
    this.retireAt = this.now() + this.graceMs
    this.enter('use')
    this.tick()
  }

  /** A node applied the directive of this generation and holds, under key id `id`, the bytes hashed to `hash`. */
  onAck(from: string, gen: number, id: number, hash: string): void {
    if (this.current && gen === this.current.gen && id === this.newId && hash === keyHash(this.newKey)) this.acked.add(from)
    this.tick()
  }

  /** Resolves once the rotation has reached one of the phases (or is idle). */
  until(...phases: RotationPhase[]): Promise<void> {
    if (phases.includes(this.phase) || this.phase === 'idle') return Promise.resolve()
    return new Promise((resolve) => this.waiters.push({phase: phases, resolve}))
  }

  /** Moves the rotation on when it can, and resends to whoever has not acked. */
  tick(): void {
    if (this.phase === 'idle' || !this.current) return
    const live = this.live()
    const missing = live.filter((id) => !this.acked.has(id))
    const now = this.now()
    if (this.phase === 'install' && missing.length === 0) {
      // Every live node can open the new key: seal with it from now on.
      this.o.ring.use(this.newId!)
      this.o.persist(this.o.ring)
      this.retireAt = now + this.graceMs
      this.enter('use')
      this.o.log?.(
        `keys: every live node has key ${this.newId}: sealing with it; key ${this.oldId} retires in ${this.graceMs} ms`,
      )
      return this.tick()
    }
    if (this.phase === 'use' && now >= this.retireAt) {
      if (this.o.ring.has(this.oldId!)) this.o.ring.remove(this.oldId!)
      for (const id of this.o.ring.ids()) if (id !== this.o.ring.primary) this.o.ring.remove(id)
      this.o.persist(this.o.ring)
      this.retireGiveUpAt = now + this.retireWaitMs
      this.enter('retire')
      this.o.log?.(`keys: key ${this.oldId} retired`)
      return this.tick()
    }
    if (this.phase === 'retire' && (missing.length === 0 || now >= this.retireGiveUpAt)) {
      this.lastRotatedAt = now
      this.phase = 'idle'
      this.current = undefined
      this.newKey = undefined
      this.settle()
      return
    }
    for (const id of missing) {
      const last = this.lastSent.get(id)
      if (last !== undefined && now - last < this.resendMs) continue
      this.lastSent.set(id, now)
      this.o.send(id, this.current)
    }
  }

  private enter(phase: RotationPhase): void {
    this.phase = phase
    this.acked.clear()
    this.lastSent.clear()
    this.gen = Math.max(this.gen + 1, this.now())
    const install = {id: this.newId!, key: this.newKey!.toString('base64')}
    const body: Omit<KeyDirective, 'sig'> = {
      gen: this.gen,
      install,
      ...(phase === 'install' ? {} : {primary: this.newId!}),
      retire: phase === 'retire' ? [this.oldId!] : [],
      by: this.o.selfId,
    }
    this.current = signDirective(body, this.o.privateKey)
    this.settle()
  }

  private settle(): void {
    const left: typeof this.waiters = []
    for (const w of this.waiters) {
      if (this.phase === 'idle' || w.phase.includes(this.phase)) w.resolve()
      else left.push(w)
    }
    this.waiters = left
  }

  private live(): string[] {
    return this.o.peers().map((p) => p.id)
  }
}

/** `12h`, `30m`, `45s`, `500ms`, or `0` (off): milliseconds. Throws one line for anything else. */
export function parseDuration(text: string, what: string): number {
  const m = /^\s*([0-9]+)\s*(ms|s|m|h|d)?\s*$/.exec(text)
  if (!m) throw new Error(`invalid ${what} '${text}': expected a number with a unit (ms, s, m, h, d), e.g. 12h, or 0`)
  const n = Number(m[1])
  const unit = m[2] ?? (n === 0 ? 'ms' : undefined)
  if (unit === undefined) throw new Error(`invalid ${what} '${text}': give a unit (ms, s, m, h, d), e.g. 12h`)
  const mult = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000}[unit as 'ms' | 's' | 'm' | 'h' | 'd']
  const ms = n * mult
  if (!Number.isSafeInteger(ms) || ms > 365 * 86_400_000) throw new Error(`invalid ${what} '${text}': at most 365d`)
  return ms
}
