// A manager's leadership in a process of its own, for tests that kill it with
// SIGKILL: argv endpoint prefix id. Prints "leader REV" once it leads.
import {etcdClient} from '../../src/manager/etcd-client.js'
import {Leadership} from '../../src/manager/etcd-leader.js'

const [endpoint, prefix, id] = process.argv.slice(2) as [string, string, string]
const client = etcdClient({endpoints: [endpoint], prefix})
const l = new Leadership(client.namespace(prefix), id, {
  ttlSec: 2,
  pollMs: 100,
  onChange: (_leader, self) => {
    if (self) process.stdout.write(`leader ${l.revision()}\n`)
  },
})
l.start()
setInterval(() => undefined, 1 << 30)
