// Child of bench/throughput.ts's trial paths, run by nsenter in a lab node's namespace (netlink and
// BPF links name devices by the caller's namespace). Not what the agent does: a way to measure a
// program the agent does not run beside the one it runs, in the same lab, on the agent's own
// pinned maps (`layoutPinDir(node)`).
//
//   xdp <node> <host-side veth>...   bpf/dist/xdp_task.o attached in native XDP to those devices
//                                    (netlink: it outlives this process; throughput.ts takes it off
//                                    with `ip link set dev X xdpdrv off`).
//   tc <node> <object> <host-side veth>...   the agent's tc_task link of each device (pinned
//                                    tcx-<dev>) switched in place to sn_tc_task of <object>
//                                    (bpf_link_update); run again with bpf/dist/tc_task.o to switch back.
// Prints one JSON line: {ok: true}.
import {join} from 'node:path'
import {attachXdp} from '../src/bpf/attach.js'
import {BpfObject} from '../src/bpf/index.js'
import {attachTcxLink} from '../src/bpf/links.js'
import {nodeLinkDir} from '../src/dataplane/datapath.js'
import {layoutPinDir} from '../src/bpf/upgrade.js'
import {bpfObjectPath} from '../src/util/root.js'

const [mode, node, ...rest] = process.argv.slice(2) as [string, string, ...string[]]
const objPath = mode === 'tc' ? rest.shift()! : bpfObjectPath('xdp_task')
const obj = BpfObject.open(objPath, {pinRoot: layoutPinDir(node)})
try {
  obj.load()
  for (const dev of rest) {
    if (mode === 'xdp') attachXdp(dev, obj.program('sn_xdp_task').fd, {mode: 'native'})
    else if (mode === 'tc')
      attachTcxLink(dev, obj.program('sn_tc_task').fd, 'ingress', {
        pinPath: join(nodeLinkDir(node), `tcx-${dev}`),
        ownName: 'sn_tc_task',
      })
    else throw new Error(`unknown mode ${mode}`)
  }
} finally {
  obj.close()
}
console.log(JSON.stringify({ok: true}))
