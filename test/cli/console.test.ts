/**
 * Issue 27: fsha in FreeSWITCH's own console. The simulated FreeSWITCH implements `alias` (stickyadd) and
 * `system` as mod_commands does (the command run by /bin/sh as FreeSWITCH's user, here `nobody`, its standard
 * output streamed back in the api/response body) and expands an alias for an api carrying console_execute:
 * true, as fs_cli sends it. The standalone binary runs as that user and reads no configuration; the agent
 * (root) answers over its console socket, which admits root and console.group (nogroup) only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, statSync } from 'node:fs';
import { execFile, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/commands/agent';
import { consoleInstall } from '../../src/commands/console';
import { configureLog } from '../../src/log';
import { withCluster } from '../helpers/cluster';
import { withClient } from '../helpers/pg';

configureLog({ syslog: false, stderr: false });

/** What fs_cli -x 'LINE' prints: an api with console_execute: true over the event socket, its body. */
function fsCli(host: string, port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, host);
    let buf = '';
    let sent = 0;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`fs_cli -x '${line}': no answer`));
    }, 60_000);
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (sent === 0 && buf.includes('auth/request')) {
        buf = '';
        sent = 1;
        sock.write('auth ClueCon\n\n');
      } else if (sent === 1 && buf.includes('+OK accepted')) {
        buf = '';
        sent = 2;
        sock.write(`api ${line}\nconsole_execute: true\n\n`);
      } else if (sent === 2) {
        const m = /Content-Length: (\d+)\n\n/.exec(buf);
        if (m && Buffer.byteLength(buf.slice(m.index + m[0].length)) >= Number(m[1])) {
          clearTimeout(timer);
          sock.destroy();
          resolve(buf.slice(m.index + m[0].length));
        }
      }
    });
    sock.on('error', reject);
  });
}

test("27.1 fsha in fs_cli: installed as an alias, run by system as FreeSWITCH's user through the agent; status, a takeover refused while the node lives, done after its crash (audited as the console), a drain that only plans without --yes; plain short lines; a user outside console.group is told no", async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root (runuser, chown)');
    return;
  }
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], systemUser: 'nobody' });
  const dir = mkdtempSync(join(tmpdir(), 'fsha-console-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'bin'), { mode: 0o755 });
  const binary = join(dir, 'bin', 'fs-ha');
  copyFileSync(join(__dirname, '..', '..', 'dist', 'fs-ha'), binary);
  chmodSync(binary, 0o755);
  const socket = join(dir, 'console', 'console.sock');
  const cfg = c.config(
    'fs2',
    `instances: { VI_FS: fs1 }\nagent: { fifo: ${join(dir, 'fifo')} }\nwatch: { file: ${join(dir, 'health')}, interval_ms: 100 }\n` +
      `console: { group: nogroup, socket: ${socket} }\nstate_dir: ${join(dir, 'state')}`,
  );
  const agent = new Agent(cfg);
  agent.start();
  t.after(() => agent.stop());
  // up once its permissions are set (the directory, root:nogroup 0750, shuts everyone else out from the start)
  for (let i = 0; i < 50 && !(statSafe(socket) && (statSync(socket).mode & 0o777) === 0o660); i++)
    await new Promise((r) => setTimeout(r, 50));
  const st = statSync(socket);
  assert.equal(st.mode & 0o777, 0o660, 'the socket: owner and group only');
  assert.equal(statSync(join(dir, 'console')).mode & 0o777, 0o750);
  assert.equal(st.gid, 65534, 'its group is console.group');

  assert.match(await consoleInstall(cfg, binary), /alias fsha system .*fs-ha console --socket/);
  const fsha = (words: string) => fsCli(c.addr.fs2, c.ports.fs2, `fsha${words ? ` ${words}` : ''}`);

  const calls = await c.sims.fs1.answerCalls(3);
  const st1 = await fsha('');
  assert.match(
    st1,
    /^\nExpand Alias \[fsha\]->\[system .*fs-ha console --socket \S+\]\n\n/,
    'switch_console_execute expanded the alias',
  );
  assert.match(st1, /^fs1 +healthy .*calls 3$/m);
  assert.match(st1, /^fs2 +healthy/m);
  assert.ok(!st1.includes('\u001b'), 'no terminal control codes');
  for (const l of st1.split('\n').filter((x) => !x.startsWith('Expand Alias')))
    assert.ok(l.length <= 120, `a short line: ${l}`); // FreeSWITCH's own line aside

  const refused = await fsha('takeover fs1');
  assert.match(refused, /^taking over fs1's calls\.\.\.\nrefused: .*fs1 is alive/m);
  assert.equal(
    (await withClient(c.url, (q) => q.query("select count(*)::int n from recovery where hostname = 'fs1'"))).rows[0].n,
    3,
    'nothing moved',
  );

  await c.sims.fs1.crash();
  const done = await fsha('takeover fs1');
  assert.match(done, /^done: fs2 took over 3 call\(s\) of fs1/m);
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), [...calls].sort());
  const audit = (await withClient(c.url, (q) => q.query("select actor, command from fsha.audit where result = 'done'")))
    .rows;
  assert.deepEqual(audit, [{ actor: 'console@fs2', command: 'console takeover' }]);
  assert.match(await fsha('history'), /console takeover fs1->fs2 done 3 calls by console@fs2/);

  await c.restart('fs1');
  await c.sims.fs1.answerCalls(2);
  const plan = await fsha('drain fs1');
  assert.match(plan, /^drain fs1: the plan \(nothing changed\)$/m);
  assert.match(plan, /^nothing done: fsha drain fs1 --yes drains it$/m);
  assert.equal((await c.sims.fs1.ownCalls()).length, 2, 'the drain only planned');
  assert.equal(c.sims.fs1.standby, false, 'fs1 not put in standby');
  assert.match(await fsha('frob'), /^fsha: unknown word frob \(fsha help\)$/m);

  // a local user outside console.group: the kernel refuses the socket; nothing runs
  const other = spawnSync('runuser', ['-u', 'daemon', '--', binary, 'console', '--socket', socket, 'takeover', 'fs1'], {
    encoding: 'utf8',
    cwd: '/',
  });
  assert.equal(other.status, 1);
  assert.match(other.stdout, /^fsha: this user may not use fs-ha's console/);
  // the same binary as a member (nobody, in nogroup) straight from a shell: answered
  // (asynchronously: the agent answering it runs in this process)
  const member = await new Promise<{ code: number | null; out: string }>((resolve) => {
    execFile(
      'runuser',
      ['-u', 'nobody', '--', binary, 'console', '--socket', socket, 'help'],
      { encoding: 'utf8', cwd: '/' },
      (e, out) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out }),
    );
  });
  assert.equal(member.code, 0, member.out);
  assert.match(member.out, /^fsha takeover NODE/m);
});

function statSafe(p: string): boolean {
  try {
    return statSync(p).isSocket();
  } catch {
    return false;
  }
}
