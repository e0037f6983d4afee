/**
 * Issue 19: who answers before a node is called dead, one recover at a time per adopter, and a database
 * connection that stays honest. Each test reproduces a way the adversarial pass took or lost calls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { takeover } from '../../src/commands/takeover';
import { drain } from '../../src/commands/drain';
import { Db } from '../../src/adapters/db';
import { writeHeartbeat } from '../../src/adapters/recovery-store';
import { parseConfig } from '../../src/config';
import { LocalHealth } from '../../src/local-health';
import { configureLog } from '../../src/log';
import { withCluster, withFarEnd, type Cluster } from '../helpers/cluster';
import { freePort, withClient } from '../helpers/pg';

configureLog({ syslog: false, stderr: false });

const rowsOf = (c: Cluster, host: string) =>
  withClient(
    c.url,
    async (db) =>
      (
        await db.query<{ uuid: string; runtime_uuid: string }>(
          'select uuid, runtime_uuid from fsha.recovery_base where hostname = $1 order by uuid',
          [host],
        )
      ).rows,
  );

/** fs1's own health loop, as its agent would run it: a heartbeat every 200 ms saying what it knows. */
function heartbeatOf(c: Cluster, t: { after(fn: () => void): void }, node: string): void {
  let stop = false;
  t.after(() => {
    stop = true;
  });
  void (async () => {
    const db = await Db.connect(c.url, 3000, 'test heartbeat');
    while (!stop) {
      await writeHeartbeat(db, node, node, c.sims[node].coreUuid, true, 'healthy').catch(() => undefined);
      await sleep(200);
    }
    await db.close();
  })();
}

test('19.1 a mistyped event-socket port (refused) for a node whose own heartbeat keeps saying healthy: a contradiction, refused as an ERROR; its calls stay where they are', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(5);
  heartbeatOf(c, t, 'fs1');
  await sleep(300);
  const cfg = c.config('fs2');
  cfg.nodes.fs1.esl = { ...cfg.nodes.fs1.esl!, port: await freePort(c.addr.fs1) }; // nothing listens there
  const before = await rowsOf(c, 'fs1');
  const e = await takeover(cfg, { from: 'fs1', command: 'test' }).then(
    () => null,
    (x: Error & { level?: string }) => x,
  );
  assert.ok(e, 'refused');
  assert.match(
    e.message,
    /refusing to take over fs1: fs1's event socket refused the connection .* but its own heartbeat, written \d+ ms ago \(after that refusal\), says its FreeSWITCH is healthy .*check nodes\.fs1\.esl/,
  );
  assert.equal(e.level, 'error');
  assert.deepEqual(await rowsOf(c, 'fs1'), before, "fs1's rows untouched");
  assert.equal((await c.sims.fs2.ownCalls()).length, 0, 'fs2 recovered nothing');
});

test("19.1b a crash is still taken over at once: the crashed node's health loop says unhealthy, so its refusing socket is dead", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(5);
  await withClient(c.url, async () => undefined);
  const db = await Db.connect(c.url, 3000, 'test');
  await writeHeartbeat(db, 'fs1', 'fs1', c.sims.fs1.coreUuid, true, 'healthy');
  await c.sims.fs1.crash();
  await writeHeartbeat(db, 'fs1', 'fs1', null, false, 'event socket lost: closed');
  await db.close();
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), calls.sort());
});

test('19.2 nodes.fs1.esl reaching another FreeSWITCH (fs3): takeover and drain refuse naming both identities; fs3 is neither put in standby nor stopped', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(5);
  const fs3Calls = await c.sims.fs3.answerCalls(4);
  const cfg = c.config('fs3');
  cfg.nodes.fs1.esl = { ...cfg.nodes.fs3.esl! }; // a copy-paste slip: fs1's entry points at fs3
  const e = await takeover(cfg, { from: 'fs1', to: 'fs2', command: 'test' }).then(
    () => null,
    (x: Error) => x,
  );
  assert.ok(e);
  assert.match(
    e.message,
    /the event socket configured for fs1 \(127\.0\.0\.13:\d+\) is answered by FreeSWITCH "fs3" \(core [0-9a-f-]{36}\), not fs1's switchname "fs1"/,
  );
  const d = await drain(cfg, { from: 'fs1', to: 'fs2', yes: true }).then(
    () => null,
    (x: Error) => x,
  );
  assert.ok(d, 'drain refused');
  assert.match(
    d.message,
    /refusing to drain fs1: the event socket configured for fs1 .* is answered by FreeSWITCH "fs3".*nothing was touched/,
  );
  assert.equal(c.sims.fs3.standby, false, 'fs3 not put in standby');
  assert.equal(c.sims.fs3.crashed, false, 'fs3 not stopped');
  assert.deepEqual((await c.sims.fs3.ownCalls()).sort(), fs3Calls.sort());
  assert.equal((await rowsOf(c, 'fs1')).length, 5, "fs1's rows untouched");
});

