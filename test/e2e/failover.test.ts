/**
 * Failover end to end: real keepalived (VRRP between network namespaces), the built dist/fs-ha as its
 * check and notify scripts, the simulator as each node's FreeSWITCH, one real PostgreSQL, and sipp as
 * the far end that must receive every recovered call's re-INVITE. The keepalived and fs-ha files are
 * keepalived/pair/* and keepalived/farm/*, with only their parameter blocks and paths set (lab.ts).
 * Every scenario asserts that each tracked call ends up owned by exactly one live node. The lab is sealed
 * (net.ts): the first test checks that the root namespace has no address or route into it, the last one
 * that tcpdump on every root interface saw not one of its packets during all the scenarios.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { caughtUp, createDatabase, startReplicaPair, withClient } from '../helpers/pg';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import {
  Fabric,
  Lab,
  MGMT_DB,
  PREFIX,
  VIP,
  cleanStale,
  installMissing,
  prerequisites,
  sh,
  waitFor,
  type LabOptions,
} from './lab';
import { RootCapture } from './capture';
import { rootExposure, host, MGMT, SERVICE } from './net';
import { formatTimeline, timeline } from './timeline';
import { assertAudio, formatAudio } from './audio';
import type { ChannelMedia } from '../sim/media';

const fabric = new Fabric();
const capture = new RootCapture();
const ipForward = () => readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
let ipForwardBefore = '';
let captured: string[] = [];

before(async () => {
  installMissing();
  const missing = prerequisites();
  if (missing) throw new Error(`end-to-end tests cannot run: ${missing}`);
  cleanStale();
  ipForwardBefore = ipForward();
  captured = await capture.start(); // before the lab exists: its whole life is watched
  await fabric.start();
});
after(() => {
  capture.kill();
  fabric.stop();
});

/** Run a scenario in a fresh lab; always torn down, with every log printed when it fails. */
async function scenario(o: LabOptions, body: (lab: Lab, url: string) => Promise<void>, db?: string): Promise<void> {
  const url = db ?? (await createDatabase('e2e'));
  const lab = new Lab(fabric, url, o);
  try {
    lab.build();
    await body(lab, url);
  } catch (e) {
    process.stderr.write(`\n${lab.dump()}\n`);
    throw e;
  } finally {
    lab.teardown();
  }
}

type Row = { uuid: string; hostname: string; runtime_uuid: string };
async function rows(url: string, table = 'public.recovery'): Promise<Row[]> {
  return withClient(url, async (c) => (await c.query<Row>(`select uuid, hostname, runtime_uuid from ${table}`)).rows);
}

/** Each expected call is tracked exactly once, by a live node under its current core uuid. */
async function assertOwnedOnce(
  url: string,
  calls: string[],
  owners: Record<string, string>,
  table?: string,
): Promise<Map<string, string>> {
  const all = await rows(url, table);
  const by = new Map<string, Row[]>();
  for (const r of all) by.set(r.uuid, [...(by.get(r.uuid) ?? []), r]);
  const ownerOf = new Map<string, string>();
  for (const c of calls) {
    const rs = by.get(c) ?? [];
    assert.equal(rs.length, 1, `call ${c} is tracked ${rs.length} times`);
    assert.ok(owners[rs[0].hostname], `call ${c} is tracked by ${rs[0].hostname}, which is not a live node`);
    assert.equal(
      rs[0].runtime_uuid,
      owners[rs[0].hostname],
      `call ${c} is not under ${rs[0].hostname}'s current core uuid`,
    );
    ownerOf.set(c, rs[0].hostname);
  }
  assert.equal(all.length, calls.length, 'no other rows');
  return ownerOf;
}

const PAIR = (o: Partial<LabOptions> = {}): LabOptions => ({
  topology: 'pair',
  nodes: ['freeswitch01', 'freeswitch02'],
  simAddress: () => VIP,
  ...o,
});

const startPair = (lab: Lab) => lab.startPair();
const placeCalls = (lab: Lab, node: string, n: number) => lab.placeCalls(node, n);

test('0. the lab is sealed: no address of it and no route into it in the root namespace; no way out of its namespaces', async () => {
  await scenario(PAIR(), async (lab) => {
    await startPair(lab);
    assert.deepEqual(rootExposure(), [], 'the root namespace reaches nothing of the lab');
    const rootLinks = RootCapture.rootInterfaces().map((i) => i.name);
    assert.ok(!rootLinks.some((l) => l.startsWith(PREFIX)), `no lab interface in the root namespace: ${rootLinks}`);
    for (const ns of [lab.fabric.ns, ...Object.values(lab.nodes).map((n) => n.ns)]) {
      const routes = sh('ip', ['-n', ns, '-4', 'route', 'show', 'table', 'all']);
      assert.ok(!/^default /m.test(routes), `${ns} has no default route: ${routes}`);
    }
    assert.equal(ipForward(), ipForwardBefore, 'ip_forward of the root namespace untouched');
  });
});

for (const variant of ['agent', 'scripts'] as const)
  test(`1${variant === 'agent' ? '' : 's'}. pair with VIP (${variant === 'agent' ? 'the agent hears keepalived' : 'the scripts-only variant'}): 50 calls, FreeSWITCH on the master crashes; the backup takes the VIP and every call, the old node goes FAULT`, async () => {
    await scenario(PAIR({ variant }), async (lab, url) => {
      await startPair(lab);
      const errorLines = () =>
        ['freeswitch01', 'freeswitch02'].flatMap((n) =>
          lab
            .fshaLog(n)
            .filter((l) => /: ERROR /.test(l.text))
            .map((l) => `${n}: ${l.text}`),
        );
      assert.deepEqual(errorLines(), [], 'a normal start logs no ERROR (issue 15)');
      const calls = await placeCalls(lab, 'freeswitch01', 50);
      const sipp = await lab.startSipp(50);
      await new Promise((r) => setTimeout(r, 1500)); // calls are minutes old when a node fails: the standby has prepared them
      const crash = await lab.crash('freeswitch01');
      await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 20000);
      await waitFor(
        'the takeover on freeswitch02',
        () => lab.fshaLog('freeswitch02').some((l) => /takeover done/.test(l.text)),
        20000,
      );
      await lab.waitState('freeswitch01', 'VI_FS', 'FAULT', 10000);
      assert.ok(lab.hasVip('freeswitch02'), 'freeswitch02 holds the VIP');
      assert.ok(!lab.hasVip('freeswitch01'), 'freeswitch01 gave the VIP up');
      await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
      const s2 = await lab.simState('freeswitch02');
      assert.equal(s2.standby, false, 'the new master answers new calls');
      await waitFor('sipp: 50 re-INVITEs answered', () => sipp.exitCode !== null, 30000);
      assert.equal(sipp.exitCode, 0, 'sipp saw every call picked up');
      const t = timeline(lab, { failed: 'freeswitch01', adopter: 'freeswitch02', instance: 'VI_FS', crash });
      process.stdout.write(formatTimeline(`pair, 50 calls, VRRPv3 advert 0.1, ${variant}`, t) + '\n');
      await withClient(url, async (c) => {
        const a = (await c.query("select timings from fsha.audit where result = 'done'")).rows[0];
        process.stdout.write(`  takeover steps (ms): ${JSON.stringify(a.timings)}\n`);
        // fs-ha's own share of the silence: keepalived's MASTER heard -> every recover sent
        assert.equal(typeof a.timings.critical_path_ms, 'number', 'the critical path is measured');
        process.stdout.write(
          `  fs-ha's critical path (MASTER heard -> recover sent): ${a.timings.critical_path_ms} ms, ${a.timings.prepared_rows ?? 0} row(s) prepared\n`,
        );
        if (variant === 'agent') assert.equal(a.timings.prepared_rows, 50, 'the agent had every call prepared');
      });
      assert.equal(t.reinvites, 50);
      process.stdout.write(
        formatAudio(await assertAudio(lab, { since: crash, moved: calls, nodes: ['freeswitch02'] })) + '\n',
      );
      // the old node's FreeSWITCH comes back: keepalived leaves FAULT for BACKUP and its profiles go to standby
      await lab.startSim('freeswitch01');
      await lab.waitState('freeswitch01', 'VI_FS', 'BACKUP', 20000);
      await waitFor('freeswitch01 in standby', async () => (await lab.simState('freeswitch01')).standby, 10000);
      assert.deepEqual(errorLines(), [], "a normal failover (and the old node's return) logs no ERROR (issue 15)");
      assert.ok(
        lab
          .fshaLog('freeswitch01')
          .some((l) => /WARN (notify-fault|agent): notify FAULT: FreeSWITCH on freeswitch01 is down/.test(l.text)),
        'the crashed node says once, as a WARNING, that its FreeSWITCH is down',
      );
    });
  });

