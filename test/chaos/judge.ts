/**
 * The chaos checker: pure, over the recorded history of one run (no I/O, unit-tested in judge.test.ts).
 *
 * Per call (all its legs): kept when, at its planned BYE, exactly one live node carried every leg, that channel
 * heard its far end, and the far end heard it; otherwise lost, with the reason and the fault it is charged to
 * (the last fault injected before the call fell silent). A call is at stake in a fault when one of its legs was
 * on the fault's target when it was injected and it was answered at least graceMs before (FreeSWITCH tracks a
 * call asynchronously: a call answered just before a crash may have no row yet). Every other call then up is a
 * bystander: it must not be lost or fall silent for longer than flowingMs. Beside that: no leg recovered twice
 * within one fault, and fs-ha's audit rows count what FreeSWITCH recovered.
 */
import type { CallAudio } from '../sim/rtp-echo';

export type CallKind = 'single' | 'bridged' | 'conference';

export interface LegEnd {
  uuid: string;
  /** the live nodes that carried the leg when its BYE came (each hung it up) */
  holders: string[];
  /** how long before the BYE its channel last heard the far end (null: never) */
  rxAgoMs: number | null;
  /** how long before the BYE its channel was bound (recovered) */
  boundAgoMs?: number;
  /** when its holder answered the BYE, after the BYE was first sent (a retransmission may be the one answered) */
  answeredAfterMs?: number;
  /** the holder had its row (under its own core), no channel yet: the BYE met the leg in its takeover */
  inTakeover?: boolean;
}

export interface CallRec {
  id: number;
  kind: CallKind;
  legs: string[];
  node: string;
  answeredAt: number;
  holdMs: number;
  /** its BYE: when it came and what each leg's node said */
  end?: { at: number; legs: LegEnd[] };
}

/** A set-up whose answer never reached the workload (its node crashed or froze with it): not a call the caller
 *  knows, but the node may have answered it; the workload ends its legs once the run is over. */
export interface AbandonedSetUp {
  kind: CallKind;
  /** the uuids the caller named its legs by */
  legs: string[];
  node: string;
  /** when it was asked */
  at: number;
  /** "uuid on node": where the run's end found a leg of it (a node had answered it after all) */
  endedOn: string[];
}

export interface FaultRec {
  n: number;
  kind: string;
  target: string;
  /** nodes the fault hit beside its target (the adopter an adopter-crash crashed): their calls are at stake too */
  alsoHit?: string[];
  detail: string;
  at: number;
  /** the cluster back at full strength */
  endAt: number;
  /** leg uuid -> node carrying it when the fault was injected */
  carriers: Record<string, string>;
  /** legs whose channel two live nodes had at once when the fault was injected ("uuid on A and B") */
  doubles?: string[];
}

export interface Recovery {
  node: string;
  /** when the recover ended (its rows deleted) */
  at: number;
  uuids: string[];
  /** when it bound its first leg */
  firstLegAt?: number;
}

export interface AuditRec {
  at: number;
  command: string;
  from: string;
  to: string;
  result: string;
  /** rows handed to the adopters */
  adopted: number;
  /** what the adopters' recover verifiably took (null: not verified) */
  recovered?: number | null;
}

export interface History {
  topology: string;
  calls: CallRec[];
  faults: FaultRec[];
  audio: Record<string, CallAudio>;
  recoveries: Recovery[];
  /** when a FreeSWITCH process ended (fsctl crash: a crash fault, a handover, a drain) */
  crashes?: Array<{ node: string; at: number }>;
  audits: AuditRec[];
  graceMs: number;
  flowingMs: number;
  /** recovery rows still there once every call had ended: "node uuid" */
  rowsLeft: string[];
  /** a node had a far end's BYE for a leg it carried (said before it hung up) */
  byesHeard?: Array<{ node: string; uuid: string; at: number }>;
  /** set-ups whose answer never came (ended at the run's end wherever a node had answered them) */
  abandoned?: AbandonedSetUp[];
}

export interface CallVerdict {
  call: CallRec;
  kept: boolean;
  reason: string;
  /** the fault it is charged to (its index in faults), or null when no fault came before */
  fault: number | null;
}

export interface TableRow {
  kind: string;
  faults: number;
  atStake: number;
  kept: number;
  lost: number;
  gapMedianMs: number;
  gapMaxMs: number;
  bystandersHit: number;
}

/**
 * Faults whose losses are known limits, each with its reason (docs/limits.md says more): their losses are listed
 * and counted, but do not fail a run. Every other loss does. Keys: a fault kind, or topology:kind.
 */
