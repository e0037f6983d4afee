import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decideDeath,
  decideStillDead,
  decideTarget,
  judgeRecovery,
  planRecover,
  decideEarlierProcess,
  type ScopeGroup,
} from '../../src/core/decide';
import { CLOSING_GRACE_MS, judgeLiveness } from '../../src/core/liveness';
import { batches, groupRows, judgeGroup, type RowFacts } from '../../src/core/groups';
import { nodeSchemas, recoveryRelationsProblem, viewComment } from '../../src/core/per-node';
import { loadRows } from '../helpers/fixtures';

const RUNNING = new Map([['internal', 'RUNNING (0)']]);
const g = (
  hostname: string,
  count: number,
  runtimeUuid = 'dead',
  profile = 'internal',
  technology = 'sofia',
): ScopeGroup => ({ hostname, count, runtimeUuid, profile, technology });
const base = { from: 'fs1', to: 'fs2', recover: 'sofia' as const, targetProfiles: RUNNING, force: false };

test("pair: the failed node's rows are recovered", () => {
  const p = planRecover({ ...base, scope: [g('fs1', 5)], incoming: [g('fs1', 5)] });
  assert.deepEqual(p, { action: 'go', reason: '5 call(s) to recover on fs2', calls: 5 });
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
  assert.equal(p.action, 'go');
});

test("shared switchname pair (FreeSWITCH docs' VIP setup): nothing to rewrite, rows recovered", () => {
  const p = planRecover({ ...base, from: 'fs', to: 'fs', scope: [g('fs', 3)], incoming: [] });
  assert.equal(p.action, 'go');
});

test('liveness: dead only when refused, or unreachable with a stale heartbeat; whatever answers is alive', () => {
  const hb = (ageMs: number, healthy = true) => ({ ageMs, healthy, coreUuid: 'c' });
  assert.equal(judgeLiveness('fs1', { kind: 'refused', detail: 'x' }, null, 3000).verdict, 'dead');
  assert.equal(judgeLiveness('fs1', { kind: 'healthy', detail: 'x' }, null, 3000).verdict, 'alive');
  for (const kind of ['unhealthy', 'auth', 'rejected', 'garbled'] as const) {
    assert.equal(judgeLiveness('fs1', { kind, detail: 'profile external absent' }, null, 3000).verdict, 'alive', kind);
    assert.equal(
      judgeLiveness('fs1', { kind, detail: 'x' }, hb(99999, false), 3000).verdict,
      'alive',
      `${kind}, even with a stale heartbeat`,
    );
  }
  const w = judgeLiveness('fs1', { kind: 'unreachable', detail: 'x' }, hb(500), 3000);
  assert.equal(w.verdict, 'wait');
  assert.equal(w.verdict === 'wait' && w.waitMs, 2500);
  assert.equal(judgeLiveness('fs1', { kind: 'unreachable', detail: 'x' }, hb(3500), 3000).verdict, 'dead');
  assert.equal(
    judgeLiveness('fs1', { kind: 'silent', detail: 'x' }, hb(100, false), 3000).verdict,
    'wait',
    'an unhealthy but fresh heartbeat proves nothing',
  );
  assert.equal(
    judgeLiveness('fs1', { kind: 'unreachable', detail: 'x' }, null, 3000).verdict,
    'unknown',
    'no heartbeat: cannot prove it',
  );
  assert.equal(judgeLiveness('fs1', { kind: 'not-configured', detail: 'x' }, null, 3000).verdict, 'unknown');
});

test('liveness (23.5): an address that closes on us is asked again (an exiting FreeSWITCH), and is alive once it has kept doing so past the grace', () => {
  const closed = { kind: 'closed' as const, detail: 'read ECONNRESET' };
  const first = judgeLiveness('fs1', closed, null, 3000);
  assert.equal(first.verdict, 'wait', 'never dead, never refused at the first reset');
  assert.equal(judgeLiveness('fs1', closed, null, 3000, { closedForMs: CLOSING_GRACE_MS - 1 }).verdict, 'wait');
  const later = judgeLiveness('fs1', closed, null, 3000, { closedForMs: CLOSING_GRACE_MS });
  assert.equal(later.verdict, 'alive', 'still closing on us after the grace: something runs there');
  assert.match(later.reason, /kept closing on us/);
  assert.notEqual(judgeLiveness('fs1', closed, { ageMs: 99999, healthy: false, coreUuid: null }, 3000).verdict, 'dead');
});