test('2. pair, the master host dies entirely (keepalived and FreeSWITCH gone, links down): the backup adopts every call', async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 20);
    const sipp = await lab.startSipp(20);
    const ns = lab.nsOf('freeswitch01');
    const crash = lab.killHost('freeswitch01');
    // a dead host answers nothing: no RST, no ARP
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'down']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth1', 'down']);
    await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 20000);
    await waitFor(
      'the takeover on freeswitch02',
      () => lab.fshaLog('freeswitch02').some((l) => /takeover done/.test(l.text)),
      30000,
    );
    assert.ok(lab.hasVip('freeswitch02'));
    await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
    await waitFor('sipp: 20 re-INVITEs answered', () => sipp.exitCode !== null, 30000);
    assert.equal(sipp.exitCode, 0);
    // the event socket was unreachable, so the heartbeat decided: it had to go stale first
    assert.ok(
      lab.fshaLog('freeswitch02').some((l) => /heartbeat/.test(l.text)),
      'liveness judged by the heartbeat',
    );
    process.stdout.write(
      formatTimeline(
        'pair, host dead, 20 calls',
        timeline(lab, { failed: 'freeswitch01', adopter: 'freeswitch02', instance: 'VI_FS', crash }),
      ) + '\n',
    );
    process.stdout.write(
      formatAudio(await assertAudio(lab, { since: crash, moved: calls, nodes: ['freeswitch02'] })) + '\n',
    );
  });
});

test('3. split brain: the VRRP link is cut while both FreeSWITCH are healthy; both become MASTER, no call moves', async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 10);
    const core1 = lab.coreUuid('freeswitch01');
    const from = lab.keepalived.freeswitch02.lines.length;
    const cut = Date.now();
    // out of the bridge, link still up: VRRP adverts are lost both ways, nothing else changes on the node
    const s1 = lab.port('freeswitch01', 's');
    lab.fabric.ip(['link', 'set', s1, 'nomaster']);
    await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 20000, from);
    const master2 = await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 20000, from);
    const refused = await waitFor(
      'freeswitch02 refusing the takeover',
      () =>
        lab
          .fshaLog('freeswitch02')
          .find((l) => /refusing to take over freeswitch01: freeswitch01 is alive/.test(l.text)),
      20000,
    );
    process.stdout.write(
      `timeline: split brain\n  link cut               +     0 ms\n  freeswitch02 MASTER    +${String(master2.at - cut).padStart(6)} ms\n  takeover refused       +${String(refused.at - cut).padStart(6)} ms (freeswitch01 alive)\n`,
    );
    assert.equal(lab.vrrpState('freeswitch01', 'VI_FS'), 'MASTER', 'freeswitch01 stays MASTER on its side');
    await assertOwnedOnce(url, calls, { freeswitch01: core1 });
    // the link returns: one MASTER again (freeswitch01, the higher priority), and still no call has moved
    lab.fabric.ip(['link', 'set', s1, 'master', lab.fabric.s]);
    await waitFor(
      'one MASTER again',
      () => lab.vrrpState('freeswitch01', 'VI_FS') !== lab.vrrpState('freeswitch02', 'VI_FS'),
      20000,
    );
    await assertOwnedOnce(url, calls, { freeswitch01: core1 });
    // the cut took the node off the service net (its media too); once back, every call hears and is heard again
    const restored = Date.now() + 1000;
    await new Promise((r) => setTimeout(r, 1500));
    await assertAudio(lab, { since: restored, moved: [], live: calls, nodes: ['freeswitch01'] });
    await withClient(url, async (c) => {
      const done = (await c.query("select count(*)::int n from fsha.audit where result in ('done','partial','moved')"))
        .rows[0].n;
      assert.equal(done, 0, 'no takeover went through');
    });
  });
});

test("4. failback: the old master's FreeSWITCH returns; it stays BACKUP in standby and nothing moves back", async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 10);
    const crash = await lab.crash('freeswitch01');
    await waitFor(
      'the takeover on freeswitch02',
      () => lab.fshaLog('freeswitch02').some((l) => /takeover done/.test(l.text)),
      20000,
    );
    process.stdout.write(
      formatTimeline(
        'failback scenario: the failover first, 10 calls',
        timeline(lab, { failed: 'freeswitch01', adopter: 'freeswitch02', instance: 'VI_FS', crash }),
      ) + '\n',
    );
    const core2 = lab.coreUuid('freeswitch02');
    await assertOwnedOnce(url, calls, { freeswitch02: core2 });
    const from = lab.keepalived.freeswitch01.lines.length;
    const back = Date.now();
    await lab.startSim('freeswitch01');
    const backup = await lab.waitState('freeswitch01', 'VI_FS', 'BACKUP', 20000, from);
    process.stdout.write(
      `  freeswitch01 back: VRRP BACKUP +${backup.at - back} ms after its FreeSWITCH started; nothing moves\n`,
    );
    await waitFor('freeswitch01 in standby', async () => (await lab.simState('freeswitch01')).standby, 10000);
    await new Promise((r) => setTimeout(r, 3000)); // give a wrong failback time to happen
    assert.equal(lab.vrrpState('freeswitch02', 'VI_FS'), 'MASTER', 'nopreempt: freeswitch02 keeps the VIP');
    assert.ok(lab.hasVip('freeswitch02'));
    await assertOwnedOnce(url, calls, { freeswitch02: core2, freeswitch01: lab.coreUuid('freeswitch01') });
    const owners = new Set((await rows(url)).map((r) => r.hostname));
    assert.deepEqual([...owners], ['freeswitch02'], 'every call stays on freeswitch02');
    await assertAudio(lab, { since: crash, moved: calls, nodes: ['freeswitch02'] });
    await assertAudio(lab, { since: back, moved: [], live: calls, nodes: ['freeswitch02'] });
  });
});

test("5. farm of three (one VRRP instance per node, per-node layout): node 1 dies, exactly one survivor adopts its calls, node 3's are untouched", async () => {
  const nodes = ['freeswitch01', 'freeswitch02', 'freeswitch03'];
  await scenario({ topology: 'farm', nodes }, async (lab, url) => {
    await lab.startFarm(); // a farm boots together: a storm of notifies, then calm
    const calls: Record<string, string[]> = {};
    for (const n of nodes) calls[n] = await placeCalls(lab, n, 10);
    const sipp = await lab.startSipp(10);
    const crash = await lab.crash('freeswitch01');
    const adopter = await waitFor(
      "a survivor's takeover of freeswitch01",
      () =>
        ['freeswitch02', 'freeswitch03'].find((n) =>
          lab
            .fshaLog(n)
            .some((l) => l.at >= crash && /takeover done: \S+ took over \d+ call\(s\) of freeswitch01/.test(l.text)),
        ),
      30000,
    );
    const other = adopter === 'freeswitch02' ? 'freeswitch03' : 'freeswitch02';
    // the process that did the takeover is a notify MASTER of VI_FS01 (under load it may have started just before the crash)
    const doneBy = lab
      .fshaLog(adopter)
      .find((l) => l.at >= crash && /takeover done: .* of freeswitch01/.test(l.text))!
      .text.match(/^fs-ha\[(\d+)\]/)![1];
    assert.ok(
      lab
        .fshaLog(adopter)
        .some((l) =>
          new RegExp(
            `^fs-ha\\[${doneBy}\\]: INFO (notify|agent): notify MASTER VI_FS01: taking over freeswitch01`,
          ).test(l.text),
        ),
      "the adopter acted as MASTER of the dead node's instance",
    );
    const owners = { freeswitch02: lab.coreUuid('freeswitch02'), freeswitch03: lab.coreUuid('freeswitch03') };
    const ownerOf = await assertOwnedOnce(
      url,
      [...calls.freeswitch01, ...calls.freeswitch02, ...calls.freeswitch03],
      owners,
      'fsha.recovery_base',
    );
    for (const c of calls.freeswitch01)
      assert.equal(ownerOf.get(c), adopter, "all of the dead node's calls on one survivor");
    for (const c of calls.freeswitch02) assert.equal(ownerOf.get(c), 'freeswitch02');
    for (const c of calls.freeswitch03) assert.equal(ownerOf.get(c), 'freeswitch03', 'the third node keeps its calls');
    assert.equal((await lab.simState(other)).calls, 10, `${other} took nothing`);
    await withClient(url, async (c) => {
      const a = (
        await c.query("select to_node, result from fsha.audit where from_node = 'freeswitch01' and result = 'done'")
      ).rows;
      assert.deepEqual(a, [{ to_node: adopter, result: 'done' }], 'exactly one takeover of freeswitch01');
    });
    await waitFor('sipp: 10 re-INVITEs answered', () => sipp.exitCode !== null, 30000);
    assert.equal(sipp.exitCode, 0);
    process.stdout.write(
      formatTimeline(
        `farm of 3, 10 calls on the dead node, adopted by ${adopter}`,
        timeline(lab, { failed: 'freeswitch01', adopter, instance: 'VI_FS01', crash }),
      ) + '\n',
    );
    // the adopter's own calls and the third node's keep their audio; the adopted ones get theirs back
    process.stdout.write(
      formatAudio(
        await assertAudio(lab, {
          since: crash,
          moved: calls.freeswitch01,
          live: [...calls.freeswitch02, ...calls.freeswitch03],
          nodes: ['freeswitch02', 'freeswitch03'],
        }),
      ) + '\n',
    );
  });
});

