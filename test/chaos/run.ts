/**
 * One chaos run: a cluster (pair or farm) under a continuous call load, ROUNDS faults drawn from the seed, the
 * cluster brought back to full strength after each, then every call judged (judge.ts) and one table printed.
 * The history (every call, fault, recovery and audit row) is written as JSON beside the table, and every loss is
 * printed with its fault and fs-ha's log lines of that moment, for replay with the same seed.
 */
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Fabric, MGMT_DB, cleanStale, installMissing, prerequisites } from '../e2e/lab';
import { ChaosCluster, type Topology } from './cluster';
import { ChaosDatabase } from './database';
import { type FaultRec, type History, type Judgement, calmSilences, formatTable, judge, knownLimit } from './judge';
import { FAULTS, type Injected } from './nemesis';
import { Rng } from './rng';
import { Workload, type WorkloadOptions } from './workload';

export interface ChaosOptions extends WorkloadOptions {
  rounds: number;
  seed: number;
  topology: Topology;
  /** only these fault kinds (default: every kind the topology has) */
  kinds?: string[];
  /** where the history goes (JSON) */
  out: string;
  say: (line: string) => void;
}

/** FreeSWITCH writes a call's recovery row after it answers: calls younger than this at a fault are not judged by it. */
export const TRACK_GRACE_MS = 200;
/** a channel or a far end that heard nothing for this long is deaf or silent */
export const FLOWING_MS = 1000;

export const DEFAULTS: Omit<ChaosOptions, 'rounds' | 'seed' | 'topology' | 'out' | 'say'> = {
  rate: 5,
  holdMinMs: 5000,
  holdMaxMs: 30000,
  bridged: 0.1,
  conference: 0.03,
};

export interface ChaosResult {
  judgement: Judgement;
  history: History;
  table: string;
  /** the run could not go on (the cluster never came back to full strength): why */
  aborted: string | null;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  installMissing();
  const missing = prerequisites();
  if (missing) throw new Error(`chaos cannot run: ${missing}`);
  // a run beside another (CHAOS_BESIDE=1: make chaos for the pair and the farm at once) leaves the other's lab be
  if (!process.env.CHAOS_BESIDE) cleanStale();
  const fabric = new Fabric();
  await fabric.start();
  let db: ChaosDatabase | null = null;
  try {
    db = await ChaosDatabase.start({ listen: MGMT_DB, netns: fabric.ns });
    const c = new ChaosCluster(fabric, db, o.topology);
    try {
      return await rounds(c, o);
    } finally {
      c.stop();
    }
  } finally {
    db?.stop();
    fabric.stop();
  }
}

async function rounds(c: ChaosCluster, o: ChaosOptions): Promise<ChaosResult> {
  const rng = new Rng(o.seed);
  const kinds = FAULTS.filter((f) => f.topologies.includes(o.topology) && (!o.kinds || o.kinds.includes(f.kind)));
  if (!kinds.length) throw new Error(`no fault kind left for ${o.topology}: ${o.kinds?.join(', ')}`);
  const started = Date.now();
  await c.start();
  o.say(
    `chaos: ${o.topology}, seed ${o.seed}, ${o.rounds} round(s), ${o.rate} call(s)/s held ${o.holdMinMs}-${o.holdMaxMs} ms`,
  );
  const work = new Workload(c, new Rng(o.seed ^ 0x5eed), o);
  work.start();
  await sleep(o.holdMinMs); // calls up on every node before the first fault
  const faults: FaultRec[] = [];
  let aborted: string | null = null;
  for (let n = 1; n <= o.rounds && !aborted; n++) {
    const fault = rng.pick(kinds);
    // full strength as each fault finds it (a handover may stop a FreeSWITCH after the last round settled)
    try {
      await c.restore();
    } catch (e) {
      aborted = `before fault ${n}: ${(e as Error).message}`;
      break;
    }
    const { carriers, doubles } = await c.carriers();
    let injected: Injected;
    try {
      injected = await fault.run(c, rng);
    } catch (e) {
      injected = { target: '?', at: Date.now(), detail: `the fault could not be injected: ${(e as Error).message}` };
    }
    try {
      await c.restore();
    } catch (e) {
      aborted = `after fault ${n} (${fault.kind} ${injected.target}): ${(e as Error).message}`;
    }
    const rec: FaultRec = { n, kind: fault.kind, ...injected, endAt: Date.now(), carriers, doubles };
    faults.push(rec);
    o.say(
      `round ${n}/${o.rounds}: ${fault.kind} ${rec.target}: ${rec.detail}; full strength +${rec.endAt - rec.at} ms; ${work.live().length} call(s) up`,
    );
    await sleep(rng.int(1000, 3000));
  }
  await work.stop();
  await sleep(1500);
  const audio = (await c.lab.audio()).calls;
  const history: History = {
    topology: o.topology,
    calls: work.calls,
    faults,
    audio,
    recoveries: c.recoveries(),
    crashes: c.crashes(),
    byesHeard: c.byesHeard(),
    audits: await c.audits(),
    graceMs: TRACK_GRACE_MS,
    flowingMs: FLOWING_MS,
    rowsLeft: await c.rows(),
    abandoned: work.abandoned,
  };
  const judgement = judge(history);
  const calm = calmSilences(history);
  const calmLine = calm.length
    ? `; ${calm.length} silence(s) of a leg in the calm between faults (no fault behind them), the longest ${Math.max(...calm)} ms`
    : '';
  const answeredAnyway = work.abandoned.reduce((n, s) => n + s.endedOn.length, 0);
  const unanswered = work.abandoned.length
    ? `, ${work.abandoned.length} of them unanswered: ${answeredAnyway} leg(s) of those answered all the same, ended at the end`
    : '';
  const table = formatTable(judgement.table);
  writeFileSync(o.out, JSON.stringify({ options: { ...o, say: undefined }, history, judgement }, null, 1));
  o.say(
    `chaos: ${o.topology}, seed ${o.seed}: ${faults.length} fault(s), ${work.calls.length} call(s) answered (${work.refused} set-up(s) refused${unanswered}), ${Math.round((Date.now() - started) / 1000)} s${calmLine}\n${table}`,
  );
  for (const v of judgement.losses) {
    const f = v.fault === null ? null : faults[v.fault];
    const known = f ? knownLimit(o.topology, f.kind) : undefined;
    o.say(
      `LOST${known ? ` (known limit: ${known})` : ''} call ${v.call.id} (${v.call.kind}, answered on ${v.call.node} at ${new Date(v.call.answeredAt).toISOString()}): ${v.reason}; fault: ${f ? `${f.n} ${f.kind} ${f.target} (${f.detail})` : 'none'}`,
    );
    if (f)
      for (const node of c.names)
        for (const l of c.lab.fshaLog(node).filter((x) => x.at >= f.at - 1000 && x.at <= f.endAt))
          o.say(`    ${node} ${new Date(l.at).toISOString()} ${l.text.slice(0, 300)}`);
  }
  for (const v of judgement.violations) o.say(`VIOLATION ${v}`);
  if (aborted) o.say(`ABORTED ${aborted}\n${c.lab.dump()}`);
  o.say(`history: ${o.out}`);
  return { judgement, history, table, aborted };
}
