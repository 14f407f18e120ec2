// A client sending 10 requests/s to a URL from inside a namespace, each on a new connection,
// counting what was answered 200 and what failed (rolling-update and node-drain).
import {spawn, type ChildProcess} from 'node:child_process'

const LOAD = `
import http from 'node:http'
setInterval(() => {
  const req = http.get(process.env.URL, {agent: false, timeout: 5000}, (res) => {
    res.resume()
    res.on('end', () => process.stdout.write(res.statusCode === 200 ? 'ok\\n' : 'fail ' + res.statusCode + '\\n'))
  })
  req.on('timeout', () => req.destroy(new Error('timeout')))
  req.on('error', (e) => process.stdout.write('fail ' + (e.code ?? e.message) + '\\n'))
}, 100)
`

export class Load {
  private out = ''
  private readonly p: ChildProcess
  constructor(netns: string, url: string) {
    this.p = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', process.execPath, '--input-type=module', '-e', LOAD], {
      env: {...process.env, URL: url},
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    this.p.stdout!.on('data', (d: Buffer) => (this.out += d.toString()))
  }
  /** Requests answered and failed since the last call. */
  take(): {sent: number; failed: string[]} {
    const lines = this.out.split('\n')
    this.out = lines.pop() ?? ''
    return {sent: lines.length, failed: lines.filter((l) => l !== 'ok')}
  }
  stop(): void {
    this.p.kill('SIGKILL')
  }
}
