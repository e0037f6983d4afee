/**
 * `make bench` (not a test): every number is a ratio against a baseline run in the same process.
 *  rewrite  - the takeover rewrite of 1k/10k/100k real rows vs a plain `UPDATE recovery SET hostname=...`
 *             of the same rows, and vs a naive replace() of the address (BENCH_SIZES=1000,10000 to choose);
 *  notify   - a whole `notify-master` (process start -> recover verified) for 100 calls against the simulator;
 *  startup  - dist/fs-ha (standalone) vs node dist/fs-ha.js: --version and a full check_fs, median of 20,
 *             in keepalived's bare environment;
 *  failover - issue 3's scenario 1 with real keepalived in network namespaces (root only): crash -> last re-INVITE;
 *  latency  - the takeover from keepalived's event to the last recovered leg, 10/50/100/1000 calls of real-size
 *             rows (BENCH_LATENCY_CALLS), the calls up until the agent has staged them: the seed talk's recipe
 *             (a fresh psql running one UPDATE ... regexp_replace, then a fresh event-socket client sending
 *             fsctl recover, as fs_cli does) vs `fs-ha notify-master` as a process vs the agent hearing the
 *             FIFO line; median of BENCH_LATENCY_RUNS (3); and the agent's critical path (MASTER heard ->
 *             recover sent) with its stages, against the recover's own span in the same run;
 *  health   - CPU of health checking on an idle, healthy node, per hour: keepalived forking check_fs every
 *             second (scripts only) vs the agent's loop plus keepalived's agent_alive backstop every second.
 *  audio    - the audio gap a caller hears (last RTP packet before the crash -> first after, per call, at the far
 *             end) for 100 and 1000 calls, one adopter and spread over two, the simulators binding real RTP
 *             sockets and recovering ~3 ms per leg; against the recover's own span (first -> last leg) in the
 *             same run, the floor FreeSWITCH sets (BENCH_AUDIO_CALLS=100,1000).
 * BENCH_PARTS=rewrite,notify,startup,failover,latency,health,spread,audio picks parts.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Db } from '../src/adapters/db';
import { applySchema } from '../src/adapters/recovery-store';
import { moveRows } from '../src/adapters/move-rows';
import { takeover } from '../src/commands/takeover';
import { warmRewrite } from '../src/core/warmup';
import { configureLog } from '../src/log';
import { loadRows } from '../test/helpers/fixtures';
import { startThrowawayPostgres, createDatabase, withClient } from '../test/helpers/pg';
import { startCluster } from '../test/helpers/cluster';
import { Fabric, Lab, VIP, cleanStale, prerequisites, waitFor } from '../test/e2e/lab';
import { timeline, type Timeline } from '../test/e2e/timeline';
import { gapSummary, type CallAudio } from '../test/sim/rtp-echo';
import { freePort } from '../test/helpers/pg';

configureLog({ syslog: false, stderr: false });

const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const BARE_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }; // what keepalived gives its scripts

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; err: string; ms: number }> {
  // async: the simulator serving the child lives in this process
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    p.on('exit', (code) => resolve({ code: code ?? 1, err, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
  });
}

async function fill(url: string, n: number, table: string) {
  const real = loadRows('recovery_rows.sql');
  await withClient(url, async (c) => {
    await c.query(
      `CREATE TABLE IF NOT EXISTS ${table} (runtime_uuid varchar(255), technology varchar(255), profile_name varchar(255), hostname varchar(255), uuid varchar(255), metadata text)`,
    );
    await c.query(`TRUNCATE ${table}`);
    await c.query(
      `INSERT INTO ${table} SELECT $1, 'sofia', 'internal', 'freeswitch01', gen_random_uuid()::text, (ARRAY[$2,$3,$4,$5,$6])[1 + i % 5] FROM generate_series(1, $7) i`,
      [real[0].runtime_uuid, ...real.map((r) => r.metadata), n],
    );
    await c.query(`VACUUM ANALYZE ${table}`);
  });
}

async function rewrite() {
  const sizes = (process.env.BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number);
  console.log(
    'rewrite: the takeover rewrite of N real rows (select + rewrite + keep originals + update, one transaction)',
  );
  console.log(
    "  plain = UPDATE recovery SET hostname = ... (the issue's baseline: metadata untouched, its TOAST reused)",
  );
  console.log(
    '  naive = the same plus metadata = replace(metadata, old_ip, new_ip) (every row re-compressed, no safety)',
  );
  console.log('  fs-ha warm, as the agent runs it (the rewrite compiled at its start)');
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
    const plainMs = await timed(
      "BEGIN; UPDATE public.recovery SET hostname = 'freeswitch02' WHERE hostname = 'freeswitch01'; COMMIT",
    );
    const naiveMs = await timed(
      "BEGIN; UPDATE public.recovery SET hostname = 'freeswitch02', metadata = replace(metadata, '127.0.0.11', '127.0.0.12') WHERE hostname = 'freeswitch01'; COMMIT",
    );
    await fill(url, n, 'public.recovery');
    warmRewrite(); // as the agent does at start (core/warmup.ts): its takeover finds the rewrite compiled
    const db = await Db.connect(url, 600000);
    await applySchema(db, 'shared');
    const t = Date.now();
    const res = await moveRows(
      db,
      'shared',
      'public.recovery',
      [
        {
          node: 'freeswitch02',
          spec: {
            fromSwitchname: 'freeswitch01',
            toSwitchname: 'freeswitch02',
            addresses: [['127.0.0.11', '127.0.0.12']],
          },
        },
      ],
      { takeoverId: 'bench', fromNode: 'freeswitch01', toNode: 'freeswitch02', targetCores: [], dryRun: false },
    );
    const fshaMs = Date.now() - t;
    await db.close();
    if (res.rows.length !== n) throw new Error(`moved ${res.rows.length} of ${n}`);
    console.log(
      `${String(n).padEnd(9)} ${String(plainMs).padStart(8)} ${String(naiveMs).padStart(9)} ${String(fshaMs).padStart(8)} ${(fshaMs / plainMs).toFixed(1).padStart(8)}x ${(fshaMs / naiveMs).toFixed(1).padStart(8)}x` +
        `   (waiting for rows ${res.ms.select} ms, rewrite cpu ${res.ms.rewrite} ms, waiting for writes ${res.ms.write} ms)`,
    );
  }
}

/** The program as shipped: the standalone binary when built, else the bundle. */
function program(): [string, string[]] {
  return existsSync('dist/fs-ha') ? ['dist/fs-ha', []] : [process.execPath, ['dist/fs-ha.js']];
}

