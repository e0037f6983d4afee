/**
 * Issue 22: operations that tell the truth and survive their own failures. Each test reproduces a finding of
 * the adversarial pass and failed on the code before its fix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { takeover } from '../../src/commands/takeover';
import { drain } from '../../src/commands/drain';
import { status, formatStatus } from '../../src/commands/status';
import { configureLog } from '../../src/log';
import { createDatabase, openClient } from '../helpers/pg';
import { Db } from '../../src/adapters/db';
import * as store from '../../src/adapters/recovery-store';
import { withCluster } from '../helpers/cluster';

configureLog({ syslog: false, stderr: false });

const BIN = join(__dirname, '..', '..', 'dist', 'fs-ha.js');

function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FS_HA_SYSLOG: '0' } });
    let out = '',
      err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('exit', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

test("22.6 a drain's plan locks none of the live source's rows: a hangup in flight does not hold it up, and it holds up no hangup", async (t) => {
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    layout: 'per-node',
    timeouts: '{ verify_ms: 3000, lock_ms: 5000, database_ms: 1500 }',
  });
  const calls = await c.sims.fs1.answerCalls(20);
  const hangup = await openClient(t, c.url);
  await hangup.query('BEGIN');
  await hangup.query('DELETE FROM fsha.recovery_base WHERE uuid = $1', [calls[0]]); // the row lock of a hangup in flight
  const t0 = Date.now();
  const plan = await takeover(c.config('fs2'), {
    from: 'fs1',
    dryRun: true,
    planned: true,
    command: 'drain --dry-run',
  });
  const ms = Date.now() - t0;
  await hangup.query('COMMIT');
  assert.equal(plan.result, 'dry-run', plan.reason);
  assert.ok(ms < 1500, `the plan did not wait for the hangup's row lock (${ms} ms; database_ms 1500)`);
});

test('22.8 status shows calls it could not count as unknown ("-", null), never 0', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(3);
  const locker = await openClient(t, c.url);
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE fsha.recovery_base IN ACCESS EXCLUSIVE MODE');
  const r = await status(c.config('fs2'), { deadlineMs: 1500 });
  await locker.query('ROLLBACK');
  const fs1 = r.nodes.find((n) => n.node === 'fs1')!;
  assert.equal(fs1.trackedCalls, null);
  assert.match(formatStatus(r), /^fs1\s+healthy\s+\S+\s+-\s/m);
});

test('22.5 and 22.12: --settle-ms is bounded as drain.settle_ms; a second agent on one FIFO refuses to start, the first keeps running', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const dir = mkdtempSync(join(tmpdir(), 'fsha-ops-'));
  const yaml = (await import('node:fs'))
    .readFileSync(
      c.configFile(
        'fs2',
        `instances: { VI_FS: fs1 }\nagent: { fifo: ${join(dir, 'fifo')} }\nwatch: { file: ${join(dir, 'health')}, interval_ms: 200 }`,
      ),
      'utf8',
    )
    .replace(/^state_dir: .*$/m, `state_dir: ${join(dir, 'state')}`);
  const f = join(dir, 'fs-ha.yaml');
  writeFileSync(f, yaml, { mode: 0o600 });
  const settle = await run(['--config', f, 'drain', '--from', 'fs1', '--settle-ms', '99999999999999999999']);
  assert.equal(settle.code, 2, settle.err);
  assert.match(settle.err, /--settle-ms must be a whole number of milliseconds from 0 to 600000/);
  const first = spawn(process.execPath, [BIN, '--config', f, 'agent'], {
    env: { ...process.env, FS_HA_SYSLOG: '0' },
    stdio: 'ignore',
  });
  t.after(() => first.kill('SIGKILL'));
  await sleep(1500);
  const second = await run(['--config', f, 'agent']);
  assert.equal(second.code, 1, second.err);
  assert.match(second.err, /another fs-ha agent is already reading .*fifo.*refusing to start a second one/);
  assert.equal(first.exitCode, null, 'the first agent still runs');
});

test("22.9 status at half a million audit rows still shows every node's last takeover (an index, not a sort of them all); rows older than audit.retention_days are trimmed", async (t) => {
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    layout: 'per-node',
    timeouts: '{ verify_ms: 3000, lock_ms: 5000, database_ms: 400 }',
  });
  const { Db } = await import('../../src/adapters/db');
  const store = await import('../../src/adapters/recovery-store');
  const pg = await openClient(t, c.url);
  await pg.query(`INSERT INTO fsha.audit (started_at, actor, command, from_node, to_node, result, reason)
                  SELECT now() - make_interval(secs => g), 'test', 'takeover', CASE WHEN g % 2 = 0 THEN 'fs1' ELSE 'fs2' END,
                         CASE WHEN g % 2 = 0 THEN 'fs2' ELSE 'fs1' END, 'done', 'test' FROM generate_series(1, 500000) g`);
  const db = await Db.connect(c.url, 60000, 'test');
  await store.applySchema(db, 'per-node'); // db init after the upgrade
  await db.close();
  const r = await status(c.config('fs2'));
  for (const n of r.nodes) assert.ok(n.lastTakeover, `${n.node}: its last takeover shown (${r.warnings.join('; ')})`);
  // retention: rows older than 30 days go, a bounded batch per audit write
  await pg.query(
    `UPDATE fsha.audit SET started_at = now() - interval '60 days' WHERE id IN (SELECT id FROM fsha.audit ORDER BY id LIMIT 10)`,
  );
  const cfg = c.config('fs2', 'audit: { retention_days: 30 }');
  const w = await Db.connect(c.url, 5000, 'test');
  await store.writeAudit(
    w,
    {
      takeoverId: 'x',
      startedAt: new Date(),
      actor: 't',
      command: 'test',
      from: 'fs1',
      to: 'fs2',
      result: 'done',
      reason: 'r',
      adopted: 0,
      recovered: 0,
      missing: 0,
      skipped: 0,
      timings: {},
    },
    cfg.audit.retentionDays,
  );
  await w.close();
  assert.equal(
    (await pg.query(`SELECT count(*)::int n FROM fsha.audit WHERE started_at < now() - interval '30 days'`)).rows[0].n,
    0,
  );
});

test('22.7 a takeover killed after its recover went out stays in history: the rerun records it as interrupted (its calls re-tracked since) before it drops their kept copies', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const calls = await c.sims.fs1.answerCalls(8);
  await c.sims.fs1.crash();
  const { Db } = await import('../../src/adapters/db');
  const { applySchema } = await import('../../src/adapters/recovery-store');
  const { moveRows } = await import('../../src/adapters/move-rows');
  const db = await Db.connect(c.url, 5000);
  await applySchema(db, 'shared');
  await moveRows(
    db,
    'shared',
    'public.recovery',
    [{ node: 'fs2', spec: { fromSwitchname: 'fs1', toSwitchname: 'fs2', addresses: [[c.addr.fs1, c.addr.fs2]] } }],
    {
      takeoverId: 'killed-after-recover',
      fromNode: 'fs1',
      toNode: 'fs2',
      targetCores: [c.sims.fs2.coreUuid],
      dryRun: false,
    },
  );
  await db.close();
  assert.match(String(await c.sims.fs2.api('sofia recover')), /Recovered 8 call\(s\)/); // the recover went out, then fs-ha died
  for (let i = 0; i < 40 && (await c.sims.fs2.ownCalls()).length < 8; i++) await sleep(25);
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'rerun' });
  assert.equal(r.result, 'nothing', r.reason);
  const pg = await openClient(t, c.url);
  const a = (
    await pg.query("select takeover_id, result, adopted, recovered, reason from fsha.audit where from_node = 'fs1'")
  ).rows;
  assert.equal(a.length, 1, JSON.stringify(a));
  assert.deepEqual(
    [a[0].takeover_id, a[0].result, a[0].adopted, a[0].recovered],
    ['killed-after-recover', 'interrupted', 8, 8],
  );
  assert.match(a[0].reason, /8 of 8 call\(s\) re-tracked since/);
  assert.equal(
    (await pg.query('select count(*)::int n from fsha.takeover_rows')).rows[0].n,
    0,
    'the copies dropped after',
  );
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), [...calls].sort());
});

test("22.16 a takeover on an initialised database runs no DDL: it never waits behind an open transaction on the recovery table (another takeover's rewrite, a FreeSWITCH write)", async (t) => {
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2', 'fs3'],
    layout: 'per-node',
    timeouts: '{ verify_ms: 3000, lock_ms: 5000, database_ms: 500 }',
  });
  const calls = await c.sims.fs1.answerCalls(5);
  const [other] = await c.sims.fs3.answerCalls(1);
  await c.sims.fs1.crash();
  const { Db } = await import('../../src/adapters/db');
  const { applySchema } = await import('../../src/adapters/recovery-store');
  const init = await Db.connect(c.url, 5000);
  await applySchema(init, 'per-node'); // db init, as the operator ran it
  await init.close();
  const writer = await openClient(t, c.url);
  await writer.query('BEGIN');
  await writer.query('UPDATE fsha.recovery_base SET metadata = metadata WHERE uuid = $1', [other]); // a long transaction on fs3's row
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' }).catch((e: Error) => e);
  await writer.query('COMMIT');
  assert.ok(!(r instanceof Error), r instanceof Error ? r.message : '');
  assert.equal(r.result, 'done', r.reason);
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), [...calls].sort());
});

test('22.1 a drain killed during its settle: its audit row is already there (draining, how to undo), and status shows the standby fs-ha left on', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(3);
  await c.sims.fs1.api('simctl ring 1'); // a call in set-up that never answers: the settle waits for it
  const f = c.configFile('fs2');
  const p = spawn(
    process.execPath,
    [BIN, '--config', f, 'drain', '--from', 'fs1', '--to', 'fs2', '--yes', '--settle-ms', '20000'],
    { env: { ...process.env, FS_HA_SYSLOG: '0' }, stdio: 'ignore' },
  );
  t.after(() => p.kill('SIGKILL'));
  for (let i = 0; i < 200 && !c.sims.fs1.standby; i++) await sleep(25);
  assert.ok(c.sims.fs1.standby, 'the drain put fs1 in standby');
  await sleep(300);
  p.kill('SIGKILL');
  await sleep(100);
  const pg = await openClient(t, c.url);
  const a = (await pg.query("select result, reason from fsha.audit where from_node = 'fs1'")).rows;
  assert.equal(a.length, 1, 'the killed drain is in history');
  assert.equal(a[0].result, 'draining');
  assert.match(a[0].reason, /fs1 in standby, calls in set-up settling .*sofia global standby off on fs1 undoes it/);
  const text = formatStatus(await status(c.config('fs2')));
  assert.match(text, /^fs1\s+healthy, standby\s/m, text);
  assert.match(text, /fs1: .*in standby since \S+ ago \(set by drain\)/);
});

/** A stop command that crashes node's simulated FreeSWITCH over its event socket, then takes `sleepS` seconds more. */
function crashThenSleep(dir: string, host: string, port: number, sleepS: number): string {
  const js = join(dir, 'crash.js');
  writeFileSync(
    js,
    `const s = require('net').connect(${port}, '${host}');
let b = ''; s.on('data', (d) => { b += d; if (b.includes('auth/request')) { b = ''; s.write('auth ClueCon\\n\\n'); } else if (b.includes('+OK accepted')) { b = ''; s.write('api fsctl crash\\n\\n'); } });
s.on('close', () => process.exit(0)); s.on('error', () => process.exit(0));`,
  );
  return `${process.execPath} ${js}; sleep ${sleepS}`;
}

