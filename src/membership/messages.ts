/**
 * What members say to each other, inside the gossip transport's sealed
 * envelope (type 'swim'). Every field is checked on arrival: anything else is
 * malformed, dropped and counted by the transport, never handed to the
 * protocol.
 */

/**
 * A rumour about one member's liveness at one incarnation. `by`: who said so (suspect, dead).
 * `sig`: the signature of rumourText(u) by the node that vouches for it: the member itself for
 * `alive`, the accuser (`by`) for `suspect` and `dead` (swim.ts checks it when given a verifier).
 */
export type Update = {k: 'alive' | 'suspect' | 'dead'; id: string; inc: number; by?: string; sig?: string}

/** What a rumour's signature covers. */
export function rumourText(u: Update): string {
  return JSON.stringify(['swarmnet rumour 1', u.k, u.id, u.inc, u.by ?? null])
}

/**
 * ping: "are you `target`?" carrying the sender's incarnation; ack answers
 * seq. ping-req asks a helper to ping target at addr:port and to answer with
 * an ack (it got one) or a nack (it did not, so the asker can tell its own
 * network from the target's). All carry piggybacked updates, and `isig`, the
 * sender's signature of its own `alive` at `inc`, so those who hear it can pass
 * that on as a rumour others can check.
 */
type Signed = {isig?: string}
export type SwimMessage =
  | ({op: 'ping'; seq: number; inc: number; target: string; u: Update[]} & Signed)
  | ({op: 'ack'; seq: number; inc: number; u: Update[]} & Signed)
  | ({op: 'ping-req'; seq: number; inc: number; target: string; addr: string; port: number; u: Update[]} & Signed)
  | ({op: 'nack'; seq: number; inc: number; u: Update[]} & Signed)

const MAX_UPDATES = 64
const MAX_ID = 128

export function isSwimMessage(x: unknown): x is SwimMessage {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false
  const m = x as Record<string, unknown>
  if (!isCount(m.seq) || !isCount(m.inc) || !isUpdates(m.u)) return false
  if (m.isig !== undefined && !isSig(m.isig)) return false
  switch (m.op) {
    case 'ping':
      return isId(m.target) && keysAre(m, ['op', 'seq', 'inc', 'target', 'u', 'isig'])
    case 'ack':
    case 'nack':
      return keysAre(m, ['op', 'seq', 'inc', 'u', 'isig'])
    case 'ping-req':
      return (
        isId(m.target) &&
        typeof m.addr === 'string' &&
        /^\d{1,3}(\.\d{1,3}){3}$/.test(m.addr) &&
        isCount(m.port) &&
        m.port > 0 &&
        m.port < 65536 &&
        keysAre(m, ['op', 'seq', 'inc', 'target', 'addr', 'port', 'u', 'isig'])
      )
    default:
      return false
  }
}

function isUpdates(x: unknown): x is Update[] {
  return Array.isArray(x) && x.length <= MAX_UPDATES && x.every(isUpdate)
}

function isUpdate(x: unknown): x is Update {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false
  const u = x as Record<string, unknown>
  if (u.k !== 'alive' && u.k !== 'suspect' && u.k !== 'dead') return false
  if (!isId(u.id) || !isCount(u.inc)) return false
  if (u.by !== undefined && !isId(u.by)) return false
  if (u.sig !== undefined && !isSig(u.sig)) return false
  return keysAre(u, ['k', 'id', 'inc', 'by', 'sig'])
}

/** An Ed25519 signature in base64 is 88 characters. */
function isSig(x: unknown): x is string {
  return typeof x === 'string' && x.length > 0 && x.length <= 128
}

function keysAre(o: Record<string, unknown>, allowed: string[]): boolean {
  return Object.keys(o).every((k) => allowed.includes(k))
}

function isId(x: unknown): x is string {
  return typeof x === 'string' && x.length > 0 && x.length <= MAX_ID
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}