async function notify() {
  console.log('\nnotify-master, 100 calls, simulator: process start -> recover verified (median of 5)');
  const walls: number[] = [];
  const inner: number[] = [];
  const [cmd, pre] = program();
  for (let i = 0; i < 5; i++) {
    const c = await startCluster({ nodes: ['fs1', 'fs2'] });
    try {
      await c.sims.fs1.answerCalls(100);
      await c.sims.fs1.crash();
      const r = await run(cmd, [
        ...pre,
        '--config',
        c.configFile('fs2', 'instances: { VI_1: fs1 }'),
        'notify-master',
        'VI_1',
      ]);
      if (r.code !== 0) throw new Error(r.err);
      walls.push(Math.round(r.ms));
      const m = r.err.match(/ms=(\d+)/g);
      if (m) inner.push(Number(m[m.length - 1].slice(3)));
    } finally {
      await c.stop();
    }
  }
  console.log(
    `${cmd}: wall ${med(walls)} ms (process start -> exit), of which takeover ${med(inner)} ms; runs: ${walls.join(', ')}`,
  );
}

async function startup() {
  console.log("\nstart-up: median of 20 runs each, keepalived's bare environment (PATH only)");
  if (!existsSync('dist/fs-ha')) {
    console.log('dist/fs-ha not built (make build): skipped');
    return;
  }
  const c = await startCluster({ nodes: ['fs1'] });
  try {
    const cfg = c.configFile('fs1');
    const cases: Array<[string, string[]]> = [
      ['--version', ['--version']],
      ['check_fs (simulator)', ['--config', cfg, 'check']],
    ];
    console.log('what                    node dist/fs-ha.js   dist/fs-ha   ratio');
    for (const [label, args] of cases) {
      const times = { js: [] as number[], bin: [] as number[] };
      for (let i = 0; i < 20; i++) {
        // interleaved, so both see the same machine
        const a = await run(process.execPath, ['dist/fs-ha.js', ...args], BARE_ENV);
        const b = await run('dist/fs-ha', args, BARE_ENV);
        if (a.code !== 0 || b.code !== 0) throw new Error(`${label} failed: ${a.err}${b.err}`);
        times.js.push(a.ms);
        times.bin.push(b.ms);
      }
      const js = med(times.js),
        bin = med(times.bin);
      console.log(
        `${label.padEnd(24)}${js.toFixed(1).padStart(12)} ms ${bin.toFixed(1).padStart(9)} ms   ${(bin / js).toFixed(2)}x`,
      );
    }
    const base: number[] = [];
    for (let i = 0; i < 20; i++) base.push((await run(process.execPath, ['-e', '0'], BARE_ENV)).ms);
    console.log(`(node -e 0 alone: ${med(base).toFixed(1)} ms: Node's own start-up is the floor)`);
  } finally {
    await c.stop();
  }
}

