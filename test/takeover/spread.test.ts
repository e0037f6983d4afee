/**
 * Issue 11: one node's calls spread over several adopters, against a real PostgreSQL and simulated nodes
 * that apply the real recovery SQL, with the real bridged and conference rows of FreeSWITCH 1.10.12.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { takeover } from '../../src/commands/takeover';
import { configureLog } from '../../src/log';
import { withCluster, type Cluster } from '../helpers/cluster';
import { withClient } from '../helpers/pg';
import { loadRows } from '../helpers/fixtures';

configureLog({ syslog: false, stderr: false });

type Row = { hostname: string; runtime_uuid: string; uuid: string; profile_name: string; metadata: string };
const rows = (url: string) =>
  withClient(
    url,
    async (c) =>
      (
        await c.query<Row>(
          'select hostname, runtime_uuid, uuid, profile_name, metadata from fsha.recovery_base order by uuid',
        )
      ).rows,
  );

/** The real bridged and conference rows, as fs1's (its address 127.0.0.11 is the one they carry). */
async function realGroupsAsFs1(url: string): Promise<{ bridged: string[][]; conference: string[] }> {
  const legs = loadRows('bridged_rows.sql');
  const members = loadRows('conference_rows.sql');
  await withClient(url, async (db) => {
    for (const r of [...legs, ...members])
      await db.query('insert into fsha.recovery_base values ($1,$2,$3,$4,$5,$6)', [
        r.runtime_uuid,
        r.technology,
        r.profile_name,
        'fs1',
        r.uuid,
        r.metadata,
      ]);
  });
  // the fixture's own ties, read here independently of fs-ha's grouping: each leg names its partner
  const bond = (md: string) => /<signal_bond>([^<]+)</.exec(md)?.[1] ?? /<bridge_to>([^<]+)</.exec(md)?.[1];
  const bridged: string[][] = [];
  for (const l of legs) {
    const other = bond(l.metadata);
    if (other && l.uuid < other) bridged.push([l.uuid, other]);
  }
  return { bridged, conference: members.map((m) => m.uuid) };
}

/** No group split: every bridged pair and the whole conference on one node. */
function assertGroupsWhole(all: Row[], g: { bridged: string[][]; conference: string[] }): void {
  const host = new Map(all.map((r) => [r.uuid, r.hostname]));
  for (const [a, b] of g.bridged) assert.equal(host.get(a), host.get(b), `bridged legs ${a} and ${b} on one node`);
  assert.equal(new Set(g.conference.map((u) => host.get(u))).size, 1, "the conference's members on one node");
}

/** Every call exactly once, re-tracked by one of `owners` under its current core uuid. */
function assertOnceUnder(all: Row[], calls: string[], c: Cluster, owners: string[]): Map<string, number> {
  const per = new Map<string, number>();
  assert.equal(all.length, calls.length, 'no other rows');
  assert.deepEqual(all.map((r) => r.uuid).sort(), [...calls].sort(), 'every call once');
  for (const r of all) {
    assert.ok(owners.includes(r.hostname), `${r.uuid} on ${r.hostname}`);
    assert.equal(r.runtime_uuid, c.sims[r.hostname].coreUuid, `${r.uuid} re-tracked by ${r.hostname}`);
    per.set(r.hostname, (per.get(r.hostname) ?? 0) + 1);
  }
  return per;
}

for (const n of [2, 3]) {
  test(`11.1 spread over ${n} adopters (per-node layout): every adopter gets calls, bridged legs and the conference stay together, each call re-tracked once`, async (t) => {
    const nodes = ['fs1', 'fs2', 'fs3', 'fs4'].slice(0, n + 1);
    const c = await withCluster(t, { nodes, layout: 'per-node' });
    const single = await c.sims.fs1.answerCalls(30);
    await c.sims.fs1.crash();
    const groups = await realGroupsAsFs1(c.url);
    const calls = [...single, ...groups.bridged.flat(), ...groups.conference];
    const adopters = nodes.slice(1);
    const r = await takeover(c.config('fs2'), { from: 'fs1', to: adopters, command: 'test' });
    assert.equal(r.result, 'done', r.reason);
    assert.equal(r.recovered, calls.length);
    assert.deepEqual(
      r.adopters.map((a) => a.node),
      adopters,
    );
    const all = await rows(c.url);
    assertGroupsWhole(all, groups);
    const per = assertOnceUnder(all, calls, c, adopters);
    for (const a of adopters) assert.ok((per.get(a) ?? 0) > 0, `${a} got calls: ${[...per]}`);
    // balanced by call count: the busiest and the idlest differ by at most the largest group (the conference)
    const counts = adopters.map((a) => per.get(a) ?? 0);
    assert.ok(Math.max(...counts) - Math.min(...counts) <= groups.conference.length, `balanced: ${counts}`);
    for (const a of r.adopters) assert.equal(a.handed, per.get(a.node));
    const audit = await withClient(
      c.url,
      async (q) => (await q.query('select to_node, adopters from fsha.audit')).rows[0],
    );
    assert.equal(audit.to_node, adopters.join(','));
    assert.deepEqual(
      audit.adopters.map((a: { node: string; handed: number }) => [a.node, a.handed]),
      adopters.map((a) => [a, per.get(a)]),
    );
  });
}

