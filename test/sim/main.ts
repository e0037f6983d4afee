/**
 * The simulator as a process of its own, as the end-to-end tests run one per network namespace:
 *   node dist/fs-sim.js --switchname freeswitch01 --esl 0.0.0.0:8021 --address 192.0.2.100 \
 *        --dsn 'pgsql://host=db1,db2 port=5432,5432 dbname=... target_session_attrs=read-write' (or postgres://...) [--far 192.0.2.254:5060] [--sip] [--profiles internal,external]
 * It prints one JSON line per event ({"ev":"listening"|"recover"|"reinvite"|"crash",...,"at":epoch_ms})
 * on stdout. --media binds and sends real RTP per channel (media-hangup / bind-error events). `fsctl crash` ends the process with status 134, as FreeSWITCH's abort() would.
 * Test controls are the event socket's `api simctl ...` commands (call N, calls, state, hang, ...).
 */
import { parseArgs } from 'node:util';
import { FsSim } from './freeswitch';

const { values } = parseArgs({
  options: {
    switchname: { type: 'string' },
    esl: { type: 'string', default: '127.0.0.1:8021' },
    password: { type: 'string', default: 'ClueCon' },
    address: { type: 'string' },
    dsn: { type: 'string' },
    far: { type: 'string', default: '127.0.0.21:5060' },
    sip: { type: 'boolean', default: false },
    // a SIP user agent on --address:5060: calls placed through a proxy, OPTIONS, BYE, re-INVITEs along the route set
    'sip-ua': { type: 'boolean', default: false },
    // where calls this node places go (a bridge's outbound leg): the proxy, host:port
    'outbound-proxy': { type: 'string' },
    'dial-out': { type: 'boolean', default: false },
    profiles: { type: 'string', default: 'internal' },
    // event_socket.conf.xml apply-inbound-acl, as CIDRs (default: loopback only, FreeSWITCH's loopback.auto)
    acl: { type: 'string', default: '127.0.0.0/8' },
    'retrack-delay-ms': { type: 'string', default: '5' },
    // the real server recovers legs one after another, ~3 ms each (fixtures README: 50 calls, last
    // re-INVITE +136-142 ms; 200 calls +595-604 ms); the process mode is the faithful one
    'recover-delay-ms': { type: 'string', default: '3' },
    // mod_pgsql's PQreset pause on a dead database connection (real: 1000 ms, 120 attempts)
    'db-reset-interval-ms': { type: 'string', default: '1000' },
    // the media plane (test/sim/media.ts): RTP sockets and packets per channel, MEDIA_TIMEOUT after
    // rtp-timeout-sec without inbound RTP (0: never); new calls' ports from rtp-ports; far end's RTP port
    media: { type: 'boolean', default: false },
    'rtp-ports': { type: 'string', default: '16384-32768' },
    'rtp-timeout-sec': { type: 'string', default: '0' },
    'far-media-port': { type: 'string', default: '30000' },
  },
});

function fail(msg: string): never {
  process.stderr.write(`fs-sim: ${msg}\n`);
  process.exit(2);
}

const emit = (ev: string, detail: Record<string, unknown> = {}) =>
  process.stdout.write(JSON.stringify({ ev, ...detail, at: detail.at ?? Date.now() }) + '\n');

async function main() {
  if (!values.switchname || !values.address || !values.dsn) fail('needs --switchname, --address and --dsn');
  const [host, port] = values.esl!.split(/:(?=\d+$)/);
  const [farHost, farPort] = values.far!.split(/:(?=\d+$)/);
  const sim = new FsSim({
    host,
    port: Number(port),
    password: values.password,
    switchname: values.switchname!,
    address: values.address!,
    dsn: values.dsn!,
    farEnd: farHost,
    farEndPort: Number(farPort ?? 5060),
    sip: values.sip,
    sipUa: values['sip-ua'],
    outboundProxy: values['outbound-proxy'],
    dialOut: values['dial-out'],
    profiles: values.profiles!.split(','),
    acl: values.acl!.split(','),
    retrackDelayMs: Number(values['retrack-delay-ms']),
    recoverDelayMs: Number(values['recover-delay-ms']),
    dbResetIntervalMs: Number(values['db-reset-interval-ms']),
    rtpPorts: { lo: Number(values['rtp-ports']!.split('-')[0]), hi: Number(values['rtp-ports']!.split('-')[1]) },
    media: values.media ? { timeoutSec: Number(values['rtp-timeout-sec']) } : undefined,
    farEndMediaPort: Number(values['far-media-port']),
    onEvent: (what, d) => {
      emit(what, d);
      if (what === 'crash') setImmediate(() => process.exit(134));
    },
  });
  await sim.start();
  emit('listening', { switchname: values.switchname, coreUuid: sim.coreUuid, esl: values.esl });
  const stop = () => {
    void sim.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => fail((e as Error).message));
