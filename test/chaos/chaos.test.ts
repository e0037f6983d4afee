/**
 * The chaos run's short seeded form, inside make test: the pair, the farm and the proxy farm (Kamailio and
 * RTPEngine in front) each under a continuous call load
 * (single, bridged and conference calls, RTP both ways) take a few random faults; no call may be lost unless a
 * known limit explains it (judge.ts KNOWN_LIMITS, docs/limits.md), no invariant may break, and the cluster must
 * come back to full strength after every fault. make chaos runs the long form (docs/chaos.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS, runChaos } from './run';
import type { Topology } from './cluster';

for (const [topology, seed, rounds] of [
  ['pair', 23, 6],
  ['farm', 5, 5],
  ['proxy', 3, 4],
] as Array<[Topology, number, number]>) {
  test(`chaos (${topology}, seed ${seed}, ${rounds} faults): every call kept or explained by a known limit, no invariant broken, full strength after each fault`, async () => {
    const lines: string[] = [];
    const r = await runChaos({
      ...DEFAULTS,
      holdMinMs: 4000,
      holdMaxMs: 15000,
      rounds,
      seed,
      topology,
      out: join(mkdtempSync(join(tmpdir(), 'fsha-chaos-')), 'history.json'),
      say: (l) => lines.push(l),
    });
    process.stdout.write(`${lines.filter((l) => !l.startsWith('    ')).join('\n')}\n`);
    assert.equal(r.aborted, null, 'the cluster came back to full strength after every fault');
    assert.deepEqual(
      r.judgement.violations,
      [],
      'no call carried twice, no leg recovered twice, audit true, no row left',
    );
    assert.deepEqual(
      r.judgement.unexplained.map((v) => `call ${v.call.id}: ${v.reason}`),
      [],
      `no loss that no known limit explains\n${lines.join('\n')}`,
    );
    const atStake = r.judgement.table.reduce((s, row) => s + row.atStake, 0);
    assert.ok(atStake > 0, 'calls were at stake');
    assert.ok(r.history.calls.length > 50, 'the workload ran');
  });
}
