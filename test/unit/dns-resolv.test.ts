import assert from 'node:assert/strict'
import {test} from 'node:test'
import {taskResolvConf} from '../../src/dns/resolv.js'

test("a task's resolv.conf: our nameserver only, the node's search and options kept", () => {
  const node = 'nameserver 10.255.255.53\nnameserver 1.1.1.1\nsearch corp.example\noptions edns0 ndots:2\n'
  assert.equal(
    taskResolvConf(node, '172.18.0.1'),
    '# swarmnet: the cluster resolver of this node\nnameserver 172.18.0.1\nsearch corp.example\noptions edns0 ndots:2\n',
  )
})

test('no search domain: ndots:0, so `web` is not asked as `web.1` (the domain glibc takes from the hostname)', () => {
  assert.equal(
    taskResolvConf('nameserver 10.255.255.53\n', '172.18.0.1'),
    '# swarmnet: the cluster resolver of this node\nnameserver 172.18.0.1\noptions ndots:0\n',
  )
})
