/**
 * The takeover's decisions, pure: from what was observed to "refuse, with the reason", "nothing to do",
 * or what to do next. Every branch returns the sentence that is logged and asserted in tests. The
 * takeover (commands/takeover.ts) observes, asks these in order, and executes what they say.
 */
import { isRunning } from './health';
import { identityProblem, type Liveness, type ProbeKind } from './liveness';

export type Step<T = object> =
  | ({ action: 'go'; reason: string } & T)
  | { action: 'refuse'; reason: string; level?: 'info' | 'warn' | 'error'; nothingToDo?: string }
  | { action: 'nothing'; reason: string };

/**
 * Step 1, when the node is alive: the calls in the table under its name but of ANOTHER core than the one it answers
 * with are its earlier FreeSWITCH's (one FreeSWITCH runs per node, its core uuid is new at every start, and a
 * FreeSWITCH never adopts rows at start-up on its own), which is gone: both FreeSWITCH of a pair down at once, or an
 * adopter that died in its recover and was restarted. Those calls may be taken over, never the ones under the core
 * that answers (they are its live calls). null: the rule does not apply (not alive and serving, or no core said).
 */
export function decideEarlierProcess(
  node: string,
  life: Liveness,
  liveCore: string | null | undefined,
  rows: ScopeGroup[],
): Step<{ liveCore: string }> | null {
  if (life.verdict !== 'alive' || !life.serving || !liveCore) return null;
  const earlier = rows.filter((g) => g.runtimeUuid !== liveCore);
  const calls = earlier.reduce((n, g) => n + g.count, 0);
  if (!calls) return null;
  const cores = [...new Set(earlier.map((g) => g.runtimeUuid))].join(', ');
  return {
    action: 'go',
    liveCore,
    reason: `${node} is alive (core ${liveCore}) but ${calls} call(s) under its name are of its earlier FreeSWITCH (core ${cores}), which is gone: taking over those, never its live calls`,
  };
}

/** Step 1: may the failed node's calls be taken? fence: whether a fence command is configured, and whether it already ran. */
export function decideDeath(
  node: string,
  life: Liveness,
  o: { force: boolean; fence: 'none' | 'configured' | 'succeeded' },
): Step<{ fence: boolean; forced: boolean }> {
  const fence = o.fence === 'configured';
  if (o.fence === 'succeeded')
    return { action: 'go', reason: `${node} is fenced (the fence command succeeded)`, fence: false, forced: false };
  switch (life.verdict) {
    case 'dead':
      return { action: 'go', reason: life.reason, fence, forced: false };
    case 'impostor':
      if (o.force) return { action: 'go', reason: `--force given although ${life.reason}`, fence, forced: true };
      return { action: 'refuse', reason: `refusing to take over ${node}: ${life.reason}`, level: 'error' };
    case 'contradiction':
    case 'unknown':
      if (fence) return { action: 'go', reason: `${life.reason}; fencing it first`, fence: true, forced: false };
      if (o.force) return { action: 'go', reason: `--force given although ${life.reason}`, fence: false, forced: true };
      return {
        action: 'refuse',
        reason: `refusing to take over ${node}: ${life.reason} (configure fence, or use --force once you know it is down)`,
        level: 'error',
      };
    case 'alive':
    case 'wait':
      if (o.force) return { action: 'go', reason: `--force given although ${life.reason}`, fence, forced: true };
      // the log rule: a node serving its own calls is nothing to worry about; one that answers but does not
      // serve is degraded (its calls are not at risk from us); one we cannot judge may hold calls at risk
      if (life.verdict === 'alive' && life.serving) {
        return {
          action: 'refuse',
          reason: `refusing to take over ${node}: ${life.reason}`,
          level: 'info',
          nothingToDo: life.reason,
        };
      }
      return {
        action: 'refuse',
        reason: `refusing to take over ${node}: ${life.reason}`,
        level: life.verdict === 'alive' ? 'warn' : 'error',
      };
  }
}

/** Step 2, under the lock: is the node judged dead still dead? Anything else means it came back. */
export function decideStillDead(node: string, now: Liveness): Step {
  if (now.verdict === 'dead') return { action: 'go', reason: `${node} is still down` };
  return {
    action: 'refuse',
    reason: `refusing to take over ${node}: it came back while the takeover started (${now.reason})`,
  };
}

