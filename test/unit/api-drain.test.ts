// The old agent's API after a handover: a client that connected before the successor's socket
// took the name, and sends its request only now, is still answered (agent --replace's promise:
// every request answered). The old agent used to exit as soon as it saw the successor's socket,
// and such a client saw EPIPE (e2e/agent-replace, once): it now exits once drainApi resolves.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {createServer, type Server} from 'node:http'
import {connect, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'
import {drainApi} from '../../src/agent/api-drain.js'

const dir = mkdtempSync(join(tmpdir(), 'sn-api-drain-'))
after(() => rmSync(dir, {recursive: true, force: true}))

async function serve(name: string): Promise<{server: Server; path: string}> {
  const path = join(dir, name)
  const server = createServer((_req, res) => res.end('answered'))
  await new Promise<void>((r) => server.listen(path, r))
  return {server, path}
}

/** A connection the server has accepted, with no request sent yet. */
async function connected(server: Server, path: string): Promise<Socket> {
  const accepted = new Promise<void>((r) => server.once('connection', () => r()))
  const sock = connect(path)
  await new Promise<void>((r, j) => sock.once('connect', r).once('error', j))
  await accepted
  return sock
}

/** Sends a request on sock: the response text, or the error the client sees. */
function ask(sock: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    sock.on('data', (b: Buffer) => (text += b.toString()))
    sock.on('error', (e) => resolve(`error ${e.message}`))
    sock.on('close', () => resolve(text))
    sock.write('GET /info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
  })
}

test('a connection accepted before the drain, whose request comes after it began, is answered', async () => {
  const {server, path} = await serve('a.sock')
  const sock = await connected(server, path)
  const drained = drainApi(server, 5_000)
  await new Promise((r) => setTimeout(r, 100))
  const answer = await ask(sock)
  assert.match(answer, /^HTTP\/1\.1 200 OK[\s\S]*answered$/)
  await drained
  assert.equal(server.listening, false)
})

test('no new connection is accepted once draining; a connection that never asks is closed after the grace', async () => {
  const {server, path} = await serve('b.sock')
  const silent = await connected(server, path)
  const closed = new Promise<void>((r) => silent.once('close', () => r()))
  silent.on('error', () => undefined)
  const started = Date.now()
  const drained = drainApi(server, 300)
  const refused = await new Promise<string>((r) => connect(path).once('error', (e: NodeJS.ErrnoException) => r(e.code ?? '')))
  assert.match(refused, /ECONNREFUSED|ENOENT/)
  await drained
  await closed
  assert.ok(Date.now() - started >= 250, 'closed at the end of the grace, not at once')
})
