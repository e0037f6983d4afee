/**
 * Issue 20: the media plane. Simulated nodes bind real UDP ports with SO_REUSEADDR, send RTP every 20 ms to a
 * far end that echoes it, and hang a call up MEDIA_TIMEOUT after rtp-timeout-sec without inbound RTP, as
 * FreeSWITCH 1.10.12 does. The finding reproduced: identical narrow allocator ranges on two nodes, a takeover
 * whose recovered calls bind ports the adopter's own calls hold (the kernel gives the datagrams to the last
 * bind) deafens the adopter's own calls; so do new calls handed a recovered call's port afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { takeover } from '../../src/commands/takeover';
import { configureLog } from '../../src/log';
import { withCluster, withFarEnd, type Cluster } from '../helpers/cluster';
import { withClient } from '../helpers/pg';
import { gapSummary } from '../sim/rtp-echo';

configureLog({ syslog: false, stderr: false });

const NARROW = { lo: 20000, hi: 20019 }; // 10 even ports, as the real run narrowed both nodes to 20 ports
const TIMEOUT_S = 2;

async function mediaCluster(
  t: Parameters<typeof withCluster>[0],
  hangups: Array<{ node: string; uuid: string; cause: string }>,
  extra: { robustness?: boolean } = {},
) {
  const echo = await withFarEnd(t); // the far ends: an RTP echo that records what it hears of each call
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    layout: 'per-node',
    rtpPorts: { fs1: NARROW, fs2: NARROW },
    farEndMediaPort: echo.port,
    media: { timeoutSec: TIMEOUT_S, robustness: extra.robustness },
    onEvent: (node, what, d) => {
      if (what === 'media-hangup') hangups.push({ node, uuid: String(d.uuid), cause: String(d.cause) });
    },
  });
  return { c, echo };
}

const ports = (url: string, host: string) =>
  withClient(
    url,
    async (db) =>
      (
        await db.query<{ uuid: string; port: string }>(
          "select uuid, substring(metadata from '<local_media_port>([0-9]+)<') port from fsha.recovery_base where hostname = $1",
          [host],
        )
      ).rows,
  );

/** Every channel of the node hears its far end now (a packet within the last 200 ms). */
async function assertHearing(c: Cluster, node: string, uuids: string[]): Promise<void> {
  const report = new Map(c.sims[node].media.report().map((m) => [m.uuid, m]));
  for (const u of uuids) {
    const m = report.get(u);
    assert.ok(m, `${node} still has call ${u}`);
    assert.ok(
      m.rxAgoMs !== null && m.rxAgoMs < 200,
      `${node}'s call ${u} (port ${m.port}) hears its far end (last packet ${m.rxAgoMs} ms ago)`,
    );
  }
}

test('20.1 takeover onto a node with its own calls, identical narrow RTP ranges: no call of the adopter goes deaf, every adopted call hears its far end', async (t) => {
  const hangups: Array<{ node: string; uuid: string; cause: string }> = [];
  const { c, echo } = await mediaCluster(t, hangups);
  const theirs = await c.sims.fs1.answerCalls(8);
  const own = await c.sims.fs2.answerCalls(8);
  await sleep(300);
  await assertHearing(c, 'fs2', own);
  const before = new Set((await ports(c.url, 'fs2')).map((r) => Number(r.port)));
  const crash = Date.now();
  await c.sims.fs1.crash();
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.recovered, 8);
  // every adopted call binds a port none of fs2's calls holds, outside fs2's allocator range
  const after = await ports(c.url, 'fs2');
  for (const row of after.filter((x) => theirs.includes(x.uuid))) {
    const p = Number(row.port);
    assert.ok(!before.has(p), `adopted call ${row.uuid} on port ${p}, not one of fs2's own`);
    assert.ok(p < NARROW.lo || p > NARROW.hi, `adopted call ${row.uuid} on port ${p}, outside fs2's rtp_ports`);
  }
  // longer than rtp-timeout-sec: a deaf call would have been hung up by now
  await sleep(TIMEOUT_S * 1000 + 1000);
  assert.deepEqual(hangups, [], 'no call hung up MEDIA_TIMEOUT');
  await assertHearing(c, 'fs2', [...own, ...theirs]);
  const gaps = theirs.map((u) => echo.audio(u, crash)!.gapMs);
  const s = gapSummary(gaps);
  t.diagnostic(`audio gap of the adopted calls at the far end: median ${s.median} ms, max ${s.max} ms`);
  for (const u of own) assert.equal(echo.audio(u, crash)!.gapMs, 0, `fs2's own call ${u} never lost its audio`);
  for (const u of theirs) assert.ok(echo.audio(u, crash)!.flowing, `adopted call ${u}: audio back at the far end`);
});