test("22.3 + 22.4 keepalived's MASTER moves the calls while the stop command still runs: the drain reports what happened to the calls it carried; one audit row, one clock", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(8);
  const dir = mkdtempSync(join(tmpdir(), 'fsha-drain-'));
  const cfg = c.config(
    'fs2',
    `drain: { stop_command: "${crashThenSleep(dir, c.addr.fs1, c.ports.fs1, 1.5)}", settle_ms: 0 }`,
  );
  // as soon as fs1 is gone, "keepalived's MASTER" (fs3's notify) takes it over, before the stop command returns
  const other = (async () => {
    while (!c.sims.fs1.crashed) await sleep(10);
    return takeover(c.config('fs3'), { from: 'fs1', to: 'fs3', command: 'notify MASTER VI_FS01' });
  })();
  const r = await drain(cfg, { from: 'fs1', to: 'fs2', yes: true });
  const o = await other;
  assert.equal(o.result, 'done', o.reason);
  assert.match(
    r.reason,
    /fs1 drained: its 8 call\(s\) were taken over by notify MASTER VI_FS01 \(done: 8 call\(s\) to fs3\)/,
  );
  assert.deepEqual((await c.sims.fs3.ownCalls()).sort(), [...calls].sort());
  // the drain's own row: one clock from the drain's start, its total
  const pg = await openClient(t, c.url);
  const [d] = (await pg.query("select result, timings from fsha.audit where command = 'drain'")).rows;
  assert.equal(d.result, 'drained');
  const tm = d.timings as Record<string, number>;
  const order = ['drain_standby_ms', 'drain_settled_ms', 'drain_stopped_ms', 'drain_gone_ms', 'total_ms'];
  for (let i = 1; i < order.length; i++)
    assert.ok(tm[order[i - 1]] <= tm[order[i]], `${order[i - 1]} ${tm[order[i - 1]]} <= ${order[i]} ${tm[order[i]]}`);
  assert.ok(tm.drain_stopped_ms >= 1500, "the stop command's 1.5 s is on the drain's clock");
});