test('6. database down at the moment of takeover: it fails cleanly, the calls stay in the table, a rerun once it is back recovers them', async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 10);
    const core1 = lab.coreUuid('freeswitch01');
    const mgmt2 = lab.port('freeswitch02', 'm');
    lab.fabric.ip(['link', 'set', mgmt2, 'down']); // freeswitch02 loses the database (and the management net)
    const crash = await lab.crash('freeswitch01');
    await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 20000);
    await waitFor(
      'the takeover failing on freeswitch02',
      () => lab.fshaLog('freeswitch02').some((l) => /ERROR (notify-master|agent): .*database/.test(l.text)),
      30000,
    );
    lab.fabric.ip(['link', 'set', mgmt2, 'up']);
    await assertOwnedOnce(url, calls, { freeswitch01: core1 }); // untouched, still the dead node's rows
    const rerun = Date.now();
    const r = lab.fsha('freeswitch02', ['takeover', '--from', 'freeswitch01']);
    assert.equal(r.code, 0, r.err + r.out);
    const failedAt = lab
      .fshaLog('freeswitch02')
      .find((l) => /ERROR (notify-master|agent): .*database/.test(l.text))!.at;
    process.stdout.write(
      `timeline: database down\n  crash                  +     0 ms\n  takeover fails         +${String(failedAt - crash).padStart(6)} ms (database unreachable; nothing changed)\n` +
        `  rerun by hand          +${String(rerun - crash).padStart(6)} ms\n  rerun done             +${String(Date.now() - crash).padStart(6)} ms\n`,
    );
    // the failed takeover's own retry (its timed-out connection is marked lost, so it reconnects within
    // 3 x database_ms) may have finished it once the database returned; else the rerun does: once, either way
    assert.match(r.out, /adopted 10, recovered 10, missing 0|nothing: no calls of freeswitch01 left to take over/);
    await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
    await withClient(url, async (c) => {
      const done = (
        await c.query("select count(*)::int n from fsha.audit where from_node = 'freeswitch01' and result = 'done'")
      ).rows[0].n;
      assert.equal(done, 1, 'exactly one takeover moved the calls');
    });
    await assertAudio(lab, { since: crash, moved: calls, nodes: ['freeswitch02'] });
  });
});

test('7. overlapping notifies (MASTER then BACKUP fired back to back, the scripts-only variant): consistent; no call doubled, the later BACKUP wins standby', async () => {
  // hook processes, as keepalived forks them without the agent (beside a running agent a hook steps aside: agent 25.5)
  await scenario(PAIR({ variant: 'scripts' }), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 10);
    lab.keepalived.freeswitch02.kill('SIGTERM'); // we fire its hooks ourselves, the way keepalived does: without waiting
    await waitFor('keepalived on freeswitch02 gone', () => lab.keepalived.freeswitch02.exitCode !== null, 10000);
    const crash = await lab.crash('freeswitch01');
    const master = lab.spawnIn('freeswitch02', 'notify-master', lab.bin + '/notify_master', [
      '--config',
      lab.fshaPath('freeswitch02'),
      'VI_FS',
    ]);
    await new Promise((r) => setTimeout(r, 5));
    const backup = lab.spawnIn('freeswitch02', 'notify-backup', lab.bin + '/notify_backup', [
      '--config',
      lab.fshaPath('freeswitch02'),
      'VI_FS',
    ]);
    await waitFor('both notifies done', () => master.exitCode !== null && backup.exitCode !== null, 30000);
    assert.equal(backup.exitCode, 0);
    const moved = (await rows(url)).filter((r) => r.hostname === 'freeswitch02').length;
    assert.ok(moved === 0 || moved === 10, `all or nothing, got ${moved}`);
    await assertOwnedOnce(
      url,
      calls,
      moved ? { freeswitch02: lab.coreUuid('freeswitch02') } : { freeswitch01: lab.coreUuid('freeswitch01') },
    );
    assert.equal((await lab.simState('freeswitch02')).standby, true, 'the later BACKUP leaves freeswitch02 in standby');
    const log2 = lab
      .fshaLog('freeswitch02')
      .filter((l) => l.at >= crash && /notify (MASTER|BACKUP)|ignored|takeover done/.test(l.text));
    process.stdout.write(
      `timeline: overlapping notifies (${moved ? 'MASTER ran first' : 'MASTER ignored: fired before the BACKUP that ran first'})\n` +
        log2
          .map(
            (l) => `  +${String(l.at - crash).padStart(6)} ms  ${l.text.replace(/^fs-ha\[\d+\]: /, '').slice(0, 110)}`,
          )
          .join('\n') +
        '\n',
    );
  });
});

/** Every core busy for ms (bounded busy loops, one per core), as a starved machine runs. */
function saturate(ms: number): () => void {
  const loops = Array.from({ length: availableParallelism() }, () =>
    spawn(process.execPath, ['-e', `const e = Date.now() + ${ms}; while (Date.now() < e) {}`], { stdio: 'ignore' }),
  );
  return () => {
    for (const l of loops) l.kill('SIGKILL');
  };
}

for (const loaded of [false, true])
  test(`9${loaded ? 'b' : ''}. the agent killed (SIGKILL) while FreeSWITCH is healthy${loaded ? ', every core saturated' : ''}: no VRRP transition; restarted as systemd does (Restart=always, RestartSec=0), it picks up where it was`, async () => {
    await scenario(PAIR(), async (lab, url) => {
      await startPair(lab);
      const calls = await placeCalls(lab, 'freeswitch01', 10);
      const core1 = lab.coreUuid('freeswitch01');
      const from = lab.keepalived.freeswitch01.lines.length;
      const stop = loaded ? saturate(12000) : () => undefined;
      try {
        if (loaded) await new Promise((r) => setTimeout(r, 1000)); // the load is there before the kill
        lab.watchers.freeswitch01.kill('SIGKILL');
        await new Promise((r) => setTimeout(r, 100)); // systemd's restart delay with RestartSec=0
        await lab.startAgent('freeswitch01');
        await new Promise((r) => setTimeout(r, 3500)); // beyond the backstop's window from the kill
      } finally {
        stop();
      }
      const moved = lab.keepalived.freeswitch01.lines.slice(from).filter((l) => /Entering \w+ STATE/.test(l.text));
      assert.deepEqual(
        moved.map((l) => l.text),
        [],
        'no VRRP transition on freeswitch01',
      );
      assert.equal(lab.vrrpState('freeswitch01', 'VI_FS'), 'MASTER');
      assert.equal((await lab.simState('freeswitch01')).standby, false, 'the MASTER still takes new calls');
      await assertOwnedOnce(url, calls, { freeswitch01: core1 }); // no call moved
      await assertAudio(lab, { since: Date.now() - 3000, moved: [], live: calls, nodes: ['freeswitch01'] });
    });
  });

