/**
 * fs-ha agent against a real FIFO, real PostgreSQL and simulated FreeSWITCH nodes: keepalived's lines as
 * keepalived writes them (one per transition), the backlog that waited in the pipe, a FIFO recreated by a
 * reload, and the health file it keeps for track_file. (keepalived itself writes to it in test/e2e.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/commands/agent';
import { configureLog } from '../../src/log';
import { withCluster } from '../helpers/cluster';
import { freePort, withClient } from '../helpers/pg';

configureLog({ syslog: false, stderr: false });

const until = async (what: string, fn: () => boolean | Promise<boolean>, ms = 5000) => {
  const end = Date.now() + ms;
  while (
    !(await Promise.resolve()
      .then(fn)
      .catch(() => false))
  ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

/** keepalived's side of the FIFO: it keeps it open and writes one line per transition. */
function writer(path: string): { say(line: string): void; close(): void } {
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  let open = true;
  return {
    say: (line) => {
      writeSync(fd, line + '\n');
    },
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

test('agent: the backlog reduced to the last state per instance, MASTER takes over warm, unknown instances ignored, a recreated FIFO reopened, the health file kept and left as it is on stop', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const dir = mkdtempSync(join(tmpdir(), 'fsha-agent-'));
  const fifo = join(dir, 'keepalived.fifo');
  const metricsPort = await freePort();
  const cfg = c.config(
    'fs2',
    `instances: { VI_FS: fs1 }\nagent: { fifo: ${fifo}, metrics: '127.0.0.1:${metricsPort}' }\nwatch: { file: ${join(dir, 'health')}, interval_ms: 100 }`,
  );
  cfg.stateDir = join(dir, 'state');
  assert.equal(spawnSync('mkfifo', ['-m', '0600', fifo]).status, 0);
  const k = writer(fifo);
  t.after(() => k.close());
  // what keepalived wrote while no agent ran: only the last line of VI_FS still holds
  k.say('INSTANCE "VI_FS" MASTER 100');
  k.say('INSTANCE "VI_FS" BACKUP 100');
  const agent = new Agent(cfg);
  agent.start();
  t.after(() => agent.stop());
  await until("fs2 in standby (the backlog's last state)", () => c.sims.fs2.standby);
  assert.deepEqual(agent.handled, { BACKUP: 1 }, 'the stale MASTER was not acted on');
  await until('watch file healthy', () => {
    try {
      return readFileSync(cfg.watch.file, 'utf8') === '0\n';
    } catch {
      return false;
    }
  });

  // the node's own transitions, one line each
  const calls = await c.sims.fs1.answerCalls(8);
  await c.sims.fs1.crash();
  k.say('INSTANCE "VI_OTHER" MASTER 100'); // not this node's instance
  k.say('INSTANCE "VI_FS" MASTER_PRIORITY 100'); // notify_priority_changes: not a transition
  const connsBefore = c.sims.fs2.eslConnections;
  k.say('INSTANCE "VI_FS" MASTER 100');
  await until(
    'the takeover',
    async () =>
      (await withClient(c.url, (q) => q.query("select count(*)::int n from fsha.audit where result = 'done'"))).rows[0]
        .n === 1,
    10000,
  );
  assert.deepEqual(agent.handled, { BACKUP: 1, MASTER: 1 });
  const rows = (await withClient(c.url, (q) => q.query('select uuid, runtime_uuid from recovery'))).rows;
  assert.deepEqual(rows.map((r) => r.uuid).sort(), [...calls].sort());
  for (const r of rows) assert.equal(r.runtime_uuid, c.sims.fs2.coreUuid);
  assert.equal(c.sims.fs2.standby, false, 'the new MASTER takes new calls');
  assert.ok(agent.db.get(), 'the warm connection is still there after the takeover');
  assert.equal(
    c.sims.fs2.eslConnections,
    connsBefore,
    "the takeover used the agent's open session to fs2: no new connection",
  );

  // keepalived reloads: the FIFO is recreated; the next line arrives in the new one
  k.close();
  unlinkSync(fifo);
  assert.equal(spawnSync('mkfifo', ['-m', '0600', fifo]).status, 0);
  const k2 = writer(fifo);
  t.after(() => k2.close());
  await new Promise((r) => setTimeout(r, 1300)); // the agent checks the inode every second
  k2.say('INSTANCE "VI_FS" BACKUP 100');
  await until('fs2 back in standby through the new FIFO', () => c.sims.fs2.standby, 5000);

  // the file's mtime is kept fresh for keepalived's backstop
  const m1 = statSync(cfg.watch.file).mtimeMs;
  await new Promise((r) => setTimeout(r, 1200));
  assert.ok(statSync(cfg.watch.file).mtimeMs > m1, 'touched every second');
  // Prometheus metrics on loopback
  await until(
    'metrics with the takeover and the calls',
    async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return (
        /^fsha_takeovers_total\{result="done"\} 1$/m.test(text) && /^fsha_calls_tracked\{node="fs2"\} 8$/m.test(text)
      );
    },
    15000,
  );
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(text, /^fsha_freeswitch_healthy 1$/m);
  assert.match(text, /^fsha_vrrp_state\{instance="VI_FS",state="BACKUP"\} 1$/m);
  assert.match(text, /^fsha_events_total\{state="MASTER"\} 1$/m);
  assert.match(text, /^fsha_last_takeover_duration_ms \d+$/m);
  assert.match(text, /^# TYPE fsha_takeovers_total counter$/m);
  assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status, 404);

  // the node's heartbeat, as check_fs wrote it when keepalived ran it: peers judge an unreachable node by it
  await until(
    'a fresh heartbeat',
    async () =>
      (
        await withClient(c.url, (q) =>
          q.query(
            "select healthy from fsha.heartbeat where node = 'fs2' and at > clock_timestamp() - interval '2 seconds'",
          ),
        )
      ).rows[0]?.healthy === true,
  );
  await agent.stop();
  assert.equal(
    readFileSync(cfg.watch.file, 'utf8'),
    '0\n',
    'stopping the agent (a restart) changes nothing keepalived sees',
  );
});

