/**
 * `make demo`: the main job on this machine with nothing but Node (and PostgreSQL's server binaries):
 * a throwaway PostgreSQL, two simulated FreeSWITCH nodes on loopback, N calls on node 1, node 1 crashes,
 * fs-ha (the built dist/fs-ha.js, as keepalived would run it) takes over on node 2.  DEMO_CALLS=N.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startThrowawayPostgres, withClient } from '../test/helpers/pg';
import { startCluster } from '../test/helpers/cluster';

const N = Number(process.env.DEMO_CALLS ?? 50);
const t0 = Date.now();
const say = (msg: string) => console.log(`[${String(Date.now() - t0).padStart(6)} ms] ${msg}`);

async function main() {
  const pg = process.env.DATABASE_URL ? null : await startThrowawayPostgres();
  if (pg) process.env.DATABASE_URL = pg.url;
  say(`PostgreSQL ready (${pg ? 'throwaway server' : 'DATABASE_URL'})`);
  const c = await startCluster({ nodes: ['freeswitch01', 'freeswitch02'] });
  try {
    say(
      `freeswitch01 on ${c.addr.freeswitch01}:${c.ports.freeswitch01}, freeswitch02 on ${c.addr.freeswitch02}:${c.ports.freeswitch02} (simulated, real ESL protocol and recovery SQL)`,
    );
    const calls = await c.sims.freeswitch01.answerCalls(N);
    say(`${calls.length} answered calls on freeswitch01, tracked in the recovery table`);
    const cfg = c.config('freeswitch02');
    const f = join(mkdtempSync(join(tmpdir(), 'fsha-demo-')), 'fs-ha.yaml');
    writeFileSync(
      f,
      stringify({
        node: 'freeswitch02',
        database: cfg.database,
        esl: { host: cfg.esl.host, port: cfg.esl.port, password: 'ClueCon' },
        nodes: {
          freeswitch01: {
            addresses: cfg.nodes.freeswitch01.addresses,
            esl: { host: cfg.nodes.freeswitch01.esl!.host, port: cfg.nodes.freeswitch01.esl!.port },
          },
          freeswitch02: { addresses: cfg.nodes.freeswitch02.addresses },
        },
        instances: { VI_FS: 'freeswitch01' },
        check: { profiles: ['internal'] },
        state_dir: mkdtempSync(join(tmpdir(), 'fsha-demo-state-')),
        log: { syslog: false },
      }),
      { mode: 0o600 },
    );
    await c.sims.freeswitch01.crash();
    say('freeswitch01: fsctl crash (event socket gone, its rows stay in the table)');
    const tN = Date.now();
    say('keepalived on freeswitch02 would now run: notify_master VI_FS');
    const code = await new Promise<number>((resolve) => {
      const p = spawn(process.execPath, ['dist/fs-ha.js', '--config', f, 'notify-master', 'VI_FS'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      p.stdout.on('data', (d) => process.stdout.write(`           fs-ha> ${d}`));
      p.stderr.on('data', (d) => {
        for (const l of String(d).trimEnd().split('\n')) console.log(`           ${l}`);
      });
      p.on('exit', (code) => resolve(code ?? 1));
    });
    say(`notify_master exited ${code} after ${Date.now() - tN} ms`);
    await new Promise((r) => setTimeout(r, 50));
    const owners = await withClient(
      cfg.database!,
      async (db) =>
        (await db.query('select hostname, runtime_uuid, count(*)::int n from public.recovery group by 1, 2')).rows,
    );
    console.log('\nfinal ownership of the calls (recovery table):');
    for (const o of owners)
      console.log(
        `  ${o.hostname}  runtime ${o.runtime_uuid}${o.runtime_uuid === c.sims.freeswitch02.coreUuid ? ' (freeswitch02, live)' : ''}  ${o.n} call(s)`,
      );
    const mine = await c.sims.freeswitch02.ownCalls();
    const lost = calls.filter((u) => !mine.includes(u));
    console.log(`\n${mine.length} of ${calls.length} calls now owned by freeswitch02; lost: ${lost.length}`);
    process.exitCode = code === 0 && lost.length === 0 ? 0 : 1;
  } finally {
    await c.stop();
    pg?.stop();
  }
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});