test("11.2 one adopter unhealthy (its profile down, another one's event socket gone): skipped, the healthy one takes every call; none healthy: refused, nothing changed", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3', 'fs4'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(12);
  await c.sims.fs1.crash();
  await c.sims.fs3.api('sofia profile internal stop');
  await c.sims.fs4.refuse();
  const r = await takeover(c.config('fs2'), { from: 'fs1', to: ['fs3', 'fs4', 'fs2'], command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.deepEqual(
    r.adopters.map((a) => a.node),
    ['fs2'],
  );
  assertOnceUnder(await rows(c.url), calls, c, ['fs2']);

  const d = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  await d.sims.fs1.answerCalls(4);
  await d.sims.fs1.crash();
  await d.sims.fs2.api('sofia profile internal stop');
  await d.sims.fs3.refuse();
  const before = await rows(d.url);
  await assert.rejects(
    takeover(d.config('fs2'), { from: 'fs1', to: ['fs2', 'fs3'], command: 'test' }),
    /refusing to take over fs1: no adopter can take its calls \(fs2: refusing: profile\(s\) not RUNNING on fs2: internal \(4 calls\).*; fs3: .*cannot recover/,
  );
  assert.deepEqual(await rows(d.url), before, 'nothing changed');
});

test('11.3 an adopter dies between the plan and its recover: its share is reported and stays in the table, rewritten for it; a rerun from it completes, every call once', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(20);
  await c.sims.fs1.crash();
  await c.sims.fs3.api('simctl crash-on-recover');
  const r = await takeover(c.config('fs2'), { from: 'fs1', to: ['fs2', 'fs3'], command: 'test' });
  assert.equal(r.result, 'partial', r.reason);
  const fs3 = r.adopters.find((a) => a.node === 'fs3')!;
  assert.equal(fs3.result, 'unreached');
  assert.ok(fs3.handed > 0);
  assert.match(
    r.reason,
    new RegExp(`fs3 did not recover its share of ${fs3.handed} call\\(s\\).*stay in the recovery table under fs3`),
  );
  const mid = await rows(c.url);
  assert.equal(mid.length, calls.length, 'nothing lost');
  assert.equal(mid.filter((x) => x.hostname === 'fs3').length, fs3.handed, "fs3's share waits under fs3");
  const r2 = await takeover(c.config('fs2'), { from: 'fs3', command: 'test' });
  assert.equal(r2.result, 'done', r2.reason);
  assertOnceUnder(await rows(c.url), calls, c, ['fs2']);
});

test('11.4 an adopter whose SIP profile has another name: nodes.<n>.profiles rewrites profile_name and recovery_profile_name; without the map it is refused', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'], layout: 'per-node', profiles: { fs2: ['lan'] } });
  const calls = await c.sims.fs1.answerCalls(5);
  await c.sims.fs1.crash();
  await assert.rejects(
    takeover(c.config('fs2'), { from: 'fs1', command: 'test' }),
    /profile\(s\) not RUNNING on fs2: internal \(5 calls\)/,
  );
  const cfg = c.config('fs2');
  cfg.nodes.fs2.profiles = { internal: 'lan' };
  const r = await takeover(cfg, { from: 'fs1', command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  const all = await rows(c.url);
  assertOnceUnder(all, calls, c, ['fs2']);
  for (const x of all) {
    assert.equal(x.profile_name, 'lan');
    assert.match(x.metadata, /<recovery_profile_name>lan</);
    assert.doesNotMatch(x.metadata, /_profile_name>internal</);
  }
});

test('11.5 shared layout: a plan with more than one adopter is refused, saying why; nothing changed', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'] });
  await c.sims.fs1.answerCalls(6);
  await c.sims.fs1.crash();
  const before = await withClient(c.url, async (q) => (await q.query('select * from recovery order by uuid')).rows);
  const cfg = c.config('fs2');
  cfg.adopters = { fs1: ['fs2', 'fs3'] };
  await assert.rejects(
    takeover(cfg, { from: 'fs1', command: 'test' }),
    /refusing to spread fs1's calls over fs2, fs3: on the shared recovery table each adopter's recover takes every foreign row.*per-node layout/,
  );
  assert.deepEqual(
    await withClient(c.url, async (q) => (await q.query('select * from recovery order by uuid')).rows),
    before,
  );
});

test('11.10 fewer calls than adopters: the adopter handed nothing is not asked to recover (its standby is left as it is)', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3'], layout: 'per-node' });
  const calls = await c.sims.fs1.answerCalls(1);
  await c.sims.fs1.crash();
  await c.sims.fs3.api('sofia global standby on');
  const r = await takeover(c.config('fs2'), { from: 'fs1', to: ['fs2', 'fs3'], command: 'test' });
  assert.equal(r.result, 'done', r.reason);
  assert.deepEqual(
    r.adopters.map((a) => [a.node, a.handed]),
    [
      ['fs2', 1],
      ['fs3', 0],
    ],
  );
  assert.equal(c.sims.fs3.standby, true, 'fs3 was not asked to recover: still in standby');
  assertOnceUnder(await rows(c.url), calls, c, ['fs2']);
});

