/** Issue 11: the drain's rules, pure. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideSource, drainTargets, judgeGone, settling, sharedAddresses } from '../../src/core/drain';

test("drain: adopters from --to, else adopters.<from>, else this node, else the pair's other node; a farm must name them", () => {
  const nodes = ['a', 'b', 'c'];
  assert.deepEqual(drainTargets('a', 'b, c', {}, 'b', nodes), { targets: ['b', 'c'] });
  assert.deepEqual(drainTargets('a', undefined, { a: ['c', 'b'] }, 'b', nodes), { targets: ['c', 'b'] });
  assert.deepEqual(drainTargets('a', undefined, {}, 'b', nodes), { targets: ['b'] });
  assert.deepEqual(drainTargets('a', undefined, {}, 'a', ['a', 'b']), { targets: ['b'] });
  assert.match(
    (drainTargets('a', undefined, {}, 'a', nodes) as { problem: string }).problem,
    /name the adopters with --to/,
  );
});

test('drain: only a running source; ringing = channels without a row; gone only when nothing answers; a shared VIP leaves the takeover to keepalived', () => {
  assert.deepEqual(decideSource('a', 'healthy', ''), { action: 'go' });
  assert.match(
    (decideSource('a', 'refused', 'x') as { reason: string }).reason,
    /not running .*fs-ha takeover --from a/,
  );
  assert.match((decideSource('a', 'auth', 'x') as { reason: string }).reason, /cannot talk to its FreeSWITCH/);
  assert.equal(settling(12, 10), 2);
  assert.equal(settling(9, 10), 0, 'a hangup between the two counts is no negative');
  assert.equal(judgeGone('a', 'refused', '').gone, true);
  assert.equal(judgeGone('a', 'unreachable', '').gone, true);
  for (const k of ['healthy', 'unhealthy', 'silent', 'garbled', 'auth'] as const)
    assert.equal(judgeGone('a', k, '').gone, false, k);
  assert.deepEqual(sharedAddresses(['192.0.2.100'], [['192.0.2.100']]), ['192.0.2.100'], 'the pair: one VIP');
  assert.deepEqual(sharedAddresses(['192.0.2.11'], [['192.0.2.12'], ['192.0.2.13']]), [], 'the farm: each its own');
});