test("20.2 new calls on the adopter after the takeover: the allocator is never handed an adopted call's port (none is in its range)", async (t) => {
  const hangups: Array<{ node: string; uuid: string; cause: string }> = [];
  const { c } = await mediaCluster(t, hangups);
  const theirs = await c.sims.fs1.answerCalls(8);
  await c.sims.fs1.crash();
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  // the adopter's allocator hands out every port of its range: none may be one an adopted call binds
  const fresh = await c.sims.fs2.answerCalls(9);
  await sleep(TIMEOUT_S * 1000 + 1000);
  assert.deepEqual(hangups, [], 'no call hung up MEDIA_TIMEOUT');
  await assertHearing(c, 'fs2', [...theirs, ...fresh]);
});

test('20.3 the band runs out: the calls that find no free port pair are held back naming recovery_ports, never bound on a busy port', async (t) => {
  const hangups: Array<{ node: string; uuid: string; cause: string }> = [];
  const { c } = await mediaCluster(t, hangups);
  const own = await c.sims.fs2.answerCalls(4);
  await c.sims.fs1.answerCalls(5);
  await c.sims.fs1.crash();
  const r = await takeover(c.config('fs2', 'recovery_ports: 13000-13005'), { from: 'fs1', command: 'test' }).catch(
    (e) => e,
  );
  // three pairs in the band: three calls move, two are held back with the reason
  assert.equal(r.result, 'partial', r.reason);
  assert.equal(r.recovered, 3);
  assert.equal(r.skipped.length, 2);
  for (const s of r.skipped) assert.match(s.reason, /recovery_ports 13000-13005 has no free port pair left on fs2/);
  await sleep(TIMEOUT_S * 1000 + 500);
  assert.deepEqual(hangups, [], 'no call hung up MEDIA_TIMEOUT');
  await assertHearing(c, 'fs2', own);
});

test('20.4 status and check say when allocator ranges overlap each other (a note) or the band (a warning)', async (t) => {
  const { status, formatStatus } = await import('../../src/commands/status');
  const { check } = await import('../../src/commands/check');
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    layout: 'per-node',
    rtpPorts: { fs1: { lo: 16384, hi: 32768 }, fs2: { lo: 16384, hi: 32768 } },
  });
  const text = formatStatus(await status(c.config('fs1', 'recovery_ports: 16000-16999')));
  assert.match(text, /^WARNING: recovery_ports 16000-16999 overlaps fs1's rtp_ports 16384-32768/m);
  assert.match(
    text,
    /^note: rtp_ports of fs1 \(16384-32768\) and fs2 \(16384-32768\) overlap: calls adopted between them move into recovery_ports/m,
  );
  const disjoint = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    layout: 'per-node',
    rtpPorts: { fs1: { lo: 20000, hi: 20999 }, fs2: { lo: 21000, hi: 21999 } },
  });
  const clean = await status(disjoint.config('fs1'));
  assert.deepEqual([clean.notes, clean.warnings.filter((w) => /rtp_ports|recovery_ports/.test(w))], [[], []]);
  assert.ok(
    (await check(c.config('fs1'))).ok,
    'overlapping ranges are no health problem: keepalived is not told to fail over',
  );
});