export const KNOWN_LIMITS: Record<string, string> = {
  'pair:adopter-crash':
    "both FreeSWITCH of the pair down at once: once both are back, the calls stranded under one node's name are taken over by the other (an earlier process's calls, 23.1), but not when the node they carry the name of becomes MASTER itself",
  'keepalived-kill':
    'keepalived killed with SIGKILL leaves its VIP on the node: two nodes hold the address until it is restarted, and calls on either may be deaf meanwhile',
  'agent-kill':
    "the agent dead for seconds: keepalived fails the node (agent_alive) and drops its VIP while nobody can hand its calls over; they are deaf until the agent returns (systemd's Restart=always: agent-kill-restart)",
};

/** Why losses under this fault are a known limit, or undefined. */
export function knownLimit(topology: string, kind: string): string | undefined {
  return KNOWN_LIMITS[`${topology}:${kind}`] ?? KNOWN_LIMITS[kind];
}

export interface Judgement {
  verdicts: CallVerdict[];
  table: TableRow[];
  /** invariants broken: a call carried twice, a leg recovered twice in one fault, rows left, audit wrong */
  violations: string[];
  /** lost calls, each with its fault */
  losses: CallVerdict[];
  /** the losses no known limit explains (a run with any fails) */
  unexplained: CallVerdict[];
}

/** a BYE that met a leg in its takeover: the holder's recover follows within this (its rows moved, recover under way) */
export const TAKEOVER_WINDOW_MS = 15000;

/** a node that had a BYE and ended before it answered: it ended within this */
const ENDED_WITH_BYE_MS = 5000;

/** When a leg's BYE was handled: the holder hung it up (a BYE that waited for a frozen node, or for a database
 *  statement, is handled after it was sent). */
const handledAt = (c: CallRec, l: LegEnd) => (c.end?.at ?? 0) + (l.answeredAfterMs ?? 0);

/** The facts beside a call that its verdict may need. */
export type LossFacts = Partial<Pick<History, 'recoveries' | 'crashes' | 'byesHeard'>>;

/** Its channel was bound by a recover a moment before its BYE was handled: no round trip yet, nothing to hear. */
const justBound = (l: LegEnd, flowingMs: number) =>
  l.rxAgoMs === null && l.boundAgoMs !== undefined && l.boundAgoMs <= flowingMs;

/**
 * Why a call that reached its BYE is lost, or null when it was kept. A leg is kept when exactly one live node
 * carried it, and its audio flowed both ways (its channel heard the far end, the far end heard it, each within
 * flowingMs) when its far end sent the BYE, or when its node handled it (a BYE sent into a freeze is handled at
 * the thaw). A BYE that met the leg in its takeover (the adopter had its row and its recover followed, or had
 * just bound its channel) ends the call as its far end asked: kept, its silence until then counted in the gap
 * (pendingSilence). So is a leg whose BYE a node had (bye-heard) and that node ended before it answered (the
 * BYE was in the hands of a crash): the call ended as asked, the answer died with the process.
 */
export function lossReason(
  c: CallRec,
  audio: Record<string, CallAudio>,
  flowingMs: number,
  facts: LossFacts = {},
): string | null {
  if (!c.end) return 'it never got its BYE (still up when the run ended)';
  const sent = c.end.at;
  for (const l of c.end.legs) {
    const a = audio[l.uuid];
    const farHeard = (t: number) => a !== undefined && a.last >= t - flowingMs;
    if (l.holders.length === 0) {
      const had = (facts.byesHeard ?? []).find(
        (b) =>
          b.uuid === l.uuid &&
          b.at >= sent &&
          (facts.crashes ?? []).some((x) => x.node === b.node && x.at >= b.at && x.at <= b.at + ENDED_WITH_BYE_MS),
      );
      if (had && farHeard(sent)) continue;
      return `leg ${l.uuid}: no live node carried it at its BYE`;
    }
    if (l.holders.length > 1) return `leg ${l.uuid}: carried by ${l.holders.join(' and ')} at once`;
    const node = l.holders[0];
    const handled = handledAt(c, l);
    if (l.inTakeover) {
      if (
        !(facts.recoveries ?? []).some(
          (r) => r.node === node && r.at >= handled && r.at <= handled + TAKEOVER_WINDOW_MS,
        )
      )
        return `leg ${l.uuid}: its BYE found only its row on ${node}, and no recover there followed`;
      continue;
    }
    if (justBound(l, flowingMs)) continue;
    // when its channel last heard the far end (null: never)
    const heard = l.rxAgoMs === null ? null : handled - l.rxAgoMs;
    const flowing = (t: number) => heard !== null && heard >= t - flowingMs && farHeard(t);
    if (flowing(sent) || flowing(handled)) continue;
    if (heard === null || heard < Math.min(sent, handled) - flowingMs)
      return `leg ${l.uuid} on ${node}: deaf (its channel heard nothing for ${l.rxAgoMs === null ? `the ${l.boundAgoMs ?? '?'} ms since it was bound` : `${l.rxAgoMs} ms`} before the BYE)`;
    if (!a) return `leg ${l.uuid}: its far end never heard it`;
    return `leg ${l.uuid}: its far end last heard it ${sent - a.last} ms before the BYE`;
  }
  return null;
}

