/** The takeover against a real PostgreSQL and simulated FreeSWITCH nodes that apply the real recovery SQL. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { takeover } from '../../src/commands/takeover';
import { configureLog } from '../../src/log';
import { withCluster, withFarEnd } from '../helpers/cluster';
import { withClient } from '../helpers/pg';
import { loadRows } from '../helpers/fixtures';
import { Db } from '../../src/adapters/db';
import { applySchema } from '../../src/adapters/recovery-store';
import { moveRows } from '../../src/adapters/move-rows';

configureLog({ syslog: false, stderr: false });

type Row = { hostname: string; runtime_uuid: string; uuid: string; metadata: string };
/** Insert real fixture rows as node fs1's (optionally transforming each row's metadata). */
const insertAsFs1 = (url: string, list: ReturnType<typeof loadRows>, md = (m: string, _i: number) => m) =>
  withClient(url, async (db) => {
    for (const [i, r] of list.entries())
      await db.query('insert into recovery values ($1,$2,$3,$4,$5,$6)', [
        r.runtime_uuid,
        r.technology,
        r.profile_name,
        'fs1',
        r.uuid,
        md(r.metadata, i),
      ]);
  });

const rows = (url: string, table = 'public.recovery') =>
  withClient(
    url,
    async (c) => (await c.query<Row>(`select hostname, runtime_uuid, uuid, metadata from ${table} order by uuid`)).rows,
  );

test('pair: crash node 1, node 2 adopts every call exactly once, addresses rewritten, audit written', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const calls = await c.sims.fs1.answerCalls(20);
  await c.sims.fs1.crash();
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.adopted, 20);
  assert.equal(r.recovered, 20);
  assert.deepEqual(r.missing, []);
  const after = await rows(c.url);
  assert.equal(after.length, 20);
  assert.deepEqual(after.map((x) => x.uuid).sort(), [...calls].sort());
  for (const x of after) {
    assert.equal(x.hostname, 'fs2');
    assert.equal(x.runtime_uuid, c.sims.fs2.coreUuid);
    assert.ok(!x.metadata.includes(c.addr.fs1), 'no address of the failed node left');
  }
  await withClient(c.url, async (db) => {
    const a = (await db.query('select result, adopted, recovered, missing from fsha.audit')).rows;
    assert.deepEqual(a, [{ result: 'done', adopted: 20, recovered: 20, missing: 0 }]);
    assert.equal(
      (await db.query('select count(*)::int n from fsha.takeover_rows')).rows[0].n,
      0,
      'copies dropped once re-tracked',
    );
  });
  // a second takeover finds nothing left to do
  const again = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(again.result, 'nothing');
});

test('node 1 still alive: refused, nothing changed', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs1.answerCalls(3);
  const before = await rows(c.url);
  await assert.rejects(
    takeover(c.config('fs2'), { from: 'fs1', command: 'test' }),
    /refusing to take over fs1: fs1 is alive/,
  );
  assert.deepEqual(await rows(c.url), before);
});

test("a third live node's rows in the shared table: refused, naming it; rows intact", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'] });
  await c.sims.fs1.answerCalls(4);
  await c.sims.fs3.answerCalls(6);
  await c.sims.fs1.crash();
  const before = await rows(c.url);
  await assert.rejects(
    takeover(c.config('fs2'), { from: 'fs1', command: 'test' }),
    /would also take the calls of fs3 \(6 rows\)/,
  );
  assert.deepEqual(await rows(c.url), before);
});

test("per-node layout, three nodes: node 2 adopts node 1's calls, node 3's are untouched", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  const a = await c.sims.fs1.answerCalls(5);
  const b = await c.sims.fs3.answerCalls(7);
  // the real hazard: a plain recover on fs2 sees nothing of the others through its view
  assert.equal(await c.sims.fs2.api('fsctl recover'), '+OK 0 session(s) recovered in total\n');
  await c.sims.fs1.crash();
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.recovered, 5);
  const all = await rows(c.url, 'fsha.recovery_base');
  assert.deepEqual(
    all
      .filter((x) => x.hostname === 'fs2')
      .map((x) => x.uuid)
      .sort(),
    [...a].sort(),
  );
  const fs3 = all.filter((x) => x.hostname === 'fs3');
  assert.deepEqual(fs3.map((x) => x.uuid).sort(), [...b].sort());
  for (const x of fs3) assert.equal(x.runtime_uuid, c.sims.fs3.coreUuid);
});

test('per-node layout with a public.recovery beside it: refused', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(2);
  await c.sims.fs1.crash();
  await withClient(c.url, (db) =>
    db.query(
      'create table public.recovery (runtime_uuid varchar(255), technology varchar(255), profile_name varchar(255), hostname varchar(255), uuid varchar(255), metadata text)',
    ),
  );
  await assert.rejects(
    takeover(c.config('fs2'), { from: 'fs1', command: 'test' }),
    /public\.recovery \(table\) exists beside the per-node views/,
  );
  assert.equal((await rows(c.url, 'fsha.recovery_base')).filter((x) => x.hostname === 'fs1').length, 2);
});