test("10. the agent dead, then FreeSWITCH crashes: keepalived's backstop fails the node within 3 s of the crash, the backup adopts every call once", async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 20);
    const sipp = await lab.startSipp(20);
    lab.watchers.freeswitch01.kill('SIGKILL');
    const crash = await lab.crash('freeswitch01'); // nobody watches freeswitch01 any more
    const master = await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 15000);
    process.stdout.write(
      `timeline: agent dead, then the crash\n  crash                  +     0 ms\n  freeswitch02 MASTER    +${String(master.at - crash).padStart(6)} ms (the backstop: watch.file not touched for 2 s)\n`,
    );
    assert.ok(
      master.at - crash <= 5000,
      `MASTER after ${master.at - crash} ms: the backstop did not fail the node in time`,
    ); // designed: <= 2.6 s (timeline printed above)
    await waitFor(
      'the takeover on freeswitch02',
      () => lab.fshaLog('freeswitch02').some((l) => /takeover done/.test(l.text)),
      20000,
    );
    await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
    await waitFor('sipp: 20 re-INVITEs answered', () => sipp.exitCode !== null, 30000);
    assert.equal(sipp.exitCode, 0);
    process.stdout.write(
      formatAudio(await assertAudio(lab, { since: crash, moved: calls, nodes: ['freeswitch02'] })) + '\n',
    );
  });
});

test('11. keepalived reloaded (SIGHUP) on the backup: the agent still hears the next transition', async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const mine = await placeCalls(lab, 'freeswitch01', 5);
    const k2 = lab.keepalived.freeswitch02;
    const from = k2.lines.length;
    k2.child.kill('SIGHUP');
    await k2.waitLine(/Reload|reload/, 10000, from);
    await new Promise((r) => setTimeout(r, 1500)); // the FIFO may have been recreated: the agent checks every second
    const crash = await lab.crash('freeswitch01');
    await waitFor(
      'the takeover on freeswitch02',
      () => lab.fshaLog('freeswitch02').some((l) => /takeover done/.test(l.text)),
      20000,
    );
    await assertOwnedOnce(url, mine, { freeswitch02: lab.coreUuid('freeswitch02') });
    await assertAudio(lab, { since: crash, moved: mine, nodes: ['freeswitch02'] });
  });
});

test('12. keepalived reloaded (SIGHUP) on the MASTER: no transition, no standby flap, no takeover', async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 5);
    const k1 = lab.keepalived.freeswitch01;
    const from1 = k1.lines.length;
    const from2 = lab.keepalived.freeswitch02.lines.length;
    const log2 = lab.fshaLog('freeswitch02').length;
    k1.child.kill('SIGHUP');
    await k1.waitLine(/Reload|reload/, 10000, from1);
    await new Promise((r) => setTimeout(r, 3000));
    const transitions = [...k1.lines.slice(from1), ...lab.keepalived.freeswitch02.lines.slice(from2)].filter((l) =>
      /Entering (MASTER|BACKUP|FAULT) STATE/.test(l.text),
    );
    assert.deepEqual(
      transitions.map((l) => l.text),
      [],
      'no VRRP transition on either node',
    );
    assert.equal((await lab.simState('freeswitch01')).standby, false, 'the MASTER stays out of standby');
    assert.equal((await lab.simState('freeswitch02')).standby, true, 'the BACKUP stays in standby');
    assert.ok(
      !lab
        .fshaLog('freeswitch02')
        .slice(log2)
        .some((l) => /taking over/.test(l.text)),
      'no takeover started',
    );
    await assertOwnedOnce(url, calls, { freeswitch01: lab.coreUuid('freeswitch01') });
    await assertAudio(lab, { since: Date.now() - 3000, moved: [], live: calls, nodes: ['freeswitch01'] });
  });
});

test('13. the agent and the script hooks both configured: a crash is taken over exactly once', async () => {
  await scenario(PAIR({ variant: 'both' }), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 10);
    const crash = await lab.crash('freeswitch01');
    await waitFor(
      'the takeover on freeswitch02',
      () => lab.fshaLog('freeswitch02').some((l) => /takeover done/.test(l.text)),
      20000,
    );
    await new Promise((r) => setTimeout(r, 2000)); // the second listener has had its turn
    await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
    await assertAudio(lab, { since: crash, moved: calls, nodes: ['freeswitch02'] });
    await withClient(url, async (c) => {
      const done = (
        await c.query("select count(*)::int n from fsha.audit where from_node = 'freeswitch01' and result = 'done'")
      ).rows[0].n;
      assert.equal(done, 1, 'one takeover; the other listener found nothing left or was ordered out');
    });
    const heard = lab
      .fshaLog('freeswitch02')
      .filter((l) => /notify MASTER VI_FS: taking over|notify MASTER ignored/.test(l.text));
    assert.ok(heard.length >= 1);
  });
});

test('14. keepalived restarted on the MASTER (a package upgrade) with 20 live calls: the VIP moves, the demoted node hands its calls to the new MASTER (stopped without BYE), every call re-INVITEd from the VIP with its audio back; the old node ends BACKUP in standby, empty', async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 20);
    const sipp = await lab.startSipp(20);
    const at = Date.now();
    lab.keepalived.freeswitch01.kill('SIGTERM');
    await waitFor('keepalived on freeswitch01 stopped', () => lab.keepalived.freeswitch01.exitCode !== null, 10000);
    lab.startKeepalived('freeswitch01');
    const done = await waitFor(
      'the handover on freeswitch01',
      () => lab.fshaLog('freeswitch01').find((l) => /handover done/.test(l.text)),
      30000,
    );
    await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 10000);
    assert.ok(lab.hasVip('freeswitch02'));
    await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
    await waitFor('sipp: 20 re-INVITEs answered', () => sipp.exitCode !== null, 30000);
    assert.equal(sipp.exitCode, 0, 'every far end saw its call picked up');
    const audio = await assertAudio(lab, { since: at, moved: calls, nodes: ['freeswitch02'] });
    const decided = lab
      .fshaLog('freeswitch01')
      .find((l) => /ERROR \S+: handover: freeswitch01 \((STOP|BACKUP) of VI_FS\): 20 call\(s\) use/.test(l.text));
    assert.ok(decided, 'one ERROR line names the 20 calls at stake and what is done');
    assert.ok(
      lab
        .fshaLog('freeswitch02')
        .some((l) =>
          /ERROR \S+: orphaned calls: freeswitch01 is alive with 20 call\(s\) on \S+, which freeswitch02 now holds/.test(
            l.text,
          ),
        ),
      'the new MASTER, refused because freeswitch01 lives, says its calls are orphaned (never silent)',
    );
    process.stdout.write(`  ${decided.text.replace(/^fs-ha\[\d+\]: /, '').slice(0, 200)}\n`);
    process.stdout.write(
      `timeline: keepalived restarted on the MASTER, 20 calls\n  keepalived stopped       +     0 ms\n  handover done            +${String(done.at - at).padStart(6)} ms\n${formatAudio(audio)}\n`,
    );
    await withClient(url, async (c) => {
      const moved = (
        await c.query("select command, to_node from fsha.audit where from_node = 'freeswitch01' and result = 'done'")
      ).rows;
      assert.equal(moved.length, 1, `exactly one takeover: ${JSON.stringify(moved)}`);
      assert.match(moved[0].command, /^handover (STOP|BACKUP) VI_FS$/);
    });
    // its FreeSWITCH comes back (systemd): BACKUP, standby, no call
    await lab.startSim('freeswitch01');
    await lab.waitState('freeswitch01', 'VI_FS', 'BACKUP', 20000);
    await waitFor('freeswitch01 in standby', async () => (await lab.simState('freeswitch01')).standby, 10000);
    assert.equal((await lab.simState('freeswitch01')).calls, 0);
  });
});

test('14b. keepalived stopped on the MASTER and not restarted: its calls move to the new MASTER', async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 10);
    const at = Date.now();
    lab.keepalived.freeswitch01.kill('SIGTERM');
    await waitFor(
      'the handover on freeswitch01',
      () => lab.fshaLog('freeswitch01').some((l) => /handover done/.test(l.text)),
      30000,
    );
    await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
    await assertAudio(lab, { since: at, moved: calls, nodes: ['freeswitch02'] });
  });
});

test('14c. split brain healing: the node that yields has no call, nothing moves, no FreeSWITCH is stopped; a FAULT of the MASTER through its own health (a profile stopped) hands nothing over and nothing is taken twice', async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 10);
    const core1 = lab.coreUuid('freeswitch01');
    const at = Date.now();
    await lab.api('freeswitch01', 'sofia profile internal stop');
    await lab.waitState('freeswitch01', 'VI_FS', 'FAULT', 20000);
    await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 20000);
    await new Promise((r) => setTimeout(r, 2500));
    // freeswitch01 answers (not serving): the new MASTER refuses; freeswitch01's FAULT hands nothing over
    assert.ok(
      !lab.fshaLog('freeswitch01').some((l) => l.at >= at && /handover done/.test(l.text)),
      'no handover on FAULT',
    );
    await assertOwnedOnce(url, calls, { freeswitch01: core1 });
    await withClient(url, async (c) => {
      assert.equal(
        (await c.query("select count(*)::int n from fsha.audit where result = 'done'")).rows[0].n,
        0,
        'nothing taken',
      );
    });
    assert.equal(lab.sims.freeswitch01.exitCode, null, 'its FreeSWITCH was not stopped');
  });
});