/** A kept call's silence that no later packet closed: from its far end's last packet to a BYE that met it in its
 *  takeover (its row with the adopter, or its channel just bound). */
export function pendingSilence(c: CallRec, audio: Record<string, CallAudio>, flowingMs: number): number {
  let worst = 0;
  for (const l of c.end?.legs ?? [])
    if (l.holders.length === 1 && (l.inTakeover || justBound(l, flowingMs)))
      worst = Math.max(worst, handledAt(c, l) - (audio[l.uuid]?.last ?? c.answeredAt));
  return worst;
}

/** When a lost call was lost: the earliest last packet among its legs (its answer when none was heard), or its BYE. */
function silentFrom(c: CallRec, audio: Record<string, CallAudio>): number {
  const lasts = c.legs.map((u) => audio[u]?.last ?? c.answeredAt);
  return Math.min(c.end?.at ?? Number.POSITIVE_INFINITY, ...lasts);
}

/** a far end's last packet may precede the fault that silenced it by a packet time or two (ptime 20 ms) */
const SLACK_MS = 100;

/** The fault a loss at time t is charged to: the last one injected before t (within a packet's slack). */
export function faultAt(faults: FaultRec[], t: number): number | null {
  let found: number | null = null;
  for (let i = 0; i < faults.length; i++) if (faults[i].at <= t + SLACK_MS) found = i;
  return found;
}

/** The longest silence of a call's legs at their far end that overlaps [from, to]. */
export function gapIn(c: CallRec, audio: Record<string, CallAudio>, from: number, to: number): number {
  let worst = 0;
  for (const u of c.legs)
    for (const [a, b] of audio[u]?.gaps ?? []) if (b >= from && a <= to) worst = Math.max(worst, b - a);
  return worst;
}

function median(xs: number[]): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