test('target profile down: refused, rows intact (FreeSWITCH would have deleted them)', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs1.answerCalls(3);
  await c.sims.fs1.crash();
  await c.sims.fs2.api('sofia profile internal stop');
  const before = await rows(c.url);
  await assert.rejects(
    takeover(c.config('fs2', 'recover: fsctl'), { from: 'fs1', command: 'test' }),
    /not RUNNING on fs2: internal \(3 calls\)/,
  );
  assert.deepEqual(await rows(c.url), before);
});

test('two concurrent takeovers of the same node: each call adopted once', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(30);
  await c.sims.fs1.crash();
  const [r2, r3] = await Promise.allSettled([
    takeover(c.config('fs2'), { from: 'fs1', command: 'test' }),
    takeover(c.config('fs3'), { from: 'fs1', command: 'test' }),
  ]);
  const results = [r2, r3].map((r) => (r.status === 'fulfilled' ? r.value.result : 'error'));
  assert.deepEqual(results.sort(), ['done', 'nothing']);
  const all = await rows(c.url, 'fsha.recovery_base');
  assert.equal(all.length, 30);
  assert.equal(new Set(all.map((x) => x.uuid)).size, 30);
  assert.deepEqual(all.map((x) => x.uuid).sort(), [...calls].sort());
  const owners = new Set(all.map((x) => x.hostname));
  assert.equal(owners.size, 1);
});

test('killed between rewrite and recover (--no-recover): a rerun completes it', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs1.answerCalls(6);
  await c.sims.fs1.crash();
  const moved = await takeover(c.config('fs2'), { from: 'fs1', command: 'test', noRecover: true });
  assert.equal(moved.result, 'moved');
  assert.equal(
    (await rows(c.url)).filter((x) => x.hostname === 'fs2' && x.runtime_uuid !== c.sims.fs2.coreUuid).length,
    6,
  );
  await withClient(c.url, async (db) =>
    assert.equal((await db.query('select count(*)::int n from fsha.takeover_rows')).rows[0].n, 6),
  );
  const rerun = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(rerun.result, 'done', rerun.reason);
  assert.equal(rerun.recovered, 6);
  await withClient(c.url, async (db) =>
    assert.equal((await db.query('select count(*)::int n from fsha.takeover_rows')).rows[0].n, 0),
  );
});

test('dry run changes nothing and lists what would move', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs1.answerCalls(4);
  await c.sims.fs1.crash();
  const before = await rows(c.url);
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test', dryRun: true });
  assert.equal(r.result, 'dry-run');
  assert.equal(r.preview!.length, 4);
  assert.deepEqual(await rows(c.url), before);
  await withClient(c.url, async (db) =>
    assert.equal((await db.query("select to_regclass('fsha.audit') is null as none")).rows[0].none, true),
  );
});

test('real rows with a truncated one: the good ones move, the bad one is held back: out of the table, kept and reported; partial', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs1.crash();
  const real = loadRows('recovery_rows.sql');
  // the real rows, as node fs1 (127.0.0.11 is fs1's address in the test cluster too)
  await insertAsFs1(c.url, real, (m, i) => (i === 2 ? m.slice(0, 3000) : m));
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'partial');
  assert.equal(r.skipped.length, 1);
  assert.equal(r.skipped[0].uuid, real[2].uuid);
  assert.match(r.skipped[0].reason, /does not parse/);
  assert.equal(r.recovered, 4);
  // shared table: FreeSWITCH's recover takes every foreign row, so the held one left the table first;
  // fs-ha keeps it, untouched, for the operator
  assert.equal((await rows(c.url)).length, 4);
  await withClient(c.url, async (db) => {
    const kept = (await db.query('select uuid, hostname, metadata, note from fsha.takeover_rows')).rows;
    assert.equal(kept.length, 1);
    assert.equal(kept[0].uuid, real[2].uuid);
    assert.equal(kept[0].hostname, 'fs1');
    assert.equal(kept[0].metadata, real[2].metadata.slice(0, 3000));
    assert.match(kept[0].note, /^held: metadata does not parse/);
  });
});

test('bridged calls (real rows): both legs move and are recovered in one run', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs1.crash();
  const legs = loadRows('bridged_rows.sql');
  await insertAsFs1(c.url, legs);
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.recovered, 6);
});

