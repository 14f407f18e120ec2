// `swarmnet lab demo`: the README's first command, the whole story in under a minute with real
// clients: a 3-node lab, an overlay, a 3-replica service found by name and balanced over its
// tasks through the VIP, a published port answered by a node with no task (the caller's address
// kept), and a node that dies: how long until the others stop sending to it and its task runs
// elsewhere. The dead node is brought back at the end, so the lab is left whole to explore.
import {readFileSync} from 'node:fs'
import {AgentClient} from '../agent/client.js'
import type {NodeView, ServiceInspectView, TaskView} from '../agent/views.js'
import {readNodeMaps} from '../dataplane/inspect.js'
import {portsInTurn, vipTable} from '../lb/flow-backend.js'
import {DEFAULT_MEMBERSHIP_CONFIG} from '../membership/config.js'
import {parsePublish} from '../model/ports.js'
import {run} from '../sys/exec.js'
import {nsenterArgv} from '../sys/netns.js'
import {taskExecArgv} from '../tasks/exec.js'
import {labUp, type LabNode} from './lab.js'
import {restartLabAgent, startLabNode, waitNodesReady} from './nodes.js'
import {CLIENT_ADDRESS, CLIENT_NETNS, nodePidFile, UNDERLAY_IF} from './topology.js'

/** One step of the story: a first line, and at most one more. */
export interface DemoStep {
  title: string
  detail?: string
}

const NETWORK = 'demo'
const SERVICE = 'web'
/** One whoami on the overlay and published: the client that asks for web (step 4) and what the outside fetches (step 5). */
const FRONT = 'front'
const PORT = 8080

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** Polls fn every everyMs until it returns something (not undefined); its last error is in the timeout's message. */
async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    let why = ''
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (e) {
      why = `: ${(e as Error).message}`
    }
    if (Date.now() > deadline) throw new Error(`demo: timed out after ${timeoutMs / 1000} s waiting for ${what}${why}`)
    await sleep(everyMs)
  }
}

/** The service's tasks meant to run, once there are count of them and all run (and each passes where). */
export function waitForTasks(
  client: AgentClient,
  service: string,
  count: number,
  timeoutMs = 30_000,
  where: (t: TaskView) => boolean = () => true,
): Promise<TaskView[]> {
  return until(
    `${count} running tasks of ${service}`,
    async () => {
      const tasks = (await client.get<TaskView[]>(`/services/${encodeURIComponent(service)}/tasks`)).filter(
        (t) => t.desiredState === 'running',
      )
      return tasks.length === count && tasks.every((t) => t.state === 'running' && where(t)) ? tasks : undefined
    },
    timeoutMs,
    200,
  )
}

/** whoami's answer: its Hostname and RemoteAddr lines. */
function whoami(body: string): {host: string; remote: string} {
  const host = /^Hostname: (\S+)/m.exec(body)?.[1]
  const remote = /^RemoteAddr: (\S+)/m.exec(body)?.[1]
  if (!host || !remote) throw new Error(`not an answer of whoami: ${body.slice(0, 80)}`)
  return {host, remote}
}

const byName = (a: TaskView, b: TaskView) => a.name.localeCompare(b.name, 'en', {numeric: true})
const ipOn = (t: TaskView, network: string) => t.addresses.find((a) => a.network === network)!.ip

export async function runDemo(step: (s: DemoStep) => void): Promise<void> {
  const start = Date.now()

  // 1. The lab.
  const lab = await labUp({nodes: 3, startNode: (node) => startLabNode(node)})
  step({
    title: `lab: ${lab.nodes.length} nodes, each a network namespace on one switch, up in ${secs(Date.now() - start)} (swarmnet lab up --nodes 3)`,
    detail: `${lab.nodes.map((n) => `${n.name} ${n.address}`).join(', ')}; an outside client at ${CLIENT_ADDRESS} (netns ${CLIENT_NETNS})`,
  })
  try {
    await story(lab.nodes, start, step)
  } catch (e) {
    // Whatever step failed, the cut link (step 6) is not left cut: lab down and a look around work.
    // A link that is up already, or a namespace gone: nothing to restore.
    for (const n of lab.nodes)
      await run(['ip', '-n', n.netns, 'link', 'set', UNDERLAY_IF, 'up'], 'restoring a link').catch(() => undefined)
    throw new Error(`${(e as Error).message} (the lab is left up to look at; \`swarmnet lab down\` removes it)`)
  }
}

