/** What the transport and gossip count; shown by `swarmnet info`, read by tests. */
export type GossipStats = {
  /** Valid messages received (UDP and TCP). */
  received: number
  /** Of those, authenticated by their (sender, receiver) pair key's MAC rather than an Ed25519 signature (pair-keys.ts). */
  macReceived: number
  /** Messages sent (per peer). */
  sent: number
  /** Sealed bytes that arrived (valid or not) and that were sealed to be sent. */
  bytesReceived: number
  bytesSent: number
  /** Authenticated but not a valid message, or not even an envelope. */
  malformed: number
  /** Did not open with any key we hold: wrong key, tampered or truncated. */
  decryptFailed: number
  /** Opened, but sealed too long ago or too far ahead of our clock, or from an older epoch of its sender. */
  stale: number
  /** Opened, but a packet we already accepted (played back). */
  replayed: number
  /** Opened and read, but not signed by the certified key of the node its header names (another member, or one not known here yet). */
  badSender: number
  /** Entries refused: not signed by a certified writer allowed to write their key (see authority.ts). */
  unauthorised: number
  /** Entries refused: their Lamport clock is more than MAX_CLOCK_JUMP ahead of ours. */
  clockJumps: number
  /** Inbound TCP connections closed at once: too many from one address or in all. */
  connsRefused: number
  /** A valid message whose handling threw (a bug: the fuzz test keeps this at 0). */
  handlerErrors: number
  /** Sends that failed (peer unreachable, connection cut). */
  sendErrors: number
  /** Push-pull exchanges completed, as either side. */
  pushPulls: number
  /** Of those this node started, the ones that ended at the summaries: the stores agreed (src/store/summary.ts). */
  pushPullsEqual: number
  /** Push-pulls abandoned: the peer's digest passed MAX_DIGEST_KEYS or MAX_DIGEST_BYTES (gossip.ts). */
  digestOverflows: number
  /** Desired-state entries dropped here because a manager's digest and deletion floor showed them deleted (gossip.ts forgetDeleted). */
  forgotten: number
  /** Push-pulls refused: MAX_SERVED_PUSHPULLS were being served already. */
  pushPullsRefused: number
  /** Entries merged into the store that changed it. */
  merged: number
  /** Received entries the store could not make durable (push-pull brings them again). */
  storeErrors: number
  joinsAccepted: number
  joinsRefused: number
  /** Members that came back with the join token under their own id (to get the current key). */
  rejoins: number
  /** Key directives that changed this node's keyring (rotation.ts). */
  keyChanges: number
  /** SWIM pings answered by the UDP thread, off the event loop (udp-thread.ts). */
  swimAckedOffLoop: number
  /** SWIM pings the UDP thread did not answer: the main thread's heartbeat was older than its bound. */
  swimAcksWithheld: number
}

export function emptyStats(): GossipStats {
  return {
    received: 0,
    macReceived: 0,
    sent: 0,
    bytesReceived: 0,
    bytesSent: 0,
    malformed: 0,
    decryptFailed: 0,
    stale: 0,
    replayed: 0,
    badSender: 0,
    unauthorised: 0,
    clockJumps: 0,
    connsRefused: 0,
    handlerErrors: 0,
    sendErrors: 0,
    pushPulls: 0,
    pushPullsEqual: 0,
    digestOverflows: 0,
    forgotten: 0,
    pushPullsRefused: 0,
    merged: 0,
    storeErrors: 0,
    joinsAccepted: 0,
    joinsRefused: 0,
    keyChanges: 0,
    rejoins: 0,
    swimAckedOffLoop: 0,
    swimAcksWithheld: 0,
  }
}