/** Rows the target's recover would select, grouped. */
export interface ScopeGroup {
  hostname: string;
  runtimeUuid: string;
  technology: string;
  profile: string;
  count: number;
}

export interface TargetFacts {
  kind: ProbeKind;
  detail: string;
  coreUuid: string | null;
  /** who answered */
  switchname?: string | null;
  /** the core said "is ready" */
  ready: boolean;
  profiles: Map<string, string> | null;
}

/** Step 3: can the adopting node recover at all? (Which profiles its rows need is the plan's question.) */
export function decideTarget(
  node: string,
  t: TargetFacts,
  expect?: { switchname: string; where: string },
): Step<{ coreUuid: string }> {
  if (t.kind !== 'healthy' && t.kind !== 'unhealthy')
    return { action: 'refuse', reason: `refusing: this node's FreeSWITCH (${node}) cannot recover: ${t.detail}` };
  const impostor = expect ? identityProblem(node, expect.switchname, t, expect.where) : null;
  if (impostor) return { action: 'refuse', reason: `refusing to recover on ${node}: ${impostor}` };
  if (!t.ready) return { action: 'refuse', reason: `refusing: ${node} is not ready to recover: ${t.detail}` };
  if (!t.coreUuid)
    return {
      action: 'refuse',
      reason: `refusing: ${node} gave no core uuid, so fs-ha cannot tell what its recover would select`,
    };
  return { action: 'go', reason: `${node} is ready (core ${t.coreUuid})`, coreUuid: t.coreUuid };
}

export interface PlanInput {
  from: string; // failed node switchname
  to: string; // adopting node switchname
  recover: 'sofia' | 'fsctl';
  /** foreign rows visible to the target's FreeSWITCH, BEFORE the move (runtime_uuid != target core) */
  scope: ScopeGroup[];
  /** rows the move will bring into the target's view (per-node layout: the failed node's rows) */
  incoming: ScopeGroup[];
  targetProfiles: Map<string, string>;
  /** --force: recover even though some rows' profiles are not running here */
  force: boolean;
  /** the failed node is alive with this core (decideEarlierProcess): its rows under it are not moved, they stay its */
  liveCore?: string | null;
}

/** The one rule of the shared table: rows of any node but `owner` that a recover there would take, counted by node. */
export function strangersOf(scope: ScopeGroup[], owner: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const g of scope) if (g.hostname !== owner) out.set(g.hostname, (out.get(g.hostname) ?? 0) + g.count);
  return out;
}

const key = (g: ScopeGroup) => `${g.hostname}|${g.runtimeUuid}|${g.technology}|${g.profile}`;

/** Step 4: after the move, would the target's recover take exactly the calls it adopts, and can it recover them? */
export function planRecover(p: PlanInput): Step<{ calls: number }> {
  const merged = new Map<string, ScopeGroup>();
  for (const g of [...p.scope, ...p.incoming]) if (!merged.has(key(g))) merged.set(key(g), { ...g }); // shared layout: in both lists
  // after the move every failed-node row carries the target's hostname (but the live calls of a node alive again)
  const moves = (g: ScopeGroup) => g.hostname === p.from && (!p.liveCore || g.runtimeUuid !== p.liveCore);
  const after = [...merged.values()].map((g) => ({ ...g, hostname: moves(g) ? p.to : g.hostname }));
  const running = new Set([...p.targetProfiles].filter(([, s]) => isRunning(s)).map(([n]) => n));
  const selected =
    p.recover === 'fsctl' ? after : after.filter((g) => g.technology === 'sofia' && running.has(g.profile));

  const adopt = selected.filter((g) => g.hostname === p.to).reduce((n, g) => n + g.count, 0);
  const waiting = after.filter((g) => g.hostname === p.to).reduce((n, g) => n + g.count, 0);
  if (waiting === 0) return { action: 'nothing', reason: `no calls of ${p.from} left to take over on ${p.to}` };

  const strangers = strangersOf(after, p.to);
  if (strangers.size) {
    const list = [...strangers].map(([h, n]) => `${h} (${n} row${n === 1 ? '' : 's'})`).join(', ');
    return {
      action: 'refuse',
      reason:
        `refusing: a recover on ${p.to} would also take the calls of ${list}: they share its recovery table ` +
        `(FreeSWITCH selects by runtime_uuid, not hostname); use the per-node layout (fs-ha db init --layout per-node)`,
    };
  }
  const down = new Map<string, number>();
  for (const g of after) {
    const name = g.technology === 'sofia' ? g.profile : `${g.technology}/${g.profile}`;
    if (g.technology !== 'sofia' ? p.recover === 'fsctl' : !running.has(g.profile))
      down.set(name, (down.get(name) ?? 0) + g.count);
  }
  if (down.size && !p.force) {
    const list = [...down].map(([prof, n]) => `${prof} (${n} call${n === 1 ? '' : 's'})`).join(', ');
    return {
      action: 'refuse',
      reason: `refusing: profile(s) not RUNNING on ${p.to}: ${list}; FreeSWITCH would drop those rows and the calls would be lost`,
    };
  }
  if (adopt === 0) return { action: 'nothing', reason: `no calls of ${p.from} that ${p.to} can recover` };
  return { action: 'go', reason: `${adopt} call(s) to recover on ${p.to}`, calls: adopt };
}

