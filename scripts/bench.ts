/**
 * `make bench` (not a test): ratios against a baseline run in the same process.
 *  1. the takeover rewrite (select + rewrite + copy + update, one transaction) of 1k/10k/100k real rows
 *     against a plain `UPDATE recovery SET hostname=...` of the same rows;
 *  2. a whole `notify-master` (process start -> recover verified) for 100 calls against the simulator.
 * BENCH_SIZES=1000,10000 to choose sizes.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Db } from '../src/adapters/db';
import { applySchema, moveRows } from '../src/adapters/recovery-store';
import { configureLog } from '../src/log';
import { loadRows } from '../test/helpers/fixtures';
import { startThrowawayPostgres, createDatabase, withClient } from '../test/helpers/pg';
import { startCluster } from '../test/helpers/cluster';

configureLog({ syslog: false, stderr: false });

async function fill(url: string, n: number, table: string) {
  const real = loadRows('recovery_rows.sql');
  await withClient(url, async (c) => {
    await c.query(`CREATE TABLE IF NOT EXISTS ${table} (runtime_uuid varchar(255), technology varchar(255), profile_name varchar(255), hostname varchar(255), uuid varchar(255), metadata text)`);
    await c.query(`TRUNCATE ${table}`);
    await c.query(`INSERT INTO ${table} SELECT $1, 'sofia', 'internal', 'freeswitch01', gen_random_uuid()::text, (ARRAY[$2,$3,$4,$5,$6])[1 + i % 5] FROM generate_series(1, $7) i`,
      [real[0].runtime_uuid, ...real.map((r) => r.metadata), n]);
    await c.query(`VACUUM ANALYZE ${table}`);
  });
}

async function main() {
  const pg = process.env.DATABASE_URL ? null : await startThrowawayPostgres();
  if (pg) process.env.DATABASE_URL = pg.url;
  try {
    const sizes = (process.env.BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number);
    console.log('rewrite: the takeover rewrite of N real rows (select + rewrite + keep originals + update, one transaction)');
    console.log('  plain = UPDATE recovery SET hostname = ... (the issue\'s baseline: metadata untouched, its TOAST reused)');
    console.log('  naive = the same plus metadata = replace(metadata, old_ip, new_ip) (every row re-compressed, no safety)');
    console.log('rows      plain_ms  naive_ms  fsha_ms  vs_plain  vs_naive');
    for (const n of sizes) {
      const url = await createDatabase('bench');
      const timed = async (sql: string) => {
        await fill(url, n, 'public.recovery');
        return withClient(url, async (c) => {
          const t = Date.now();
          await c.query(sql);
          return Date.now() - t;
        });
      };
      const plainMs = await timed("BEGIN; UPDATE public.recovery SET hostname = 'freeswitch02' WHERE hostname = 'freeswitch01'; COMMIT");
      const naiveMs = await timed("BEGIN; UPDATE public.recovery SET hostname = 'freeswitch02', metadata = replace(metadata, '127.0.0.11', '127.0.0.12') WHERE hostname = 'freeswitch01'; COMMIT");
      await fill(url, n, 'public.recovery');
      const db = await Db.connect(url, 600000);
      await applySchema(db, 'shared');
      const t = Date.now();
      const res = await moveRows(db, 'shared', { fromSwitchname: 'freeswitch01', toSwitchname: 'freeswitch02', addresses: [['127.0.0.11', '127.0.0.12']] },
        { takeoverId: 'bench', fromNode: 'freeswitch01', toNode: 'freeswitch02', targetCore: null, dryRun: false });
      const fshaMs = Date.now() - t;
      await db.close();
      if (res.rows.length !== n) throw new Error(`moved ${res.rows.length} of ${n}`);
      console.log(`${String(n).padEnd(9)} ${String(plainMs).padStart(8)} ${String(naiveMs).padStart(9)} ${String(fshaMs).padStart(8)} ${(fshaMs / plainMs).toFixed(1).padStart(8)}x ${(fshaMs / naiveMs).toFixed(1).padStart(8)}x` +
        `   (waiting for rows ${res.ms.select} ms, rewrite cpu ${res.ms.rewrite} ms, waiting for writes ${res.ms.write} ms)`);
    }

    console.log('\nnotify-master, 100 calls, simulator: process start -> recover verified (median of 5)');
    const walls: number[] = [];
    const inner: number[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await startCluster({ nodes: ['fs1', 'fs2'] });
      await c.sims.fs1.answerCalls(100);
      await c.sims.fs1.crash();
      const cfg = c.config('fs2');
      const f = join(mkdtempSync(join(tmpdir(), 'fsha-bench-')), 'fs-ha.yaml');
      writeFileSync(f, stringify({
        node: 'fs2', database: cfg.database, esl: { host: cfg.esl.host, port: cfg.esl.port, password: 'ClueCon' },
        nodes: { fs1: { addresses: cfg.nodes.fs1.addresses, esl: { host: cfg.nodes.fs1.esl!.host, port: cfg.nodes.fs1.esl!.port } }, fs2: { addresses: cfg.nodes.fs2.addresses } },
        instances: { VI_1: 'fs1' }, state_dir: mkdtempSync(join(tmpdir(), 'fsha-bench-state-')), log: { syslog: false },
      }));
      // the child runs in its own process, so the in-process simulator must keep serving: spawn async
      const t0 = Date.now();
      const child = await new Promise<{ code: number; err: string }>((resolve) => {
        const p = spawn(process.execPath, ['dist/fs-ha.js', '--config', f, 'notify-master', 'VI_1']);
        let err = '';
        p.stderr.on('data', (d: Buffer) => { err += d; });
        p.on('exit', (code) => resolve({ code: code ?? 1, err }));
      });
      walls.push(Date.now() - t0);
      const m = child.err.match(/ms=(\d+)/g);
      if (m) inner.push(Number(m[m.length - 1].slice(3)));
      if (child.code !== 0) throw new Error(child.err);
      await c.stop();
    }
    const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    console.log(`wall ${med(walls)} ms (process start -> exit), of which takeover ${med(inner)} ms; runs: ${walls.join(', ')}`);
  } finally {
    pg?.stop();
  }
}

void main().catch((e) => { console.error(e); process.exit(1); });