test("11.14 safety while spreading: a live fourth node and the adopters' own calls are untouched; a group with an unrewritable leg is held whole and no adopter recovers a row not rewritten for it", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2', 'fs3', 'fs4'], layout: 'per-node' });
  const own = {
    fs2: await c.sims.fs2.answerCalls(2),
    fs3: await c.sims.fs3.answerCalls(2),
    fs4: await c.sims.fs4.answerCalls(5),
  };
  const single = await c.sims.fs1.answerCalls(6);
  await c.sims.fs1.crash();
  const legs = loadRows('bridged_rows.sql');
  const broken = legs.length - 1;
  await withClient(c.url, async (db) => {
    for (const [i, r] of legs.entries()) {
      await db.query('insert into fsha.recovery_base values ($1,$2,$3,$4,$5,$6)', [
        r.runtime_uuid,
        r.technology,
        r.profile_name,
        'fs1',
        r.uuid,
        i === broken ? r.metadata.slice(0, 4000) : r.metadata,
      ]);
    }
  });
  const partner = legs.find((l) => l.uuid === /<signal_bond>([^<]+)</.exec(legs[broken].metadata)![1])!.uuid;
  const r = await takeover(c.config('fs2'), { from: 'fs1', to: ['fs2', 'fs3'], command: 'test' });
  assert.equal(r.result, 'partial', r.reason);
  assert.deepEqual(
    r.skipped.map((s) => s.uuid).sort(),
    [legs[broken].uuid, partner].sort(),
    'the broken leg and its partner held back together',
  );
  for (const a of r.adopters)
    assert.equal(a.recovered, a.handed, `${a.node} recovered exactly what was rewritten for it`);
  const all = await rows(c.url);
  const host = new Map(all.map((x) => [x.uuid, x]));
  for (const u of [legs[broken].uuid, partner])
    assert.equal(host.get(u)!.hostname, 'fs1', "held rows stay where no adopter's recover sees them");
  for (const [n, calls] of Object.entries(own)) {
    for (const u of calls) {
      assert.equal(host.get(u)!.hostname, n);
      assert.equal(host.get(u)!.runtime_uuid, c.sims[n].coreUuid, `${n}'s own call untouched`);
    }
  }
  const moved = [...single, ...legs.map((l) => l.uuid).filter((u) => u !== partner && u !== legs[broken].uuid)];
  for (const u of moved)
    assert.ok(
      ['fs2', 'fs3'].includes(host.get(u)!.hostname) &&
        host.get(u)!.runtime_uuid === c.sims[host.get(u)!.hostname].coreUuid,
    );
});