/**
 * Scenario 1 of the end-to-end tests (pair with a VIP, FreeSWITCH on the master crashes) with 100 and
 * 1000 calls, at keepalived's VRRPv2 advert_int 1 and VRRPv3 advert_int 0.1: the timeline, median of
 * BENCH_FAILOVER_RUNS (3) runs, in ms after the crash.
 */
async function failover() {
  console.log(
    '\nfailover: pair with VIP, FreeSWITCH on the master crashes (real keepalived in namespaces), ms after the crash',
  );
  const why = prerequisites();
  if (why) {
    console.log(`skipped: ${why}`);
    return;
  }
  cleanStale();
  const fabric = new Fabric();
  await fabric.start();
  const runs = Number(process.env.BENCH_FAILOVER_RUNS ?? 3);
  const cols: Array<[string, (t: Timeline) => number | null]> = [
    ['watch', (t) => t.watchFailed],
    ['check', (t) => t.checkFailed],
    ['MASTER', (t) => t.vrrpMaster],
    ['notify', (t) => t.notifyStart],
    ['rewritten', (t) => t.rowsRewritten],
    ['recovered', (t) => t.recoverDone],
    ['last_reINVITE', (t) => t.lastReinvite],
  ];
  console.log(`vrrp         calls  ${cols.map(([c]) => c.padStart(10)).join(' ')}   (median of ${runs})`);
  try {
    const versions = (process.env.BENCH_FAILOVER_VRRP ?? '2,3').split(',');
    for (const [version, advert] of [
      ['2', '1'],
      ['3', '0.1'],
    ].filter(([v]) => versions.includes(v))) {
      for (const calls of (process.env.BENCH_FAILOVER_CALLS ?? '100,1000').split(',').map(Number)) {
        const got: Timeline[] = [];
        for (let i = 0; i < runs; i++) {
          const url = await createDatabase('failover');
          const lab = new Lab(fabric, url, {
            topology: 'pair',
            nodes: ['freeswitch01', 'freeswitch02'],
            simAddress: () => VIP,
            params: { VRRP_VERSION: version, ADVERT: advert },
          });
          try {
            lab.build();
            await lab.startPair();
            await lab.placeCalls('freeswitch01', calls);
            const sipp = await lab.startSipp(calls);
            const crash = await lab.crash('freeswitch01');
            await waitFor(
              'the takeover',
              () => lab.fshaLog('freeswitch02').some((l) => /takeover done/.test(l.text)),
              60000,
            );
            await waitFor('sipp', () => sipp.exitCode !== null, 60000);
            if (sipp.exitCode !== 0) throw new Error(`sipp exit ${sipp.exitCode}: not every call was picked up`);
            const t = timeline(lab, { failed: 'freeswitch01', adopter: 'freeswitch02', instance: 'VI_FS', crash });
            if (t.reinvites !== calls) throw new Error(`${t.reinvites} re-INVITEs for ${calls} calls`);
            got.push(t);
          } catch (e) {
            console.log(lab.dump());
            throw e;
          } finally {
            lab.teardown();
          }
        }
        const cell = (f: (t: Timeline) => number | null) => {
          const v = got
            .map((t) => {
              const x = f(t);
              return x === null ? null : x - t.crash;
            })
            .filter((x): x is number => x !== null);
          return (v.length ? String(med(v)) : '-').padStart(10);
        };
        console.log(
          `v${version} advert ${advert.padEnd(4)} ${String(calls).padStart(5)}  ${cols.map(([, f]) => cell(f)).join(' ')}`,
        );
      }
    }
  } finally {
    fabric.stop();
  }
}

