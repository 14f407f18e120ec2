// A client sending 10 requests/s to a URL from inside a namespace, counting what was answered
// 200 and what failed (rolling-update, node-drain, agent-upgrade). Each request on a new
// connection, or (keepAlive) all on one connection for as long as it lasts: a new one is
// reported, so a test can tell that a flow lived through a change.
import {spawn, type ChildProcess} from 'node:child_process'

const LOAD = `
import http from 'node:http'
const agent = process.env.KEEP ? new http.Agent({keepAlive: true, maxSockets: 1}) : false
setInterval(() => {
  const req = http.get(process.env.URL, {agent, timeout: 5000}, (res) => {
    res.resume()
    res.on('end', () => process.stdout.write(res.statusCode === 200 ? 'ok\\n' : 'fail ' + res.statusCode + '\\n'))
  })
  if (agent) req.on('socket', (s) => { if (!s.counted) { s.counted = true; process.stdout.write('conn\\n') } })
  req.on('timeout', () => req.destroy(new Error('timeout')))
  req.on('error', (e) => process.stdout.write('fail ' + (e.code ?? e.message) + '\\n'))
}, 100)
`

export class Load {
  private out = ''
  private readonly p: ChildProcess
  constructor(netns: string, url: string, o: {keepAlive?: boolean} = {}) {
    this.p = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', process.execPath, '--input-type=module', '-e', LOAD], {
      env: {...process.env, URL: url, ...(o.keepAlive ? {KEEP: '1'} : {})},
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    this.p.stdout!.on('data', (d: Buffer) => (this.out += d.toString()))
  }
  /** Requests answered and failed since the last call, and the connections opened (keepAlive only). */
  take(): {sent: number; failed: string[]; connections: number} {
    const lines = this.out.split('\n')
    this.out = lines.pop() ?? ''
    const requests = lines.filter((l) => l !== 'conn')
    return {sent: requests.length, failed: requests.filter((l) => l !== 'ok'), connections: lines.length - requests.length}
  }
  stop(): void {
    this.p.kill('SIGKILL')
  }
}
