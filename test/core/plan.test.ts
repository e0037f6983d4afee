import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeLiveness, planRecover, partnersToHoldBack, bondOf, type ScopeGroup } from '../../src/core/plan';
import { loadRows } from '../helpers/fixtures';

const RUNNING = new Map([['internal', 'RUNNING (0)']]);
const g = (hostname: string, count: number, runtimeUuid = 'dead', profile = 'internal', technology = 'sofia'): ScopeGroup => ({ hostname, count, runtimeUuid, profile, technology });
const base = { from: 'fs1', to: 'fs2', targetCoreUuid: 'core2', recover: 'sofia' as const, targetProfiles: RUNNING, force: false };

test('pair: the failed node\'s rows are recovered', () => {
  const p = planRecover({ ...base, scope: [g('fs1', 5)], incoming: [g('fs1', 5)] });
  assert.deepEqual(p, { action: 'recover', reason: '5 call(s) to recover on fs2', calls: 5 });
});

test('a third live node in the same table: refused, naming it', () => {
  const p = planRecover({ ...base, scope: [g('fs1', 5), g('fs3', 7, 'core3')], incoming: [g('fs1', 5)] });
  assert.equal(p.action, 'refuse');
  assert.match(p.reason, /fs3 \(7 rows\)/);
  assert.match(p.reason, /per-node layout/);
});

test('nothing of the failed node left (second takeover): nothing, even with strangers around', () => {
  const p = planRecover({ ...base, scope: [g('fs3', 7, 'core3'), g('fs4', 2, 'core4')], incoming: [] });
  assert.equal(p.action, 'nothing');
});

test('target profile down: refused (FreeSWITCH would drop the rows)', () => {
  const p = planRecover({ ...base, scope: [g('fs1', 3)], incoming: [g('fs1', 3)], targetProfiles: new Map() });
  assert.equal(p.action, 'refuse');
  assert.match(p.reason, /internal \(3 calls\)/);
});

test('per-node layout: the target sees only its own view; a rerun after a crash recovers the moved rows', () => {
  const p = planRecover({ ...base, scope: [g('fs2', 4, 'dead')], incoming: [] });
  assert.equal(p.action, 'recover');
});

test('shared switchname pair (FreeSWITCH docs\' VIP setup): nothing to rewrite, rows recovered', () => {
  const p = planRecover({ ...base, from: 'fs', to: 'fs', scope: [g('fs', 3)], incoming: [] });
  assert.equal(p.action, 'recover');
});

test('liveness: refused socket = dead; healthy = alive; unreachable waits for the heartbeat to age', () => {
  assert.equal(judgeLiveness('fs1', { kind: 'refused', detail: 'x' }, null, 3000).verdict, 'dead');
  assert.equal(judgeLiveness('fs1', { kind: 'healthy', detail: 'x' }, null, 3000).verdict, 'alive');
  assert.equal(judgeLiveness('fs1', { kind: 'unhealthy', detail: 'profile down' }, null, 3000).verdict, 'dead');
  assert.equal(judgeLiveness('fs1', { kind: 'auth', detail: 'x' }, null, 3000).verdict, 'alive');
  const w = judgeLiveness('fs1', { kind: 'timeout', detail: 'x' }, { ageMs: 500, healthy: true, coreUuid: 'c' }, 3000);
  assert.equal(w.verdict, 'wait');
  assert.equal(w.verdict === 'wait' && w.waitMs, 2500);
  assert.equal(judgeLiveness('fs1', { kind: 'timeout', detail: 'x' }, { ageMs: 3500, healthy: true, coreUuid: 'c' }, 3000).verdict, 'dead');
  assert.equal(judgeLiveness('fs1', { kind: 'timeout', detail: 'x' }, { ageMs: 100, healthy: false, coreUuid: 'c' }, 3000).verdict, 'dead');
});

test('bridged legs (real rows): signal_bond pairs them; a leg whose partner is held back is held back too', () => {
  const rows = loadRows('bridged_rows.sql');
  const bonds = rows.map((r) => ({ uuid: r.uuid, bond: bondOf(r.metadata) }));
  for (const b of bonds) assert.ok(b.bond && rows.some((r) => r.uuid === b.bond), 'every leg names its partner');
  const held = partnersToHoldBack(bonds, new Set([rows[0].uuid]));
  assert.deepEqual([...held], [rows[1].uuid]);
});