export function judge(h: History): Judgement {
  const violations: string[] = [];
  const verdicts: CallVerdict[] = h.calls.map((call) => {
    const reason = lossReason(call, h.audio, h.flowingMs, h);
    if (!reason) return { call, kept: true, reason: 'kept', fault: null };
    return { call, kept: false, reason, fault: faultAt(h.faults, silentFrom(call, h.audio)) };
  });
  for (const v of verdicts)
    for (const l of v.call.end?.legs ?? [])
      if (l.holders.length > 1) violations.push(`call ${v.call.id}: leg ${l.uuid} carried by ${l.holders.join(', ')}`);
  const byLeg = new Map<string, CallVerdict>();
  for (const v of verdicts) for (const u of v.call.legs) byLeg.set(u, v);
  const rows = new Map<string, TableRow & { gaps: number[] }>();
  let auditedAll = 0;
  let recoveredAll = 0;
  const auditGaps: string[] = [];
  h.faults.forEach((f, i) => {
    const row =
      rows.get(f.kind) ??
      rows
        .set(f.kind, {
          kind: f.kind,
          faults: 0,
          atStake: 0,
          kept: 0,
          lost: 0,
          gapMedianMs: 0,
          gapMaxMs: 0,
          bystandersHit: 0,
          gaps: [],
        })
        .get(f.kind)!;
    row.faults++;
    const next = h.faults[i + 1]?.at ?? Number.POSITIVE_INFINITY;
    const seen = new Set<number>();
    for (const [uuid, node] of Object.entries(f.carriers)) {
      const v = byLeg.get(uuid);
      if (!v || seen.has(v.call.id)) continue;
      // a call that ended before the fault was injected, or answered within the grace, is not judged by it
      if (v.call.end && v.call.end.at <= f.at) continue;
      if (v.call.answeredAt > f.at - h.graceMs) continue;
      seen.add(v.call.id);
      const hit = [f.target, ...(f.alsoHit ?? [])];
      const onTarget = v.call.legs.some((u) => hit.includes(f.carriers[u])) || hit.includes(node);
      const lostHere = !v.kept && v.fault === i;
      if (onTarget || f.target === 'all') {
        row.atStake++;
        if (lostHere) row.lost++;
        else {
          row.kept++;
          const silence = v.call.end && v.call.end.at >= f.at ? pendingSilence(v.call, h.audio, h.flowingMs) : 0;
          row.gaps.push(Math.max(silence, gapIn(v.call, h.audio, f.at, Math.min(f.endAt, next))));
        }
      } else if (lostHere || gapIn(v.call, h.audio, f.at, Math.min(f.endAt, next)) > h.flowingMs) row.bystandersHit++;
    }
    for (const d of f.doubles ?? []) violations.push(`fault ${f.n} (${f.kind}): a leg carried twice: ${d}`);
    // fs-ha's audit: what its takeovers say was recovered is what FreeSWITCH recovered (a partial takeover hands
    // rows to an adopter that then failed: adopted, not recovered)
    const recovered = h.recoveries.filter((r) => r.at >= f.at && r.at < next).reduce((s, r) => s + r.uuids.length, 0);
    const audited = h.audits
      .filter((a) => a.at >= f.at && a.at < next && (a.result === 'done' || a.result === 'partial'))
      .reduce((s, a) => s + (a.recovered ?? a.adopted), 0);
    // a takeover that began in one fault's window may recover in the next: the totals must match, each window
    // where they differ is named when they do not
    auditedAll += audited;
    recoveredAll += recovered;
    if (audited !== recovered)
      auditGaps.push(
        `fault ${f.n} (${f.kind} ${f.target}): the audit says ${audited} leg(s) recovered, FreeSWITCH recovered ${recovered}`,
      );
  });
  if (auditedAll !== recoveredAll) violations.push(...auditGaps);
  violations.push(...recoveredTwice(h));
  violations.push(...zombies(h));
  violations.push(...deafAtFullStrength(h));
  for (const r of h.rowsLeft) {
    const v = byLeg.get(r.split(' ').pop() ?? '');
    const known = v && !v.kept && v.fault !== null && knownLimit(h.topology, h.faults[v.fault].kind);
    if (!known) violations.push(`row left behind once every call had ended: ${r}`);
  }
  const table = [...rows.values()].map(({ gaps, ...r }) => ({
    ...r,
    gapMedianMs: median(gaps),
    gapMaxMs: Math.max(0, ...gaps),
  }));
  const losses = verdicts.filter((v) => !v.kept);
  const unexplained = losses.filter((v) => v.fault === null || !knownLimit(h.topology, h.faults[v.fault].kind));
  return { verdicts, table, violations, losses, unexplained };
}

const ANSWER_SLACK_MS = 1000;

/**
 * Exactly once: a leg goes from the process that carried it (its answer, then each recover) to the next only once
 * that process has ended (a crash, or the stop of a handover or a drain). A recover of it while the previous
 * carrier still ran is a double: two channels for one call.
 */
export function recoveredTwice(h: Pick<History, 'calls' | 'recoveries' | 'crashes' | 'abandoned'>): string[] {
  const out: string[] = [];
  const crashes = h.crashes ?? [];
  const ended = (node: string, from: number, to: number) =>
    crashes.some((c) => c.node === node && c.at >= from && c.at <= to);
  const hops = new Map<string, Array<{ node: string; at: number }>>();
  // a call's answer is recorded when the workload hears back: its FreeSWITCH may have crashed a moment before
  for (const c of h.calls) for (const u of c.legs) hops.set(u, [{ node: c.node, at: c.answeredAt - ANSWER_SLACK_MS }]);
  // a set-up whose answer never came: its node may have answered it from the moment it was asked
  for (const s of h.abandoned ?? []) for (const u of s.legs) hops.set(u, [{ node: s.node, at: s.at }]);
  for (const r of [...h.recoveries].sort((a, b) => a.at - b.at))
    for (const u of r.uuids) hops.get(u)?.push({ node: r.node, at: r.at });
  for (const [u, list] of hops)
    for (let i = 1; i < list.length; i++)
      if (!ended(list[i - 1].node, list[i - 1].at, list[i].at))
        out.push(
          `leg ${u} recovered on ${list[i].node} at ${new Date(list[i].at).toISOString()} while ${list[i - 1].node}'s FreeSWITCH that carried it still ran`,
        );
  return out;
}