for (const [path, oneReadBytes] of [
  ['metadata read at once, ties found by fs-ha', undefined],
  ['metadata read batch by batch, ties found by the server', 0],
] as const)
  test(`bridged pair whose second leg cannot be moved, one row per batch (${path}): neither leg is written, both are held back as they were`, async (t) => {
    const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
    await c.sims.fs1.crash();
    const legs = loadRows('bridged_rows.sql');
    const bond = (m: string) => m.match(/<signal_bond>([^<]+)</)?.[1];
    const broken = legs.length - 1;
    const partner = legs.findIndex((l) => l.uuid === bond(legs[broken].metadata));
    assert.ok(partner >= 0 && partner < broken, "fixture: the last leg's partner comes earlier");
    await insertAsFs1(c.url, legs, (m, i) => (i === broken ? m.slice(0, 4000) : m));
    const before = await rows(c.url);
    const db = await Db.connect(c.url, 5000);
    try {
      await applySchema(db, 'per-node'); // fsha.takeover_rows
      const res = await moveRows(
        db,
        'per-node',
        'public.recovery',
        [{ node: 'fs2', spec: { fromSwitchname: 'fs1', toSwitchname: 'fs2', addresses: [[c.addr.fs1, c.addr.fs2]] } }],
        {
          takeoverId: 't1',
          fromNode: 'fs1',
          toNode: 'fs2',
          targetCores: [c.sims.fs2.coreUuid],
          dryRun: false,
          limits: { rows: 1, bytes: 1 },
          oneReadBytes,
        },
      );
      assert.deepEqual(res.held.map((s) => s.uuid).sort(), [legs[broken].uuid, legs[partner].uuid].sort());
      assert.equal(res.rows.length, legs.length - 2);
    } finally {
      await db.close();
    }
    // per-node: held rows stay in place (only their own node's view sees them), untouched
    const after = await rows(c.url);
    for (const uuid of [legs[broken].uuid, legs[partner].uuid]) {
      assert.deepEqual(
        after.find((x) => x.uuid === uuid),
        before.find((x) => x.uuid === uuid),
        `${uuid} untouched`,
      );
    }
    assert.equal(after.filter((x) => x.hostname === 'fs2').length, legs.length - 2);
    await withClient(c.url, async (q) => {
      const kept = (await q.query('select uuid, note from fsha.takeover_rows order by note')).rows;
      assert.equal(kept.filter((k) => k.note === 'moved').length, legs.length - 2);
      assert.deepEqual(
        kept
          .filter((k) => k.note !== 'moved')
          .map((k) => k.uuid)
          .sort(),
        [legs[broken].uuid, legs[partner].uuid].sort(),
      );
    });
  });