/** CPU seconds (user + sys) that bash's children used running `cmd` n times, one after another. */
function childCpu(cmd: string, n: number): Promise<number> {
  return new Promise((resolve, reject) => {
    // `times` prints the children's user and system time last; keepalived's bare environment
    const p = spawn('bash', ['-c', `for i in $(seq ${n}); do ${cmd} >/dev/null 2>&1; done; times`], { env: BARE_ENV });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.on('error', reject);
    p.on('exit', () => {
      const line = out.trim().split('\n').pop() ?? '';
      const secs = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
      resolve(secs.reduce((a, b) => a + b, 0));
    });
  });
}

/** utime + stime of a running process, in seconds (/proc/PID/stat fields 14 and 15, clock ticks of 1/100 s). */
function procCpu(pid: number): number {
  const stat = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8') as string;
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function health() {
  console.log('\nhealth checking on an idle, healthy node (simulator), CPU seconds per hour (and % of one core)');
  if (!existsSync('dist/fs-ha')) {
    console.log('dist/fs-ha not built (make build): skipped');
    return;
  }
  const c = await startCluster({ nodes: ['fs1'] });
  const dir = require('node:fs').mkdtempSync('/tmp/fsha-bench-agent-') as string;
  try {
    const interval = Number(process.env.BENCH_HEALTH_INTERVAL_MS ?? 200);
    const cfg = c.configFile(
      'fs1',
      `agent: { fifo: ${dir}/keepalived.fifo }\nwatch: { file: ${dir}/health, interval_ms: ${interval} }`,
    );
    const runs = 20;
    const checkPerRun = (await childCpu(`${process.cwd()}/dist/fs-ha --config ${cfg} check`, runs)) / runs;
    const agent = spawn('dist/fs-ha', ['--config', cfg, 'agent'], {
      env: { ...BARE_ENV, FS_HA_SYSLOG: '0' },
      stdio: 'ignore',
    });
    await new Promise((r) => setTimeout(r, 3000)); // past start-up: the steady state
    const seconds = Number(process.env.BENCH_HEALTH_SECONDS ?? 20);
    const a0 = procCpu(agent.pid!);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const agentPerSec = (procCpu(agent.pid!) - a0) / seconds;
    const alivePerRun = (await childCpu(`${process.cwd()}/keepalived/agent_alive ${dir}/health 2000`, runs)) / runs;
    agent.kill('SIGTERM');
    const perHour = (x: number) => `${(x * 3600).toFixed(1).padStart(7)} s/h ${(x * 100).toFixed(2).padStart(6)} %`;
    console.log(
      `check_fs every second (scripts only)     ${perHour(checkPerRun)}   (${(checkPerRun * 1000).toFixed(1)} ms CPU a run)`,
    );
    console.log(
      `agent loop, watch.interval_ms ${String(interval).padEnd(10)}${perHour(agentPerSec)}   (measured over ${seconds} s)`,
    );
    console.log(
      `agent_alive every second (the backstop)  ${perHour(alivePerRun)}   (${(alivePerRun * 1000).toFixed(1)} ms CPU a run)`,
    );
    const total = agentPerSec + alivePerRun;
    console.log(
      `agent + backstop                          ${perHour(total)}   ${(total / checkPerRun).toFixed(2)}x check_fs`,
    );
  } finally {
    await c.stop();
  }
}

/** The newest audit row's id (0: none). */
async function lastAuditId(url: string): Promise<number> {
  return (await withClient(url, (q) => q.query('SELECT coalesce(max(id), 0)::int AS id FROM fsha.audit'))).rows[0].id;
}

/** The timings of the first takeover audited after row `after` (the agent writes it once its recover is verified). */
async function lastTimings(url: string, after: number): Promise<Record<string, number>> {
  for (let i = 0; i < 100; i++) {
    const r = await withClient(url, (q) =>
      q.query("SELECT timings FROM fsha.audit WHERE id > $1 AND timings ? 'verified_ms' ORDER BY id LIMIT 1", [after]),
    );
    if (r.rows[0]) return r.rows[0].timings;
    await new Promise((res) => setTimeout(res, 50));
  }
  return {};
}

/** One run of a recipe: returns ms from the event to fs2's recover having recovered every leg. */
async function latency() {
  console.log(
    "\ntakeover latency: keepalived's event -> the last leg recovered on the adopter (simulator pacing 3 ms a leg, as the real server), median",
  );
  if (!existsSync('dist/fs-ha')) {
    console.log('dist/fs-ha not built (make build): skipped');
    return;
  }
  const fs = require('node:fs') as typeof import('node:fs');
  let recovered: (() => void) | null = null;
  const c = await startCluster({
    nodes: ['fs1', 'fs2'],
    recoverDelayMs: 3,
    onEvent: (node, what) => {
      if (node === 'fs2' && what === 'recover') recovered?.();
    },
  });
  const dir = fs.mkdtempSync('/tmp/fsha-bench-latency-');
  const cfgFile = c.configFile(
    'fs2',
    `instances: { VI_1: fs1 }\nagent: { fifo: ${dir}/keepalived.fifo }\nwatch: { file: ${dir}/health, interval_ms: 200 }\nrecover: fsctl`,
  );
  // the hook process as on a node without the agent (the agent holds its node's notify lock for its life)
  const hookCfg = c.configFile('fs2', `instances: { VI_1: fs1 }\nstate_dir: ${dir}/hook-state\nrecover: fsctl`);
  const runs = Number(process.env.BENCH_LATENCY_RUNS ?? 3);
  const waitRecovered = () =>
    new Promise<number>((resolve) => {
      recovered = () => {
        recovered = null;
        resolve(Date.now());
      };
    });
  const psqlUrl = c.url;
  const esl = c.ports.fs2;
  const seed = async (): Promise<void> => {
    // the seed talk: psql's UPDATE with a regexp over the metadata, then fs_cli -x 'fsctl recover'
    const sql =
      "UPDATE recovery SET hostname = 'fs2', metadata = regexp_replace(metadata, '127\\.0\\.0\\.11', '127.0.0.12', 'g') WHERE hostname = 'fs1'";
    const a = await run('psql', [psqlUrl, '-q', '-c', sql], BARE_ENV);
    if (a.code !== 0) throw new Error(`psql: ${a.err}`);
    // fs_cli's part in bash (a C-like start-up: no runtime to load): auth, api, read the reply
    const cli = `exec 3<>/dev/tcp/${c.addr.fs2}/${esl}; printf 'auth ClueCon\\n\\napi fsctl recover\\n\\n' >&3; while read -r -t 30 l <&3; do case "$l" in *recovered*) exit 0;; esac; done; exit 1`;
    const b = await run('bash', ['-c', cli], BARE_ENV);
    if (b.code !== 0) throw new Error(`fsctl recover: ${b.err}`);
  };
  const notifyProc = async (): Promise<void> => {
    const r = await run('dist/fs-ha', ['--config', hookCfg, 'notify-master', 'VI_1'], {
      ...BARE_ENV,
      FS_HA_SYSLOG: '0',
    });
    if (r.code !== 0) throw new Error(`notify-master: ${r.err}`);
  };
  const agent = spawn('dist/fs-ha', ['--config', cfgFile, 'agent'], {
    env: { ...BARE_ENV, FS_HA_SYSLOG: '0' },
    stdio: 'ignore',
  });
  await new Promise((r) => setTimeout(r, 1500));
  const fifo = fs.openSync(`${dir}/keepalived.fifo`, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const viaAgent = async (): Promise<void> => {
    fs.writeSync(fifo, 'INSTANCE "VI_1" MASTER 100\n');
  };
  try {
    const recipes: Array<[string, () => Promise<void>]> = [
      ['seed recipe (psql + fsctl recover)', seed],
      ['fs-ha notify-master (process)', notifyProc],
      ['fs-ha agent (FIFO line)', viaAgent],
    ];
    for (const calls of (process.env.BENCH_LATENCY_CALLS ?? '10,50,100,1000').split(',').map(Number)) {
      const got: Record<string, number[]> = {};
      const paths: Array<Record<string, number>> = [];
      for (let i = 0; i < runs; i++) {
        for (const [label, go] of recipes) {
          // interleaved, so each sees the same machine
          await c.restart('fs1');
          await c.sims.fs1.answerCalls(calls);
          // calls are up for a while before a crash: the agent's preparation (refreshed each second) has staged them
          for (let w = 0; w < 100; w++) {
            await new Promise((r) => setTimeout(r, 200));
            const staged = await withClient(c.url, (q) =>
              q.query(
                "SELECT count(*)::int n FROM fsha.prepared p JOIN recovery r USING (uuid) WHERE r.hostname = 'fs1' AND r.xmin::text = p.ver",
              ),
            );
            if (staged.rows[0].n >= calls) break;
          }
          await c.sims.fs1.crash();
          await withClient(c.url, (q) => q.query("DELETE FROM recovery WHERE hostname = 'fs2'")); // the last run's calls end
          const auditBefore = await lastAuditId(c.url);
          const done = waitRecovered();
          const t0 = Date.now();
          await go();
          const ms = (await done) - t0;
          const back = (
            await withClient(c.url, (q) => q.query("SELECT count(*)::int n FROM recovery WHERE hostname = 'fs2'"))
          ).rows[0].n;
          if (back < calls) await new Promise((r) => setTimeout(r, 50));
          got[label] = [...(got[label] ?? []), ms];
          if (go === viaAgent) {
            paths.push(await lastTimings(c.url, auditBefore));
            // back to standing by (the adopted calls end first: nothing to hand back)
            await withClient(c.url, (q) => q.query("DELETE FROM recovery WHERE hostname = 'fs2'"));
            fs.writeSync(fifo, 'INSTANCE "VI_1" BACKUP 100\n');
          }
        }
      }
      const base = med(got[recipes[0][0]]);
      console.log(`${calls} calls:`);
      for (const [label] of recipes)
        console.log(
          `  ${label.padEnd(38)} ${String(med(got[label])).padStart(6)} ms  ${(med(got[label]) / base).toFixed(2)}x   runs: ${got[label].join(', ')}`,
        );
      const keys = [
        'db_connect_ms',
        'liveness_ms',
        'locked_ms',
        'adopters_locked_ms',
        'planned_ms',
        'rewrite_select_ms',
        'rewrite_cpu_ms',
        'rewrite_write_ms',
        'rewritten_ms',
        'recover_sent_ms',
      ];
      const crit = med(paths.map((t) => t.critical_path_ms));
      const span = med(paths.map((t) => (t.recover_done_ms ?? 0) - (t.recover_sent_ms ?? 0)));
      console.log(
        `  agent's critical path (MASTER heard -> recover sent), median ${crit} ms = ${((100 * crit) / span).toFixed(1)} % of the recover's own ${span} ms; ` +
          `on the takeover's clock: ${keys.map((k) => `${k.replace(/_ms$/, '')} ${med(paths.map((t) => t[k] ?? 0))}`).join(', ')}; prepared rows ${med(paths.map((t) => t.prepared_rows ?? 0))}`,
      );
    }
  } finally {
    fs.closeSync(fifo);
    agent.kill('SIGTERM');
    await c.stop();
  }
}

/** Issue 11: one node's calls spread over 1, 2 or 3 adopters; crash -> last recovered leg, interleaved runs, medians. */
async function spread() {
  const n = Number(process.env.BENCH_SPREAD_CALLS ?? 1000);
  const rounds = Number(process.env.BENCH_SPREAD_ROUNDS ?? 3);
  console.log(
    `\nspread: ${n} calls of a crashed node, recovered by 1, 2 or 3 adopters in parallel (per-node layout, ~3 ms per leg as the real server)`,
  );
  console.log('  crash -> last leg recovered on any adopter, median of ' + rounds + ' interleaved rounds');
  const ms: Record<number, number[]> = { 1: [], 2: [], 3: [] };
  for (let round = 0; round < rounds; round++) {
    for (const k of [1, 2, 3]) {
      let last = 0;
      const c = await startCluster({
        nodes: ['fs1', 'fs2', 'fs3', 'fs4'],
        layout: 'per-node',
        recoverDelayMs: 3,
        onEvent: (_node, what, d) => {
          if (what === 'recover' && (d.recovered as number) > 0) last = Math.max(last, d.lastLegAt as number);
        },
      });
      try {
        await c.sims.fs1.answerCalls(n);
        const cfg = c.config('fs2');
        cfg.timeouts.verifyMs = 30000;
        await c.sims.fs1.crash();
        const t0 = Date.now();
        const r = await takeover(cfg, { from: 'fs1', to: ['fs2', 'fs3', 'fs4'].slice(0, k), command: 'bench' });
        if (r.result !== 'done' || r.recovered !== n) throw new Error(`spread over ${k}: ${r.result} ${r.reason}`);
        ms[k].push(last - t0);
      } finally {
        await c.stop();
      }
    }
  }
  const one = med(ms[1]);
  console.log('adopters  last_leg_ms  vs_one   runs');
  for (const k of [1, 2, 3])
    console.log(
      `${String(k).padEnd(9)} ${String(med(ms[k])).padStart(11)} ${(med(ms[k]) / one).toFixed(2).padStart(7)}x   ${ms[k].join(', ')}`,
    );
}

/** The far ends' RTP echo as a process of its own (test/e2e/rtp-echo-main.ts): asked for what it heard with SIGUSR1. */
async function echoProcess(
  port: number,
): Promise<{ heard(): Promise<{ at: number; calls: Record<string, CallAudio> }>; stop(): void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/e2e/rtp-echo-main.ts', '127.0.0.21', String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buf = '';
  const waiters: Array<(line: string) => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      waiters.shift()?.(l);
    }
  });
  const next = () => new Promise<string>((r) => waiters.push(r));
  await next(); // listening
  return {
    heard: async () => {
      const l = next();
      child.kill('SIGUSR1');
      return JSON.parse(await l);
    },
    stop: () => child.kill('SIGKILL'),
  };
}