test('death: unknown goes on only through a fence or --force; alive is refused, never fenced without --force', () => {
  const unknown = { verdict: 'unknown' as const, reason: 'fs1 cannot be asked' };
  const alive = { verdict: 'alive' as const, reason: 'fs1 answers', serving: false };
  const dead = { verdict: 'dead' as const, reason: 'fs1 is down' };
  assert.equal(decideDeath('fs1', unknown, { force: false, fence: 'none' }).action, 'refuse');
  assert.deepEqual(decideDeath('fs1', unknown, { force: false, fence: 'configured' }), {
    action: 'go',
    reason: 'fs1 cannot be asked; fencing it first',
    fence: true,
    forced: false,
  });
  assert.equal(decideDeath('fs1', alive, { force: false, fence: 'configured' }).action, 'refuse');
  assert.match(
    decideDeath('fs1', alive, { force: false, fence: 'none' }).reason,
    /^refusing to take over fs1: fs1 answers/,
  );
  assert.equal(decideDeath('fs1', dead, { force: false, fence: 'none' }).action, 'go');
  assert.equal(decideDeath('fs1', alive, { force: false, fence: 'succeeded' }).action, 'go');
});

test("target: only a ready core with a uuid may recover; a missing profile there is the plan's question", () => {
  const t = { kind: 'healthy' as const, detail: 'ok', coreUuid: 'c2', ready: true, profiles: new Map() };
  assert.equal(decideTarget('fs2', t).action, 'go');
  assert.equal(
    decideTarget('fs2', { ...t, kind: 'unhealthy', detail: 'profile(s) not RUNNING: internal=absent' }).action,
    'go',
  );
  assert.match(
    decideTarget('fs2', { ...t, kind: 'unhealthy', ready: false, detail: 'core not ready' }).reason,
    /not ready to recover/,
  );
  assert.match(
    decideTarget('fs2', { ...t, kind: 'auth', ready: false, detail: 'rejected the password' }).reason,
    /cannot recover: rejected/,
  );
  assert.equal(decideTarget('fs2', { ...t, coreUuid: null }).action, 'refuse');
});

test('recover count above what was handed over is a failure, never done', () => {
  assert.equal(
    judgeRecovery({ to: 'fs2', from: 'fs1', handed: 12, recovered: 18, missing: 0, held: 0 }).result,
    'failed',
  );
  assert.equal(
    judgeRecovery({ to: 'fs2', from: 'fs1', handed: 12, recovered: 12, missing: 0, held: 3 }).result,
    'partial',
  );
  assert.equal(
    judgeRecovery({ to: 'fs2', from: 'fs1', handed: 12, recovered: 12, missing: 1, held: 0 }).result,
    'partial',
  );
  assert.deepEqual(judgeRecovery({ to: 'fs2', from: 'fs1', handed: 12, recovered: 12, missing: 0, held: 0 }), {
    result: 'done',
    reason: 'fs2 took over 12 call(s) of fs1',
  });
});

/** Light facts of real rows, as move-rows.ts reads them (the server extracts the same tags). */
function factsOf(list: ReturnType<typeof loadRows>): RowFacts[] {
  return list.map((r, i) => {
    const tag = (t: string) => [...r.metadata.matchAll(new RegExp(`<${t}>([^<]*)</`, 'g'))].map((m) => m[1]);
    const legs = [...new Set([...tag('signal_bond'), ...tag('bridge_to'), ...tag('originating_leg_uuid')])].filter(
      (u) => u && u !== r.uuid,
    );
    return {
      ctid: `(0,${i + 1})`,
      uuid: r.uuid,
      profile: r.profile_name,
      technology: r.technology,
      legs,
      conference: tag('conference_uuid')[0] ?? null,
      bytes: r.metadata.length,
    };
  });
}

