/**
 * Issue 12, the database underneath: a real primary and a real hot standby streaming from it
 * (pg_basebackup -R), promotion by pg_ctl promote as Patroni does it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Db } from '../../src/adapters/db';
import { takeover } from '../../src/commands/takeover';
import { configureLog } from '../../src/log';
import { withCluster } from '../helpers/cluster';
import { caughtUp, startReplicaPair, withClient, type PgServer } from '../helpers/pg';

configureLog({ syslog: false, stderr: false });

let pair: { primary: PgServer; standby: PgServer & { promote(): void } };
const hostOf = (s: PgServer) => `127.0.0.1:${s.port}`;
const both = () =>
  `postgres://postgres@${hostOf(pair.standby)},${hostOf(pair.primary)}/postgres?target_session_attrs=read-write`;

before(async () => {
  pair = await startReplicaPair();
});
after(() => {
  pair.standby.stop();
  pair.primary.stop();
});

test('12.1 the first writable primary of the host list, the standby listed first skipped; only the standby: an error naming it, within the deadline', async () => {
  const db = await Db.connect(both(), 3000);
  try {
    assert.equal(
      (await db.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r,
      false,
      'connected to the primary',
    );
  } finally {
    await db.close();
  }
  const t0 = Date.now();
  await assert.rejects(
    Db.connect(pair.standby.url, 2000),
    new RegExp(
      `database: postgres@${hostOf(pair.standby).replace(/\./g, '\\.')}/postgres is a standby \\(in recovery\\): read-only; fs-ha needs the primary`,
    ),
  );
  await assert.rejects(
    Db.connect(
      `postgres://postgres@${hostOf(pair.standby)},127.0.0.1:1/postgres?target_session_attrs=read-write`,
      2000,
    ),
    /no writable primary among .*: 127\.0\.0\.1:\d+: a standby \(in recovery\): read-only; 127\.0\.0\.1:1: .*ECONNREFUSED/,
  );
  assert.ok(Date.now() - t0 < 6000, 'within the deadlines');
});

test('12.2 only the standby reachable: the takeover fails naming the read-only host and changes nothing', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], url: pair.primary.url });
  await c.sims.fs1.answerCalls(3);
  await c.sims.fs1.crash();
  const cfg = c.config('fs2');
  cfg.database = pair.standby.url;
  await assert.rejects(takeover(cfg, { from: 'fs1', command: 'test' }), /is a standby \(in recovery\): read-only/);
  const rows = (
    await withClient(pair.primary.url, (q) => q.query("select count(*)::int n from recovery where hostname = 'fs1'"))
  ).rows[0].n;
  assert.equal(rows, 3);
});

test('12.3 the primary stopped and the standby promoted, then a FreeSWITCH node crashes: the takeover finds the new primary, every call adopted once', async (t) => {
  // every FreeSWITCH is given both servers, as libpq takes them: it follows the primary by itself
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    url: pair.primary.url,
    dsn: { fs1: both, fs2: both },
    dbResetIntervalMs: 200,
  });
  await withClient(pair.primary.url, (q) => q.query('DELETE FROM recovery'));
  const calls = await c.sims.fs1.answerCalls(6);
  await caughtUp(pair.standby, 6);
  await c.sims.fs1.crash();
  pair.primary.stop();
  pair.standby.promote();
  const cfg = c.config('fs2');
  cfg.database = both();
  const r = await takeover(cfg, { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(c.sims.fs2.dbServer, hostOf(pair.standby), "fs2's FreeSWITCH reset its connection onto the new primary");
  const rows = (await withClient(pair.standby.url, (q) => q.query('select uuid, runtime_uuid from recovery'))).rows;
  assert.deepEqual(rows.map((x) => x.uuid).sort(), [...calls].sort());
  for (const x of rows) assert.equal(x.runtime_uuid, c.sims.fs2.coreUuid);
});

test("12.4 db init prints each node's FreeSWITCH DSN with every configured host, in libpq's keyword form, never the password", async (t) => {
  const { dbInit } = await import('../../src/commands/db');
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], url: pair.standby.url }); // promoted by 12.3: the primary now
  const cfg = c.config('fs1');
  const u = new URL(pair.standby.url);
  cfg.database = `postgres://postgres:s3cret@127.0.0.1:1,${u.host}/postgres?target_session_attrs=read-write`;
  const out = await dbInit(cfg, 'per-node');
  assert.match(
    out,
    new RegExp(
      `fs1: pgsql://host=127\\.0\\.0\\.1,127\\.0\\.0\\.1 port=1,${u.port} dbname=postgres user=postgres target_session_attrs=read-write connect_timeout=3 options='-c search_path=public,fsha_node_fs1'`,
    ),
  );
  assert.ok(!out.includes('s3cret'));
});

test('12.5 the primary killed in the middle of a takeover of 2000 rows: nothing half-rewritten; the takeover retries on the promoted standby and every call is there once', async (t) => {
  const fresh = await startReplicaPair();
  t.after(() => {
    fresh.standby.stop();
    fresh.primary.stop();
  });
  const hosts = `postgres://postgres@127.0.0.1:${fresh.primary.port},127.0.0.1:${fresh.standby.port}/postgres?target_session_attrs=read-write`;
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    url: fresh.primary.url,
    dsn: { fs1: () => hosts, fs2: () => hosts },
    dbResetIntervalMs: 200,
  });
  const calls = await c.sims.fs1.answerCalls(2000);
  await caughtUp(fresh.standby, 2000); // the standby has every row (streaming) before the crash
  await c.sims.fs1.crash();
  const cfg = c.config('fs2');
  cfg.database = hosts;
  cfg.timeouts.databaseMs = 4000;
  const running = takeover(cfg, { from: 'fs1', command: 'test' });
  running.catch(() => undefined);
  // the rewrite is under way on the primary: kill it there, as a dying server would go
  for (const end = Date.now() + 15000; ; ) {
    const busy = await withClient(fresh.primary.url, (q) =>
      q.query(
        "select count(*)::int n from pg_stat_activity where query like '%fsha.takeover_rows%' or query like '%regexp_matches%'",
      ),
    ).then(
      (r) => r.rows[0].n,
      () => 0,
    );
    if (busy > 0) break;
    if (Date.now() > end) throw new Error('the rewrite never started');
    await new Promise((r) => setTimeout(r, 5));
  }
  fresh.primary.stop();
  fresh.standby.promote();
  const r = await running.catch((e: Error) => ({ result: 'failed', reason: e.message }));
  // whatever the first attempt did died with its transaction; the retry, on the new primary, completes it
  assert.equal(r.result, 'done', `the takeover itself retried on the promoted standby: ${r.reason}`);
  assert.equal(
    c.sims.fs2.dbServer,
    `127.0.0.1:${fresh.standby.port}`,
    'fs2 recovered and re-tracked on the new primary',
  );
  const rows = (
    await withClient(fresh.standby.url, (q) => q.query('select uuid, hostname, runtime_uuid from recovery'))
  ).rows;
  assert.equal(rows.length, 2000, 'every call once');
  assert.deepEqual(new Set(rows.map((x) => x.uuid)), new Set(calls));
  for (const x of rows) {
    assert.equal(x.hostname, 'fs2');
    assert.equal(x.runtime_uuid, c.sims.fs2.coreUuid);
  }
});

test('12.6 the simulator is given the DSN db init prints and follows the primary as libpq does: the standby listed first skipped, statements wait in the reset loop until the standby is promoted', async (t) => {
  const { dbInit } = await import('../../src/commands/db');
  const fresh = await startReplicaPair();
  t.after(() => {
    fresh.standby.stop();
    fresh.primary.stop();
  });
  const hosts = `postgres://postgres@127.0.0.1:${fresh.standby.port},127.0.0.1:${fresh.primary.port}/postgres?target_session_attrs=read-write`;
  const events: string[] = [];
  // fs-ha's own view of the servers makes the DSN; the standby is listed FIRST: libpq must skip it
  const probe = await withCluster(t, { nodes: ['fs1'], url: fresh.primary.url });
  const cfg = probe.config('fs1');
  cfg.database = hosts;
  const dsn = (await dbInit(cfg, 'shared')).match(/fs1: (pgsql:\/\/.*)/)![1];
  assert.match(
    dsn,
    /^pgsql:\/\/host=127\.0\.0\.1,127\.0\.0\.1 port=\d+,\d+ dbname=postgres user=postgres target_session_attrs=read-write connect_timeout=3$/,
  );
  await probe.stop();
  const c = await withCluster(t, {
    nodes: ['fs1'],
    url: fresh.primary.url,
    dsn: { fs1: () => dsn },
    dbResetIntervalMs: 200,
    onEvent: (_n, what) => {
      if (what.startsWith('db-')) events.push(what);
    },
  });
  assert.equal(c.sims.fs1.dbServer, `127.0.0.1:${fresh.primary.port}`, 'the standby, listed first, was skipped');
  const before = await c.sims.fs1.answerCalls(3);
  await caughtUp(fresh.standby, 3);
  fresh.primary.stop();
  await new Promise((r) => setTimeout(r, 200)); // the simulator hears its connection close
  // the connection is dead and the only server left is still a standby: statements wait in the reset loop
  const during = c.sims.fs1.answerCalls(2);
  await new Promise((r) => setTimeout(r, 700));
  fresh.standby.promote();
  const after = await during;
  assert.equal(c.sims.fs1.dbServer, `127.0.0.1:${fresh.standby.port}`);
  assert.ok(events.includes('db-not-responding') && events.includes('db-reset'), `events: ${events.join(', ')}`);
  const rows = (await withClient(fresh.standby.url, (q) => q.query('select uuid from recovery'))).rows.map(
    (x) => x.uuid as string,
  );
  assert.deepEqual(
    rows.sort(),
    [...before, ...after].sort(),
    'the calls of before and after the switch, on the new primary',
  );
});