test('14d. farm whose FreeSWITCH bind their VIPs, keepalived restarted on freeswitch01 with 10 calls: handed over at once to the holder of its instance, audio back; waiting for preempt instead measured', async () => {
  const nodes = ['freeswitch01', 'freeswitch02', 'freeswitch03'];
  const vip = (name: string) => host(SERVICE, 100 + Number(name.slice(-2)));
  const fshaNodes = Object.fromEntries(
    nodes.map((n, i) => [
      n,
      { addresses: [vip(n)], esl: { host: host(MGMT, 11 + i), port: 8021, password: 'ClueCon' } },
    ]),
  );
  await scenario(
    { topology: 'farm', nodes, fsha: { nodes: fshaNodes }, simAddress: (n) => vip(n.name) },
    async (lab, url) => {
      await lab.startFarm();
      const calls = await placeCalls(lab, 'freeswitch01', 10);
      const others = {
        freeswitch02: await placeCalls(lab, 'freeswitch02', 3),
        freeswitch03: await placeCalls(lab, 'freeswitch03', 3),
      };
      const at = Date.now();
      lab.keepalived.freeswitch01.kill('SIGTERM');
      await waitFor('keepalived on freeswitch01 stopped', () => lab.keepalived.freeswitch01.exitCode !== null, 10000);
      const done = await waitFor(
        'the handover on freeswitch01',
        () => lab.fshaLog('freeswitch01').find((l) => /handover done/.test(l.text)),
        30000,
      );
      const holder = ['freeswitch02', 'freeswitch03'].find((n) => lab.vrrpState(n, 'VI_FS01') === 'MASTER')!;
      assert.ok(holder, 'a survivor holds VI_FS01');
      const owners = { freeswitch02: lab.coreUuid('freeswitch02'), freeswitch03: lab.coreUuid('freeswitch03') };
      const ownerOf = await assertOwnedOnce(
        url,
        [...calls, ...others.freeswitch02, ...others.freeswitch03],
        owners,
        'fsha.recovery_base',
      );
      for (const c of calls) assert.equal(ownerOf.get(c), holder, "freeswitch01's calls on the holder of its instance");
      const audio = await assertAudio(lab, {
        since: at,
        moved: calls,
        live: [...others.freeswitch02, ...others.freeswitch03],
        nodes: ['freeswitch02', 'freeswitch03'],
      });
      // the alternative, waiting: its calls are silent until keepalived is back and preempts VI_FS01 (FreeSWITCH restarted first)
      await lab.startSim('freeswitch01');
      const from = lab.keepalived.freeswitch01?.lines.length ?? 0;
      const restart = Date.now();
      lab.startKeepalived('freeswitch01');
      const back = await lab.waitState('freeswitch01', 'VI_FS01', 'MASTER', 30000, 0);
      process.stdout.write(
        `timeline: farm, keepalived restarted on freeswitch01 (FreeSWITCH on its VIP), 10 calls\n  handed over at once: done +${done.at - at} ms after the stop\n${formatAudio(audio)}\n` +
          `  waiting instead: VI_FS01 back on freeswitch01 ${back.at - restart} ms after keepalived starts again, plus however long it was down (a package upgrade: seconds)\n`,
      );
      void from;
    },
  );
});

test('16. pair on a replicated database: the primary stops and the standby is promoted (as Patroni does), then FreeSWITCH on the master crashes; both FreeSWITCHes and fs-ha follow the primary, every call survives once', async () => {
  const dbs = await startReplicaPair({ listen: MGMT_DB, netns: fabric.ns });
  try {
    // the standby first: the list's order must not matter, the writable primary is chosen
    const hosts = `postgres://postgres@${MGMT_DB}:${dbs.standby.port},${MGMT_DB}:${dbs.primary.port}/postgres?target_session_attrs=read-write`;
    await scenario(
      PAIR({ database: hosts }),
      async (lab) => {
        await startPair(lab);
        assert.match(
          lab.dsns.freeswitch01,
          new RegExp(
            `^pgsql://host=${MGMT_DB.replace(/\./g, '\\.')},\\S+ port=${dbs.standby.port},${dbs.primary.port} .*target_session_attrs=read-write`,
          ),
        );
        const calls = await placeCalls(lab, 'freeswitch01', 20);
        await caughtUp(dbs.standby, 20);
        const switchAt = Date.now();
        dbs.primary.stop();
        dbs.standby.promote();
        const switched = Date.now() - switchAt;
        // FreeSWITCH on the master resets its connection onto the new primary: calls answered now are tracked there
        const more = await placeCalls(lab, 'freeswitch01', 5);
        assert.equal(
          ((await lab.simState('freeswitch01')) as unknown as { db: string }).db,
          `${MGMT_DB}:${dbs.standby.port}`,
        );
        const sipp = await lab.startSipp(25);
        const crash = await lab.crash('freeswitch01');
        await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 20000);
        await waitFor(
          'the takeover on freeswitch02',
          () => lab.fshaLog('freeswitch02').some((l) => /takeover done/.test(l.text)),
          30000,
        );
        await assertOwnedOnce(dbs.standby.url, [...calls, ...more], { freeswitch02: lab.coreUuid('freeswitch02') });
        assert.equal(
          ((await lab.simState('freeswitch02')) as unknown as { db: string }).db,
          `${MGMT_DB}:${dbs.standby.port}`,
          'freeswitch02 re-tracked on the new primary',
        );
        await waitFor('sipp: 25 re-INVITEs answered', () => sipp.exitCode !== null, 30000);
        assert.equal(sipp.exitCode, 0, 'sipp saw every call picked up');
        const t = timeline(lab, { failed: 'freeswitch01', adopter: 'freeswitch02', instance: 'VI_FS', crash });
        process.stdout.write(
          formatTimeline(`pair, 25 calls, after a database switch-over (stop + promote ${switched} ms)`, t) + '\n',
        );
        process.stdout.write(
          formatAudio(await assertAudio(lab, { since: crash, moved: [...calls, ...more], nodes: ['freeswitch02'] })) +
            '\n',
        );
        const errors = ['freeswitch01', 'freeswitch02'].flatMap((n) =>
          lab
            .fshaLog(n)
            .filter((l) => /: ERROR /.test(l.text))
            .map((l) => `${n}: ${l.text}`),
        );
        assert.deepEqual(errors, [], 'a database switch-over the cluster survives is not an ERROR');
      },
      dbs.primary.url,
    );
  } finally {
    dbs.standby.stop();
    dbs.primary.stop();
  }
});

test('17. drain in the pair: the operator empties the MASTER for maintenance (fs-ha drain --yes on the backup); the VIP moves, every call survives once; restarted, the drained node stays BACKUP in standby', async () => {
  await scenario(PAIR(), async (lab, url) => {
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 20);
    const plan = lab.fsha('freeswitch02', ['drain', '--from', 'freeswitch01']);
    assert.equal(plan.code, 0, plan.err);
    assert.match(plan.out, /nothing stopped: run again with --yes/);
    assert.equal((await lab.simState('freeswitch01')).standby, false, 'the plan changed nothing');
    const sipp = await lab.startSipp(20);
    const at = Date.now();
    const r = lab.fsha('freeswitch02', ['drain', '--from', 'freeswitch01', '--yes']);
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    // the VIP moves with VRRP: only keepalived's new MASTER, once it holds it, can re-INVITE from it; the drain waits for that
    assert.match(
      r.out,
      /done: freeswitch01 drained: its 20 call\(s\) were taken over by notify MASTER VI_FS \(done: 20 call\(s\) to freeswitch02\)/,
    );
    const reinviteFailures = lab.sims.freeswitch02.lines.filter((l) => l.text.includes('"ev":"reinvite-failed"'));
    assert.deepEqual(reinviteFailures, [], 'no re-INVITE sent from an address the node did not hold');
    await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 20000);
    await waitFor('the VIP on freeswitch02', () => lab.hasVip('freeswitch02'), 10000);
    await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
    await withClient(url, async (c) => {
      const done = (
        await c.query("select command from fsha.audit where from_node = 'freeswitch01' and result = 'done'")
      ).rows;
      assert.equal(done.length, 1, `exactly one takeover: ${JSON.stringify(done)}`);
      const drained = (await c.query("select command, to_node from fsha.audit where result = 'drained'")).rows;
      assert.deepEqual(
        drained,
        [{ command: 'drain', to_node: 'freeswitch02' }],
        'the drain itself is in the audit (history)',
      );
    });
    await waitFor('sipp: 20 re-INVITEs answered', () => sipp.exitCode !== null, 30000);
    assert.equal(sipp.exitCode, 0, 'sipp saw every call picked up');
    process.stdout.write(`  drain in the pair: 20 calls moved, drain command ${Date.now() - at} ms\n`);
    process.stdout.write(
      formatAudio(await assertAudio(lab, { since: at, moved: calls, nodes: ['freeswitch02'] })) + '\n',
    );
    await lab.startSim('freeswitch01');
    await lab.waitState('freeswitch01', 'VI_FS', 'BACKUP', 20000);
    await waitFor('freeswitch01 in standby', async () => (await lab.simState('freeswitch01')).standby, 10000);
    assert.ok(lab.hasVip('freeswitch02'), 'nopreempt: the VIP stays');
    await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
  });
});