/** Steps 2 to 8, on the lab's nodes. */
async function story(nodes: LabNode[], start: number, step: (s: DemoStep) => void): Promise<void> {
  const n1 = new AgentClient(nodes[0]!.name)
  await waitNodesReady(nodes, 30_000)

  // 2. An overlay network.
  const net = await n1.post<{subnet: string; vni: number}>('/networks', {name: NETWORK})
  step({
    title: `overlay network ${NETWORK}: ${net.subnet}, VXLAN VNI ${net.vni}, on every node (swarmnet network create ${NETWORK})`,
  })

  // 3. A 3-replica service. front, of steps 4 and 5, is created right after it so that its task
  // starts while these do: the demo has a minute.
  await n1.post('/services', {name: SERVICE, mode: 'replicated', replicas: 3, networks: [NETWORK], command: []})
  await n1.post('/services', {
    name: FRONT,
    mode: 'replicated',
    replicas: 1,
    networks: [NETWORK],
    command: [],
    ports: [parsePublish(`${PORT}:80`)],
  })
  const web = (await waitForTasks(n1, SERVICE, 3)).sort(byName)
  step({
    title: `service ${SERVICE}: 3 replicas of whoami on ${NETWORK} (swarmnet service create --name ${SERVICE} --replicas 3 --network ${NETWORK})`,
    detail: web.map((t) => `${t.name} on ${t.node} ${ipOn(t, NETWORK)}`).join(', '),
  })

  // 4. A client task (front's, a frontend calling its backend): the service by name, then through its VIP.
  const front = (await waitForTasks(n1, FRONT, 1))[0]!
  const vip = (await n1.get<ServiceInspectView>(`/services/${SERVICE}`)).vips.find((v) => v.network === NETWORK)!.ip
  const inFront = (argv: string[]) => run(taskExecArgv(front, argv), `${argv[0]} in task ${front.name}`)
  // The task's own resolver (its resolv.conf names its node's): the name is there once the node has the service.
  const answer = await until(
    `${SERVICE} by name from ${front.name}`,
    async () => (await inFront(['dig', '+short', '+time=2', '+tries=1', SERVICE])).trim() || undefined,
    15_000,
    200,
  )
  // Maglev picks a flow's task from its addresses and ports: source ports the front node's table
  // sends to each task in turn make 6 requests that visit all three (random ports may miss one).
  const webIps = web.map((t) => ipOn(t, NETWORK))
  const frontIp = ipOn(front, NETWORK)
  const table = await until(
    `${SERVICE}'s Maglev table on ${front.node} with its 3 tasks`,
    () => {
      const t = vipTable(front.node, net.vni, vip)
      return t && webIps.every((ip) => t.includes(ip)) && t.every((ip) => webIps.includes(ip)) ? t : undefined
    },
    15_000,
  )
  const answered = new Map<string, number>()
  for (const port of portsInTurn(table, frontIp, vip, 80, webIps, 2)) {
    const body = await until(
      `an answer of ${SERVICE} to ${front.name}`,
      () => inFront(['curl', '-sS', '-m', '3', '--local-port', String(port), `http://${SERVICE}/`]),
      10_000,
      250,
    )
    const {host} = whoami(body)
    answered.set(host, (answered.get(host) ?? 0) + 1)
  }
  const spread = [...answered].sort(([a], [b]) => a.localeCompare(b, 'en', {numeric: true}))
  step({
    title: `${front.name} on ${front.node} (service ${FRONT}, on ${NETWORK} too) asks for ${SERVICE} by name: dig +short ${SERVICE} -> ${answer.split('\n').join(', ')}${answer === vip ? `, ${SERVICE}'s VIP` : ` (the VIP is ${vip})`}`,
    detail: `6 requests to ${SERVICE} (${vip}) with curl: ${spread.map(([h, n]) => `${h} x${n}`).join(', ')} (from source ports ${SERVICE}'s Maglev table sends to each task in turn)`,
  })

  // 5. Published on a port, fetched from outside through a node that runs no task of it.
  const idle = nodes.find((n) => n.name !== front.node)!
  const url = `http://${idle.address}:${PORT}/`
  const body = await until(
    `${url} from the outside client`,
    () => run(nsenterArgv(CLIENT_NETNS, ['curl', '-sS', '-m', '3', url]), `curl ${url} from ${CLIENT_NETNS}`),
    15_000,
    250,
  )
  const seen = whoami(body)
  step({
    title: `${FRONT} is published on port ${PORT} of every node (swarmnet service create --name ${FRONT} --network ${NETWORK} -p ${PORT}:80)`,
    detail: `outside client ${CLIENT_ADDRESS}: curl ${url} (${idle.name}, no task of ${FRONT}) -> Hostname: ${seen.host}, RemoteAddr: ${seen.remote}`,
  })

  // 6. A node dies: its agent killed, its link cut. Not n1, the manager (that replaces tasks), and
  // not front's: the client of step 4 stays where it is, to explore afterwards.
  const victim = nodes.filter((n) => n !== nodes[0] && n.name !== front.node).at(-1)!
  const others = nodes.filter((n) => n !== victim)
  const moving = web.find((t) => t.node === victim.name)!
  // Every address of its tasks, on every network (the maps hold them as endpoints).
  const itsIps = new Set<string>()
  for (const svc of [SERVICE, FRONT])
    for (const t of await n1.get<TaskView[]>(`/services/${svc}/tasks`))
      if (t.node === victim.name && t.desiredState === 'running') for (const a of t.addresses) itsIps.add(a.ip)
  const pid = Number(readFileSync(nodePidFile(victim.name), 'utf8').trim())
  const t0 = Date.now()
  process.kill(pid, 'SIGKILL')
  await run(['ip', '-n', victim.netns, 'link', 'set', UNDERLAY_IF, 'down'], `cutting the link of ${victim.name}`)
  const downAt = new Map<string, number>()
  const goneAt = new Map<string, number>()
  await until(
    `${victim.name} down on ${others.map((n) => n.name).join(' and ')}, its endpoints out of their maps`,
    async () => {
      for (const n of others) {
        if (!downAt.has(n.name)) {
          const view = (await new AgentClient(n.name).get<NodeView[]>('/nodes')).find((x) => x.name === victim.name)
          if (view?.state === 'down') downAt.set(n.name, Date.now() - t0)
        }
        if (!goneAt.has(n.name) && !endpointIps(n.name).some((ip) => itsIps.has(ip))) goneAt.set(n.name, Date.now() - t0)
      }
      return downAt.size === others.length && goneAt.size === others.length ? true : undefined
    },
    30_000,
    20,
  )
  const moved = await waitForTasks(n1, SERVICE, 3, 40_000, (t) => t.node !== victim.name)
  const movedAt = Date.now() - t0
  const replacement = moved.find((t) => !web.some((w) => w.id === t.id))!
  const per = (m: Map<string, number>) =>
    `${others.map((n) => n.name).join(', ')} after ${others.map((n) => secs(m.get(n.name)!)).join(', ')}`
  step({
    title: `${victim.name} dies (kill -9 of its agent, pid ${pid}; ip -n ${victim.netns} link set ${UNDERLAY_IF} down): down on ${per(downAt)}`,
    detail: `its endpoints out of their maps on ${per(goneAt)}; ${moving.name} running again on ${replacement.node} (${ipOn(replacement, NETWORK)}) after ${secs(movedAt)} (the manager waits ${secs(DEFAULT_MEMBERSHIP_CONFIG.rescheduleDelayMs)} for it)`,
  })

  // 7. Back, as after a reboot: the link up, the agent started again.
  await run(['ip', '-n', victim.netns, 'link', 'set', UNDERLAY_IF, 'up'], `restoring the link of ${victim.name}`)
  const t1 = Date.now()
  await restartLabAgent(victim)
  await until(
    `${victim.name} ready again on ${others.map((n) => n.name).join(' and ')}`,
    async () => {
      for (const n of others) {
        const view = (await new AgentClient(n.name).get<NodeView[]>('/nodes')).find((x) => x.name === victim.name)
        if (view?.state !== 'ready') return undefined
      }
      return true
    },
    30_000,
  )
  const readyIn = Date.now() - t1
  // Its agent adopts the tasks that ran on through its death; the one replaced elsewhere is stale
  // and stops gracefully (out of every table first, then signalled). Until then the others keep it
  // as a draining backend, so the lab is whole only once its addresses are out of every node's maps.
  await until(
    `${moving.name}'s old task on ${victim.name} stopped, out of every node's maps`,
    () => (nodes.every((n) => !endpointIps(n.name).some((ip) => itsIps.has(ip))) ? true : undefined),
    30_000,
    50,
  )
  step({
    title: `${victim.name} back: link up, agent restarted (swarmnet agent --detach --node ${victim.name}), ready on the others after ${secs(readyIn)}`,
    detail: `it stopped its old ${moving.name}, replaced while it was away: out of every node's maps after ${secs(Date.now() - t1)}`,
  })

  // 8. Where to go next.
  step({
    title: `next: SWARMNET_HOST=n1 swarmnet service ps ${SERVICE}; swarmnet inspect lb ${SERVICE} --host ${front.node}; SWARMNET_HOST=${front.node} swarmnet task exec ${front.name} -- curl -s ${SERVICE}`,
    detail: `the lab stays up (demo: ${secs(Date.now() - start)}); swarmnet lab down removes it and everything it made`,
  })
}

/** The overlay addresses in a node's endpoint map, read from its pins. */
function endpointIps(node: string): string[] {
  return (readNodeMaps(node, 'sn_endpoints')[0]?.entries ?? []).map((e) => String((e.key as {ip: unknown}).ip))
}
