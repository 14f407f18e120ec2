// How bench/mesh.ts counts small UDP sent by trafgen (bench/trafgen.ts) and delivered to a task's
// socket (bench/udp-sink.ts), on output captured from real runs: trafgen's closing report with two
// sending processes, its give-up on a full send buffer (then the bench starts it again), and a
// namespace's /proc/net/snmp around a sink that never reads.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {test} from 'node:test'
import {parseTrafgenSummary, trafgenConfig, trafgenEnd} from '../../bench/trafgen.js'
import {delivered, parseUdpSnmp} from '../../bench/udp-sink.js'

const fixture = (name: string) => readFileSync(join(import.meta.dirname, '..', 'fixtures', 'bench', name), 'utf8')

test("trafgen's report: frames, bytes, each process's time; the longest is the sending time", () => {
  const r = parseTrafgenSummary(fixture('trafgen-2cpus.txt'))
  assert.equal(r.packets, 1_551_360)
  assert.equal(r.bytes, 164_444_160)
  assert.deepEqual(r.perCpu, [
    {cpu: 0, packets: 713_984, seconds: 6.092557},
    {cpu: 1, packets: 837_376, seconds: 6.040065},
  ])
  assert.equal(r.seconds, 6.092557)
  assert.deepEqual(trafgenEnd(fixture('trafgen-2cpus.txt')), {report: r})
})

test('trafgen giving up on a full send buffer is told apart from a failure', () => {
  assert.deepEqual(trafgenEnd(fixture('trafgen-buffer-full.txt')), {bufferFull: true})
  // No report and no known give-up: an error, never a figure.
  assert.throws(() => trafgenEnd('Cannot find device eth9!\n'), /trafgen: no report/)
  assert.throws(() => parseTrafgenSummary(fixture('trafgen-buffer-full.txt')), /trafgen: no report/)
})

test('delivered to the socket: read (InDatagrams) or refused for a full buffer (RcvbufErrors)', () => {
  const u = parseUdpSnmp(fixture('proc-net-snmp-sink.txt'))
  assert.equal(u.NoPorts, 0)
  assert.ok(u.RcvbufErrors! > 0, 'the sink never reads: nearly all go to RcvbufErrors')
  assert.equal(delivered(u), u.InDatagrams! + u.RcvbufErrors!)
  // UdpLite's line, of the same shape, is not taken for UDP's.
  assert.deepEqual(Object.keys(u).slice(0, 2), ['InDatagrams', 'NoPorts'])
  assert.throws(() => parseUdpSnmp('Ip: Forwarding\nIp: 1\n'), /no Udp: lines/)
  assert.throws(() => parseUdpSnmp('Udp: InDatagrams NoPorts\nUdp: 1\n'), /2 names, 1 values/)
})

test('the frames: whole Ethernet frames to the published port, the source port counting through the flows', () => {
  const c = trafgenConfig({
    srcMac: '02:00:00:00:00:64',
    dstMac: '02:00:00:00:00:0b',
    src: '172.30.0.100',
    dst: '172.30.0.11',
    dport: 5301,
    sports: [20000, 20255],
    payload: 64,
  })
  assert.match(c, /eth\(da=02:00:00:00:00:0b, sa=02:00:00:00:00:64\)/)
  assert.match(c, /ipv4\(saddr=172\.30\.0\.100, daddr=172\.30\.0\.11, ttl=64\)/)
  assert.match(c, /udp\(sp=dinc\(20000, 20255\), dp=5301\)/)
  assert.match(c, /fill\(0x42, 64\)/)
  const good = {
    srcMac: '02:00:00:00:00:64',
    dstMac: '02:00:00:00:00:0b',
    src: '10.0.0.1',
    dst: '10.0.0.2',
    dport: 9,
    sports: [1, 2] as [number, number],
    payload: 64,
  }
  assert.throws(() => trafgenConfig({...good, dstMac: 'x'}), /bad MAC/)
  assert.throws(() => trafgenConfig({...good, dst: '10.0.0'}), /bad address/)
  assert.throws(() => trafgenConfig({...good, sports: [3, 2]}), /bad ports/)
  assert.throws(() => trafgenConfig({...good, payload: 0}), /bad payload/)
})
