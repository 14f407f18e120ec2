import type {AttachmentStatus, NetworkAttachment, NodeRecord, Task, TaskStatus} from '../model/types.js'
import {signedText, type Entry} from '../store/entry.js'
import type {Json} from '../store/json.js'
import {CLUSTER_KEY, isDesiredStateKey, keyOf, prefixOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import {certSerial, checkNodeCert, verifyWith} from './identity.js'
import {revokedKey, type Revocation} from './revocation.js'

/**
 * Who may write what. The cluster key only says a packet comes from some
 * member; every entry also carries its writer's Ed25519 signature (version.node
 * names the writer), and a writer's key is believed only from a node record
 * that carries a certificate from the cluster identity binding id, key and
 * role (issued by the manager at join). So entries can be relayed by anyone
 * (push-pull, the join answer) and still be judged by who wrote them:
 *
 *  - desired state (cluster, network/, service/, task/, attachment/): managers only;
 *  - nodespec/<id> (a node's labels and availability): managers only, the node itself included;
 *  - node/<id>: that node itself, or a manager (admission, marking down/left),
 *    and the record must carry a valid certificate for its id and role;
 *    and may not claim the address of another node that has not left; a node
 *    writing its own record may not leave `left` nor raise its role (selfRefusal);
 *  - taskstatus/<id>: a manager, or the node the task is placed on (the status
 *    names it, and so does the task as this node knows it);
 *  - attachmentstatus/<id>: a manager, or the node of the attachment (likewise);
 *  - revoked/<serial>: managers only, and never deleted;
 *  - kinds this version does not know: managers only;
 *  - an embedded revision (Version.erev, which orders desired state before any clock):
 *    a manager's entries only, and on desired state only.
 *
 * A certificate named in revoked/ (a demoted manager's manager certificate, a
 * removed node's) vouches for nothing: no write signed under it is believed,
 * whatever record this node holds (one planted with a high clock before the
 * demotion or removal reached it included), and a node record carrying one
 * stands only as `left`.
 *
 * A refused entry is dropped and counted, alone: each entry stands on its own
 * signature, so its neighbours in the same message are judged on theirs. One
 * refused only because this node does not know the task or writer yet comes
 * again with the next push-pull, once it does.
 */
const CERT_CACHE = 4096

export class Authority {
  /** Certificates already checked (id, key, role, cert -> valid): a verify costs more than a lookup. */
  private readonly certs = new Map<string, boolean>()

  constructor(
    private readonly store: Store,
    /** The cluster identity's public key, the root of trust. */
    private readonly identity: string,
  ) {}

  /**
   * Why the entry may not be merged, or undefined when it may. `batch` holds
   * the node records accepted earlier in the same message (a new node's record
   * and its first writes may travel together).
   */
  refusal(e: Entry, batch: Map<string, NodeRecord> = new Map()): string | undefined {
    const writerId = e.version.node
    const own = e.key === keyOf('node', writerId) ? this.certified(e.value, writerId) : undefined
    const writer = own ?? batch.get(writerId) ?? this.certified(this.store.get(keyOf('node', writerId)), writerId)
    if (!writer) return `writer ${writerId} is not a certified node`
    if (this.revoked(writer.cert)) return `the certificate of ${writerId} was revoked`
    if (!writer.pubKey || !e.sig || !verifyWith(writer.pubKey, signedText(e), e.sig))
      return `signature of ${writerId} does not verify`
    const manager = writer.role === 'manager'
    if (e.version.erev !== undefined && (!manager || !isDesiredStateKey(e.key)))
      return `only a manager numbers desired state (${e.key} from ${writerId})`
    const slash = e.key.indexOf('/')
    const kind = slash < 0 ? e.key : e.key.slice(0, slash)
    const id = e.key.slice(slash + 1)
    switch (kind) {
      case CLUSTER_KEY:
        return e.key === CLUSTER_KEY && manager ? undefined : `only a manager writes ${e.key}`
      case 'nodespec':
        // Labels and availability are a manager's to set (Swarm: node update runs on a manager);
        // a node draining or pausing itself, or labelling itself into a constraint, is refused.
        return manager ? undefined : `only a manager writes ${e.key}`
      case 'network':
      case 'service':
      case 'task':
      case 'attachment':
        return manager ? undefined : `only a manager writes ${e.key}`
      case 'node': {
        if (!manager && id !== writerId) return `node ${writerId} may not write ${e.key}`
        const own = id === writerId ? this.selfRefusal(e, id) : undefined
        if (own) return own
        if (e.value === null) return undefined
        const rec = this.certified(e.value, id)
        if (!rec) return `${e.key} carries no valid certificate`
        // A removed node's record keeps the certificate it had, revoked with the removal.
        if (rec.state !== 'left' && this.revoked(rec.cert)) return `${e.key} carries a revoked certificate`
        return this.addressRefusal(rec)
      }
      case 'revoked': {
        if (!manager) return `only a manager writes ${e.key}`
        if (e.value === null) return `a revocation is final: ${e.key} may not be deleted`
        const r = e.value as Partial<Revocation>
        return r.serial === id && typeof r.nodeId === 'string' ? undefined : `${e.key} is not a revocation of ${id}`
      }
      case 'taskstatus':
        return manager ? undefined : this.statusRefusal(e, id, writerId)
      case 'attachmentstatus':
        return manager ? undefined : this.attachmentStatusRefusal(e, id, writerId)
      case 'drained':
        // A node speaks for its own maps only: another's word would end a drain its maps never made.
        return id === writerId ? undefined : `node ${writerId} may not write ${e.key}`
      default:
        // Kinds a newer version may add: desired state until it says otherwise.
        return manager ? undefined : `only a manager writes ${e.key}`
    }
  }

  /** Whether a manager revoked this certificate (revoked/<serial> is held here). */
  revoked(cert: string | undefined): boolean {
    return cert !== undefined && this.store.get(revokedKey(certSerial(cert))) !== undefined
  }

  /**
   * Whether a held node record stands on a revoked certificate while not `left`: it
   * was written before the revocation reached this node, perhaps by the node itself
   * with a clock above the manager's demotion or removal. Any valid record for the
   * key replaces it, whatever its clock, and this node does not offer it to peers.
   */
  superseded(e: Entry | undefined): boolean {
    if (!e || e.value === null || !e.key.startsWith('node/')) return false
    const r = e.value as Partial<NodeRecord>
    return r.state !== 'left' && typeof r.cert === 'string' && this.revoked(r.cert)
  }

  /** The record, when it is a node record for `id` whose key and role the identity certified (revoked or not). */
  certified(v: Json | undefined | null, id: string): NodeRecord | undefined {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined
    const r = v as Partial<NodeRecord>
    if (r.id !== id || (r.role !== 'manager' && r.role !== 'worker')) return undefined
    if (typeof r.pubKey !== 'string' || typeof r.cert !== 'string') return undefined
    const memo = `${id} ${r.pubKey} ${r.role} ${r.cert}`
    let ok = this.certs.get(memo)
    if (ok === undefined) {
      ok = checkNodeCert(this.identity, id, r.pubKey, r.role, r.cert)
      if (this.certs.size >= CERT_CACHE) this.certs.clear()
      this.certs.set(memo, ok)
    }
    return ok ? (r as NodeRecord) : undefined
  }

  /**
   * What a node may not write about itself, whatever certificate it holds (a demoted manager
   * keeps its old manager certificate; a removed node keeps its key): compared with the record
   * as this node holds it, `left` is final (a removed node whose agent restarts announces
   * itself `ready`), a node does not change its own role (roles are a manager's to give,
   * with a new certificate and the old one revoked), nor delete its own record. A node
   * this one has not heard of yet is judged by its certificate (and revocations) alone.
   */
  private selfRefusal(e: Entry, id: string): string | undefined {
    const cur = this.store.entry(e.key)
    if (!cur || this.superseded(cur)) return undefined
    if (cur.value === null) return `node ${id} was removed: it cannot write itself back`
    if (e.value === null) return `node ${id} may not delete its own record`
    const was = cur.value as Partial<NodeRecord>
    const now = e.value as Partial<NodeRecord>
    if (was.state === 'left' && now.state !== 'left')
      return `node ${id} has left: left is final, it cannot come back under its id`
    if (now.role === 'manager' && was.role !== 'manager') return `node ${id} may not make itself a manager`
    if (now.role !== was.role) return `node ${id} may not change its own role`
    return undefined
  }

  /** A node may not move onto the address of another node that has not left (its VXLAN traffic would follow). */
  private addressRefusal(r: NodeRecord): string | undefined {
    if (r.state === 'left') return undefined
    const holder = this.store
      .values<NodeRecord>(prefixOf('node'))
      .find((n) => n.id !== r.id && n.state !== 'left' && n.addr === r.addr)
    return holder ? `address ${r.addr} belongs to node ${holder.id}` : undefined
  }

  private attachmentStatusRefusal(e: Entry, id: string, writerId: string): string | undefined {
    const cur = this.store.get<AttachmentStatus>(keyOf('attachmentstatus', id))
    if (cur && cur.nodeId !== writerId) return `attachmentstatus/${id} belongs to node ${cur.nodeId}, not ${writerId}`
    if (e.value === null) return undefined
    const status = e.value as Partial<AttachmentStatus>
    const att = this.store.get<NetworkAttachment>(keyOf('attachment', id))
    if (status.nodeId !== writerId || att?.nodeId !== writerId)
      return `attachment ${id} is not on node ${writerId} (as far as this node knows)`
    return undefined
  }

  private statusRefusal(e: Entry, taskId: string, writerId: string): string | undefined {
    const cur = this.store.get<TaskStatus>(keyOf('taskstatus', taskId))
    if (cur && cur.nodeId !== writerId) return `taskstatus/${taskId} belongs to node ${cur.nodeId}, not ${writerId}`
    if (e.value === null) return undefined
    const status = e.value as Partial<TaskStatus>
    const task = this.store.get<Task>(keyOf('task', taskId))
    if (status.nodeId !== writerId || task?.nodeId !== writerId)
      return `task ${taskId} is not placed on node ${writerId} (as far as this node knows)`
    return undefined
  }
}