test("22.4 the drain's own takeover writes into the drain's row: its timeline on the drain's clock, the drain's total, the calls dropped in set-up counted", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(6);
  await c.sims.fs1.api('simctl ring 1');
  const r = await drain(c.config('fs2'), { from: 'fs1', to: 'fs2', yes: true, settleMs: 300 });
  assert.equal(r.result, 'done', r.reason);
  const pg = await openClient(t, c.url);
  const rows = (
    await pg.query("select command, result, reason, adopted, timings from fsha.audit where from_node = 'fs1'")
  ).rows;
  assert.equal(rows.length, 1, 'one row for the drain and its takeover');
  const [a] = rows;
  assert.deepEqual([a.command, a.result, a.adopted], ['drain', 'done', 6]);
  assert.match(a.reason, /1 call\(s\) in set-up dropped/);
  const tm = a.timings as Record<string, number>;
  const order = [
    'drain_standby_ms',
    'drain_settled_ms',
    'drain_stopped_ms',
    'drain_gone_ms',
    'rewritten_ms',
    'verified_ms',
    'total_ms',
  ];
  for (let i = 1; i < order.length; i++)
    assert.ok(tm[order[i - 1]] <= tm[order[i]], `${order[i - 1]} ${tm[order[i - 1]]} <= ${order[i]} ${tm[order[i]]}`);
  assert.ok(tm.drain_settled_ms >= 300, 'the settle is on the same clock');
  const s = await status(c.config('fs2'));
  assert.equal(s.nodes.find((n) => n.node === 'fs1')!.lastTakeover!.ms, tm.total_ms, "status shows the drain's total");
});