test('19.2b an adopter whose address answers as another FreeSWITCH is refused as that adopter', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(3);
  await c.sims.fs1.crash();
  const cfg = c.config('fs3');
  cfg.nodes.fs2.esl = { ...cfg.nodes.fs3.esl! };
  const e = await takeover(cfg, { from: 'fs1', to: 'fs2', command: 'test' }).then(
    () => null,
    (x: Error) => x,
  );
  assert.ok(e);
  assert.match(
    e.message,
    /refusing to recover on fs2: the event socket configured for fs2 .* is answered by FreeSWITCH "fs3"/,
  );
  assert.equal((await rowsOf(c, 'fs1')).length, 3, 'nothing moved');
});

test("19.2c another node's esl without a host is a configuration error, not 127.0.0.1 (this node's own FreeSWITCH)", () => {
  const yaml = (esl: string) =>
    `node: a\nesl: { host: 127.0.0.1, port: 8021 }\nnodes:\n  a: {}\n  b: { esl: ${esl} }\n`;
  assert.throws(() => parseConfig(yaml('{ port: 8021, password: x }')), /config: nodes\.b\.esl needs a host/);
  assert.doesNotThrow(() => parseConfig(yaml('{ host: 10.0.0.2, port: 8021 }')));
});

test('19.3 two dead nodes taken over onto one adopter at once, recover paced at 3 ms per leg: every call recovered exactly once (one recover at a time per adopter)', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node', recoverDelayMs: 3 });
  const a = await c.sims.fs1.answerCalls(60);
  const b = await c.sims.fs2.answerCalls(60);
  await c.sims.fs1.crash();
  await c.sims.fs2.crash();
  const cfg = c.config('fs3');
  const [r1, r2] = await Promise.all([
    takeover(cfg, { from: 'fs1', command: 'test a' }).catch((e: Error) => e),
    takeover(cfg, { from: 'fs2', command: 'test b' }).catch((e: Error) => e),
  ]);
  for (const r of [r1, r2])
    assert.ok(!(r instanceof Error) && r.result === 'done', r instanceof Error ? r.message : r.reason);
  const mine = await rowsOf(c, 'fs3');
  assert.deepEqual(mine.map((r) => r.uuid).sort(), [...a, ...b].sort(), 'every call of both on fs3, once');
  for (const r of mine) assert.equal(r.runtime_uuid, c.sims.fs3.coreUuid, `${r.uuid} re-tracked by fs3`);
});

/** A TCP relay to PostgreSQL that can go silent: it stops forwarding without closing (a firewall that forgot). */
async function relayTo(url: string): Promise<{ port: number; blackhole(): void; close(): void }> {
  const u = new URL(url);
  const socks = new Set<Socket>();
  let silent = false;
  const server = createServer((cin) => {
    socks.add(cin);
    if (silent) return;
    const out = connect(Number(u.port), u.hostname);
    socks.add(out);
    cin.on('data', (d) => {
      if (!silent) out.write(d);
    });
    out.on('data', (d) => {
      if (!silent) cin.write(d);
    });
    cin.on('error', () => undefined);
    out.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as { port: number }).port,
    blackhole: () => {
      silent = true;
    },
    close: () => {
      for (const s of socks) s.destroy();
      server.close();
    },
  };
}

test('19.4 the warm connection goes silent (no reset): the timed-out statement marks it lost and the takeover goes on with a fresh one', async (t) => {
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    layout: 'per-node',
    timeouts: '{ verify_ms: 3000, lock_ms: 5000, database_ms: 1000 }',
  });
  const calls = await c.sims.fs1.answerCalls(5);
  await c.sims.fs1.crash();
  const relay = await relayTo(c.url);
  t.after(() => relay.close());
  const u = new URL(c.url);
  u.port = String(relay.port);
  const warm = await Db.connect(u.toString(), 1000, 'warm');
  t.after(() => warm.close());
  relay.blackhole();
  const r = await takeover(c.config('fs2'), { from: 'fs1', command: 'test', db: warm });
  assert.equal(r.result, 'done', r.reason);
  assert.ok(warm.lostReason, 'the silent connection is marked lost, never handed out again');
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), calls.sort());
});