test('18. drain in the farm of three: 30 call legs (lone calls, bridged pairs, a conference) spread over both survivors, no group split, each re-INVITEd and re-tracked once; restarted, the drained node regains only its own empty instance', async () => {
  const nodes = ['freeswitch01', 'freeswitch02', 'freeswitch03'];
  const adopters = {
    freeswitch01: ['freeswitch02', 'freeswitch03'],
    freeswitch02: ['freeswitch01', 'freeswitch03'],
    freeswitch03: ['freeswitch01', 'freeswitch02'],
  };
  await scenario({ topology: 'farm', nodes, fsha: { adopters } }, async (lab, url) => {
    await lab.startFarm();
    const lone = await placeCalls(lab, 'freeswitch01', 14);
    const legs = (await lab.api('freeswitch01', 'simctl bridged 4')).trim().split('\n');
    const members = (await lab.api('freeswitch01', 'simctl conference 8')).trim().split('\n');
    assert.equal(legs.length + members.length + lone.length, 30);
    const others = {
      freeswitch02: await placeCalls(lab, 'freeswitch02', 3),
      freeswitch03: await placeCalls(lab, 'freeswitch03', 3),
    };
    const sipp = await lab.startSipp(30);
    const at18 = Date.now();
    const r = lab.fsha('freeswitch02', ['drain', '--from', 'freeswitch01', '--yes']);
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    const owners = { freeswitch02: lab.coreUuid('freeswitch02'), freeswitch03: lab.coreUuid('freeswitch03') };
    const all = [...lone, ...legs, ...members, ...others.freeswitch02, ...others.freeswitch03];
    const ownerOf = await assertOwnedOnce(url, all, owners, 'fsha.recovery_base');
    for (let i = 0; i < legs.length; i += 2)
      assert.equal(ownerOf.get(legs[i]), ownerOf.get(legs[i + 1]), 'both legs of a bridged call on one node');
    assert.equal(new Set(members.map((m) => ownerOf.get(m))).size, 1, 'the conference whole on one node');
    const moved = [...lone, ...legs, ...members];
    const share = (n: string) => moved.filter((c) => ownerOf.get(c) === n).length;
    assert.ok(
      share('freeswitch02') > 0 && share('freeswitch03') > 0,
      `both survivors got calls: ${share('freeswitch02')} / ${share('freeswitch03')}`,
    );
    for (const n of ['freeswitch02', 'freeswitch03'] as const)
      for (const c of others[n]) assert.equal(ownerOf.get(c), n, 'the survivors keep their own calls');
    await withClient(url, async (c) => {
      const done = (
        await c.query("select to_node, adopters from fsha.audit where from_node = 'freeswitch01' and result = 'done'")
      ).rows;
      assert.equal(done.length, 1, 'exactly one takeover of freeswitch01');
      assert.equal(done[0].to_node, 'freeswitch02,freeswitch03');
    });
    await waitFor('sipp: 30 re-INVITEs answered', () => sipp.exitCode !== null, 30000);
    assert.equal(sipp.exitCode, 0, 'every far end saw its dialog continue');
    for (const n of ['freeswitch02', 'freeswitch03'])
      assert.deepEqual(
        lab.sims[n].lines.filter((l) => l.text.includes('"ev":"reinvite-failed"')),
        [],
        `${n} sent every re-INVITE`,
      );
    process.stdout.write(
      `  drain in the farm: 30 legs, freeswitch02 ${share('freeswitch02')}, freeswitch03 ${share('freeswitch03')}\n`,
    );
    process.stdout.write(
      formatAudio(
        await assertAudio(lab, {
          since: at18,
          moved,
          live: [...others.freeswitch02, ...others.freeswitch03],
          nodes: ['freeswitch02', 'freeswitch03'],
        }),
      ) + '\n',
    );
    // back from maintenance: its own instance only, and empty; nothing moves back
    const from = lab.fshaLog('freeswitch01').length;
    await lab.startSim('freeswitch01');
    await waitFor(
      'freeswitch01 MASTER of its own instance and out of standby',
      async () =>
        lab.vrrpState('freeswitch01', 'VI_FS01') === 'MASTER' && !(await lab.simState('freeswitch01')).standby,
      30000,
    );
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal((await lab.simState('freeswitch01')).calls, 0, 'the drained node comes back empty');
    assert.ok(
      !lab
        .fshaLog('freeswitch01')
        .slice(from)
        .some((l) => /takeover done/.test(l.text)),
      "it takes nobody's calls",
    );
    await assertOwnedOnce(url, all, owners, 'fsha.recovery_base');
  });
});

