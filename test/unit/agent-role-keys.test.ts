// A node promoted to manager rotates the cluster key without a restart, and a demoted one stops:
// the node's role (src/agent/node-role.ts) over a real store, a real etcd (the promoted manager's
// duties and its rotation lock) and a real keyring. The promotion and the demotion arrive as a
// manager writes them (a re-certified node record, the promotion record with the sealed secrets),
// and the node follows them as its agent does on every change of its record.
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {join} from 'node:path'
import {test} from 'node:test'
import {etcdSuite} from './etcd-fixture.js'

const etcd = etcdSuite()
// The node writes its config under its state directory when its role changes: a temp one.
const stateRoot = etcd.dir('sn-role-keys-')
process.env.SWARMNET_STATE_DIR = join(stateRoot, 'state')
const {certifyNode, generateIdentity, generateNodeKey} = await import('../../src/gossip/identity.js')
const {Keyring} = await import('../../src/gossip/keyring.js')
const {sealSecretsTo} = await import('../../src/gossip/manager-secrets.js')
const {KeyRotation} = await import('../../src/gossip/rotation.js')
const {generateToken} = await import('../../src/gossip/token.js')
const {promotionKey} = await import('../../src/manager/roles.js')
const {valueProblem} = await import('../../src/model/shape.js')
const {keyOf} = await import('../../src/store/keys.js')
const {Store} = await import('../../src/store/store.js')
const {KeySchedule} = await import('../../src/agent/key-schedule.js')
const {NodeRole} = await import('../../src/agent/node-role.js')
const {nodeRecord} = await import('./model-records.js')
type NodeConfig = import('../../src/agent/config.js').NodeConfig
type NodeRecord = import('../../src/model/types.js').NodeRecord
type KeyRotationT = InstanceType<typeof KeyRotation>

test('a promoted node rotates the cluster key without a restart; demoted, its schedule stops', async () => {
  const identity = generateIdentity()
  const secrets = {identity, token: generateToken(identity.publicKey).text, managerToken: generateToken(identity.publicKey).text}
  const nodeKey = generateNodeKey()
  const store = etcd.keep(new Store(etcd.dir('sn-role-keys-store-'), 'w1', {validate: valueProblem, reapIntervalMs: 0}).open())
  const cfg: NodeConfig = {
    nodeId: 'w1',
    name: 'w1',
    role: 'worker',
    advertiseAddr: '127.0.0.1',
    underlay: 'lo',
    mtu: 1500,
    gossipPort: 7946,
    bindAddr: '127.0.0.1',
    key: randomBytes(32).toString('base64'),
    keyId: 0,
    xdpMode: 'generic',
    nodeKey,
    cert: certifyNode(identity, 'w1', nodeKey.publicKey, 'worker'),
    clusterIdentity: identity.publicKey,
  }
  const me: NodeRecord = nodeRecord('w1', '127.0.0.1', {pubKey: nodeKey.publicKey, cert: cfg.cert})
  store.put(keyOf('node', 'w1'), me)
  const ring = new Keyring(Buffer.from(cfg.key, 'base64'), 0)
  // What gossip would hand the nodes' acks to: the rotation the schedule attaches.
  let attached: KeyRotationT | undefined
  const log: string[] = []
  const role: InstanceType<typeof NodeRole> = new NodeRole({
    cfg,
    node: 'w1',
    nodeKey,
    store,
    clusterId: 'c',
    membership: {isDown: () => false, downNow: () => false, agentAway: () => false},
    log: (m) => log.push(m),
    me: () => me,
    serveJoins: () => {},
    keySchedule: (): InstanceType<typeof KeySchedule> =>
      new KeySchedule(
        new KeyRotation({
          ring,
          selfId: 'w1',
          privateKey: nodeKey.privateKey,
          // No other node: every live node holds a new key as soon as this one does.
          peers: () => [],
          send: () => {},
          persist: () => {},
          graceMs: 60_000,
        }),
        {cfg, role, log: (m) => log.push(m), attach: (r) => (attached = r)},
      ),
  })
  role.start()
  try {
    // Read through a function: the role changes under the test's feet, which narrowing does not see.
    const keysNow = () => role.keys
    assert.equal(keysNow(), undefined, 'a worker has no key schedule')
    assert.equal(attached, undefined)

    // node promote, as a manager writes it: the promotion record, then the re-certified record.
    const etcdSettings = {endpoints: [etcd.endpoint], prefix: '/swarmnet/role-keys/'}
    store.put(promotionKey('w1'), {nodeId: 'w1', etcd: etcdSettings, sealed: sealSecretsTo(nodeKey.publicKey, secrets)})
    store.put(keyOf('node', 'w1'), {...me, role: 'manager', cert: certifyNode(identity, 'w1', nodeKey.publicKey, 'manager')})
    await role.follow()
    assert.equal(cfg.role, 'manager', log.join('\n'))
    const keys = keysNow()
    assert.ok(keys?.running, 'the promoted manager runs a key schedule')
    assert.ok(attached, "the promoted manager's rotation receives the acks")

    // swarm rotate-key on the promoted node: under the rotation lock in etcd, to a new key it seals with.
    const done = (await keys.rotateNow(60_000)) as {newId: number; timedOut: boolean; phase: string}
    assert.equal(done.timedOut, false)
    assert.equal(done.newId, 1)
    assert.equal(ring.primary, 1, 'the promoted manager seals with the key it rotated to')

    // node demote: the node stops being a manager, and its schedule with it.
    store.put(keyOf('node', 'w1'), {...me, role: 'worker', cert: certifyNode(identity, 'w1', nodeKey.publicKey, 'worker')})
    await role.follow()
    assert.equal(cfg.role, 'worker')
    assert.equal(keysNow(), undefined, 'a demoted node has no key schedule')
    assert.equal(keys.running, false, 'the schedule it had is stopped')
    assert.equal(attached, undefined, 'acks no longer reach a rotation')
  } finally {
    await role.stop()
  }
})
