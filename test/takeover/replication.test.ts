/**
 * Issue 26: a database fs-ha can trust. A real logical subscription on the database fs-ha writes to, bringing
 * another writable server's rows into the recovery table (the shape of a bidirectional setup): db init, the
 * takeover and status refuse or warn, and nothing is changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { takeover } from '../../src/commands/takeover';
import { dbInit } from '../../src/commands/db';
import { status } from '../../src/commands/status';
import { configureLog } from '../../src/log';
import { withCluster } from '../helpers/cluster';
import { startThrowawayPostgres, withClient } from '../helpers/pg';

configureLog({ syslog: false, stderr: false });

test('26.4 a logical subscription writing into the recovery table from another server: db init refuses, the takeover refuses and moves nothing, status warns', async (t) => {
  const other = await startThrowawayPostgres({ settings: '-c wal_level=logical' });
  t.after(() => other.stop());
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const calls = await c.sims.fs1.answerCalls(3);
  await withClient(other.url, async (q) => {
    await q.query(
      'CREATE TABLE recovery (runtime_uuid varchar(255), technology varchar(255), profile_name varchar(255), hostname varchar(255), uuid varchar(255), metadata text)',
    );
    await q.query('CREATE PUBLICATION calls FOR TABLE recovery');
  });
  const conninfo = `host=127.0.0.1 port=${other.port} dbname=postgres user=postgres`;
  await withClient(c.url, (q) => q.query(`CREATE SUBSCRIPTION other_calls CONNECTION '${conninfo}' PUBLICATION calls`));
  t.after(() =>
    withClient(c.url, async (q) => {
      await q.query('ALTER SUBSCRIPTION other_calls DISABLE');
      await q.query('ALTER SUBSCRIPTION other_calls SET (slot_name = NONE)');
      await q.query('DROP SUBSCRIPTION other_calls');
    }),
  );
  const cfg = c.config('fs2');
  await assert.rejects(
    dbInit(cfg),
    /db init refused: logical subscription other_calls writes into (public\.)?recovery here/,
  );
  await c.sims.fs1.crash();
  await assert.rejects(
    takeover(cfg, { from: 'fs1', command: 'test' }),
    /refusing: logical subscription other_calls writes into .*both recover the same calls/,
  );
  const rows = (await withClient(c.url, (q) => q.query("select count(*)::int n from recovery where hostname = 'fs1'")))
    .rows[0].n;
  assert.equal(rows, calls.length, 'nothing moved');
  const s = await status(cfg);
  assert.ok(
    s.warnings.some((w) => /logical subscription other_calls writes into .*every takeover is refused/.test(w)),
    s.warnings.join('\n'),
  );
});