test("pair with one shared switchname and a VIP (FreeSWITCH docs' setup): nothing rewritten, calls recovered", async (t) => {
  const c = await withCluster(t, { nodes: ['a', 'b'], switchname: 'freeswitch' });
  const calls = await c.sims.a.answerCalls(5);
  const before = await rows(c.url);
  await c.sims.a.crash();
  const r = await takeover(c.config('b'), { from: 'a', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.recovered, 5);
  const after = await rows(c.url);
  assert.deepEqual(after.map((x) => x.uuid).sort(), [...calls].sort());
  for (const x of after) assert.equal(x.runtime_uuid, c.sims.b.coreUuid);
  assert.equal(before[0].metadata.includes('127.0.0.100'), true);
});

test('database down: clear error, nothing changed; a rerun after it returns recovers', async (t) => {
  // asked again for 3 x database_ms (23.7) before the error stands
  const echo = await withFarEnd(t); // the far ends: an RTP echo that records what it hears of each call
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    timeouts: '{ verify_ms: 3000, lock_ms: 5000, database_ms: 1000 }',
    farEndMediaPort: echo.port,
    media: { timeoutSec: 10 },
  });
  const calls = await c.sims.fs1.answerCalls(3);
  await sleep(300);
  const crashAt = Date.now();
  await c.sims.fs1.crash();
  const cfg = c.config('fs2');
  const broken = { ...cfg, database: cfg.database!.replace(/:(\d+)\//, ':1/') };
  await assert.rejects(takeover(broken, { from: 'fs1', command: 'test' }), /database: cannot connect/);
  assert.equal((await rows(c.url)).filter((x) => x.hostname === 'fs1').length, 3);
  const r = await takeover(cfg, { from: 'fs1', command: 'test' });
  assert.equal(r.recovered, 3);
  await sleep(500);
  for (const u of calls) {
    const a = echo.audio(u, crashAt);
    assert.ok(a?.flowing, `call ${u}: its far end hears it again, now from fs2 (gap ${a?.gapMs} ms)`);
  }
});

test('23.7 (chaos: a busy machine) the first database connect fails (its primary late, or not listening yet): asked again for 3 x database_ms, the calls are recovered, not stranded', async (t) => {
  const { createServer, connect } = await import('node:net');
  const { freePort } = await import('../helpers/pg');
  const echo = await withFarEnd(t); // the far ends: an RTP echo that records what it hears of each call
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], farEndMediaPort: echo.port, media: { timeoutSec: 5 } });
  const calls = await c.sims.fs1.answerCalls(3);
  await sleep(300);
  const crashAt = Date.now();
  await c.sims.fs1.crash();
  const cfg = c.config('fs2');
  const real = Number(/:(\d+)\//.exec(cfg.database!)![1]);
  // the database's address answers nothing for its first second (connection refused), then reaches the primary
  const port = await freePort();
  const relay = createServer((s) => {
    const up = connect(real, '127.0.0.1');
    s.pipe(up).pipe(s);
    s.on('error', () => up.destroy());
    up.on('error', () => s.destroy());
  });
  const opened = setTimeout(() => relay.listen(port, '127.0.0.1'), 1000);
  try {
    const r = await takeover(
      { ...cfg, database: cfg.database!.replace(/:(\d+)\//, `:${port}/`) },
      { from: 'fs1', command: 'test' },
    );
    assert.equal(r.result, 'done');
    assert.equal(r.recovered, 3);
    await sleep(500);
    for (const u of calls) {
      const a = echo.audio(u, crashAt);
      assert.ok(a?.flowing, `call ${u}: its far end hears it again, now from fs2 (gap ${a?.gapMs} ms)`);
    }
  } finally {
    clearTimeout(opened);
    relay.close();
  }
});

test('event socket that accepts and never answers, or rejects the password: refused within the deadline', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs1.answerCalls(2);
  await c.sims.fs1.crash();
  await c.sims.fs2.api('simctl hang');
  const t0 = Date.now();
  await assert.rejects(
    takeover(c.config('fs2'), { from: 'fs1', command: 'test' }),
    /cannot recover: event socket .* within 1000 ms/,
  );
  assert.ok(Date.now() - t0 < 6000);
  c.sims.fs2.fault.hang = false;
  const cfg = c.config('fs2');
  cfg.esl = { ...cfg.esl, password: 'wrong' };
  cfg.nodes.fs2.esl = cfg.esl;
  await assert.rejects(takeover(cfg, { from: 'fs1', command: 'test' }), /rejected the password/);
  assert.equal((await rows(c.url)).filter((x) => x.hostname === 'fs1').length, 2);
});

test('23.2 (chaos: a busy switch) calls hung up on the adopter right after their recover, before FreeSWITCH re-tracked them: the takeover is done (they ended, uuid_exists says so), not partial, and does not wait out verify_ms for them', async (t) => {
  const sims: { fs2?: import('../sim/freeswitch').FsSim } = {};
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    layout: 'per-node',
    retrackDelayMs: 300,
    timeouts: '{ verify_ms: 15000, lock_ms: 5000, database_ms: 3000 }',
    onEvent: (node, what, d) => {
      // the far ends of two calls hang up the moment their channels are back on fs2
      if (node === 'fs2' && what === 'recover')
        for (const u of (d.uuids as string[]).slice(0, 2)) void sims.fs2?.hangup(u);
    },
  });
  sims.fs2 = c.sims.fs2;
  const calls = await c.sims.fs1.answerCalls(6);
  await c.sims.fs1.crash();
  const t0 = Date.now();
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  const ms = Date.now() - t0;
  assert.equal(r.result, 'done', r.reason);
  assert.match(r.adopters[0].reason, /2 of them ended since/);
  assert.equal(r.missing.length, 0);
  assert.ok(ms < 15000, `it did not wait out verify_ms for the ended calls (${ms} ms)`);
  await new Promise((res) => setTimeout(res, 400));
  const left = (await rows(c.url, 'fsha.recovery_base')).map((x: { uuid: string }) => x.uuid);
  assert.equal(left.length, 4);
  assert.ok(left.every((u: string) => calls.includes(u)));
});

test('23.2b (chaos: a loaded adopter) FreeSWITCH re-tracks late (its SQL queue under load) and two calls are hung up after the first look but before their re-track: still ended, not missing', async (t) => {
  const sims: { fs2?: import('../sim/freeswitch').FsSim } = {};
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    layout: 'per-node',
    retrackDelayMs: 1200,
    timeouts: '{ verify_ms: 15000, lock_ms: 5000, database_ms: 3000 }',
    onEvent: (node, what, d) => {
      if (node === 'fs2' && what === 'recover')
        setTimeout(() => {
          for (const u of (d.uuids as string[]).slice(0, 2)) void sims.fs2?.hangup(u);
        }, 800);
    },
  });
  sims.fs2 = c.sims.fs2;
  await c.sims.fs1.answerCalls(6);
  await c.sims.fs1.crash();
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.match(r.adopters[0].reason, /2 of them ended since/);
});
