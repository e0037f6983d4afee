/**
 * The chaos run's cluster watch (ChaosCluster: which nodes take calls, who holds the VIP, every 250 ms) must end
 * with the run: a look still in flight when stop() tears the lab down must not then ask the torn-down namespaces
 * (CI saw `ip -n … addr show` fail after the pair's chaos test ended: an unhandled rejection).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Fabric, MGMT_DB, cleanStale, installMissing, prerequisites } from '../e2e/lab';
import { ChaosCluster } from './cluster';
import { ChaosDatabase } from './database';

test('the chaos cluster watch ends with the run: a look in flight at stop() asks no torn-down namespace', async () => {
  installMissing();
  const missing = prerequisites();
  if (missing) throw new Error(`cannot run: ${missing}`);
  cleanStale();
  const fabric = new Fabric();
  await fabric.start();
  let db: ChaosDatabase | null = null;
  const rejections: string[] = [];
  const heard = (e: unknown) => rejections.push(String(e));
  process.on('unhandledRejection', heard);
  try {
    db = await ChaosDatabase.start({ listen: MGMT_DB, netns: fabric.ns });
    const c = new ChaosCluster(fabric, db, 'pair');
    try {
      await c.start();
      // freeswitch01's simulator stops answering (SIGSTOP, not the cluster's freeze: the watch still asks it),
      // so the watch's next look waits on it …
      const pid = c.lab.sims.freeswitch01.child.pid;
      assert.ok(pid, 'freeswitch01 runs');
      process.kill(pid, 'SIGSTOP');
      await sleep(800);
    } finally {
      // … while the run ends
      c.stop();
    }
    await sleep(6000); // the look's question to freeswitch01 has its answer or its deadline (5 s) by now
  } finally {
    process.off('unhandledRejection', heard);
    db?.stop();
    fabric.stop();
  }
  assert.deepEqual(rejections, [], 'nothing ran against the torn-down lab');
});