async function audio() {
  const sizes = (process.env.BENCH_AUDIO_CALLS ?? '100,1000').split(',').map(Number);
  console.log(
    '\naudio: the gap at the far end (last packet before the crash -> first after), per call; identical RTP ranges',
  );
  console.log(
    "  on every node (FreeSWITCH's default), recover ~3 ms per leg; span = the recover's first -> last leg (FreeSWITCH's floor)",
  );
  console.log(
    '  the far ends echo in a process of their own; ptime 20 ms up to 100 calls, 60 ms above: the gap is exact to one ptime',
  );
  console.log('calls  adopters  gap_median_ms  gap_max_ms  span_ms  max_gap/(crash->last leg)');
  for (const n of sizes) {
    for (const k of [1, 2]) {
      const port = await freePort('127.0.0.21');
      const echo = await echoProcess(port);
      let first = 0,
        last = 0;
      const c = await startCluster({
        nodes: ['fs1', 'fs2', 'fs3'],
        layout: 'per-node',
        recoverDelayMs: 3,
        farEndMediaPort: port,
        media: { timeoutSec: 0, intervalMs: n > 100 ? 60 : 20 },
        onEvent: (_node, what, d) => {
          if (what === 'recover' && (d.recovered as number) > 0) {
            last = Math.max(last, d.lastLegAt as number);
            first = Math.min(first || Infinity, d.firstLegAt as number);
          }
        },
      });
      try {
        const calls = await c.sims.fs1.answerCalls(n);
        await new Promise((r) => setTimeout(r, 1000));
        const cfg = c.config('fs2');
        cfg.timeouts.verifyMs = 30000;
        const crash = Date.now();
        await c.sims.fs1.crash();
        const r = await takeover(cfg, { from: 'fs1', to: ['fs2', 'fs3'].slice(0, k), command: 'bench' });
        if (r.result !== 'done' || r.recovered !== n) throw new Error(`audio ${n}/${k}: ${r.result} ${r.reason}`);
        await new Promise((res) => setTimeout(res, 1500));
        const h = await echo.heard();
        const pt = n > 100 ? 60 : 20;
        const deaf = calls.filter((u) => !h.calls[u] || h.at - h.calls[u].last > 10 * pt).length;
        if (deaf) throw new Error(`audio ${n}/${k}: ${deaf} call(s) without audio at the far end after the takeover`);
        const gaps = calls.map((u) =>
          Math.max(0, ...h.calls[u].gaps.filter(([, b]) => b > crash).map(([a, b]) => b - a)),
        );
        const g = gapSummary(gaps);
        console.log(
          `${String(n).padEnd(6)} ${String(k).padEnd(9)} ${String(g.median).padStart(13)} ${String(g.max).padStart(11)} ${String(last - first).padStart(8)}  ${(g.max / (last - crash)).toFixed(2).padStart(6)}x`,
        );
      } finally {
        await c.stop();
        echo.stop();
      }
    }
  }
}

async function main() {
  const parts = (process.env.BENCH_PARTS ?? 'rewrite,notify,startup,failover,latency,health,spread,audio').split(',');
  const pg = process.env.DATABASE_URL ? null : await startThrowawayPostgres({ listen: process.env.FSHA_PG_LISTEN });
  if (pg) process.env.DATABASE_URL = pg.url;
  try {
    if (parts.includes('rewrite')) await rewrite();
    if (parts.includes('notify')) await notify();
    if (parts.includes('startup')) await startup();
    if (parts.includes('failover')) await failover();
    if (parts.includes('latency')) await latency();
    if (parts.includes('health')) await health();
    if (parts.includes('spread')) await spread();
    if (parts.includes('audio')) await audio();
  } finally {
    pg?.stop();
  }
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});
