/** Issue 11: the spread planner, pure (no database, no socket), over real rows and random groupings. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupRows, judgeGroup, type RowFacts } from '../../src/core/groups';
import { assignGroups, decideAdopters, profileFor, shares } from '../../src/core/spread';
import { judgeSpread } from '../../src/core/decide';
import { rewriteMetadata } from '../../src/core/rewrite';
import { loadRows } from '../helpers/fixtures';

/** A seeded generator, so a failing case can be named and rerun. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Random rows tied into random calls: lone calls, bridged pairs (each leg naming the other), conferences. */
function randomRows(r: () => number): { rows: RowFacts[]; truth: Map<string, string> } {
  const rows: RowFacts[] = [];
  const truth = new Map<string, string>(); // uuid -> the call it belongs to (built independently of groupRows)
  const calls = 1 + Math.floor(r() * 60);
  for (let c = 0; c < calls; c++) {
    const kind = r();
    const size = kind < 0.5 ? 1 : kind < 0.8 ? 2 : 3 + Math.floor(r() * 12);
    const uuids = Array.from({ length: size }, (_, i) => `c${c}-m${i}`);
    const conf = size > 2 || (size === 2 && r() < 0.3) ? `conf-${c}` : null;
    uuids.forEach((u, i) => {
      const legs = !conf && size === 2 ? [uuids[1 - i]] : [];
      rows.push({
        ctid: `(0,${rows.length + 1})`,
        uuid: u,
        profile: 'internal',
        technology: 'sofia',
        legs,
        conference: conf,
        bytes: 100,
      });
      truth.set(u, `call-${c}`);
    });
  }
  // any order the database returns them in
  for (let i = rows.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [rows[i], rows[j]] = [rows[j], rows[i]];
  }
  return { rows, truth };
}

test("the planner never splits a call, balances within one group's size, over 500 random groupings and 1-5 adopters", () => {
  for (let seed = 1; seed <= 500; seed++) {
    const r = rng(seed);
    const { rows, truth } = randomRows(r);
    const n = 1 + Math.floor(r() * 5);
    const adopters = Array.from({ length: n }, (_, i) => ({ name: `a${i}`, weight: 1 }));
    const groups = groupRows(rows);
    const target = assignGroups(groups, adopters);
    const where = new Map<string, number>();
    groups.forEach((g, i) => {
      for (const x of g.rows) where.set(x.uuid, target[i]);
    });
    assert.equal(where.size, rows.length, `seed ${seed}: every row placed once`);
    const byCall = new Map<string, Set<number>>();
    for (const [u, call] of truth) byCall.set(call, (byCall.get(call) ?? new Set()).add(where.get(u)!));
    for (const [call, on] of byCall) assert.equal(on.size, 1, `seed ${seed}: ${call} split over ${[...on]}`);
    const load = [...shares(groups, target, adopters).values()];
    const largest = Math.max(...groups.map((g) => g.rows.length));
    assert.ok(Math.max(...load) - Math.min(...load) <= largest, `seed ${seed}: loads ${load} within ${largest}`);
  }
});

test('weights: an adopter of weight 2 takes about twice the calls of one of weight 1', () => {
  const rows: RowFacts[] = Array.from({ length: 300 }, (_, i) => ({
    ctid: `(0,${i})`,
    uuid: `u${i}`,
    profile: 'internal',
    technology: 'sofia',
    legs: [],
    conference: null,
    bytes: 1,
  }));
  const groups = groupRows(rows);
  const adopters = [
    { name: 'big', weight: 2 },
    { name: 'small', weight: 1 },
  ];
  assert.deepEqual(
    [...shares(groups, assignGroups(groups, adopters), adopters)],
    [
      ['big', 200],
      ['small', 100],
    ],
  );
});

test('the real bridged and conference rows, any order, any number of adopters: each leg with its partner, the conference whole; a held member holds back its group', () => {
  const all = [...loadRows('bridged_rows.sql'), ...loadRows('conference_rows.sql'), ...loadRows('recovery_rows.sql')];
  const facts = all.map((x, i): RowFacts => {
    const tag = (t: string) => [...x.metadata.matchAll(new RegExp(`<${t}>([^<]*)</`, 'g'))].map((m) => m[1]);
    const legs = [...new Set([...tag('signal_bond'), ...tag('bridge_to'), ...tag('originating_leg_uuid')])].filter(
      (u) => u && u !== x.uuid,
    );
    return {
      ctid: `(0,${i + 1})`,
      uuid: x.uuid,
      profile: x.profile_name,
      technology: x.technology,
      legs,
      conference: tag('conference_uuid')[0] ?? null,
      bytes: x.metadata.length,
    };
  });
  const partner = new Map<string, string>();
  for (const f of facts) for (const l of f.legs) partner.set(f.uuid, l);
  const members = loadRows('conference_rows.sql').map((m) => m.uuid);
  for (let seed = 1; seed <= 100; seed++) {
    const r = rng(seed);
    const order = [...facts].sort(() => r() - 0.5);
    const adopters = Array.from({ length: 1 + (seed % 4) }, (_, i) => ({ name: `a${i}`, weight: 1 }));
    const groups = groupRows(order);
    const target = assignGroups(groups, adopters);
    const where = new Map<string, number>();
    groups.forEach((g, i) => {
      for (const x of g.rows) where.set(x.uuid, target[i]);
    });
    for (const [a, b] of partner)
      if (where.has(b)) assert.equal(where.get(a), where.get(b), `seed ${seed}: ${a} with ${b}`);
    assert.equal(new Set(members.map((m) => where.get(m))).size, 1, `seed ${seed}: the conference on one adopter`);
  }
  const conf = groupRows(facts).find((g) => g.rows.length === 3)!;
  assert.equal(judgeGroup(conf, new Map([[conf.rows[2].uuid, 'metadata is NULL']])).held.size, 3);
});

