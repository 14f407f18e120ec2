// A manager's leadership in a process of its own, for tests (and the bench) that
// kill it with SIGKILL: argv endpoint prefix id [ttlSec pollMs]. Prints
// "leader REV" once it leads.
import {etcdClient} from '../../src/manager/etcd-client.js'
import {Leadership} from '../../src/manager/etcd-leader.js'

const [endpoint, prefix, id, ttl, poll] = process.argv.slice(2) as [string, string, string, string?, string?]
const client = etcdClient({endpoints: [endpoint], prefix})
const l = new Leadership(client.namespace(prefix), id, {
  ttlSec: Number(ttl ?? 2),
  pollMs: Number(poll ?? 100),
  onChange: (_leader, self) => {
    if (self) process.stdout.write(`leader ${l.revision()}\n`)
  },
})
l.start()
setInterval(() => undefined, 1 << 30)