/** A small seeded shuffle, so the order property is checked over many orders. */
function shuffled<T>(xs: T[], seed: number): T[] {
  const a = [...xs];
  let s = seed;
  for (let i = a.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

test('groups (real rows): bridged legs pair up, conference members stay together, lone calls alone, whatever the order and batch size', () => {
  const all = [
    ...factsOf(loadRows('recovery_rows.sql')),
    ...factsOf(loadRows('bridged_rows.sql')),
    ...factsOf(loadRows('conference_rows.sql')),
  ].map((f, i) => ({ ...f, ctid: `(0,${i + 1})` }));
  for (let seed = 1; seed <= 200; seed++) {
    const groups = groupRows(shuffled(all, seed));
    const sizes = groups.map((g) => g.rows.length).sort((a, b) => a - b);
    assert.deepEqual(sizes, [1, 1, 1, 1, 1, 2, 2, 2, 3], `seed ${seed}`);
    const conf = groups.find((g) => g.rows.length === 3)!;
    assert.match(conf.tie, /^conference a23f5b98/);
    for (const limits of [
      { rows: 1, bytes: 1 },
      { rows: 2, bytes: 1e9 },
      { rows: 500, bytes: 20000 },
    ]) {
      const cut = batches(groups, limits);
      assert.deepEqual(
        cut.flat().map((g) => g.index),
        groups.map((g) => g.index),
        'every group once, in order',
      );
      for (const b of cut) {
        const n = b.reduce((k, g) => k + g.rows.length, 0);
        assert.ok(b.length === 1 || n <= limits.rows, 'within the row limit unless one group is larger');
      }
    }
  }
});

test('a held-back member holds back its whole group, with a reason naming why', () => {
  const groups = groupRows(factsOf(loadRows('conference_rows.sql')));
  assert.equal(groups.length, 1);
  const v = judgeGroup(groups[0], new Map([[groups[0].rows[1].uuid, 'metadata does not parse']]));
  assert.equal(v.move, false);
  assert.equal(v.held.size, 3);
  assert.equal(v.held.get(groups[0].rows[1].uuid), 'metadata does not parse');
  assert.match(v.held.get(groups[0].rows[0].uuid)!, /conference .* \(3 members\) cannot move/);
  assert.equal(judgeGroup(groups[0], new Map()).move, true);
});

test('per-node schemas: injective or refused; only the expected, commented views may be named recovery', () => {
  const named = nodeSchemas([
    { name: 'a', switchname: 'fs1' },
    { name: 'b', switchname: 'fs2' },
  ]);
  assert.ok('schemas' in named);
  const expected = (named as { schemas: Map<string, string> }).schemas;
  const view = (schema: string, sw: string) => ({ schema, kind: 'v', comment: viewComment(sw) });
  const ok = [view('fsha_node_fs1', 'fs1'), view('fsha_node_fs2', 'fs2')];
  assert.equal(recoveryRelationsProblem('per-node', ok, expected, ['fs1', 'fs2']), null);
  assert.match(
    recoveryRelationsProblem('per-node', [...ok, { schema: 'fsha', kind: 'r', comment: null }], expected)!,
    /fsha\.recovery \(table\) exists beside the per-node views/,
  );
  assert.match(
    recoveryRelationsProblem('per-node', [...ok, { schema: 'public', kind: 'r', comment: null }], expected)!,
    /public\.recovery/,
  );
  assert.match(
    recoveryRelationsProblem('per-node', [view('fsha_node_fs1', 'fs9'), ok[1]], expected)!,
    /not made by fs-ha db init for switchname fs1/,
  );
  assert.match(recoveryRelationsProblem('per-node', [ok[0]], expected, ['fs1', 'fs2'])!, /view of fs2 .* is missing/);
  assert.equal(recoveryRelationsProblem('shared', [{ schema: 'public', kind: 'r', comment: null }], expected), null);
  assert.match(
    recoveryRelationsProblem('shared', [{ schema: 'public', kind: 'r', comment: null }, ok[0]], expected)!,
    /besides public\.recovery: fsha_node_fs1\.recovery \(view\)/,
  );
});

test('log levels of a refusal: a node serving its own calls is nothing to do (INFO); one that answers without serving WARNING; one fs-ha cannot judge ERROR', () => {
  const serving = decideDeath(
    'fs2',
    { verdict: 'alive', serving: true, reason: 'fs2 is alive and serving its own calls' },
    { force: false, fence: 'none' },
  );
  assert.deepEqual(serving, {
    action: 'refuse',
    reason: 'refusing to take over fs2: fs2 is alive and serving its own calls',
    level: 'info',
    nothingToDo: 'fs2 is alive and serving its own calls',
  });
  const degraded = decideDeath(
    'fs2',
    { verdict: 'alive', serving: false, reason: 'fs2 answers but is not serving' },
    { force: false, fence: 'none' },
  );
  assert.equal(degraded.action === 'refuse' && degraded.level, 'warn');
  const unknown = decideDeath(
    'fs2',
    { verdict: 'unknown', reason: 'fs2 cannot be asked' },
    { force: false, fence: 'none' },
  );
  assert.equal(unknown.action === 'refuse' && (unknown.level ?? 'error'), 'error');
});

test('under the lock, a node judged dead must still be dead: one that came back is refused', () => {
  assert.equal(decideStillDead('fs1', { verdict: 'dead', reason: 'refused' }).action, 'go');
  const back = decideStillDead('fs1', {
    verdict: 'alive',
    serving: true,
    reason: 'fs1 is alive and serving its own calls',
  });
  assert.match(back.reason, /refusing to take over fs1: it came back while the takeover started/);
  assert.equal(decideStillDead('fs1', { verdict: 'wait', waitMs: 100, reason: 'fresh heartbeat' }).action, 'refuse');
});

test('decideEarlierProcess: a node alive with core C gives up only the calls under its name of other cores; not when dead, not serving, or silent about its core', () => {
  const alive = { verdict: 'alive' as const, serving: true, reason: 'fs2 is alive' };
  const g = (runtimeUuid: string, count: number) => ({
    hostname: 'fs2',
    runtimeUuid,
    technology: 'sofia',
    profile: 'internal',
    count,
  });
  const go = decideEarlierProcess('fs2', alive, 'C', [g('C', 2), g('OLD1', 3), g('OLD2', 1)]);
  assert.equal(go?.action, 'go');
  assert.match(go!.reason, /4 call\(s\) under its name are of its earlier FreeSWITCH \(core OLD1, OLD2\)/);
  assert.equal(decideEarlierProcess('fs2', alive, 'C', [g('C', 2)]), null, 'only its live calls: nothing');
  assert.equal(decideEarlierProcess('fs2', alive, null, [g('OLD1', 3)]), null, 'no core said: no proof');
  assert.equal(decideEarlierProcess('fs2', { ...alive, serving: false }, 'C', [g('OLD1', 3)]), null);
  assert.equal(decideEarlierProcess('fs2', { verdict: 'dead', reason: 'x' }, 'C', [g('OLD1', 3)]), null);
});

test('planRecover with a live core: the failed node`s live rows stay its, so a recover on the adopter that would see them is refused', () => {
  const g = (hostname: string, runtimeUuid: string, count: number) => ({
    hostname,
    runtimeUuid,
    technology: 'sofia',
    profile: 'internal',
    count,
  });
  const base = {
    from: 'fs2',
    to: 'fs1',
    recover: 'sofia' as const,
    targetProfiles: new Map([['internal', 'RUNNING']]),
    force: false,
  };
  // shared table: the adopter's recover sees both the earlier process's rows and the live one's
  const scope = [g('fs2', 'OLD', 6), g('fs2', 'C', 1)];
  const incoming = [g('fs2', 'OLD', 6)];
  assert.equal(planRecover({ ...base, scope: [g('fs2', 'OLD', 6)], incoming, liveCore: 'C' }).action, 'go');
  const p = planRecover({ ...base, scope, incoming, liveCore: 'C' });
  assert.equal(p.action, 'refuse');
  assert.match(p.reason, /would also take the calls of fs2 \(1 row\)/);
});

test('judgeRecovery: calls that ended after their recover are neither missing nor partial; they are said', () => {
  const v = judgeRecovery({ to: 'fs2', from: 'fs1', handed: 6, recovered: 6, missing: 0, held: 0, ended: 2 });
  assert.equal(v.result, 'done');
  assert.equal(v.reason, 'fs2 took over 6 call(s) of fs1; 2 of them ended since (hung up after their recover)');
});