test("19. a cloud: multicast dropped in every namespace, the templates' unicast VRRP and floating.command (the provider's address moved by a command, not by ARP); FreeSWITCH on the master crashes with 20 calls: one MASTER at a time, the backup claims the address and takes every call over, audio back", async () => {
  await scenario(PAIR({ unicast: true }), async (lab, url) => {
    // the provider's CLI stand-in: what it was asked, one line per run
    const moves = join(lab.dir, 'floating-moves');
    const hook = join(lab.dir, 'move-address');
    writeFileSync(hook, `#!/bin/sh\necho "$FSHA_NODE $FSHA_STATE $FSHA_INSTANCE $FSHA_ADDRESS" >> ${moves}\n`, {
      mode: 0o755,
    });
    for (const n of ['freeswitch01', 'freeswitch02']) {
      const f = lab.fshaPath(n);
      writeFileSync(
        f,
        readFileSync(f, 'utf8') + `floating: { command: ${hook}, addresses: { VI_FS: ${VIP} }, timeout_ms: 5000 }\n`,
        { mode: 0o600 },
      );
    }
    assert.match(readFileSync(lab.confPath('freeswitch01'), 'utf8'), /\$UNICAST= \\\n\s+unicast_peer \{/);
    // without unicast the backup hears no advert and becomes MASTER too (split brain): tried, the BACKUP check fails
    lab.blockMulticast();
    await startPair(lab);
    const calls = await placeCalls(lab, 'freeswitch01', 20);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(lab.vrrpState('freeswitch02', 'VI_FS'), 'BACKUP', 'no split brain without multicast');
    const crash = await lab.crash('freeswitch01');
    await lab.waitState('freeswitch02', 'VI_FS', 'MASTER', 20000);
    await waitFor(
      'the takeover on freeswitch02',
      () => lab.fshaLog('freeswitch02').some((l) => /takeover done/.test(l.text)),
      20000,
    );
    await lab.waitState('freeswitch01', 'VI_FS', 'FAULT', 10000);
    await assertOwnedOnce(url, calls, { freeswitch02: lab.coreUuid('freeswitch02') });
    await waitFor(
      'the address claimed by freeswitch02',
      () => existsSync(moves) && readFileSync(moves, 'utf8').includes(`freeswitch02 MASTER VI_FS ${VIP}`),
      10000,
    );
    await waitFor(
      'the address released by freeswitch01 (FAULT)',
      () => readFileSync(moves, 'utf8').includes(`freeswitch01 FAULT VI_FS ${VIP}`),
      10000,
    );
    const seen = readFileSync(moves, 'utf8').trim().split('\n');
    assert.equal(seen[0], `freeswitch01 MASTER VI_FS ${VIP}`, 'claimed first by the first MASTER');
    assert.ok(
      lab
        .fshaLog('freeswitch02')
        .some((l) => /floating address .* of VI_FS: claimed by floating\.command/.test(l.text)),
    );
    process.stdout.write(
      `  cloud: unicast VRRP, multicast packets dropped: freeswitch01 ${lab.multicastDropped('freeswitch01')}, freeswitch02 ${lab.multicastDropped('freeswitch02')}; floating.command runs: ${seen.join(' | ')}\n`,
    );
    process.stdout.write(
      formatAudio(await assertAudio(lab, { since: crash, moved: calls, nodes: ['freeswitch02'] })) + '\n',
    );
  });
});

// ---------------------------------------------------------------- the proxy farm (keepalived/proxy-farm)
const PROXY_NODES = ['freeswitch01', 'freeswitch02', 'freeswitch03'];
const PROXY_FARM = (o: Partial<LabOptions> = {}): LabOptions => ({ topology: 'proxy-farm', nodes: PROXY_NODES, ...o });

/** Calls each node answered (the simulators' SIP user agents), uuid by node, since an index of their lines. */
function answered(lab: Lab, since: Record<string, number> = {}): Record<string, string[]> {
  return Object.fromEntries(
    PROXY_NODES.map((n) => [
      n,
      lab.sims[n].lines
        .slice(since[n] ?? 0)
        .filter((l) => l.text.includes('"ev":"answered"'))
        .map((l) => (JSON.parse(l.text) as { uuid: string }).uuid),
    ]),
  );
}

/**
 * Behind the proxy the audio is heard on the FreeSWITCH side: each moved call's channel on its adopter gets
 * RTP again (sipp echoes what RTPEngine forwards), from RTPEngine's address. Gap: the crash to its first packet.
 */
async function assertProxyAudio(
  lab: Lab,
  moved: Map<string, string>,
  crash: number,
): Promise<{ median: number; max: number }> {
  const gaps: number[] = [];
  const reports: Record<string, ChannelMedia[]> = {};
  await waitFor(
    'every moved call hears its far end through RTPEngine',
    async () => {
      for (const n of new Set(moved.values()))
        reports[n] = JSON.parse(await lab.api(n, 'simctl media')) as ChannelMedia[];
      return [...moved].every(([uuid, n]) => {
        const m = reports[n].find((x) => x.uuid === uuid);
        return m && m.rxAgoMs !== null && m.rxAgoMs < 200;
      });
    },
    10000,
    200,
  );
  for (const [uuid, n] of moved) {
    const m = reports[n].find((x) => x.uuid === uuid)!;
    assert.ok(
      m.from?.startsWith(`${lab.proxy.address}:`),
      `${uuid} on ${n}: RTP from RTPEngine (${lab.proxy.address}), not ${m.from}`,
    );
    gaps.push(m.firstRxAt! - crash);
  }
  gaps.sort((a, b) => a - b);
  return { median: gaps[Math.floor(gaps.length / 2)], max: gaps[gaps.length - 1] };
}

test("P1. proxy farm (Kamailio + RTPEngine in front, far ends reach only the proxy): 30 calls spread by the dispatcher, FreeSWITCH on freeswitch01 crashes; its calls are taken over by both adopters, each re-INVITEd through the proxy, audio back from RTPEngine's address, the BYE reaches the adopter through the proxy; new calls during and after the failover land on live nodes only", async () => {
  await scenario(PROXY_FARM(), async (lab, url) => {
    await lab.startProxyFarm();
    const callers = await lab.startCallers(30, { port: 5070, mediaPort: 6000, rate: 20, afterMs: 3000 });
    await waitFor('30 calls answered', () => Object.values(answered(lab)).flat().length >= 30, 20000);
    const before = answered(lab);
    assert.ok(
      before.freeswitch01.length >= 5,
      `the dispatcher gave freeswitch01 calls: ${JSON.stringify(Object.fromEntries(Object.entries(before).map(([k, v]) => [k, v.length])))}`,
    );
    await new Promise((r) => setTimeout(r, 1500)); // up a while: the adopters have prepared them
    const since = Object.fromEntries(PROXY_NODES.map((n) => [n, lab.sims[n].lines.length]));
    const crash = await lab.crash('freeswitch01');
    // new calls from the moment of the crash: the dispatcher has not yet seen freeswitch01 fail
    const fresh = await lab.startCallers(10, { port: 5080, mediaPort: 6100, rate: 5, afterMs: 1000 });
    await waitFor(
      'the takeover of freeswitch01',
      () => PROXY_NODES.slice(1).some((n) => lab.fshaLog(n).some((l) => /takeover done/.test(l.text))),
      20000,
    );
    const owners = { freeswitch02: lab.coreUuid('freeswitch02'), freeswitch03: lab.coreUuid('freeswitch03') };
    const ownerOf = await waitFor(
      'every call of freeswitch01 re-tracked by an adopter',
      async () => {
        const rows = await withClient(
          url,
          async (c) =>
            (
              await c.query<{ uuid: string; hostname: string; runtime_uuid: string }>(
                'select uuid, hostname, runtime_uuid from fsha.recovery_base where uuid = any($1)',
                [before.freeswitch01],
              )
            ).rows,
        );
        return rows.length === before.freeswitch01.length &&
          rows.every((r) => owners[r.hostname as keyof typeof owners] === r.runtime_uuid)
          ? new Map(rows.map((r) => [r.uuid, r.hostname]))
          : null;
      },
      10000,
    );
    const share = (n: string) => [...ownerOf.values()].filter((x) => x === n).length;
    assert.ok(
      share('freeswitch02') > 0 && share('freeswitch03') > 0,
      `spread over both adopters: ${share('freeswitch02')} / ${share('freeswitch03')}`,
    );
    for (const [uuid, n] of ownerOf) {
      assert.ok(
        lab.sims[n].lines
          .slice(since[n])
          .some((l) => l.text.includes('"ev":"reinvite-answered"') && l.text.includes(uuid)),
        `${uuid}: ${n}'s re-INVITE answered through the proxy`,
      );
    }
    const gap = await assertProxyAudio(lab, ownerOf, crash);
    process.stdout.write(
      `  proxy farm: ${ownerOf.size} calls of freeswitch01 -> freeswitch02 ${share('freeswitch02')}, freeswitch03 ${share('freeswitch03')}; audio gap on the FreeSWITCH side (crash -> first echoed packet via RTPEngine): median ${gap.median} ms, max ${gap.max} ms\n`,
    );
    await waitFor(
      'the far ends done (every BYE answered by the node holding its call)',
      () => callers.exitCode !== null && fresh.exitCode !== null,
      60000,
    );
    assert.equal(
      callers.exitCode,
      0,
      "every call of the first batch ended with its BYE answered (freeswitch01's through the proxy by their adopters)",
    );
    assert.equal(fresh.exitCode, 0, 'every new call placed from the crash on was answered and ended');
    const after = answered(lab, since);
    assert.deepEqual(after.freeswitch01, [], 'no new call on the dead node');
    assert.equal(after.freeswitch02.length + after.freeswitch03.length, 10, 'the 10 new calls on live nodes');
    const left = await withClient(
      url,
      async (c) => (await c.query('select count(*)::int n from fsha.recovery_base')).rows[0].n,
    );
    assert.equal(left, 0, 'every call ended by its BYE: no row left behind');
  });
});

test("P2. proxy farm, bridged calls and a conference: freeswitch01 crashes; each bridged call (both legs, the outbound one placed through the proxy) and the conference move whole to one adopter, every leg re-INVITEd through the proxy with its audio back from RTPEngine; the caller's BYE reaches the adopter, which ends the bridged call's other leg through the proxy", async () => {
  await scenario(PROXY_FARM(), async (lab, url) => {
    await lab.startProxyFarm();
    const callee = await lab.startCallee(6, 6200);
    // one batch after the other, so the dispatcher's round robin gives each node 2 members and 2 bridged calls
    // (a bridge's outbound leg goes by its Request-URI, not through the dispatcher)
    const conference = await lab.startCallers(6, {
      port: 5072,
      mediaPort: 6100,
      rate: 20,
      afterMs: 3000,
      user: 'conf-room1',
    });
    await waitFor('6 members answered', () => Object.values(answered(lab)).flat().length >= 6, 20000);
    const bridged = await lab.startCallers(6, { port: 5070, mediaPort: 6000, rate: 20, afterMs: 3000, user: 'bridge' });
    await waitFor(
      '18 legs answered (6 members, 6 bridged calls of two legs)',
      () => Object.values(answered(lab)).flat().length >= 18,
      20000,
    );
    const kinds = (n: string) =>
      lab.sims[n].lines
        .filter((l) => l.text.includes('"ev":"answered"'))
        .map((l) => JSON.parse(l.text) as { uuid: string; kind: string });
    const on1 = kinds('freeswitch01');
    assert.ok(
      on1.some((x) => x.kind === 'bridged') && on1.filter((x) => x.kind === 'conference').length >= 2,
      `freeswitch01 got a bridged call and conference members: ${JSON.stringify(on1.map((x) => x.kind))}`,
    );
    await new Promise((r) => setTimeout(r, 1500));
    const since = Object.fromEntries(PROXY_NODES.map((n) => [n, lab.sims[n].lines.length]));
    const crash = await lab.crash('freeswitch01');
    await waitFor(
      'the takeover of freeswitch01',
      () => PROXY_NODES.slice(1).some((n) => lab.fshaLog(n).some((l) => /takeover done/.test(l.text))),
      20000,
    );
    const owners = { freeswitch02: lab.coreUuid('freeswitch02'), freeswitch03: lab.coreUuid('freeswitch03') };
    const uuids = on1.map((x) => x.uuid);
    const ownerOf = await waitFor(
      'every leg of freeswitch01 re-tracked by an adopter',
      async () => {
        const rows = await withClient(
          url,
          async (c) =>
            (
              await c.query<{ uuid: string; hostname: string; runtime_uuid: string; metadata: string }>(
                'select uuid, hostname, runtime_uuid, metadata from fsha.recovery_base where uuid = any($1)',
                [uuids],
              )
            ).rows,
        );
        return rows.length === uuids.length &&
          rows.every((r) => owners[r.hostname as keyof typeof owners] === r.runtime_uuid)
          ? rows
          : null;
      },
      10000,
    );
    const node = new Map(ownerOf.map((r) => [r.uuid, r.hostname]));
    const members = on1.filter((x) => x.kind === 'conference').map((x) => x.uuid);
    assert.equal(new Set(members.map((m) => node.get(m))).size, 1, 'the conference whole on one adopter');
    for (const r of ownerOf.filter((x) => on1.find((y) => y.uuid === x.uuid)!.kind === 'bridged')) {
      const partner = /<(?:signal_bond|bridge_to)>([0-9a-f-]{36})</.exec(r.metadata)![1];
      assert.equal(node.get(partner), r.hostname, `both legs of ${r.uuid}'s bridged call on one adopter`);
    }
    for (const [uuid, n] of node) {
      assert.ok(
        lab.sims[n].lines
          .slice(since[n])
          .some((l) => l.text.includes('"ev":"reinvite-answered"') && l.text.includes(uuid)),
        `${uuid}: re-INVITE answered through the proxy`,
      );
    }
    const gap = await assertProxyAudio(lab, node, crash);
    process.stdout.write(
      `  proxy farm, groups: ${node.size} legs of freeswitch01 (${on1.filter((x) => x.kind === 'bridged').length} bridged legs, ${members.length} members) moved whole; audio gap (FreeSWITCH side): median ${gap.median} ms, max ${gap.max} ms\n`,
    );
    await waitFor(
      'the far ends done',
      () => callee.exitCode !== null && bridged.exitCode !== null && conference.exitCode !== null,
      60000,
    );
    assert.equal(bridged.exitCode, 0, "every bridged call's caller got its BYE answered");
    assert.equal(conference.exitCode, 0, 'every conference member got its BYE answered');
    assert.equal(callee.exitCode, 0, 'every callee got a BYE (from the adopter for the moved calls) and answered it');
    const left = await withClient(
      url,
      async (c) => (await c.query('select count(*)::int n from fsha.recovery_base')).rows[0].n,
    );
    assert.equal(left, 0, 'no row left behind');
  });
});

test('P3. proxy farm, drain: the operator empties freeswitch01 (fs-ha drain --yes on freeswitch02) under a call load; new calls from then on go to the others (its standby answers 503, the proxy fails over), its calls spread over both survivors, re-INVITEd through the proxy with their audio back, each ended by its BYE through the proxy', async () => {
  await scenario(PROXY_FARM(), async (lab, url) => {
    await lab.startProxyFarm();
    const callers = await lab.startCallers(15, { port: 5070, mediaPort: 6000, rate: 20, afterMs: 3000 });
    await waitFor('15 calls answered', () => Object.values(answered(lab)).flat().length >= 15, 20000);
    const before = answered(lab);
    assert.ok(before.freeswitch01.length >= 3, 'freeswitch01 carries calls');
    await new Promise((r) => setTimeout(r, 1000));
    const since = Object.fromEntries(PROXY_NODES.map((n) => [n, lab.sims[n].lines.length]));
    const fresh = await lab.startCallers(10, { port: 5080, mediaPort: 6100, rate: 5, afterMs: 1000 });
    const at = Date.now();
    const r = lab.fsha('freeswitch02', ['drain', '--from', 'freeswitch01', '--yes']);
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    const owners = { freeswitch02: lab.coreUuid('freeswitch02'), freeswitch03: lab.coreUuid('freeswitch03') };
    const rows = await withClient(
      url,
      async (c) =>
        (
          await c.query<{ uuid: string; hostname: string; runtime_uuid: string }>(
            'select uuid, hostname, runtime_uuid from fsha.recovery_base where uuid = any($1)',
            [before.freeswitch01],
          )
        ).rows,
    );
    assert.equal(rows.length, before.freeswitch01.length, 'every call of freeswitch01 still tracked');
    for (const row of rows)
      assert.equal(
        row.runtime_uuid,
        owners[row.hostname as keyof typeof owners],
        `${row.uuid} re-tracked by a survivor`,
      );
    const node = new Map(rows.map((x) => [x.uuid, x.hostname]));
    const share = (n: string) => [...node.values()].filter((x) => x === n).length;
    assert.ok(
      share('freeswitch02') > 0 && share('freeswitch03') > 0,
      `spread: ${share('freeswitch02')} / ${share('freeswitch03')}`,
    );
    for (const [uuid, n] of node) {
      await waitFor(
        `${uuid}: re-INVITE answered through the proxy`,
        () =>
          lab.sims[n].lines
            .slice(since[n])
            .some((l) => l.text.includes('"ev":"reinvite-answered"') && l.text.includes(uuid)),
        5000,
      );
    }
    const gap = await assertProxyAudio(lab, node, at);
    process.stdout.write(
      `  proxy farm, drain: ${node.size} calls -> freeswitch02 ${share('freeswitch02')}, freeswitch03 ${share('freeswitch03')}; audio gap (drain start -> first packet via RTPEngine): median ${gap.median} ms, max ${gap.max} ms\n`,
    );
    await waitFor('the far ends done', () => callers.exitCode !== null && fresh.exitCode !== null, 60000);
    assert.equal(callers.exitCode, 0, 'every call ended with its BYE answered by the node holding it');
    assert.equal(fresh.exitCode, 0, 'every call placed during the drain was answered elsewhere and ended');
    assert.deepEqual(answered(lab, since).freeswitch01, [], 'no new call on the node being drained');
    const left = await withClient(
      url,
      async (c) => (await c.query('select count(*)::int n from fsha.recovery_base')).rows[0].n,
    );
    assert.equal(left, 0, 'no row left behind');
  });
});

test("8. sealed: during every scenario above, tcpdump on each root interface saw no packet of the lab's subnets and no VRRP", async () => {
  const seen = await capture.stop();
  const up = RootCapture.rootInterfaces()
    .filter((i) => i.up)
    .map((i) => i.name);
  assert.deepEqual(
    up.filter((i) => !captured.includes(i)),
    [],
    'every root interface that is up now was captured from the start',
  );
  for (const c of seen) {
    const leaks = c.packets.filter((p) => !capture.isCanary(p));
    assert.deepEqual(leaks, [], `${c.iface}: lab packets in the root namespace`);
  }
  const lo = seen.find((c) => c.iface === 'lo');
  assert.ok(lo, 'loopback was captured');
  assert.equal(
    lo.packets.filter((p) => capture.isCanary(p)).length,
    capture.canariesSent,
    'the capture was live from start to end (canaries seen)',
  );
  assert.equal(ipForward(), ipForwardBefore, 'ip_forward of the root namespace untouched');
  assert.deepEqual(rootExposure(), [], 'the root namespace still reaches nothing of the lab');
  process.stdout.write(
    `sealed: ${seen.map((c) => `${c.iface} ${c.packets.length - c.packets.filter((p) => capture.isCanary(p)).length} lab packets`).join(', ')}; ${capture.canariesSent} canaries seen on lo\n`,
  );
});
