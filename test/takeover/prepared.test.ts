/** Issue 25: the prepared takeover. A BACKUP's preparation stands in for reading and rewriting a row only at
 *  the version it was made from; a row FreeSWITCH updated since is rewritten afresh, never stale. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { takeover, rewriteSpecFor } from '../../src/commands/takeover';
import { Prepared, refresh } from '../../src/adapters/prepare';
import { Db } from '../../src/adapters/db';
import type { Config } from '../../src/config';
import { configureLog } from '../../src/log';
import { withCluster } from '../helpers/cluster';
import { withClient } from '../helpers/pg';

configureLog({ syslog: false, stderr: false });

const placementOf = (cfg: Config, node: string) => ({
  node,
  rtp: cfg.nodes[node].rtpPorts,
  band: cfg.recoveryPorts,
  local: false,
});

test('25.1 a prepared takeover uses the prepared rewrite of rows at their prepared version and rewrites the ones updated since (never stale); its result equals an unprepared one', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(20);
  const cfg = c.config('fs2');
  const p = new Prepared(rewriteSpecFor(cfg.nodes.fs1, cfg.nodes.fs2, ['internal']), placementOf(cfg, 'fs2'));
  const db = await Db.connect(c.url, 5000);
  assert.equal(await refresh(db, 'per-node', p), 20);
  assert.equal(await refresh(db, 'per-node', p), 0, 'nothing changed: nothing read again');
  // FreeSWITCH updates five calls' rows after the preparation (a new row version each)
  const changed = calls.slice(0, 5);
  await withClient(c.url, (q) =>
    q.query(
      "update fsha.recovery_base set metadata = replace(metadata, '<variables>', '<variables>\n    <updated_after>yes</updated_after>') where uuid = any($1)",
      [changed],
    ),
  );
  await db.close();
  await c.sims.fs1.crash();
  const r = await takeover(cfg, { from: 'fs1', command: 'test', prepared: p });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.timings.prepared_rows, 15, 'the 15 unchanged rows came from the preparation');
  const rows = (
    await withClient(c.url, (q) =>
      q.query<{ uuid: string; metadata: string }>(
        "select uuid, metadata from fsha.recovery_base where hostname = 'fs2'",
      ),
    )
  ).rows;
  assert.equal(rows.length, 20);
  for (const row of rows) {
    assert.ok(!row.metadata.includes(c.addr.fs1), `${row.uuid}: no address of fs1 left`);
    assert.equal(
      row.metadata.includes('<updated_after>yes</updated_after>'),
      changed.includes(row.uuid),
      `${row.uuid}: its current version was moved`,
    );
  }
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), [...calls].sort());
});

test('25.1b a preparation for another rewrite (another adopter, another spec) is never used', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(4);
  const cfg = c.config('fs2');
  const p = new Prepared(rewriteSpecFor(cfg.nodes.fs1, cfg.nodes.fs3, ['internal']), placementOf(cfg, 'fs3')); // prepared for fs3
  const db = await Db.connect(c.url, 5000);
  await refresh(db, 'per-node', p);
  await db.close();
  await c.sims.fs1.crash();
  const r = await takeover(cfg, { from: 'fs1', to: 'fs2', command: 'test', prepared: p });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.timings.prepared_rows, undefined);
  const rows = (
    await withClient(c.url, (q) =>
      q.query<{ metadata: string }>("select metadata from fsha.recovery_base where hostname = 'fs2'"),
    )
  ).rows;
  for (const row of rows)
    assert.ok(!row.metadata.includes(c.addr.fs3) && row.metadata.includes(c.addr.fs2), 'rewritten for fs2, not fs3');
});

const portsUnder = (url: string, host: string) =>
  withClient(
    url,
    async (q) =>
      (
        await q.query<{ uuid: string; port: string }>(
          "select uuid, substring(metadata from '<local_media_port>([0-9]+)<') port from fsha.recovery_base where hostname = $1",
          [host],
        )
      ).rows,
  );

test('25.1c a staged row whose RTP port the adopter holds since it was prepared is placed afresh: its staged port is never bound twice', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(6);
  const cfg = c.config('fs2');
  const p = new Prepared(rewriteSpecFor(cfg.nodes.fs1, cfg.nodes.fs2, ['internal']), placementOf(cfg, 'fs2'));
  const db = await Db.connect(c.url, 5000);
  t.after(() => db.close());
  assert.equal(await refresh(db, 'per-node', p), 6);
  const [victim, row] = [...p.rows.entries()][0];
  const port = row.ports[0];
  assert.ok(port >= cfg.recoveryPorts.lo && port <= cfg.recoveryPorts.hi, `staged in the recovery band (${port})`);
  // since the preparation, fs2 holds that port: a call of its own tracked with it (an earlier takeover's, say)
  await withClient(c.url, (q) =>
    q.query(
      `insert into fsha.recovery_base (runtime_uuid, technology, profile_name, hostname, uuid, metadata)
     select $1, technology, profile_name, 'fs2', 'own-' || uuid, regexp_replace(metadata, '<local_media_port>[0-9]+<', '<local_media_port>' || $2 || '<')
       from fsha.recovery_base where uuid = $3`,
      [c.sims.fs2.coreUuid, String(port), victim],
    ),
  );
  await c.sims.fs1.crash();
  const r = await takeover(cfg, { from: 'fs1', command: 'test', prepared: p });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.timings.prepared_rows, 5, 'the row whose port is taken is not copied from its preparation');
  const after = await portsUnder(c.url, 'fs2');
  assert.equal(after.length, 7);
  assert.equal(
    new Set(after.map((x) => x.port)).size,
    7,
    `every call on fs2 binds its own port: ${after.map((x) => `${x.uuid.slice(0, 8)}:${x.port}`).join(' ')}`,
  );
  assert.notEqual(after.find((x) => x.uuid === victim)!.port, String(port));
  assert.deepEqual((await c.sims.fs2.ownCalls()).filter((u) => calls.includes(u)).sort(), [...calls].sort());
});

test('25.1d staged rows that do not all apply (one gone from fsha.prepared) roll the rewrite back and every row is rewritten afresh', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(5);
  const cfg = c.config('fs2');
  const p = new Prepared(rewriteSpecFor(cfg.nodes.fs1, cfg.nodes.fs2, ['internal']), placementOf(cfg, 'fs2'));
  const db = await Db.connect(c.url, 5000);
  t.after(() => db.close());
  await refresh(db, 'per-node', p);
  await withClient(c.url, (q) => q.query('delete from fsha.prepared where uuid = $1', [calls[2]]));
  await c.sims.fs1.crash();
  const r = await takeover(cfg, { from: 'fs1', command: 'test', prepared: p });
  assert.equal(r.result, 'done', r.reason);
  assert.equal(r.recovered, 5);
  assert.equal(r.timings.prepared_rows, undefined, 'redone without the preparation');
  const rows = (
    await withClient(c.url, (q) =>
      q.query<{ metadata: string }>("select metadata from fsha.recovery_base where hostname = 'fs2'"),
    )
  ).rows;
  assert.equal(rows.length, 5);
  for (const row of rows) assert.ok(!row.metadata.includes(c.addr.fs1) && row.metadata.includes(c.addr.fs2));
  assert.equal(
    (await withClient(c.url, (q) => q.query("select count(*)::int n from fsha.takeover_rows where note = 'moved'")))
      .rows[0].n,
    0,
    'one copy per call, dropped once re-tracked',
  );
});