test("22.2 past the stop, the database drops the drain's connection (a switch-over): the drain asks again on a new one and completes; its calls are taken over", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(6);
  const dir = mkdtempSync(join(tmpdir(), 'fsha-drain-'));
  // the stop command crashes fs1, then cuts every connection the drain holds (the old primary going away)
  const cut = join(dir, 'cut.js');
  writeFileSync(
    cut,
    `const { Client } = require(${JSON.stringify(require.resolve('pg'))}); (async () => { const k = new Client({ connectionString: ${JSON.stringify(c.url)} }); await k.connect();
    await k.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name like 'fs-ha drain%'"); await k.end(); })();`,
  );
  const cfg = c.config(
    'fs2',
    `drain: { stop_command: "${crashThenSleep(dir, c.addr.fs1, c.ports.fs1, 0)} && ${process.execPath} ${cut}", settle_ms: 0 }`,
  );
  const r = await drain(cfg, { from: 'fs1', to: 'fs2', yes: true });
  assert.equal(r.result, 'done', r.reason);
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), [...calls].sort());
});

test("24.1 nodeLockHeld: true while another session holds a node's takeover lock (a takeover under way: drain waits for its audit row only then), false for another node, when released, and for the holder itself", async (t) => {
  const url = await createDatabase('lk');
  const a = await Db.connect(url, 3000);
  const b = await Db.connect(url, 3000);
  t.after(async () => {
    await a.close();
    await b.close();
  });
  assert.equal(await store.nodeLockHeld(b, 'freeswitch01'), false);
  await store.lockNode(a, 'freeswitch01', 1000);
  assert.equal(await store.nodeLockHeld(b, 'freeswitch01'), true);
  assert.equal(await store.nodeLockHeld(b, 'freeswitch02'), false);
  assert.equal(await store.nodeLockHeld(a, 'freeswitch01'), false, 'its own lock is not a takeover elsewhere');
  await store.unlockNode(a, 'freeswitch01');
  assert.equal(await store.nodeLockHeld(b, 'freeswitch01'), false);
});
