// `swarmnet lab demo`: the README's first command. A 3-node lab, an overlay
// network, a 3-replica whoami service, and proof that a task on one node
// reaches the tasks on the others through the eBPF data plane.
import {AgentClient} from '../agent/client.js'
import type {TaskView} from '../agent/views.js'
import {run} from '../sys/exec.js'
import {nsenterArgv} from '../sys/netns.js'
import {readNodeMaps} from '../dataplane/inspect.js'

export interface DemoStep {
  title: string
  output: string
}

export async function waitForTasks(client: AgentClient, service: string, count: number, timeoutMs = 30_000): Promise<TaskView[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const tasks = (await client.get<TaskView[]>(`/services/${encodeURIComponent(service)}/tasks`)).filter(
      (t) => t.desiredState === 'running',
    )
    if (tasks.length === count && tasks.every((t) => t.state === 'running')) return tasks
    if (Date.now() > deadline)
      throw new Error(
        `service ${service}: ${tasks.filter((t) => t.state === 'running').length}/${count} tasks running after ${timeoutMs / 1000} s`,
      )
    await new Promise((r) => setTimeout(r, 200))
  }
}

/**
 * GET http://ip/ from inside a task's namespace, with node's own fetch (no curl
 * needed). A task is running once its process is; its server may take a moment
 * more to listen, so a refused connection is tried again for a few seconds.
 */
export async function httpFromTask(netns: string, url: string, timeoutMs = 10_000): Promise<string> {
  const script = `fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(3000)}).then(r=>r.text()).then(t=>process.stdout.write(t)).catch(e=>{console.error(e.cause?.code??e.message);process.exit(1)})`
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await run(nsenterArgv(netns, [process.execPath, '-e', script]), `HTTP GET ${url} from ${netns}`)
    } catch (e) {
      if (!/ECONNREFUSED/.test((e as Error).message) || Date.now() > deadline) throw e
      await new Promise((r) => setTimeout(r, 250))
    }
  }
}

export async function runDemo(step: (s: DemoStep) => void): Promise<void> {
  const n1 = new AgentClient('n1')
  const net = await n1.post<{name: string; subnet: string; vni: number}>('/networks', {name: 'demo'})
  step({title: 'network create demo', output: `overlay ${net.subnet}, VNI ${net.vni}`})
  await n1.post('/services', {name: 'whoami', mode: 'replicated', replicas: 3, networks: ['demo'], command: []})
  const tasks = await waitForTasks(n1, 'whoami', 3)
  step({
    title: 'service create --name whoami --replicas 3 --network demo',
    output: tasks.map((t) => `${t.name} on ${t.node}: ${t.addresses.map((a) => a.ip).join(', ')}`).join('\n'),
  })
  const from = tasks.find((t) => t.node === 'n1') ?? tasks[0]!
  for (const to of tasks.filter((t) => t !== from)) {
    const ip = to.addresses[0]!.ip
    const ping = await run(nsenterArgv(from.netns!, ['ping', '-c', '1', '-W', '2', ip]), `ping ${ip}`)
    const rtt = /time=([\d.]+ ms)/.exec(ping)?.[1] ?? '?'
    const body = await httpFromTask(from.netns!, `http://${ip}/`)
    const lines = body.split('\n').filter((l) => /^(Hostname|RemoteAddr):/.test(l))
    step({
      title: `${from.name} (${from.node}) -> ${to.name} (${to.node}) at ${ip}`,
      output: `ping: ${rtt}\nHTTP: ${lines.join(', ')}`,
    })
  }
  const stats = readNodeMaps('n1', 'sn_stats')[0]?.entries[0]?.value as Record<string, string> | undefined
  if (stats) {
    step({
      title: 'n1 data plane counters (swarmnet inspect maps --map sn_stats)',
      output: `encapsulated ${stats.tc_encap}, decapsulated ${stats.xdp_decap}, ARP answered ${stats.tc_arp_reply}`,
    })
  }
}