test("19.7 agent: another service's VRRP instance on the same keepalived (a web VIP) is never acted on, even in a pair; without instances the agent does not start", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const dir = mkdtempSync(join(tmpdir(), 'fsha-agent-'));
  const fifo = join(dir, 'keepalived.fifo');
  const cfg = c.config(
    'fs2',
    `instances: { VI_FS: fs1 }\nagent: { fifo: ${fifo} }\nwatch: { file: ${join(dir, 'health')}, interval_ms: 100 }`,
  );
  cfg.stateDir = join(dir, 'state');
  assert.equal(spawnSync('mkfifo', ['-m', '0600', fifo]).status, 0);
  const k = writer(fifo);
  t.after(() => k.close());
  const agent = new Agent(cfg);
  agent.start();
  t.after(() => agent.stop());
  k.say('INSTANCE "VI_FS" MASTER 100');
  await until('VI_FS MASTER handled', () => (agent.handled.MASTER ?? 0) === 1);
  assert.equal(c.sims.fs2.standby, false);
  k.say('INSTANCE "VI_WEB" BACKUP 100');
  k.say('INSTANCE "VI_WEB" FAULT 100');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(c.sims.fs2.standby, false, "the web VIP's BACKUP did not put FreeSWITCH in standby");
  assert.deepEqual(agent.handled, { MASTER: 1 });
  const { agent: runAgent } = await import('../../src/commands/agent');
  await assert.rejects(
    runAgent(c.config('fs2', `agent: { fifo: ${fifo} }`), { result: () => undefined } as never),
    /the agent needs instances/,
  );
});

test("25.5 the agent holds its node's notify lock for its life (its transitions spawn no lock process); a notify hook run beside it steps aside at once, saying why, and changes nothing", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const dir = mkdtempSync(join(tmpdir(), 'fsha-agent-'));
  const fifo = join(dir, 'keepalived.fifo');
  const cfg = c.config(
    'fs2',
    `instances: { VI_FS: fs1 }\nagent: { fifo: ${fifo} }\nwatch: { file: ${join(dir, 'health')}, interval_ms: 100 }`,
  );
  cfg.stateDir = join(dir, 'state');
  assert.equal(spawnSync('mkfifo', ['-m', '0600', fifo]).status, 0);
  const k = writer(fifo);
  t.after(() => k.close());
  const { acquireHostLock, agentLockName } = await import('../../src/adapters/host-lock');
  const { notify } = await import('../../src/commands/notify');
  const releaseAgentLock = await acquireHostLock(cfg.stateDir, agentLockName(fifo), 1000); // as `fs-ha agent` takes it
  t.after(() => releaseAgentLock());
  const agent = new Agent(cfg);
  agent.start();
  t.after(() => agent.stop());
  k.say('INSTANCE "VI_FS" BACKUP 100');
  await until('fs2 in standby', () => c.sims.fs2.standby);
  const calls = await c.sims.fs1.answerCalls(3);
  await c.sims.fs1.crash();
  const t0 = Date.now();
  await assert.rejects(
    notify(cfg, 'MASTER', 'VI_FS'),
    /the fs-ha agent runs on fs2 and handles keepalived's transitions itself/,
  );
  assert.ok(Date.now() - t0 < 3000, `stepped aside at once (${Date.now() - t0} ms), not after the lock's timeout`);
  assert.equal(c.sims.fs2.standby, true, 'the hook changed nothing');
  assert.equal(
    (await withClient(c.url, (q) => q.query("select count(*)::int n from recovery where hostname = 'fs1'"))).rows[0].n,
    3,
    'no call moved by the hook',
  );
  // the agent's own transition goes on without waiting for any lock
  k.say('INSTANCE "VI_FS" MASTER 100');
  await until('the agent took the calls over', async () => (await c.sims.fs2.ownCalls()).length === 3);
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), [...calls].sort());
});