/** Rows held back in the shared layout must leave the table before the recover (it takes every foreign row). */
export function heldRowsLeaveTable(layout: 'shared' | 'per-node'): boolean {
  return layout === 'shared';
}

/** Step 6: what the recover's count and the re-tracking say. */
export function judgeRecovery(o: {
  to: string;
  from: string;
  handed: number;
  recovered: number;
  missing: number;
  held: number;
  /** recovered, then hung up before their row was re-tracked (the adopter says the channel is gone) */
  ended?: number;
}): { result: 'done' | 'partial' | 'failed'; reason: string } {
  if (o.recovered > o.handed) {
    return {
      result: 'failed',
      reason: `${o.to} recovered ${o.recovered} call(s) but fs-ha handed it ${o.handed}: its recover took rows fs-ha did not rewrite for it`,
    };
  }
  if (o.missing)
    return {
      result: 'partial',
      reason: `${o.to} recovered ${o.recovered} of ${o.handed} call(s); ${o.missing} not re-tracked (originals kept in fsha.takeover_rows)`,
    };
  const ended = o.ended ? `; ${o.ended} of them ended since (hung up after their recover)` : '';
  if (o.held)
    return {
      result: 'partial',
      reason: `${o.to} took over ${o.handed} call(s) of ${o.from}${ended}; ${o.held} held back (kept in fsha.takeover_rows with the reason)`,
    };
  return { result: 'done', reason: `${o.to} took over ${o.handed} call(s) of ${o.from}${ended}` };
}

/** One adopter's recover, as observed. unreached: its recover did not run or did not answer. */
export interface AdopterOutcome {
  node: string;
  handed: number;
  recovered: number | null;
  missing: string[];
  result: 'done' | 'partial' | 'failed' | 'unreached';
  reason: string;
}

/**
 * Step 6 over every adopter: done when each re-tracked its whole share; failed when one recovered more
 * than it was handed (its recover took rows fs-ha did not rewrite for it), or when the only adopter could
 * not recover; partial otherwise, naming each adopter that fell short (its share stays in the table).
 */
export function judgeSpread(
  from: string,
  outcomes: AdopterOutcome[],
  held: number,
): { result: 'done' | 'partial' | 'failed'; reason: string } {
  const failed = outcomes.find((o) => o.result === 'failed');
  if (failed) return { result: 'failed', reason: failed.reason };
  if (outcomes.length === 1) {
    const o = outcomes[0];
    if (o.result === 'unreached') return { result: 'failed', reason: o.reason };
    return judgeRecovery({
      to: o.node,
      from,
      handed: o.handed,
      recovered: o.recovered ?? 0,
      missing: o.missing.length,
      held,
    });
  }
  const handed = outcomes.reduce((n, o) => n + o.handed, 0);
  const each = outcomes.map((o) => `${o.node} ${o.handed}`).join(', ');
  const short = outcomes.filter((o) => o.result !== 'done');
  if (!short.length && !held)
    return {
      result: 'done',
      reason: `${outcomes.map((o) => o.node).join(', ')} took over ${handed} call(s) of ${from} (${each})`,
    };
  const why = short.map((o) => o.reason);
  if (held) why.push(`${held} held back (kept in fsha.takeover_rows with the reason)`);
  return { result: 'partial', reason: `${from}'s ${handed} call(s) spread (${each}); ${why.join('; ')}` };
}
