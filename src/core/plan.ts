/**
 * The takeover's decisions, pure: given what was observed, is it safe, and what moves where.
 * Every decision carries one sentence that is logged and asserted in tests.
 */
import { isRunning } from './health';

export interface ProbeResult {
  /** healthy: socket answered, core ready, profiles running; unhealthy: answered but not serving */
  kind: 'healthy' | 'unhealthy' | 'refused' | 'timeout' | 'auth' | 'error' | 'not-configured';
  detail: string;
}

export interface Heartbeat {
  ageMs: number;
  healthy: boolean;
  coreUuid: string | null;
}

export type Liveness =
  | { verdict: 'dead'; reason: string }
  | { verdict: 'alive'; reason: string }
  | { verdict: 'wait'; waitMs: number; reason: string };

/**
 * Is the failed node still alive? Its event socket is the first witness; when it cannot be asked
 * (timeout, unreachable: a network split looks like this), its check_fs heartbeat in the database decides.
 */
export function judgeLiveness(node: string, probe: ProbeResult, hb: Heartbeat | null, staleMs: number): Liveness {
  switch (probe.kind) {
    case 'healthy':
      return { verdict: 'alive', reason: `${node} is alive: its event socket answers and its profiles run (${probe.detail})` };
    case 'unhealthy':
      return { verdict: 'dead', reason: `${node} answers but is not serving (${probe.detail})` };
    case 'refused':
      return { verdict: 'dead', reason: `${node} FreeSWITCH is down (${probe.detail})` };
    case 'auth':
      return { verdict: 'alive', reason: `${node} event socket answers but rejected the password: cannot prove it is down (${probe.detail})` };
    default: {
      const why = probe.kind === 'not-configured' ? 'no event socket configured for it' : probe.detail;
      if (!hb) return { verdict: 'dead', reason: `${node} cannot be asked (${why}) and has no heartbeat on record` };
      if (!hb.healthy) return { verdict: 'dead', reason: `${node} cannot be asked (${why}) and its last heartbeat said unhealthy` };
      if (hb.ageMs >= staleMs) return { verdict: 'dead', reason: `${node} cannot be asked (${why}) and its heartbeat is ${hb.ageMs} ms old` };
      return {
        verdict: 'wait',
        waitMs: staleMs - hb.ageMs,
        reason: `${node} cannot be asked (${why}) but its heartbeat is only ${hb.ageMs} ms old (stale after ${staleMs} ms)`,
      };
    }
  }
}

/** Rows the target's recover would select, grouped. */
export interface ScopeGroup {
  hostname: string;
  runtimeUuid: string;
  technology: string;
  profile: string;
  count: number;
}

export interface PlanInput {
  from: string;          // failed node switchname
  to: string;            // adopting node switchname
  targetCoreUuid: string;
  recover: 'sofia' | 'fsctl';
  /** foreign rows visible to the target's FreeSWITCH, BEFORE the move (runtime_uuid != targetCoreUuid) */
  scope: ScopeGroup[];
  /** rows the move will bring into the target's view (per-node layout: the failed node's rows) */
  incoming: ScopeGroup[];
  targetProfiles: Map<string, string>;
  /** --force: recover even though some rows' profiles are not running here */
  force: boolean;
}

export type Plan =
  | { action: 'refuse'; reason: string }
  | { action: 'nothing'; reason: string }
  | { action: 'recover'; reason: string; calls: number };

const key = (g: ScopeGroup) => `${g.hostname}|${g.runtimeUuid}|${g.technology}|${g.profile}`;

export function planRecover(p: PlanInput): Plan {
  const merged = new Map<string, ScopeGroup>();
  for (const g of [...p.scope, ...p.incoming]) {
    const k = key(g);
    if (!merged.has(k)) merged.set(k, { ...g });
    // the same rows can be in both lists (shared layout): never count twice
  }
  // after the move every failed-node row carries the target's hostname
  const after = [...merged.values()].map((g) => ({ ...g, hostname: g.hostname === p.from ? p.to : g.hostname }));
  // what the target's recover command will actually select
  const running = new Set([...p.targetProfiles].filter(([, s]) => isRunning(s)).map(([n]) => n));
  const selected = p.recover === 'fsctl' ? after : after.filter((g) => g.technology === 'sofia' && running.has(g.profile));

  const adopt = selected.filter((g) => g.hostname === p.to).reduce((n, g) => n + g.count, 0);
  const waiting = after.filter((g) => g.hostname === p.to).reduce((n, g) => n + g.count, 0);
  if (waiting === 0) return { action: 'nothing', reason: `no calls of ${p.from} left to take over on ${p.to}` };

  const strangers = new Map<string, number>();
  for (const g of after) if (g.hostname !== p.to) strangers.set(g.hostname, (strangers.get(g.hostname) ?? 0) + g.count);
  if (strangers.size) {
    const list = [...strangers].map(([h, n]) => `${h} (${n} row${n === 1 ? '' : 's'})`).join(', ');
    return {
      action: 'refuse',
      reason: `a recover on ${p.to} would also take the calls of ${list}: they share its recovery table ` +
        `(FreeSWITCH selects by runtime_uuid, not hostname); use the per-node layout (fs-ha db init --layout per-node)`,
    };
  }
  const down = new Map<string, number>();
  for (const g of after) {
    if (g.technology !== 'sofia') {
      if (p.recover === 'fsctl') down.set(`${g.technology}/${g.profile}`, (down.get(`${g.technology}/${g.profile}`) ?? 0) + g.count);
      continue;
    }
    if (!running.has(g.profile)) down.set(g.profile, (down.get(g.profile) ?? 0) + g.count);
  }
  if (down.size && !p.force) {
    const list = [...down].map(([prof, n]) => `${prof} (${n} call${n === 1 ? '' : 's'})`).join(', ');
    return {
      action: 'refuse',
      reason: `profile(s) not RUNNING on ${p.to}: ${list}; FreeSWITCH would drop those rows and the calls would be lost`,
    };
  }
  if (adopt === 0) return { action: 'nothing', reason: `no calls of ${p.from} that ${p.to} can recover` };
  return { action: 'recover', reason: `${adopt} call(s) to recover on ${p.to}`, calls: adopt };
}

/** The other leg of a bridged call (FreeSWITCH's signal_bond variable), if any. */
export function bondOf(metadata: string): string | null {
  const m = metadata.match(/<signal_bond>([^<]+)<\/signal_bond>/);
  return m ? m[1] : null;
}

/**
 * Both legs of a bridged call must move to one node in one recover, or the halves never re-bridge:
 * when one leg cannot be moved, keep its partner back too. Returns the uuids to hold back.
 */
export function partnersToHoldBack(moving: Array<{ uuid: string; bond: string | null }>, heldBack: Set<string>): Set<string> {
  const out = new Set<string>();
  for (const r of moving) if (r.bond && heldBack.has(r.bond)) out.add(r.uuid);
  return out;
}
