import { test } from 'node:test';
import assert from 'node:assert/strict';
import { firedAfter, startTicks } from '../../src/core/fire-order';

test('startTicks: field 22 of /proc/pid/stat, also with spaces and parentheses in the command name', () => {
  const rest = 'R 4024 4024 10792 0 -1 4194304 128 0 0 0 0 0 0 0 20 0 1 0 547886 3133440 358';
  assert.equal(startTicks(`4090 (cat) ${rest}`), 547886);
  assert.equal(startTicks(`4090 (no tify) (x) ${rest}`), 547886);
  assert.equal(startTicks('garbage'), null);
});

test('firedAfter: the later fork tick, then the higher pid, in one boot; another boot is always older', () => {
  const k = (ticks: number, pid: number, boot = 'b1', wallMs = 0) => ({ boot, ticks, pid, wallMs });
  assert.equal(firedAfter(k(101, 5), k(100, 9)), true);
  assert.equal(firedAfter(k(100, 9), k(101, 5)), false);
  assert.equal(firedAfter(k(100, 10), k(100, 9)), true, 'same tick: fork order is pid order');
  assert.equal(firedAfter(k(100, 9), k(100, 9)), false, 'itself');
  // start-up jitter does not matter: Node's own start time is only the fallback without /proc
  assert.equal(firedAfter(k(100, 10, 'b1', 1), k(100, 9, 'b1', 999)), true);
  assert.equal(firedAfter(k(5, 1, 'b2'), k(900, 50, 'b1')), true, 'after a reboot');
  assert.equal(firedAfter(k(-1, 1, '', 20), k(-1, 2, '', 10)), true, 'no /proc: wall clock');
});