/**
 * No zombie: a leg whose BYE a node handled is never recovered by a recover that began after (its row outlived the
 * call, and every later takeover would carry a call its far end ended).
 */
export function zombies(h: Pick<History, 'calls' | 'recoveries'>): string[] {
  const out: string[] = [];
  const byLeg = new Map<string, Recovery[]>();
  for (const r of h.recoveries) for (const u of r.uuids) byLeg.set(u, [...(byLeg.get(u) ?? []), r]);
  for (const c of h.calls)
    for (const l of c.end?.legs ?? []) {
      if (!l.holders.length) continue;
      const handled = handledAt(c, l);
      for (const r of byLeg.get(l.uuid) ?? [])
        if ((r.firstLegAt ?? r.at) > handled)
          out.push(
            `leg ${l.uuid} of call ${c.id} recovered on ${r.node} at ${new Date(r.at).toISOString()}, after its BYE was handled on ${l.holders[0]} at ${new Date(handled).toISOString()}: a zombie call`,
          );
    }
  return out;
}

/**
 * No call left deaf by a fault: a silence at a far end that began in a fault (before the cluster was back at full
 * strength) ends within flowingMs of that return. A call still deaf then was left behind (its takeover failed
 * and nothing retried it) and only a later fault may have brought it back: kept at its BYE, but deaf meanwhile.
 * A silence that began in a fault whose losses are a known limit is that limit's (the pair's adopter-crash, the
 * agent dead for seconds). A silence that began in the calm at full strength is no fault's: calmSilences.
 */
export function deafAtFullStrength(
  h: Pick<History, 'calls' | 'faults' | 'audio' | 'flowingMs' | 'topology'>,
): string[] {
  const out: string[] = [];
  for (const c of h.calls)
    for (const u of c.legs)
      for (const [a, b] of h.audio[u]?.gaps ?? []) {
        const i = faultAt(h.faults, a);
        if (i === null) continue;
        const f = h.faults[i];
        if (a > f.endAt || b - f.endAt <= h.flowingMs || knownLimit(h.topology, f.kind)) continue;
        out.push(
          `call ${c.id} leg ${u}: deaf ${b - a} ms from ${new Date(a).toISOString()}, ${b - f.endAt} ms of it after the cluster was back at full strength from fault ${f.n} (${f.kind} ${f.target})`,
        );
      }
  return out;
}

/**
 * Silences longer than flowingMs that began in the calm at full strength, between faults: no fault and no
 * takeover behind them (on a starved machine, a simulator whose media plane stalled). Counted, not judged.
 */
export function calmSilences(h: Pick<History, 'calls' | 'faults' | 'audio' | 'flowingMs'>): number[] {
  const out: number[] = [];
  for (const c of h.calls)
    for (const u of c.legs)
      for (const [a, b] of h.audio[u]?.gaps ?? []) {
        const i = faultAt(h.faults, a);
        if (i !== null && a > h.faults[i].endAt && b - a > h.flowingMs) out.push(b - a);
      }
  return out;
}

/** The table an operator reads: one line per fault kind, then the totals. */
export function formatTable(t: TableRow[]): string {
  const head = ['fault', 'faults', 'calls at stake', 'kept', 'lost', 'gap median', 'gap max', 'bystanders hit'];
  const sum = (k: keyof TableRow) => t.reduce((s, r) => s + (r[k] as number), 0);
  const lines = [...t]
    .sort((a, b) => a.kind.localeCompare(b.kind))
    .map((r) => [
      r.kind,
      r.faults,
      r.atStake,
      r.kept,
      r.lost,
      `${r.gapMedianMs} ms`,
      `${r.gapMaxMs} ms`,
      r.bystandersHit,
    ]);
  lines.push([
    'all',
    sum('faults'),
    sum('atStake'),
    sum('kept'),
    sum('lost'),
    '',
    `${Math.max(0, ...t.map((r) => r.gapMaxMs))} ms`,
    sum('bystandersHit'),
  ]);
  const cells = [head, ...lines].map((l) => l.map(String));
  const w = head.map((_, i) => Math.max(...cells.map((c) => c[i].length)));
  const fmt = (c: string[]) => `| ${c.map((x, i) => x.padEnd(w[i])).join(' | ')} |`;
  return [fmt(cells[0]), `|${w.map((x) => '-'.repeat(x + 2)).join('|')}|`, ...cells.slice(1).map(fmt)].join('\n');
}
