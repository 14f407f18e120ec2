// Child of dataplane-node-addrs.test.ts, run by nsenter in a scratch namespace (NodeAddrs reads
// and watches its own namespace). Prints "change" when the watch fires; answers each "list" line
// on stdin with {addrs, reads}.
import {createInterface} from 'node:readline'
import {NodeAddrs} from '../../src/dataplane/node-addrs.js'

const addrs = new NodeAddrs(
  ['skip0'],
  () => console.log('change'),
  (l) => console.error(l),
)
createInterface({input: process.stdin}).on('line', (line) => {
  if (line === 'list') console.log(JSON.stringify({addrs: addrs.list(), reads: addrs.reads}))
})
process.stdin.on('end', () => addrs.stop())
