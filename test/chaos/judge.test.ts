/** The chaos checker, without I/O: a history in, verdicts and a table out. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type CallRec,
  type FaultRec,
  type History,
  calmSilences,
  faultAt,
  formatTable,
  judge,
  lossReason,
  zombies,
} from './judge';

const call = (id: number, legs: string[], end: CallRec['end'], answeredAt = 0): CallRec => ({
  id,
  kind: legs.length > 1 ? 'bridged' : 'single',
  legs,
  node: 'a',
  answeredAt,
  holdMs: 10000,
  end,
});
const leg = (uuid: string, holders: string[], rxAgoMs: number | null = 10) => ({ uuid, holders, rxAgoMs });
const heard = (last: number, gaps: Array<[number, number]> = []) => ({ first: 0, last, packets: 100, gaps, from: 'x' });

function history(calls: CallRec[], faults: FaultRec[], audio: History['audio'], o: Partial<History> = {}): History {
  return {
    topology: 'farm',
    calls,
    faults,
    audio,
    recoveries: [],
    audits: [],
    graceMs: 200,
    flowingMs: 1000,
    rowsLeft: [],
    ...o,
  };
}

test('judge: a call is kept only when one live node carried each leg at its BYE, heard and heard by its far end', () => {
  const audio = { u1: heard(9990), u2: heard(5000), u3: heard(9990), u4: heard(9990) };
  const at = 10000;
  assert.equal(lossReason(call(1, ['u1'], { at, legs: [leg('u1', ['b'])] }), audio, 1000), null);
  assert.match(lossReason(call(2, ['u1'], { at, legs: [leg('u1', [])] }), audio, 1000)!, /no live node carried it/);
  assert.match(lossReason(call(3, ['u1'], { at, legs: [leg('u1', ['a', 'b'])] }), audio, 1000)!, /carried by a and b/);
  assert.match(lossReason(call(4, ['u1'], { at, legs: [leg('u1', ['b'], 4000)] }), audio, 1000)!, /deaf/);
  const fresh = { ...leg('u1', ['b'], null), boundAgoMs: 5 };
  assert.equal(lossReason(call(8, ['u1'], { at, legs: [fresh] }), audio, 1000), null, 'recovered just before its BYE');
  const stale = { ...leg('u1', ['b'], null), boundAgoMs: 3000 };
  assert.match(lossReason(call(9, ['u1'], { at, legs: [stale] }), audio, 1000)!, /nothing for the 3000 ms since/);
  assert.match(lossReason(call(5, ['u2'], { at, legs: [leg('u2', ['b'])] }), audio, 1000)!, /last heard it 5000 ms/);
  assert.match(
    lossReason(call(6, ['u3', 'u4'], { at, legs: [leg('u3', ['b']), leg('u4', [])] }), audio, 1000)!,
    /u4: no live node/,
  );
  assert.match(lossReason(call(7, ['u1'], undefined), audio, 1000)!, /never got its BYE/);
});

test('judge: losses charged to the fault before them; at stake only on the target and past the grace; bystanders and doubles found', () => {
  const f = (n: number, kind: string, target: string, at: number, carriers: Record<string, string>): FaultRec => ({
    n,
    kind,
    target,
    detail: '',
    at,
    endAt: at + 3000,
    carriers,
  });
  const faults = [
    f(1, 'crash', 'a', 1000, { k1: 'a', l1: 'a', y1: 'a', b1: 'b' }),
    f(2, 'freeze', 'b', 20000, { b1: 'b' }),
  ];
  const calls = [
    call(1, ['k1'], { at: 9000, legs: [leg('k1', ['b'])] }), // kept across the crash
    call(2, ['l1'], { at: 9000, legs: [leg('l1', [])] }), // lost in the crash
    call(3, ['y1'], { at: 9000, legs: [leg('y1', ['b'])] }, 900), // answered 100 ms before: within the grace
    call(4, ['b1'], { at: 25000, legs: [leg('b1', ['b'])] }), // on b: a bystander of the crash, at stake in the freeze
  ];
  const audio = {
    k1: heard(8990, [[1000, 1150]]),
    l1: heard(995),
    y1: heard(8990),
    b1: heard(24990, [[1000, 2500]]),
  };
  const recoveries = [
    { node: 'b', at: 1100, uuids: ['k1'] },
    { node: 'c', at: 1200, uuids: ['k1'] },
  ];
  const audits = [{ at: 1050, command: 'notify MASTER', from: 'a', to: 'b', result: 'done', adopted: 1 }];
  const crashes = [{ node: 'a', at: 1000 }];
  const j = judge(history(calls, faults, audio, { recoveries, crashes, audits, rowsLeft: ['public.recovery: b l1'] }));
  const crash = j.table.find((r) => r.kind === 'crash')!;
  assert.deepEqual(
    {
      atStake: crash.atStake,
      kept: crash.kept,
      lost: crash.lost,
      gap: crash.gapMaxMs,
      bystanders: crash.bystandersHit,
    },
    { atStake: 2, kept: 1, lost: 1, gap: 150, bystanders: 1 },
  );
  assert.equal(j.table.find((r) => r.kind === 'freeze')!.atStake, 1);
  assert.deepEqual(
    j.losses.map((v) => [v.call.id, v.fault]),
    [[2, 0]],
  );
  assert.equal(j.unexplained.length, 1, 'a crash loss is no known limit');
  // k1: a crashed, b recovered it (once); then c recovered it while b's FreeSWITCH still ran: a double
  assert.deepEqual(
    j.violations.filter((v) => /k1 recovered/.test(v)).map((v) => v.replace(/ at \S+/, '')),
    ["leg k1 recovered on c while b's FreeSWITCH that carried it still ran"],
  );
  assert.ok(j.violations.some((v) => /audit says 1 leg\(s\) recovered, FreeSWITCH recovered 2/.test(v)));
  assert.ok(j.violations.some((v) => /row left behind/.test(v)));
  assert.equal(faultAt(faults, 500), null);
  assert.equal(faultAt(faults, 19950), 1, 'a last packet just before the fault is charged to it');
  assert.match(formatTable(j.table), /\| crash +\| 1 +\| 2 +\| 1 +\| 1 +\|/);
});

test('judge: audio flowing when the BYE was sent or when it was handled; a BYE that met its leg in its takeover is kept only if that recover followed (or had just bound it), its silence in the gap', () => {
  const at = 10000;
  // frozen node: the BYE sent at 10000 (into the freeze), handled at the thaw+1 s (12500), audio back from 12000
  const thawed = { ...leg('u1', ['b'], 20), answeredAfterMs: 2500 };
  assert.equal(lossReason(call(1, ['u1'], { at, legs: [thawed] }), { u1: heard(12490) }, 1000), null);
  // the BYE sent just before a freeze, handled at the thaw 7 s later: the audio flowed when it was sent
  const inFlight = { ...leg('u1', ['b'], 7000), answeredAfterMs: 7050 };
  assert.equal(lossReason(call(1, ['u1'], { at, legs: [inFlight] }), { u1: heard(10020) }, 1000), null);
  // ... but a call silent at both moments is deaf
  const deaf = { ...leg('u1', ['b'], 7000), answeredAfterMs: 4000 };
  assert.match(lossReason(call(1, ['u1'], { at, legs: [deaf] }), { u1: heard(7000) }, 1000)!, /deaf/);
  // handled late (its node's database statement waited), the far end heard it until the BYE was sent
  const late = { ...leg('u1', ['b'], 24), answeredAfterMs: 1877 };
  assert.equal(lossReason(call(1, ['u1'], { at, legs: [late] }), { u1: heard(10500) }, 1000), null);
  // the BYE met the leg between its rows' move and its recover on b
  const moving = { ...leg('u2', ['b'], null), answeredAfterMs: 500, inTakeover: true };
  const c = call(2, ['u2'], { at, legs: [moving] });
  const audio = { u2: heard(8000) };
  const recovered = { recoveries: [{ node: 'b', at: 11000, uuids: [] }] };
  assert.equal(lossReason(c, audio, 1000, recovered), null);
  assert.match(lossReason(c, audio, 1000)!, /found only its row on b, and no recover there followed/);
  assert.match(
    lossReason(c, audio, 1000, { recoveries: [{ node: 'c', at: 11000, uuids: [] }] })!,
    /no recover there followed/,
    'a recover elsewhere is not its',
  );
  // the BYE met the channel its recover had bound 1 ms before: no round trip yet
  const bound = { ...leg('u2', ['b'], null), answeredAfterMs: 500, boundAgoMs: 1 };
  assert.equal(lossReason(call(3, ['u2'], { at, legs: [bound] }), audio, 1000), null);
  const f: FaultRec = { n: 1, kind: 'crash', target: 'a', detail: '', at: 8000, endAt: 12000, carriers: { u2: 'a' } };
  const j = judge(history([c], [f], audio, recovered));
  assert.deepEqual(j.losses, []);
  assert.equal(j.table[0].gapMaxMs, 2500, 'from its last packet (8000) to the handled BYE (10500)');
});

test('judge: a BYE a node had (bye-heard) when it crashed before answering ended the call as asked; without that evidence, no holder is a loss', () => {
  const c = call(1, ['u1'], { at: 10000, legs: [leg('u1', [])] });
  const audio = { u1: heard(10700) };
  const byesHeard = [{ node: 'a', uuid: 'u1', at: 10010 }];
  assert.equal(lossReason(c, audio, 1000, { byesHeard, crashes: [{ node: 'a', at: 10720 }] }), null);
  assert.match(lossReason(c, audio, 1000, { byesHeard })!, /no live node carried it/, 'its node did not end');
  assert.match(
    lossReason(c, audio, 1000, { byesHeard, crashes: [{ node: 'b', at: 10720 }] })!,
    /no live node carried it/,
    'another node ended',
  );
  assert.match(
    lossReason(c, { u1: heard(5000) }, 1000, { byesHeard, crashes: [{ node: 'a', at: 10720 }] })!,
    /no live/,
  );
});

test('judge: the audit is held to what was recovered: a partial takeover handed rows to an adopter that died, adopted but not recovered', () => {
  const f: FaultRec = { n: 1, kind: 'adopter-crash', target: 'c', detail: '', at: 1000, endAt: 5000, carriers: {} };
  const recoveries = [{ node: 'b', at: 1500, uuids: ['x1', 'x2'] }];
  const partial = { at: 1200, command: 'notify MASTER', from: 'c', to: 'a,b', result: 'partial', adopted: 4 };
  const ok = judge(history([], [f], {}, { recoveries, audits: [{ ...partial, recovered: 2 }] }));
  assert.deepEqual(ok.violations, []);
  const wrong = judge(history([], [f], {}, { recoveries, audits: [{ ...partial, recovered: 3 }] }));
  assert.match(wrong.violations.join('\n'), /audit says 3 leg\(s\) recovered, FreeSWITCH recovered 2/);
});

test('judge: a leg recovered by a recover that began after its BYE was handled is a zombie; the adopter an adopter-crash hit has its calls at stake, not bystanders; the audit is held to the run`s totals', () => {
  const c = call(1, ['z1'], { at: 10000, legs: [{ ...leg('z1', ['b']), answeredAfterMs: 100 }] });
  const during = { node: 'b', at: 10400, uuids: ['z1'], firstLegAt: 9800 }; // the recover the BYE met
  const after = { node: 'c', at: 15000, uuids: ['z1'], firstLegAt: 14900 };
  assert.deepEqual(zombies({ calls: [c], recoveries: [during] }), []);
  assert.match(
    zombies({ calls: [c], recoveries: [during, after] }).join('\n'),
    /leg z1 of call 1 recovered on c .* zombie/,
  );
  const f: FaultRec = {
    n: 1,
    kind: 'adopter-crash',
    target: 'a',
    alsoHit: ['b'],
    detail: '',
    at: 1000,
    endAt: 5000,
    carriers: { a1: 'a', b1: 'b' },
  };
  const calls = [
    call(2, ['a1'], { at: 9000, legs: [leg('a1', ['c'])] }),
    call(3, ['b1'], { at: 9000, legs: [leg('b1', ['c'])] }),
  ];
  const audio = { a1: heard(8990, [[1000, 2400]]), b1: heard(8990, [[1100, 2500]]) };
  const t = judge(history(calls, [f], audio)).table[0];
  assert.deepEqual([t.atStake, t.kept, t.bystandersHit], [2, 2, 0]);
  // a takeover audited in one window, its recover in the next: the totals match
  const g: FaultRec = { ...f, n: 2, at: 6000, endAt: 9000, alsoHit: [], carriers: {} };
  const split = history(
    [],
    [f, g],
    {},
    {
      audits: [{ at: 4000, command: 'notify MASTER', from: 'a', to: 'b', result: 'done', adopted: 3, recovered: 3 }],
      recoveries: [{ node: 'b', at: 6500, uuids: ['x', 'y', 'z'] }],
    },
  );
  assert.deepEqual(judge(split).violations, []);
});

test('judge: a set-up whose answer never came is held to exactly once from when it was asked, and a row of it left is still a row left', () => {
  const abandoned = [{ kind: 'single' as const, legs: ['o1'], node: 'a', at: 1000, endedOn: ['o1 on b'] }];
  const recoveries = [
    { node: 'b', at: 5000, uuids: ['o1'] }, // a crashed with it at 4000: b's takeover carries it
    { node: 'c', at: 6000, uuids: ['o1'] }, // while b still ran: a double
  ];
  const crashes = [{ node: 'a', at: 4000 }];
  const j = judge(history([], [], {}, { abandoned, recoveries, crashes, rowsLeft: ['public.recovery: b o1'] }));
  assert.deepEqual(
    j.violations.map((v) => v.replace(/ at \S+/, '')),
    [
      "leg o1 recovered on c while b's FreeSWITCH that carried it still ran",
      'row left behind once every call had ended: public.recovery: b o1',
    ],
  );
  assert.deepEqual(j.losses, [], 'not a call the caller knew: no loss');
  const clean = judge(history([], [], {}, { abandoned, recoveries: recoveries.slice(0, 1), crashes }));
  assert.deepEqual(clean.violations, []);
});

test('judge: a call still deaf once the cluster is back at full strength is a violation (a takeover that failed and was not retried), unless a known limit began its silence', () => {
  const f = (n: number, kind: string, at: number, endAt: number): FaultRec => ({
    n,
    kind,
    target: 'a',
    detail: '',
    at,
    endAt,
    carriers: {},
  });
  const calls = [
    call(1, ['d1'], { at: 40000, legs: [leg('d1', ['b'])] }),
    call(2, ['k1'], { at: 40000, legs: [leg('k1', ['b'])] }),
  ];
  // d1 silent from the freeze (1000) to 20000, full strength at 9000; k1 back 500 ms after full strength
  const audio = { d1: heard(39990, [[1010, 20000]]), k1: heard(39990, [[1010, 9500]]) };
  const j = judge(history(calls, [f(1, 'freeze', 1000, 9000)], audio));
  assert.deepEqual(
    j.violations.map((v) => v.replace(/ from \S+,/, ',')),
    [
      'call 1 leg d1: deaf 18990 ms, 11000 ms of it after the cluster was back at full strength from fault 1 (freeze a)',
    ],
  );
  assert.deepEqual(judge(history(calls, [f(1, 'agent-kill', 1000, 9000)], audio)).violations, [], 'a known limit');
  // a silence that begins in the calm after full strength is no fault's: counted, not judged
  const calm = { d1: heard(39990, [[12000, 12800]]), k1: heard(39990, [[12000, 15000]]) };
  const h = history(calls, [f(1, 'crash', 1000, 9000)], calm);
  assert.deepEqual(judge(h).violations, []);
  assert.deepEqual(calmSilences(h), [3000]);
});
