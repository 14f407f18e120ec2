// The commands' client of the agent API: a connection per call. Node 20's global agent keeps
// sockets alive, and a call written on one the agent had just closed as idle failed with EPIPE
// (seen in the lab's tests: rotate-key, agent-restart).
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {createServer} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {test} from 'node:test'
import {AgentClient} from '../../src/agent/client.js'

test('each call opens its own connection, so none is written on a socket the agent closed as idle', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sn-client-'))
  const socket = join(dir, 'n.sock')
  let connections = 0
  // The agent's side as it is: keep-alive allowed, idle connections closed after 5 s.
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end('{"ok":true}')
  })
  server.keepAliveTimeout = 5000
  server.on('connection', () => connections++)
  await new Promise<void>((r) => server.listen(socket, r))
  try {
    const client = new AgentClient(socket)
    // Calls one after another, as a test's poll makes them: a kept-alive socket would be reused,
    // and the one that comes as the agent closes it idle fails.
    for (let i = 0; i < 3; i++) assert.deepEqual(await client.get('/info'), {ok: true})
    assert.equal(connections, 3)
  } finally {
    server.close()
    rmSync(dir, {recursive: true, force: true})
  }
})