test('which adopters take part: healthy ones; none: refused naming each; shared table with more than one: refused, saying why', () => {
  const w = new Map<string, number>();
  const go = decideAdopters(
    'fs1',
    [
      { name: 'fs2', problem: null },
      { name: 'fs3', problem: 'refusing: fs3 is not ready' },
    ],
    'per-node',
    w,
  );
  assert.equal(go.action, 'go');
  assert.deepEqual(go.action === 'go' && go.adopters.map((a) => a.name), ['fs2']);
  assert.match(go.reason, /adopters of fs1: fs2; skipped fs3 \(refusing: fs3 is not ready\)/);
  const none = decideAdopters(
    'fs1',
    [
      { name: 'fs2', problem: 'down' },
      { name: 'fs3', problem: 'gone' },
    ],
    'per-node',
    w,
  );
  assert.deepEqual(none, {
    action: 'refuse',
    reason: 'refusing to take over fs1: no adopter can take its calls (fs2: down; fs3: gone)',
  });
  assert.deepEqual(decideAdopters('fs1', [{ name: 'fs2', problem: 'its own reason' }], 'shared', w), {
    action: 'refuse',
    reason: 'its own reason',
  });
  const shared = decideAdopters(
    'fs1',
    [
      { name: 'fs2', problem: null },
      { name: 'fs3', problem: null },
    ],
    'shared',
    w,
  );
  assert.equal(shared.action, 'refuse');
  assert.match(
    shared.reason,
    /on the shared recovery table each adopter's recover takes every foreign row.*per-node layout/,
  );
  assert.equal(
    decideAdopters(
      'fs1',
      [
        { name: 'fs2', problem: null },
        { name: 'fs3', problem: 'down' },
      ],
      'shared',
      w,
    ).action,
    'go',
    'one healthy adopter is no spread',
  );
});

test("profiles: the cluster's name maps to each node's own; rows carry it in profile_name and the variables sofia recover reads", () => {
  assert.equal(profileFor('internal', {}, { internal: 'lan' }), 'lan');
  assert.equal(profileFor('lan', { internal: 'lan' }, {}), 'internal');
  assert.equal(profileFor('lan', { internal: 'lan' }, { internal: 'edge' }), 'edge');
  assert.equal(profileFor('external', { internal: 'lan' }, { internal: 'edge' }), 'external');
  const [row] = loadRows('recovery_rows.sql');
  const rw = rewriteMetadata(row.metadata, {
    fromSwitchname: 'freeswitch01',
    toSwitchname: 'freeswitch02',
    addresses: [],
    profiles: [['internal', 'lan b']],
  });
  assert.ok(rw.ok);
  if (!rw.ok) return;
  assert.match(rw.metadata, /<recovery_profile_name>lan%20b</);
  assert.doesNotMatch(rw.metadata, /<(recovery|sofia|sip)_profile_name>internal</);
  // every other byte as it was
  assert.equal(
    rw.metadata.replace(/lan%20b/g, 'internal').replace('switchname="freeswitch02"', 'switchname="freeswitch01"'),
    row.metadata,
  );
});

test('the verdict over every adopter: done, partial naming the one that fell short, failed when one took more than it was handed', () => {
  const ok = (node: string, n: number) => ({
    node,
    handed: n,
    recovered: n,
    missing: [],
    result: 'done' as const,
    reason: `${node} took over ${n} call(s) of fs1`,
  });
  assert.deepEqual(judgeSpread('fs1', [ok('fs2', 5), ok('fs3', 4)], 0), {
    result: 'done',
    reason: 'fs2, fs3 took over 9 call(s) of fs1 (fs2 5, fs3 4)',
  });
  assert.deepEqual(judgeSpread('fs1', [ok('fs2', 5)], 0), { result: 'done', reason: 'fs2 took over 5 call(s) of fs1' });
  const gone = {
    node: 'fs3',
    handed: 4,
    recovered: null,
    missing: ['a', 'b', 'c', 'd'],
    result: 'unreached' as const,
    reason: 'fs3 did not recover its share of 4 call(s)',
  };
  assert.deepEqual(judgeSpread('fs1', [ok('fs2', 5), gone], 0), {
    result: 'partial',
    reason: "fs1's 9 call(s) spread (fs2 5, fs3 4); fs3 did not recover its share of 4 call(s)",
  });
  assert.equal(judgeSpread('fs1', [gone], 0).result, 'failed', 'the only adopter could not recover');
  assert.equal(
    judgeSpread('fs1', [ok('fs2', 5), { ...ok('fs3', 4), result: 'failed', reason: 'took more' }], 0).result,
    'failed',
  );
});
