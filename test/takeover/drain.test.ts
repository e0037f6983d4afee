/** Issue 11: fs-ha drain against a real PostgreSQL and simulated nodes (the keepalived end to end is in test/e2e). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drain } from '../../src/commands/drain';
import { configureLog } from '../../src/log';
import { withCluster } from '../helpers/cluster';
import { withClient } from '../helpers/pg';

configureLog({ syslog: false, stderr: false });

type Row = { hostname: string; runtime_uuid: string; uuid: string };
const rows = (url: string) =>
  withClient(
    url,
    async (c) => (await c.query<Row>('select hostname, runtime_uuid, uuid from fsha.recovery_base order by uuid')).rows,
  );

test('11.6 drain without --yes, and --dry-run: the plan per adopter; nothing changed, the source still serving and not in standby', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(10);
  const before = await rows(c.url);
  for (const o of [{ yes: false }, { dryRun: true, yes: true }]) {
    const r = await drain(c.config('fs2'), { from: 'fs1', to: 'fs2,fs3', ...o });
    assert.equal(r.result, 'planned');
    assert.match(r.reason, /would move 10 row\(s\) of fs1 to fs2 5, fs3 5/);
    if (!o.yes) assert.match(r.reason, /nothing stopped: run again with --yes/);
    assert.deepEqual(new Set(r.plan.preview!.map((p) => p.to)), new Set(['fs2', 'fs3']));
  }
  assert.deepEqual(await rows(c.url), before, 'nothing changed');
  assert.equal(c.sims.fs1.crashed, false);
  assert.equal(c.sims.fs1.standby, false);
  assert.equal(
    (await withClient(c.url, (q) => q.query('select count(*)::int n from fsha.audit'))).rows[0].n,
    0,
    'a plan writes no audit row',
  );
});

test('11.7 drain --yes over two adopters: standby, calls ringing get settle_ms (answered ones move, the rest reported as dropped), stopped without BYE, every call once', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(20);
  await c.sims.fs1.api('simctl ring 3');
  // two of the three ringing calls are answered during the settle time (standby only turns NEW calls away)
  let late: string[] = [];
  const answered = (async () => {
    while (!c.sims.fs1.standby) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 150));
    c.sims.fs1.ringing -= 2;
    late = await c.sims.fs1.answerCalls(2, undefined, true);
  })();
  const cfg = c.config('fs2');
  const r = await drain(cfg, { from: 'fs1', to: 'fs2,fs3', yes: true, settleMs: 600 });
  await answered;
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.dropped, 1, 'one call never answered: reported as dropped');
  assert.match(r.reason, /fs1 drained: fs2, fs3 took over 22 call\(s\) of fs1 .*; 1 call\(s\) in set-up dropped/);
  assert.equal(c.sims.fs1.crashed, true, 'stopped hard (fsctl crash: no BYE)');
  const all = await rows(c.url);
  assert.deepEqual(all.map((x) => x.uuid).sort(), [...calls, ...late].sort(), 'every tracked call once');
  for (const x of all)
    assert.equal(x.runtime_uuid, c.sims[x.hostname].coreUuid, `${x.uuid} re-tracked by ${x.hostname}`);
  assert.ok(all.some((x) => x.hostname === 'fs2') && all.some((x) => x.hostname === 'fs3'), 'both adopters got calls');
  const a = (
    await withClient(c.url, (q) => q.query("select command, to_node, timings from fsha.audit where result = 'done'"))
  ).rows[0];
  assert.equal(a.command, 'drain');
  assert.equal(a.to_node, 'fs2,fs3');
  for (const k of [
    'drain_standby_ms',
    'drain_settled_ms',
    'drain_stopped_ms',
    'drain_gone_ms',
    'rewritten_ms',
    'verified_ms',
  ])
    assert.ok(k in a.timings, `timeline has ${k}`);
  assert.ok(
    a.timings.drain_settled_ms - a.timings.drain_standby_ms >= 550,
    'waited the settle time for the call that never answered',
  );
});

test('11.8 drain refuses and touches nothing: the source already down (use takeover), its only adopter unhealthy, a stop command that does not stop it', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(4);
  const before = await rows(c.url);
  await c.sims.fs2.api('sofia profile internal stop');
  await assert.rejects(
    drain(c.config('fs2'), { from: 'fs1', yes: true }),
    /profile\(s\) not RUNNING on fs2: internal \(4 calls\)/,
  );
  assert.equal(c.sims.fs1.standby, false, 'a refused plan leaves the source alone');
  await c.sims.fs2.api('sofia profile internal start');

  // the operator's stop command ran but FreeSWITCH still answers: nothing moves, it may still carry its calls
  const dir = mkdtempSync(join(tmpdir(), 'fsha-drain-'));
  const cfg = c.config('fs2', `drain: { stop_command: 'echo "$FSHA_DRAIN_NODE" > ${dir}/stopped' }`);
  cfg.timeouts.fenceMs = 800;
  await assert.rejects(
    drain(cfg, { from: 'fs1', yes: true, settleMs: 0 }),
    /fs1 still answers after the stop .*its calls were NOT moved/,
  );
  assert.equal(readFileSync(join(dir, 'stopped'), 'utf8').trim(), 'fs1', 'the stop command ran with FSHA_DRAIN_NODE');
  assert.deepEqual(await rows(c.url), before, 'nothing moved');

  await c.sims.fs1.crash();
  await assert.rejects(
    drain(c.config('fs2'), { from: 'fs1', yes: true }),
    /refusing to drain fs1: its FreeSWITCH is not running .*fs-ha takeover --from fs1/,
  );
  // every drain that acted (or refused to) is in the audit, so history shows it; a refused plan acted on nothing
  const audit = (
    await withClient(c.url, (q) => q.query('select command, result, reason, timings from fsha.audit order by id'))
  ).rows;
  assert.deepEqual(
    audit.map((a) => [a.command, a.result]),
    [
      ['drain', 'failed'],
      ['drain', 'refused'],
    ],
  );
  assert.match(audit[0].reason, /fs1 still answers after the stop/);
  assert.ok('drain_stopped_ms' in audit[0].timings, 'with the timeline up to where it stopped');
});

test('11.11 drain of a server that carries no answered call: stopped and reported; no takeover', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  const r = await drain(c.config('fs2'), { from: 'fs1', yes: true, settleMs: 0 });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.reason, 'fs1 drained: it carried no answered call');
  assert.equal(c.sims.fs1.crashed, true);
  const audit = (await withClient(c.url, (q) => q.query('select command, result from fsha.audit'))).rows;
  assert.deepEqual(audit, [{ command: 'drain', result: 'drained' }]);
});

test("11.13 safety: a takeover passing the drain plan's flag without --dry-run is judged as any takeover: a live node is refused, nothing changes", async (t) => {
  const { takeover } = await import('../../src/commands/takeover');
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(3);
  const before = await rows(c.url);
  await assert.rejects(
    takeover(c.config('fs2'), { from: 'fs1', planned: true, command: 'test' }),
    /refusing to take over fs1: fs1 is alive and serving/,
  );
  assert.deepEqual(await rows(c.url), before);
  const plan = await takeover(c.config('fs2'), { from: 'fs1', planned: true, dryRun: true, command: 'test' });
  assert.equal(plan.result, 'dry-run');
  assert.deepEqual(await rows(c.url), before, 'the plan changed nothing either');
  assert.equal(c.sims.fs1.standby, false);
});
