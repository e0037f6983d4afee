/** The built program (dist/fs-ha.js), as keepalived runs it: exit codes, one-line errors, deadlines. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, writeFileSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { withCluster, type Cluster } from '../helpers/cluster';
import { freePort } from '../helpers/pg';

const BIN = join(__dirname, '..', '..', 'dist', 'fs-ha.js');

function run(
  args: string[],
  opts: { argv0?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; out: string; err: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const cmd = opts.argv0 ?? BIN;
    const p = spawn(process.execPath, [cmd, ...args], { env: { ...process.env, FS_HA_SYSLOG: '0', ...opts.env } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('exit', (code) => resolve({ code: code ?? -1, out, err, ms: Date.now() - t0 }));
  });
}

function writeConfig(c: Cluster, node: string, patch: (o: Record<string, unknown>) => void = () => undefined): string {
  const cfg = c.config(node);
  const o: Record<string, unknown> = {
    node,
    database: cfg.database,
    esl: { host: cfg.esl.host, port: cfg.esl.port, password: cfg.esl.password, timeout_ms: 800 },
    nodes: Object.fromEntries(
      Object.values(cfg.nodes).map((n) => [
        n.name,
        { addresses: n.addresses, esl: { host: n.esl!.host, port: n.esl!.port, password: 'ClueCon', timeout_ms: 800 } },
      ]),
    ),
    check: { profiles: ['internal'], timeout_ms: 1000 },
    state_dir: mkdtempSync(join(tmpdir(), 'fsha-state-')),
    liveness: { heartbeat_stale_ms: 1500 },
  };
  patch(o);
  const f = join(mkdtempSync(join(tmpdir(), 'fsha-cfg-')), 'fs-ha.yaml');
  writeFileSync(f, stringify(o), { mode: 0o600 });
  return f;
}

test('check: 0 when healthy, 1 with one line why; never longer than its deadline', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const f = writeConfig(c, 'fs1');
  let r = await run(['--config', f, 'check']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ok: healthy/);

  await c.sims.fs1.api('sofia profile internal stop');
  r = await run(['--config', f, 'check']);
  assert.equal(r.code, 1);
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
  assert.match(r.err, /profile\(s\) not RUNNING: internal=absent/);
  await c.sims.fs1.api('sofia profile internal start');

  await c.sims.fs1.api('fsctl pause');
  r = await run(['--config', f, 'check']);
  assert.equal(r.code, 1);
  assert.match(r.err, /is not ready/);
  await c.sims.fs1.api('fsctl resume');

  const wrong = writeConfig(c, 'fs1', (o) => {
    (o.esl as Record<string, unknown>).password = 'nope';
  });
  r = await run(['--config', wrong, 'check']);
  assert.equal(r.code, 1);
  assert.match(r.err, /rejected the password/);
  assert.ok(!r.err.includes('nope'), 'the password is never printed');

  c.sims.fs1.fault.hang = true;
  r = await run(['--config', f, 'check']);
  assert.equal(r.code, 1);
  assert.ok(r.ms < 2500, `took ${r.ms} ms`);
  c.sims.fs1.fault.hang = false;

  // a server that answers garbage, and one that half-closes
  for (const behaviour of ['garbage', 'halfclose']) {
    const port = await freePort();
    const srv = createServer((s) => {
      if (behaviour === 'garbage') s.write('HTTP/1.1 400 Bad\r\n\r\n\n\n\n');
      else s.end();
    });
    await new Promise<void>((res) => srv.listen(port, '127.0.0.1', () => res()));
    const g = writeConfig(c, 'fs1', (o) => {
      o.esl = { host: '127.0.0.1', port, password: 'ClueCon', timeout_ms: 800 };
    });
    r = await run(['--config', g, 'check']);
    assert.equal(r.code, 1, behaviour);
    assert.ok(r.ms < 2500);
    srv.close();
  }

  await c.sims.fs1.crash();
  r = await run(['--config', f, 'check']);
  assert.equal(r.code, 1);
  assert.match(r.err, /refused the connection/);
});

test('usage and configuration errors exit 2 with one line naming the problem', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fsha-bad-'));
  writeFileSync(join(dir, 'bad.yaml'), 'node: x\nnodes: { y: {} }\n');
  const cases: Array<[string[], RegExp]> = [
    [['--config', join(dir, 'none.yaml'), 'check'], /cannot read .*none\.yaml \(ENOENT\)/],
    [['--config', join(dir, 'bad.yaml'), 'check'], /node "x" is not listed under nodes/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['--bogus'], /unknown option --bogus/],
    [['--config', join(dir, 'bad.yaml'), 'notify', 'INSTANCE', 'VI_1', 'SLEEPY', '100'], /./],
  ];
  for (const [args, re] of cases) {
    const r = await run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
  }
  assert.match((await run(['--version'])).out, /^fs-ha \d+\.\d+\.\d+/);
  assert.match((await run(['--help'])).out, /exit codes: 0 ok, 1 .* 2 usage/);
});

test('keepalived hooks through links: BACKUP puts profiles in standby, MASTER takes over and leaves standby', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const f = writeConfig(c, 'fs2', (o) => {
    o.instances = { VI_1: 'fs1' };
  });
  const dir = mkdtempSync(join(tmpdir(), 'fsha-links-'));
  for (const l of ['check_fs', 'notify_master', 'notify_backup', 'notify']) symlinkSync(BIN, join(dir, l));
  let r = await run(['VI_1'], { argv0: join(dir, 'notify_backup'), env: { FS_HA_CONFIG: f } });
  assert.equal(r.code, 0, r.err);
  assert.equal(c.sims.fs2.standby, true);

  const calls = await c.sims.fs1.answerCalls(10);
  await c.sims.fs1.crash();
  r = await run(['INSTANCE', 'VI_1', 'MASTER', '100'], { argv0: join(dir, 'notify'), env: { FS_HA_CONFIG: f } });
  assert.equal(r.code, 0, r.err);
  assert.equal(c.sims.fs2.standby, false);
  await new Promise((res) => setTimeout(res, 50));
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), [...calls].sort());
  assert.match(
    r.err,
    /takeover done: fs2 took over 10 call\(s\) of fs1 from=fs1 to=fs2 adopted=10 recovered=10 missing=0/,
  );

  // MASTER then BACKUP fired back to back (overlapping): consistent, and the BACKUP, fired later, wins standby
  const [m, b] = await Promise.all([
    run(['VI_1'], { argv0: join(dir, 'notify_master'), env: { FS_HA_CONFIG: f } }),
    new Promise<Awaited<ReturnType<typeof run>>>((res) =>
      setTimeout(
        () => void run(['VI_1'], { argv0: join(dir, 'notify_backup'), env: { FS_HA_CONFIG: f } }).then(res),
        5,
      ),
    ),
  ]);
  assert.equal(m.code, 0, m.err);
  assert.equal(b.code, 0, b.err);
  assert.equal(c.sims.fs2.standby, true);
  assert.equal((await c.sims.fs2.ownCalls()).length, 10, 'a BACKUP never touches the recovery table');
});

test('takeover by hand: --dry-run prints the plan, unknown node exits 2, a live node is refused (exit 1)', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const f = writeConfig(c, 'fs2');
  await c.sims.fs1.answerCalls(3);
  let r = await run(['--config', f, 'takeover', '--from', 'fs1']);
  assert.equal(r.code, 1);
  assert.match(r.err, /refusing to take over fs1: fs1 is alive/);
  r = await run(['--config', f, 'takeover', '--from', 'ghost']);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown node "ghost"/);
  await c.sims.fs1.crash();
  r = await run(['--config', f, 'takeover', '--from', 'fs1', '--dry-run']);
  assert.equal(r.code, 0, r.err);
  assert.equal((r.out.match(/^ {2}move /gm) ?? []).length, 3);
  assert.match(r.out, /dry-run: would move 3 row\(s\) of fs1 to fs2/);
  r = await run(['--config', f, 'status', '--json']);
  assert.equal(r.code, 0, r.err);
  const st = JSON.parse(r.out);
  assert.equal(st.nodes.find((n: { node: string }) => n.node === 'fs1').trackedCalls, 3);
  assert.equal(st.nodes.find((n: { node: string }) => n.node === 'fs1').health, 'refused');
  r = await run(['--config', f, 'takeover', '--from', 'fs1']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^done: fs2 took over 3 call\(s\) of fs1/);
});

test('standalone dist/fs-ha: runs from an empty directory with no node on PATH and no node_modules, links included', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1'] });
  const dir = mkdtempSync(join(tmpdir(), 'fsha-standalone-'));
  copyFileSync(join(__dirname, '..', '..', 'dist', 'fs-ha'), join(dir, 'fs-ha'));
  chmodSync(join(dir, 'fs-ha'), 0o755);
  symlinkSync('fs-ha', join(dir, 'check_fs'));
  const env = { PATH: join(dir, 'no-such-bin'), HOME: dir }; // no node anywhere on PATH
  const exec = (cmd: string, args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      const p = spawn(join(dir, cmd), args, { cwd: dir, env });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => {
        out += d;
      });
      p.stderr.on('data', (d) => {
        err += d;
      });
      p.on('exit', (code) => resolve({ code: code ?? -1, out, err }));
    });
  const v = await exec('fs-ha', ['--version']);
  assert.equal(v.code, 0, v.err);
  assert.match(v.out, /^fs-ha \d+\.\d+\.\d+/);
  const cfg = writeConfig(c, 'fs1', (o) => {
    o.log = { syslog: false };
  });
  const ok = await exec('check_fs', ['--config', cfg]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /^ok: healthy/);
  await c.sims.fs1.crash();
  const bad = await exec('check_fs', ['--config', cfg]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /check failed on fs1: event socket .* refused/);
});

test('drill: refuses without --yes (nothing crashed); with --yes --takeover crashes the node and reports every call back', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const calls = await c.sims.fs1.answerCalls(5);
  const f = writeConfig(c, 'fs2');
  const no = await run(['--config', f, 'drill', '--crash', 'fs1']);
  assert.equal(no.code, 2);
  assert.match(no.err, /crashes FreeSWITCH on fs1 .*--yes/);
  assert.equal(c.sims.fs1.crashed, false);
  assert.deepEqual((await c.sims.fs1.ownCalls()).sort(), [...calls].sort());
  const yes = await run(['--config', f, 'drill', '--crash', 'fs1', '--yes', '--takeover', '--wait-ms', '8000']);
  assert.equal(yes.code, 0, yes.err + yes.out);
  assert.equal(c.sims.fs1.crashed, true);
  assert.match(yes.out, /fsctl crash sent to fs1/);
  assert.match(yes.out, /takeover done on fs2: adopted 5, recovered 5/);
  for (const u of calls) assert.match(yes.out, new RegExp(`${u}  came back on fs2`));
  assert.match(yes.out, /drill: 5 of 5 call\(s\) came back/);
});

test('watch: 0 while FreeSWITCH serves, 1 within moments of a crash, 0 again on SIGTERM (check_fs decides alone)', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1'] });
  const file = join(mkdtempSync(join(tmpdir(), 'fsha-watch-')), 'health');
  const f = writeConfig(c, 'fs1', (o) => {
    o.watch = { file, interval_ms: 100 };
    o.log = { syslog: false };
  });
  const p = spawn(process.execPath, [BIN, '--config', f, 'watch'], { env: { ...process.env, FS_HA_SYSLOG: '0' } });
  let err = '';
  p.stderr.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number>((res) => p.on('exit', (code) => res(code ?? -1)));
  const read = () => {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const until = async (want: string, ms: number) => {
    const end = Date.now() + ms;
    while (read() !== want) {
      if (Date.now() > end) throw new Error(`watch file is "${read()}", not ${want}; ${err}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return Date.now();
  };
  await until('0', 5000);
  const crashed = Date.now();
  await c.sims.fs1.crash();
  const seen = await until('1', 2000);
  assert.ok(seen - crashed < 500, `crash seen after ${seen - crashed} ms`);
  // the log line travels through a pipe: it may arrive a moment after the file changed
  for (const end = Date.now() + 2000; !/watch: fs1 FAILED/.test(err) && Date.now() < end; )
    await new Promise((r) => setTimeout(r, 5));
  assert.match(err, /watch: fs1 FAILED: event socket (lost|.*closed)/);
  p.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.equal(read(), '0');
});

test('one command table: help lists every command and link; an option of another command, or a missing required one, is exit 2 naming it', async () => {
  const { COMMANDS } = await import('../../src/cli/table');
  const help = await run(['--help']);
  assert.equal(help.code, 0);
  for (const c of COMMANDS) {
    assert.match(help.out, new RegExp(`^  ${c.name}\\b`, 'm'), `help lists ${c.name}`);
    for (const l of c.links) assert.ok(help.out.includes(l), `help names the link ${l}`);
    const own = await run([c.name, '--help']);
    assert.equal(own.code, 0, `${c.name} --help`);
    for (const o of Object.keys(c.options)) assert.ok(own.out.includes(`--${o}`), `${c.name} --help shows --${o}`);
  }
  const cases: Array<[string[], RegExp]> = [
    [['check', '--crash', 'x'], /check: unknown option --crash/],
    [['status', '--from', 'a'], /status: unknown option --from/],
    [['takeover'], /takeover needs --from NODE/],
    [['drill', '--yes'], /drill needs --crash NODE/],
    [['notify-master', 'VI_1', 'extra'], /notify-master: unexpected argument "extra"/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['--json', 'check'], /check: unknown option --json/],
  ];
  for (const [args, re] of cases) {
    const r = await run(['--config', '/nonexistent/fs-ha.yaml', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
    assert.equal(r.err.trim().split('\n').length, 1, 'one line');
  }
});

test('11.9 operations by hand: drain (plan, then --yes), history with its timeline, status at a glance with VRRP state and the last takeover, status --watch', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  const f = writeConfig(c, 'fs2', (o) => {
    o.layout = 'per-node';
    o.instances = { VI_2: 'fs2' };
  });
  await c.sims.fs1.answerCalls(8);
  let r = await run(['--config', f, 'notify', 'INSTANCE', 'VI_2', 'MASTER']);
  assert.equal(r.code, 0, r.err);
  r = await run(['--config', f, 'drain', '--from', 'fs1', '--to', 'fs2,fs3']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ {2}fs2: 4 call leg\(s\)$/m);
  assert.match(r.out, /^ {2}fs3: 4 call leg\(s\)$/m);
  assert.match(r.out, /planned: .*nothing stopped: run again with --yes to drain/);
  assert.equal(c.sims.fs1.crashed, false);
  r = await run(['--config', f, 'drain', '--from', 'fs1', '--to', 'fs2,fs3', '--yes', '--settle-ms', '0']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /done: fs1 drained: fs2, fs3 took over 8 call\(s\) of fs1 \(fs2 4, fs3 4\)/);
  r = await run(['--config', f, 'history', '--node', 'fs3']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^#\d+ \S+ \S+ drain: fs1 -> fs2,fs3 done, 8 adopted, 8 recovered, 0 missing, 0 held/m);
  assert.match(
    r.out,
    /timeline: standby \+\d+, settled \+\d+, stopped \+\d+, gone \+\d+, db \+\d+, probe \+\d+, lock \+\d+, plan \+\d+, rewrite \+\d+, recover \+\d+, sent \+\d+, recovered \+\d+, verify \+\d+, end \+\d+/,
  );
  r = await run(['--config', f, 'history', '--json', '--last', '1']);
  const h = JSON.parse(r.out);
  assert.equal(h.length, 1);
  assert.deepEqual(
    h[0].adopters.map((a: { node: string; handed: number }) => [a.node, a.handed]),
    [
      ['fs2', 4],
      ['fs3', 4],
    ],
  );
  assert.equal(h[0].timeline[0].step, 'standby');
  r = await run(['--config', f, 'status']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^fs2 +healthy +VI_2:MASTER \(\d+s\) +4 +0 +\d+s ago fs1->fs2,fs3 done 8 calls \d+ ms$/m);
  assert.match(r.out, /^fs1 +refused +- +0 +- +\d+s ago fs1->fs2,fs3 done 8 calls \d+ ms$/m);
  r = await run(['--config', f, 'history', '--last', 'x']);
  assert.equal(r.code, 2);
  assert.match(r.err, /--last must be a whole number/);

  // --watch: redrawn in place until interrupted, then exit 0
  const p = spawn(process.execPath, [BIN, '--config', f, 'status', '--watch'], {
    env: { ...process.env, FS_HA_SYSLOG: '0' },
  });
  let out = '';
  p.stdout.on('data', (d) => {
    out += d;
  });
  await new Promise((res) => setTimeout(res, 2600));
  p.kill('SIGINT');
  const code = await new Promise<number | null>((res) => p.on('exit', (x) => res(x)));
  assert.equal(code, 0);
  assert.ok(out.split('\x1b[H\x1b[2J').length - 1 >= 2, `redrawn at least twice: ${JSON.stringify(out.slice(0, 200))}`);
  assert.match(out, /every 1 s; Ctrl-C to stop/);
});
