import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideHandover, type HandoverFacts } from '../../src/core/handover';

const base: HandoverFacts = {
  node: 'fs1',
  instance: 'VI_FS',
  state: 'BACKUP',
  ours: true,
  calls: 20,
  addresses: ['192.0.2.100'],
  stillHere: [],
  others: [{ node: 'fs2', state: 'MASTER', ageMs: 100, healthy: true }],
};

test('handover: calls on an address now held by the one healthy MASTER are handed to it (BACKUP and STOP)', () => {
  for (const state of ['BACKUP', 'STOP'] as const) {
    const d = decideHandover({ ...base, state });
    assert.equal(d.action, 'handover');
    assert.equal(d.action === 'handover' && d.to, 'fs2');
    assert.match(
      d.reason,
      /20 call\(s\) use 192\.0\.2\.100, which this node no longer holds; fs2 holds VI_FS: handing them over/,
    );
  }
});

test('handover: never on FAULT, another instance, no calls, or while the address is still here', () => {
  assert.equal(decideHandover({ ...base, state: 'FAULT' }).action, 'stay');
  assert.equal(decideHandover({ ...base, state: 'MASTER' }).action, 'stay');
  assert.equal(decideHandover({ ...base, ours: false }).action, 'stay');
  assert.equal(decideHandover({ ...base, calls: 0 }).action, 'stay');
  const still = decideHandover({ ...base, stillHere: ['192.0.2.100'] });
  assert.ok(still.action === 'stay' && still.level === 'info' && /continue here/.test(still.reason));
});

test('handover: no holder, two holders (split brain), a holder not serving, or calls not counted: stay, as an ERROR naming why', () => {
  const cases: Array<[Partial<HandoverFacts>, RegExp]> = [
    [{ others: [] }, /no node is MASTER of VI_FS: they wait here and continue if the address returns/],
    [{ others: [{ node: 'fs2', state: 'BACKUP', ageMs: 1, healthy: true }] }, /no node is MASTER/],
    [
      {
        others: [
          { node: 'fs2', state: 'MASTER', ageMs: 1, healthy: true },
          { node: 'fs3', state: 'MASTER', ageMs: 1, healthy: true },
        ],
      },
      /fs2 and fs3 all say MASTER/,
    ],
    [
      { others: [{ node: 'fs2', state: 'MASTER', ageMs: 1, healthy: false }] },
      /its FreeSWITCH does not serve: not handing over/,
    ],
    [{ calls: null }, /could not count/],
  ];
  for (const [f, re] of cases) {
    const d = decideHandover({ ...base, ...f });
    assert.ok(d.action === 'stay' && d.level === 'error', JSON.stringify(f));
    assert.match(d.reason, re);
  }
});
