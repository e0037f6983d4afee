/**
 * The chaos workload against a call plane without I/O. The pair's 200-fault run left one row behind: a set-up whose
 * answer died with its node's crash, answered all the same, carried on by the takeover with nobody on the line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Rng } from './rng';
import { type CallPlane, Workload } from './workload';

test('workload: a set-up whose answer never came but that a node answered all the same is ended by the run`s end, wherever it went', async () => {
  // every set-up is answered on a, whose answer then dies with it (a crash); b's takeover carries the legs on
  const carried = new Map<string, string>();
  const plane: CallPlane = {
    accepting: () => ['a'],
    nodes: () => ['a', 'b'],
    reachable: () => true,
    api: async (node, cmd) => {
      const placed = /^simctl (call|bridged|conference) (\d+)/.exec(cmd);
      if (placed) {
        const named = /uuids=(\S+)/.exec(cmd)?.[1].split(',') ?? [];
        const n = placed[1] === 'call' ? 1 : placed[1] === 'bridged' ? 2 : 3;
        for (let i = 0; i < n; i++) carried.set(named[i] ?? randomUUID(), 'b');
        throw new Error('read ECONNRESET');
      }
      const bye = /^simctl bye (\S+)/.exec(cmd);
      if (!bye) throw new Error(`unexpected: ${cmd}`);
      const here = carried.get(bye[1]) === node;
      if (here) carried.delete(bye[1]);
      return JSON.stringify({ here, media: null, row: false, at: Date.now() });
    },
  };
  const w = new Workload(plane, new Rng(7), {
    rate: 200,
    holdMinMs: 10,
    holdMaxMs: 20,
    bridged: 0.3,
    conference: 0.2,
  });
  w.start();
  await sleep(100);
  await w.stop();
  assert.equal(w.calls.length, 0, 'none is a call the caller knows');
  assert.equal(w.refused > 5 && carried.size, 0, 'set-ups were placed, and no leg of them is carried on');
  assert.ok(w.abandoned.length > 5);
  assert.equal(
    w.abandoned.reduce((n, s) => n + s.endedOn.length, 0),
    w.abandoned.reduce((n, s) => n + s.legs.length, 0),
    'each found on b',
  );
});
