/**
 * Issue 15: what the pair template meets on a real FreeSWITCH. The event-socket ACL rejecting a peer is an
 * answering FreeSWITCH, never a dead one; and log levels an operator can trust: ERROR only when a call may
 * be lost or an operator must act, WARNING when degraded but safe, INFO for decisions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { takeover } from '../../src/commands/takeover';
import { check } from '../../src/commands/check';
import { status } from '../../src/commands/status';
import { notify } from '../../src/commands/notify';
import { configureLog } from '../../src/log';
import { withCluster } from '../helpers/cluster';
import { RUDE_REJECTION, DISCONNECT_NOTICE } from '../sim/replies';

configureLog({ syslog: false, stderr: false });

/** fs-ha's log lines of one call, through log.file. */
function logTo(t: { after(fn: () => void): void }): () => string[] {
  const file = join(mkdtempSync(join(tmpdir(), 'fsha-log-')), 'fs-ha.log');
  configureLog({ file, stderr: false }, 'test');
  t.after(() => configureLog({ file: '' }));
  return () => {
    try {
      return readFileSync(file, 'utf8').split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
}

test('15.1 the simulator rejects a client its apply-inbound-acl does not admit, byte for byte as mod_event_socket does', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1'], acl: { fs1: ['127.0.0.200/32'] } });
  const got = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const s = connect({ host: c.addr.fs1, port: c.ports.fs1 });
    s.on('data', (d) => {
      buf += d.toString('utf8');
    });
    s.on('close', () => resolve(buf));
    s.on('error', reject);
  });
  assert.equal(got, RUDE_REJECTION + DISCONNECT_NOTICE, 'no auth/request: rejected first, then closed');
});

test('15.1 a peer whose event-socket ACL rejects us is alive: the takeover refuses, check and status name the ACL', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], acl: { fs1: ['127.0.0.200/32'], fs2: ['127.0.0.200/32'] } });
  const lines = logTo(t);
  await assert.rejects(
    takeover(c.config('fs2'), { from: 'fs1', command: 'test' }),
    /refusing to take over fs1: fs1 answers but its event-socket ACL rejects us.*apply-inbound-acl/,
  );
  assert.ok(
    lines().some((l) => /WARN test: takeover refused: .*ACL/.test(l)),
    'a WARNING, not an ERROR: nothing was lost',
  );
  const chk = await check(c.config('fs2'));
  assert.equal(chk.ok, false);
  assert.match(chk.reason, /rejected us by its ACL .*apply-inbound-acl/);
  const st = await status(c.config('fs2'));
  assert.deepEqual(
    st.nodes.map((n) => n.health),
    ['rejected', 'rejected'],
  );
  assert.match(st.nodes[0].detail, /apply-inbound-acl/);
});

test('15.2 a normal start: notify MASTER while the peer is alive and serving says "nothing to take over" at INFO and exits 0', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs2.answerCalls(3);
  const lines = logTo(t);
  const cfg = c.config('fs1');
  cfg.stateDir = mkdtempSync(join(tmpdir(), 'fsha-state-'));
  assert.equal(await notify(cfg, 'MASTER', undefined), 0);
  const all = lines();
  assert.ok(
    all.some((l) => /INFO test: notify MASTER _: nothing to take over: fs2 is alive and serving its own calls/.test(l)),
    all.join('\n'),
  );
  assert.deepEqual(
    all.filter((l) => /\bERROR\b/.test(l)),
    [],
    'no ERROR line',
  );
  assert.equal(c.sims.fs1.standby, false, 'the MASTER leaves standby');
});

test('15.3 the crashed node: notify FAULT with its FreeSWITCH down logs one WARNING, no retries, exit 0', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const cfg = c.config('fs1');
  cfg.stateDir = mkdtempSync(join(tmpdir(), 'fsha-state-'));
  await c.sims.fs1.crash();
  const lines = logTo(t);
  const t0 = Date.now();
  assert.equal(await notify(cfg, 'FAULT', undefined), 0);
  assert.ok(Date.now() - t0 < 500, 'no retries');
  const all = lines();
  assert.deepEqual(
    all.filter((l) => /\b(WARN|ERROR)\b/.test(l)).map((l) => l.replace(/^\S+ fs-ha\[\d+\]: /, '')),
    [
      'WARN test: notify FAULT: FreeSWITCH on fs1 is down (its event socket refused the connection): it takes no new calls, no standby needed node=fs1 instance=_ state=FAULT',
    ],
  );
});

test('11.12 the VRRP state is recorded for status without holding up what comes next: the agent does not wait for a database that does not answer; a hook process does (bounded)', async (t) => {
  const { createServer } = await import('node:net');
  const silent = createServer((s) => {
    s.on('error', () => undefined);
  }); // accepts, never answers
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  t.after(() => silent.close());
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const cfg = c.config('fs1', 'instances: { VI_1: fs1 }');
  cfg.database = `postgres://x@127.0.0.1:${(silent.address() as { port: number }).port}/x`;
  const lines = logTo(t);
  const notRecorded = () => lines().filter((l) => /VRRP state not recorded/.test(l)).length;
  await notify(cfg, 'BACKUP', 'VI_1', undefined, { recordInBackground: true });
  assert.equal(notRecorded(), 0, "the agent's notify returned before the record gave up");
  await notify(cfg, 'BACKUP', 'VI_1');
  assert.ok(notRecorded() >= 1, 'a hook process waited for it (and it gave up within its deadline)');
  assert.equal(c.sims.fs1.standby, true, 'the transition itself was done either way');
});