test('19.5 a blackholed first database host does not hide the second: each host gets a share of the deadline', async (t) => {
  const relay = await relayTo('postgres://x@127.0.0.1:9/x');
  relay.blackhole(); // accepts, never answers
  t.after(() => relay.close());
  const u = new URL(process.env.DATABASE_URL!);
  const url = `postgres://${u.username}@127.0.0.1:${relay.port},${u.hostname}:${u.port}${u.pathname}`;
  const db = await Db.connect(url, 3000, 'test');
  t.after(() => db.close());
  assert.deepEqual(await db.query('select 1 as one'), [{ one: 1 }]);
});

test('19.6 the health loop after FreeSWITCH crashed: what it reports (and the heartbeat writes) is the failure, never the last healthy answer', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const cfg = c.config('fs1', `watch: { file: /tmp/fsha-test-watch-${process.pid}, interval_ms: 100 }`);
  const h = new LocalHealth(cfg, { who: 'test' });
  const changes: boolean[] = [];
  h.onChange = (ok) => changes.push(ok);
  const run = h.run();
  t.after(async () => {
    h.stop(false);
    await run;
  });
  for (let i = 0; i < 50 && h.lastProbe?.kind !== 'healthy'; i++) await sleep(50);
  assert.equal(h.lastProbe?.kind, 'healthy');
  await c.sims.fs1.crash();
  for (let i = 0; i < 50 && h.lastProbe?.kind === 'healthy'; i++) await sleep(50);
  assert.notEqual(h.lastProbe?.kind, 'healthy');
  assert.equal(h.lastProbe?.coreUuid, null, 'no dead core uuid reported as current');
  assert.deepEqual(changes, [true, false], 'each change told at once (the agent writes the heartbeat then)');
});

test('21.3 status names orphaned calls: a live node with calls whose instance another node holds', async (t) => {
  const { status, formatStatus } = await import('../../src/commands/status');
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs1.answerCalls(4);
  const db = await Db.connect(c.url, 3000, 'test');
  const { writeVrrp, applySchema } = await import('../../src/adapters/recovery-store');
  await applySchema(db, 'shared');
  await writeVrrp(db, 'fs1', 'VI_FS', 'BACKUP');
  await writeVrrp(db, 'fs2', 'VI_FS', 'MASTER');
  await db.close();
  const text = formatStatus(await status(c.config('fs2')));
  assert.match(text, /^WARNING: orphaned calls: fs1 is alive with 4 call\(s\) while fs2 holds VI_FS \(fs1: BACKUP\)/m);
});

test('21.2 the health loop fails FreeSWITCH on evidence: one late answer (a starved CPU) is not a failure, two in a row are', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const cfg = c.config('fs1', `watch: { file: /tmp/fsha-test-slow-${process.pid}, interval_ms: 100 }`);
  cfg.check.timeoutMs = 300;
  const h = new LocalHealth(cfg, { who: 'test' });
  const changes: boolean[] = [];
  h.onChange = (ok) => changes.push(ok);
  const run = h.run();
  t.after(async () => {
    h.stop(false);
    await run;
  });
  for (let i = 0; i < 50 && !h.healthy; i++) await sleep(50);
  assert.ok(h.healthy);
  // one late answer, then fast again
  c.sims.fs1.fault.slowMs = 500;
  for (let i = 0; i < 40 && h.lastProbe?.kind !== 'silent'; i++) await sleep(25);
  c.sims.fs1.fault.slowMs = 0;
  await sleep(800);
  assert.deepEqual(changes, [true], 'still healthy after one late answer');
  // late again and again: failed
  c.sims.fs1.fault.slowMs = 500;
  for (let i = 0; i < 60 && h.healthy; i++) await sleep(50);
  c.sims.fs1.fault.slowMs = 0;
  assert.deepEqual(changes.slice(0, 2), [true, false], 'two late answers in a row: FAILED');
});

const allRows = (c: Cluster) =>
  withClient(
    c.url,
    async (db) =>
      (
        await db.query<{ uuid: string; hostname: string; runtime_uuid: string }>(
          'select uuid, hostname, runtime_uuid from public.recovery order by uuid',
        )
      ).rows,
  );

