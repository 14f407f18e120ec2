// kxdpgun's report as the DNS bench reads it (bench/kxdpgun.ts): the fixtures are its real output,
// captured from runs in the bench's client task (knot-dnsutils 3.2.6, generic XDP): the fast path
// answering all, the responder past its capacity losing some, and a name nobody has (SERVFAIL).
// And the capacity search, fed made-up reports (what it decides, not what a server does).
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {capacity, parseKxdpgun, wrongAnswers, type KxdpgunReport} from '../../bench/kxdpgun.js'

const FIX = join(fileURLToPath(import.meta.url), '..', '..', 'fixtures', 'kxdpgun')
const fixture = (name: string) => readFileSync(join(FIX, name), 'utf8')

test('a run where every question is answered', () => {
  assert.deepEqual(parseKxdpgun(fixture('fast-path.txt')), {
    mode: 'emulated',
    threads: 1,
    sent: 199810,
    sentPps: 99905,
    replies: 199810,
    repliesPps: 99905,
    replySize: 37,
    rcodes: {NOERROR: 199810},
    durationS: 2,
  })
})

test('a run past the server capacity: fewer replies than questions', () => {
  const r = parseKxdpgun(fixture('responder-lossy.txt'))
  assert.equal(r.sent, 60010)
  assert.equal(r.replies, 43881)
  assert.equal(r.repliesPps, 21940)
  assert.equal(r.replySize, 97)
  assert.deepEqual(r.rcodes, {NOERROR: 43881})
  // 97 B: the answer to a 63-letter name's A question (12 + 65 + 4 + 16).
  assert.equal(wrongAnswers(r, 97), null)
})

test('answers that are not the ones asked for are named', () => {
  const r = parseKxdpgun(fixture('servfail.txt'))
  assert.deepEqual(r.rcodes, {SERVFAIL: 24778})
  assert.equal(wrongAnswers(r, 28), 'answers other than NOERROR: SERVFAIL 24778')
  assert.equal(wrongAnswers(parseKxdpgun(fixture('fast-path.txt')), 97), 'answers of 37 B, not 97 B')
})

test('output that is not a report (an error from kxdpgun) throws with its first line', () => {
  assert.throws(() => parseKxdpgun('failed to initialize XDP socket (Operation not supported)\n'), {
    message: 'not a kxdpgun UDP report: failed to initialize XDP socket (Operation not supported)',
  })
  assert.throws(() => parseKxdpgun(''), /not a kxdpgun UDP report: \(empty\)/)
  // A report cut before its totals.
  assert.throws(() => parseKxdpgun(fixture('fast-path.txt').split('total replies')[0]!), /not a kxdpgun UDP report/)
})

/** A made-up server: answers up to `cap` per second (all of a rate at or under it, then `cap`), the sender at most `send`. */
function server(cap: number, send = Infinity) {
  const asked: number[] = []
  const ask = (qps: number): KxdpgunReport => {
    asked.push(qps)
    const sentPps = Math.min(qps, send)
    const repliesPps = Math.min(sentPps, cap)
    return {
      mode: 'emulated',
      threads: 1,
      sent: sentPps * 2,
      sentPps,
      replies: repliesPps * 2,
      repliesPps,
      replySize: 37,
      rcodes: {NOERROR: repliesPps * 2},
      durationS: 2,
    }
  }
  return {ask, asked}
}

test('the search climbs until the server loses questions, and keeps the best step', () => {
  const s = server(100_000)
  const c = capacity(s.ask, 50_000)
  assert.equal(c.end, 'server')
  assert.equal(c.best.repliesPps, 100_000)
  // 50k, 62.5k, 78.1k, 97.7k answered in full; 122k: 100k answered (82%), the end.
  assert.equal(s.asked.length, 5)
  assert.equal(c.steps.length, 5)
})

test('the search ends when the sender cannot send the rate (the client is the limit)', () => {
  const s = server(Infinity, 300_000)
  const c = capacity(s.ask, 100_000)
  assert.equal(c.end, 'client')
  assert.equal(c.best.repliesPps, 300_000)
})

test('the search ends after its steps when nothing limits', () => {
  const c = capacity(server(Infinity).ask, 1000)
  assert.equal(c.end, 'steps')
  assert.equal(c.steps.length, 14)
})
