// Store -> the namespaces of this node attached to overlay networks (`network connect`):
// a veth per attachment, its host end with the device entry and tc like a task's, its other
// end in a namespace swarmnet did not make. The namespace is watched: when it is gone (its
// file removed, or another namespace at the same path) the veth goes and the status says so,
// for the manager to remove the attachment everywhere.
// The status is what `network connect` and `disconnect` wait for (src/agent/attach-wait.ts):
// 'attached' only once the node's maps carry the new endpoint (report(), after the maps
// step), and removed by this node only once the veth is gone.
import {closeSync, mkdirSync, openSync, rmSync, statSync} from 'node:fs'
import {createHash} from 'node:crypto'
import {attachmentHostIf} from '../model/attachment.js'
import {taskMtu} from '../model/allocate.js'
import {parseCidr} from '../model/ipv4.js'
import type {AttachmentStatus, Network, NetworkAttachment} from '../model/types.js'
import {keyOf, prefixOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import {run} from '../sys/exec.js'
import {addAddress, createVeth, deleteLink, getLink, listLinks, moveLink, setLinkUp, setMac} from '../sys/link.js'
import {NETNS_DIR} from '../sys/netns.js'
import type {LocalAttachment} from './desired.js'
import type {TaskHooks} from './tasks.js'

interface Plumbed {
  att: NetworkAttachment
  hostIf: string
  ifindex: number
}

/** The namespace file's inode, or undefined when there is no namespace at that path. */
export function netnsInode(path: string): number | undefined {
  try {
    const st = statSync(path)
    // Every namespace file is on the one nsfs superblock; an unmounted /run/netns/X is not.
    return st.dev === statSync('/proc/self/ns/net').dev ? st.ino : undefined
  } catch {
    return undefined
  }
}

/** This process's own network namespace (the node's): never one to attach. */
const ownNetnsIno = (): number => statSync('/proc/self/ns/net').ino

export class AttachmentReconciler {
  private readonly plumbed = new Map<string, Plumbed>()
  private readonly said = new Map<string, string>()
  /** Plumbed in this pass, reported attached by report() once the maps have their endpoints. */
  private readonly unreported = new Map<string, {att: NetworkAttachment; netnsIno: number; line: string}>()

  constructor(
    private readonly o: {
      node: string
      selfId: string
      store: Store
      hooks: TaskHooks
      log: (m: string) => void
    },
  ) {}

  localAttachments(): LocalAttachment[] {
    return [...this.plumbed.values()].map((p) => ({taskId: p.att.id, networkId: p.att.networkId, hostIfindex: p.ifindex}))
  }

  async reconcile(): Promise<void> {
    const s = this.o.store
    const want = s.values<NetworkAttachment>(prefixOf('attachment')).filter((a) => a.nodeId === this.o.selfId)
    const wantIds = new Set(want.map((a) => a.id))
    for (const [id, p] of this.plumbed) {
      if (wantIds.has(id)) continue
      await this.unplumb(p)
      s.delete(keyOf('attachmentstatus', id))
      this.o.log(`attachment ${p.att.name} removed`)
    }
    // Statuses of ours whose attachment is gone and that nothing above removed: one that
    // failed, or one disconnected while this agent was not running (its veth may still be
    // there). The status goes last: `disconnect` waits for it as the sign the veth is gone.
    for (const st of s.values<AttachmentStatus>(prefixOf('attachmentstatus'))) {
      if (st.nodeId !== this.o.selfId || wantIds.has(st.id) || this.plumbed.has(st.id)) continue
      this.unreported.delete(st.id)
      const hostIf = attachmentHostIf(st.id)
      if (await getLink(hostIf)) await deleteLink(hostIf)
      s.delete(keyOf('attachmentstatus', st.id))
    }
    for (const a of want) {
      try {
        await this.ensure(a)
      } catch (e) {
        this.say(a, `attachment ${a.name}: ${(e as Error).message}`)
        this.writeStatus(a, {state: 'failed', message: (e as Error).message})
      }
    }
  }

  private async ensure(a: NetworkAttachment): Promise<void> {
    const st = this.o.store.get<AttachmentStatus>(keyOf('attachmentstatus', a.id))
    if (st?.state === 'gone') return
    const ino = netnsInode(a.netns)
    if (ino === undefined || (st?.netnsIno !== undefined && st.netnsIno !== ino)) {
      const p = this.plumbed.get(a.id)
      if (p) await this.unplumb(p)
      this.unreported.delete(a.id)
      // Never attached: the path was wrong from the start (the manager checks it only for its own node).
      const message = st === undefined ? `${a.netns} is not a network namespace` : `namespace ${a.netns} is gone`
      this.writeStatus(a, {state: 'gone', message})
      this.o.log(`attachment ${a.name}: ${message}`)
      return
    }
    // The node's own namespace: its links and routes are the node's, not an attachment's.
    if (ino === ownNetnsIno()) throw new Error(`${a.netns} is this node's own network namespace`)
    const hostIf = attachmentHostIf(a.id)
    const link = await getLink(hostIf)
    const p = this.plumbed.get(a.id)
    if (p && link?.ifindex === p.ifindex) return
    const net = this.o.store.get<Network>(keyOf('network', a.networkId))
    if (!net) return // not here yet: a later change retries
    const attachment = {networkId: a.networkId, ip: a.ip, mac: a.mac}
    if (link && st?.state === 'attached') {
      // Made before the agent restarted: the same device, attached again (idempotent).
      await this.o.hooks.attachHost(hostIf, attachment)
      this.plumbed.set(a.id, {att: a, hostIf, ifindex: link.ifindex})
      return
    }
    if (link) await deleteLink(hostIf)
    const ifindex = await this.plumb(a, net, hostIf)
    this.plumbed.set(a.id, {att: a, hostIf, ifindex})
    this.unreported.set(a.id, {
      att: a,
      netnsIno: ino,
      line: `attachment ${a.name}: ${a.netns} attached to ${net.name} as ${a.ip} (${hostIf})`,
    })
    this.said.delete(a.id)
  }

  /**
   * After the maps are written: the attachments plumbed since are reported attached. Not
   * before, so whoever waits for the status (`network connect`) finds the namespace's address
   * in the maps too, and the replies to its first packet find their way in.
   */
  report(): void {
    for (const [id, u] of this.unreported) {
      this.unreported.delete(id)
      if (!this.plumbed.has(id)) continue
      this.writeStatus(u.att, {state: 'attached', netnsIno: u.netnsIno})
      this.o.log(u.line)
    }
  }

  /**
   * The veth, in the order a task's is made, with one difference: the namespace is
   * someone else's and may already be sending, so the host end gets its device entry and tc
   * while it is down, and comes up last.
   */
  private async plumb(a: NetworkAttachment, net: Network, hostIf: string): Promise<number> {
    // iproute2 names namespaces only under /run/netns: a bind mount for as long as this takes,
    // so the attachment holds no reference and the namespace ends when its owner ends it.
    const tmp = `sn-${this.o.node}.x${a.id.slice(0, 8)}`
    const tmpPath = `${NETNS_DIR}/${tmp}`
    const peer = `sn-y${createHash('sha1').update(hostIf).digest('hex').slice(0, 11)}`
    mkdirSync(NETNS_DIR, {recursive: true})
    closeSync(openSync(tmpPath, 'a'))
    let mounted = false
    try {
      await run(['mount', '--bind', a.netns, tmpPath], `binding ${a.netns}`)
      mounted = true
      const ifname = await freeEthName(tmp)
      const mtu = taskMtu(net)
      await createVeth(hostIf, peer, {mtu})
      try {
        await this.o.hooks.preparePeer(peer)
        await this.o.hooks.attachHost(hostIf, {networkId: a.networkId, ip: a.ip, mac: a.mac})
        await moveLink(peer, tmp, {newName: ifname})
        await setMac(ifname, a.mac, tmp)
        await addAddress(ifname, `${a.ip}/${parseCidr(net.subnet).prefix}`, tmp)
        await setLinkUp(ifname, tmp)
        await setLinkUp(hostIf)
      } catch (e) {
        await deleteLink(hostIf).catch(() => undefined)
        throw e
      }
      const link = await getLink(hostIf)
      if (!link) throw new Error(`${hostIf} vanished while it was made (the namespace ended?)`)
      return link.ifindex
    } finally {
      if (mounted) await run(['umount', tmpPath], `unbinding ${tmpPath}`).catch(() => undefined)
      rmSync(tmpPath, {force: true})
    }
  }

  private async unplumb(p: Plumbed): Promise<void> {
    // The other end, in the attached namespace, goes with it.
    await deleteLink(p.hostIf)
    this.plumbed.delete(p.att.id)
    this.unreported.delete(p.att.id)
  }

  /** leave: every attachment's veth goes (the namespaces stay: they are not ours). */
  async removeAll(): Promise<void> {
    for (const p of [...this.plumbed.values()]) await this.unplumb(p).catch((e: Error) => this.o.log(e.message))
  }

  private say(a: NetworkAttachment, line: string): void {
    if (this.said.get(a.id) === line) return
    this.said.set(a.id, line)
    this.o.log(line)
  }

  private writeStatus(a: NetworkAttachment, patch: Partial<AttachmentStatus>): void {
    const key = keyOf('attachmentstatus', a.id)
    const prev = this.o.store.get<AttachmentStatus>(key)
    const next: AttachmentStatus = {id: a.id, nodeId: this.o.selfId, state: 'failed', ...prev, ...patch, updatedAt: Date.now()}
    if (patch.state === 'attached') delete next.message
    if (prev && JSON.stringify({...prev, updatedAt: 0}) === JSON.stringify({...next, updatedAt: 0})) return
    this.o.store.put(key, next)
  }
}

/** The first ethN the namespace does not have yet. */
async function freeEthName(ns: string): Promise<string> {
  const have = new Set((await listLinks('eth', ns)).map((l) => l.ifname))
  for (let i = 0; ; i++) if (!have.has(`eth${i}`)) return `eth${i}`
}