test('23.1 (chaos: pair, adopter-crash) both FreeSWITCH of a pair down at once, the adopter dying in its recover, then both restarted: the new MASTER takes over the calls of the earlier process from the peer that answers again, every call once; the peer`s own live call is never taken', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'shared' });
  const calls = await c.sims.fs1.answerCalls(6);
  await c.sims.fs1.crash();
  await c.sims.fs2.api('simctl crash-on-recover');
  const r1 = await takeover(c.config('fs2'), { from: 'fs1', command: 'test' }).catch((e: Error) => e);
  assert.ok(r1 instanceof Error || r1.result !== 'done', 'the adopter died in its recover');
  const stranded = await allRows(c);
  assert.equal(stranded.length, 6);
  assert.ok(
    stranded.every((x) => x.hostname === 'fs2'),
    'the calls wait under fs2, rewritten for it, of the old fs1 core',
  );
  // both come back (systemd): new cores; fs1 becomes MASTER and takes over fs2, which answers again
  await c.restart('fs1');
  await c.restart('fs2');
  const r = await takeover(c.config('fs1'), { from: 'fs2', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.match(r.reason, /fs1 took over 6 call\(s\) of fs2/);
  await waitRows(c, 6);
  const after = await allRows(c);
  assert.deepEqual(after.map((x) => x.uuid).sort(), [...calls].sort());
  assert.ok(after.every((x) => x.hostname === 'fs1' && x.runtime_uuid === c.sims.fs1.coreUuid));

  // a live call of the peer's current process is never taken: fs1's recover would see it, so it is refused as a whole
  await c.sims.fs1.crash();
  await c.sims.fs2.api('simctl crash-on-recover');
  await takeover(c.config('fs2'), { from: 'fs1', command: 'test' }).catch(() => undefined);
  await c.restart('fs2');
  await c.restart('fs1');
  const live = await c.sims.fs2.answerCalls(1);
  const before = await allRows(c);
  await assert.rejects(takeover(c.config('fs1'), { from: 'fs2', command: 'test' }), /fs2|refus/);
  assert.deepEqual(await allRows(c), before, 'nothing changed');
  assert.ok(before.some((x) => x.uuid === live[0]));
});

async function waitRows(c: Cluster, n: number): Promise<void> {
  for (let i = 0; i < 50 && (await allRows(c)).length !== n; i++) await sleep(50);
}

test('23.5 (chaos: pair, drain) a FreeSWITCH in the middle of exiting resets the first probes: the takeover asks again and takes over once its socket refuses, not "alive" at the first reset', async (t) => {
  const echo = await withFarEnd(t); // the far ends: an RTP echo that records what it hears of each call
  const c = await withCluster(t, {
    nodes: ['fs1', 'fs2'],
    layout: 'per-node',
    farEndMediaPort: echo.port,
    media: { timeoutSec: 5 },
  });
  const calls = await c.sims.fs1.answerCalls(5);
  await sleep(300);
  const crashAt = Date.now();
  await c.sims.fs1.crash();
  // what the chaos run met: fsctl crash under way, the listener still accepting, each connection reset
  const port = await freePort(c.addr.fs1);
  const dying = createServer((s) => s.resetAndDestroy());
  await new Promise<void>((r) => dying.listen(port, c.addr.fs1, () => r()));
  setTimeout(() => dying.close(), 800);
  t.after(() => dying.close());
  const cfg = c.config('fs2');
  cfg.nodes.fs1.esl = { ...cfg.nodes.fs1.esl!, port };
  const r = await takeover(cfg, { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), [...calls].sort(), 'every call of fs1 on fs2');
  await sleep(500);
  for (const u of calls) {
    const a = echo.audio(u, crashAt);
    assert.ok(a?.flowing, `call ${u}: its far end hears it again, now from fs2 (gap ${a?.gapMs} ms)`);
  }
});

test('23.5b an address that keeps resetting every connection is not called dead: refused after the grace, nothing moved', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node' });
  await c.sims.fs1.answerCalls(3);
  const port = await freePort(c.addr.fs1);
  const rude = createServer((s) => s.resetAndDestroy());
  await new Promise<void>((r) => rude.listen(port, c.addr.fs1, () => r()));
  t.after(() => rude.close());
  const cfg = c.config('fs2');
  cfg.nodes.fs1.esl = { ...cfg.nodes.fs1.esl!, port };
  const before = await rowsOf(c, 'fs1');
  const e = await takeover(cfg, { from: 'fs1', command: 'test' }).then(
    () => null,
    (x: Error) => x,
  );
  assert.ok(e, 'refused');
  assert.match(e.message, /refusing to take over fs1: fs1's event socket has kept closing on us for \d+ ms/);
  assert.deepEqual(await rowsOf(c, 'fs1'), before, "fs1's rows untouched");
  assert.equal((await c.sims.fs2.ownCalls()).length, 0, 'fs2 recovered nothing');
});
