/**
 * The takeover (what notify_master does, and `fs-ha takeover` by hand), as observe -> decide -> execute:
 * each step observes what it needs, asks core/decide.ts (refuse with a reason, nothing to do, or go), and
 * executes through adapters that only run SQL and event-socket commands.
 *  1 is the failed node provably dead? (core/liveness.ts; a fence, when configured, runs before going on)
 *  2 do the relations named recovery allow a safe recover? (core/per-node.ts); advisory lock; reconcile
 *  3 can this node recover? one event-socket session to it from this probe to standby
 *  4 would its recover take exactly what it adopts, with every profile it needs?
 *  5 one transaction: groups moved whole or held back whole (adapters/move-rows.ts)
 *  6 recover, verify re-tracking; the count may never exceed what was handed over
 *  7 one audit row and one log line
 */
import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { addressPairs, type Config, type EslTarget, type NodeConfig } from '../config';
import { EslSession } from '../adapters/esl';
import { Db } from '../adapters/db';
import { runFence } from '../adapters/fence';
import { moveRows } from '../adapters/move-rows';
import { boundUdpPorts } from '../adapters/bound-ports';
import { formatRange, PortBook } from '../core/ports';
import type { Prepared } from '../adapters/prepare';
import type { RewriteSpec } from '../core/rewrite';
import * as store from '../adapters/recovery-store';
import {
  decideDeath,
  decideEarlierProcess,
  decideStillDead,
  decideTarget,
  judgeRecovery,
  judgeSpread,
  planRecover,
  type AdopterOutcome,
  type ScopeGroup,
} from '../core/decide';
import { assignGroups, decideAdopters, profileFor, type Adopter, type AdopterFacts } from '../core/spread';
import { CLOSING_GRACE_MS, judgeLiveness, needsHeartbeat, type Liveness } from '../core/liveness';
import { nodeSchemas, recoveryRelationsProblem } from '../core/per-node';
import { parseRecoverReply } from '../core/health';
import { ActionFailed, ConfigError, Refused, UsageError, errorMessage, reported } from '../errors';
import { log } from '../log';
import { eslWhere, probeNode, probeSession, type NodeProbe } from '../observe';
import type { CommandSpec } from '../cli/spec';

export interface TakeoverOptions {
  from: string;
  /** the adopters (a list, or "A,B"); default: adopters.<from> of the config, else this node */
  to?: string | string[];
  dryRun?: boolean;
  noRecover?: boolean;
  force?: boolean;
  /** how this takeover was started, for the audit row (notify-master VI_1, takeover, ...) */
  command: string;
  /** who started it, for the audit row (default: this process's user @ this node; fs_cli's console: console@node) */
  actor?: string;
  /** drain's plan: a dry run while the source still runs by design (only with dryRun; nothing is changed) */
  planned?: boolean;
  /** what happened before (a drain's standby, settle, stop), ms, kept with this takeover's timings in the audit row */
  before?: Record<string, number>;
  /** when keepalived's transition was heard (the agent read its FIFO line; a hook: its start), epoch ms: the
   *  critical path, heard -> every recover sent, is fs-ha's own share of the caller's silence */
  heardAt?: number;
  /** the peer's rows prepared for this node by the agent while it stood by (adapters/prepare.ts) */
  prepared?: Prepared;
  /** a drain's audit row and clock: this takeover updates that row, its timings on the drain's clock (one row, one clock) */
  auditId?: number;
  clockStart?: number;
  /** a connection kept ready by the agent: used, never closed, by this takeover */
  db?: Db;
  /** the agent's open session to this node's FreeSWITCH, lent for this takeover (its health probes wait): used, never closed */
  session?: EslSession;
}

export interface TakeoverReport {
  result: 'done' | 'partial' | 'nothing' | 'refused' | 'failed' | 'dry-run' | 'moved';
  reason: string;
  from: string;
  to: string;
  adopted: number;
  recovered: number | null;
  missing: string[];
  /** rows not moved (their group could not be rewritten), with the reason; kept in fsha.takeover_rows */
  skipped: Array<{ uuid: string; reason: string }>;
  timings: Record<string, number>;
  preview?: Array<{ uuid: string; profile: string; replaced: number; to: string }>;
  /** the takeover already took this node's profiles out of standby (notify need not) */
  standbyOff?: boolean;
  /** each adopter's share and how its recover went */
  adopters: AdopterReport[];
}

export interface AdopterReport extends AdopterOutcome {
  /** when its recover answered (epoch ms) */
  doneMs: number;
  /** when its recover was sent (epoch ms; 0: never) */
  sentMs: number;
  standbyOff?: boolean;
}

/** The failed node's profile names that are another name on the adopter (nodes.<n>.profiles). */
function profilePairs(from: NodeConfig, to: NodeConfig, profiles: string[]): Array<[string, string]> {
  return [...new Set(profiles)]
    .sort()
    .map((p): [string, string] => [p, profileFor(p, from.profiles, to.profiles)])
    .filter(([a, b]) => a !== b);
}

/** How from's rows are rewritten for x (the takeover's and the preparation's, so their keys agree). */
export function rewriteSpecFor(from: NodeConfig, x: NodeConfig, profiles: string[]): RewriteSpec {
  return {
    fromSwitchname: from.switchname,
    toSwitchname: x.switchname,
    addresses: addressPairs(from, x),
    profiles: profilePairs(from, x, profiles),
  };
}

/**
 * One adopter's step 6: recover on its event socket, verify its share was re-tracked under its core.
 * Whatever goes wrong is its outcome, not the others': an adopter that dies before or during its recover
 * leaves its share in the table, rewritten for it (its own recover, or a takeover of it, picks it up).
 */
async function recoverOn(
  cfg: Config,
  x: NodeConfig,
  session: EslSession,
  core: string,
  db: Db,
  from: string,
  ctx: { from: string; to: string },
): Promise<AdopterReport> {
  const r: AdopterReport = {
    node: x.name,
    handed: 0,
    recovered: null,
    missing: [],
    result: 'unreached',
    reason: '',
    doneMs: 0,
    sentMs: 0,
  };
  let pending: string[] = [];
  try {
    pending = await store.pendingUuids(db, cfg.layout, x.switchname, core);
    r.handed = pending.length;
    if (!pending.length) {
      // nothing was handed to it (fewer groups than adopters): its recover is not run (sofia recover would clear its standby)
      r.result = 'done';
      r.recovered = 0;
      r.doneMs = Date.now();
      r.reason = `${x.name} was handed no call of ${from}`;
      return r;
    }
    const cmd = cfg.recover === 'fsctl' ? 'fsctl recover' : 'sofia recover';
    r.sentMs = Date.now();
    const reply = await session.api(cmd, cfg.timeouts.recoverMs);
    r.doneMs = Date.now();
    const count = parseRecoverReply(reply);
    if (count === null)
      throw new ActionFailed(
        `"${cmd}" gave an answer fs-ha does not understand: ${JSON.stringify(reply.trim().slice(0, 120))}`,
      );
    r.recovered = count;
    if (cfg.standby && x.name === cfg.node) {
      r.standbyOff = await session.api('sofia global standby off', x.esl!.timeoutMs).then(
        (a) => a.startsWith('+OK'),
        (e) => {
          log('warn', `takeover: standby off failed: ${errorMessage(e)}`, ctx);
          return false;
        },
      );
    }
    // sofia recover clears standby on every profile (fsctl recover does not; then only the standby off above did)
    if (cfg.recover === 'sofia' || r.standbyOff)
      await store.recordStandby(db, x.name, false, `takeover recover (${ctx.from})`).catch(() => undefined);
    const { missing, ended } = await awaitRetrackedOrEnded(cfg, session, db, pending, core, count === pending.length);
    r.missing = missing;
    await store.dropKeptCopies(
      db,
      pending.filter((u) => !r.missing.includes(u)),
    );
    const v = judgeRecovery({
      to: x.name,
      from,
      handed: pending.length,
      recovered: count,
      missing: r.missing.length,
      held: 0,
      ended: ended.length,
    });
    r.result = v.result;
    // which calls, so the operator can look each one up (fs-ha history, fsha.takeover_rows, uuid_dump on the adopter)
    r.reason = r.missing.length
      ? `${v.reason}: ${r.missing.slice(0, 5).join(', ')}${r.missing.length > 5 ? ', ...' : ''}`
      : v.reason;
  } catch (e) {
    r.doneMs ||= Date.now();
    if (r.recovered === null) {
      r.missing = pending;
      r.reason =
        `${x.name} did not recover its share of ${pending.length} call(s): ${errorMessage(e)}; they stay in the recovery table under ${x.switchname} ` +
        `(its own recover, or fs-ha takeover --from ${x.name}, picks them up)`;
    } else {
      r.result = 'partial';
      r.reason = `${x.name} recovered ${r.recovered} of ${pending.length} call(s), then: ${errorMessage(e)}`;
    }
  }
  log(r.result === 'done' ? 'info' : 'error', `takeover: adopter ${x.name} ${r.result}: ${r.reason}`, {
    ...ctx,
    node: x.name,
    calls: r.handed,
    recovered: r.recovered ?? undefined,
  });
  return r;
}

/**
 * Every handed call re-tracked by the adopter, or ended: a busy switch hangs a few calls up every second, some
 * before FreeSWITCH re-tracked them (its SQL queue lags under load). When every handed call became a channel (the
 * recover's count says so), a call whose row has not come and whose channel the adopter no longer has (uuid_exists,
 * asked every 300 ms while rows are awaited) was hung up: ended, not missing.
 */
async function awaitRetrackedOrEnded(
  cfg: Config,
  session: EslSession,
  db: Db,
  pending: string[],
  core: string,
  everyOneCameUp: boolean,
): Promise<{ missing: string[]; ended: string[] }> {
  const deadline = Date.now() + cfg.timeouts.verifyMs;
  const ended: string[] = [];
  let missing = pending;
  for (;;) {
    const slice = everyOneCameUp ? Math.min(300, Math.max(0, deadline - Date.now())) : cfg.timeouts.verifyMs;
    missing = await store.awaitRetracked(db, cfg.layout, missing, core, slice);
    if (!missing.length || !everyOneCameUp || Date.now() >= deadline) return { missing, ended };
    for (const u of missing.slice(0, 100)) {
      const a = await session.api(`uuid_exists ${u}`, cfg.esl.timeoutMs).catch(() => '');
      if (a.trim() === 'false') ended.push(u);
    }
    missing = missing.filter((u) => !ended.includes(u));
  }
}

/**
 * Step 5's media facts: per adopter, the RTP ports its calls hold (its rows; on this node also every bound UDP
 * socket), so no adopted call binds a port an adopter's call uses or its allocator may hand out.
 */
async function portBooks(cfg: Config, db: Db, adopting: NodeConfig[]): Promise<Map<string, PortBook>> {
  const held = await store.mediaPortsUnder(
    db,
    cfg.layout,
    adopting.map((x) => x.switchname),
  );
  const local = adopting.some((x) => x.name === cfg.node) ? await boundUdpPorts() : new Set<number>();
  return new Map(
    adopting.map((x) => [
      x.name,
      new PortBook(x.name, x.rtpPorts, cfg.recoveryPorts, [
        ...(held.get(x.switchname) ?? []),
        ...(x.name === cfg.node ? local : []),
      ]),
    ]),
  );
}

/** Step 1's observation: probe (the first one may already be under way), the heartbeat when the probe cannot tell, until a verdict. */
async function observeDeath(
  cfg: Config,
  from: NodeConfig,
  db: Db,
  first: Promise<NodeProbe>,
  seen: FirstSeen,
): Promise<{ life: Liveness; core: string | null }> {
  const staleMs = cfg.liveness.heartbeatStaleMs;
  const waitAtMostMs = Math.max(staleMs, CLOSING_GRACE_MS) + 1000; // a heartbeat to age, or a closing socket to stop
  const giveUp = Date.now() + waitAtMostMs;
  let pending: Promise<NodeProbe> | null = first;
  for (;;) {
    const probe = await (pending ?? probeNode(from.esl, [], from.esl?.timeoutMs ?? cfg.esl.timeoutMs));
    pending = null;
    if (probe.kind === 'refused') seen.refused ??= Date.now();
    if (probe.kind === 'closed') seen.closed ??= Date.now();
    const hb = needsHeartbeat(probe.kind) ? await store.readHeartbeat(db, from.name) : null;
    const life = judgeLiveness(from.name, probe, hb, staleMs, whoIs(from, seen));
    if (life.verdict !== 'wait') return { life, core: probe.coreUuid ?? null };
    if (Date.now() >= giveUp)
      return {
        life: { verdict: 'unknown', reason: `${life.reason}, and that did not change within ${waitAtMostMs} ms` },
        core: null,
      };
    log('info', `takeover: waiting ${life.waitMs} ms before judging ${from.name}`, { reason: life.reason });
    await sleep(Math.min(life.waitMs + 50, Math.max(0, giveUp - Date.now())));
  }
}

/** When the node's address first refused, and first closed on us. */
interface FirstSeen {
  refused: number | null;
  closed: number | null;
}

/** Who the node must be when its address answers, and since when its address refuses or closes on us (core/liveness.ts). */
function whoIs(n: NodeConfig, seen: FirstSeen) {
  const ago = (at: number | null) => (at === null ? undefined : Date.now() - at);
  return {
    switchname: n.switchname,
    where: eslWhere(n.esl),
    refusedForMs: ago(seen.refused),
    closedForMs: ago(seen.closed),
  };
}

/** Step 3's observation: one session to the adopting node, kept for the recover and standby. */
async function openTarget(
  target: EslTarget,
  lent?: EslSession,
): Promise<{ session: EslSession | null; probe: NodeProbe }> {
  const started = Date.now();
  if (lent && !lent.closed) return { session: lent, probe: await probeSession(lent, [], target.timeoutMs, started) };
  let session: EslSession;
  try {
    session = await EslSession.open(target, target.timeoutMs);
  } catch {
    return { session: null, probe: await probeNode(target, [], target.timeoutMs) }; // the same failure, typed
  }
  const probe = await probeSession(session, [], target.timeoutMs, started);
  return { session, probe };
}

/**
 * The takeover, retried when its database connection dies under it (the primary killed, a standby promoted):
 * the rewrite is one transaction, so nothing of the failed attempt stays; the next attempt connects to
 * whichever host is the primary now, takes the (per-session) lock again, and the rows' state there decides
 * what is left to do. So is one whose first connect finds no primary (late under load, a switch-over under way,
 * not listening yet): nothing was done, and the calls it is for are deaf until it runs (a drain or handover has
 * already stopped their FreeSWITCH: 23.7). Attempts go on for 3 x timeouts.database_ms; then the error stands
 * (a rerun or the next notify completes it).
 */
export async function takeover(cfg: Config, opts: TakeoverOptions): Promise<TakeoverReport> {
  const until = Date.now() + 3 * cfg.timeouts.databaseMs;
  for (let attempt = 1; ; attempt++) {
    const lost: { db: Db | null } = { db: null };
    try {
      return await takeoverOnce(cfg, attempt === 1 ? opts : { ...opts, db: undefined }, lost);
    } catch (e) {
      const unreachable = e instanceof ActionFailed && /no writable primary|cannot connect/.test(e.message);
      const why = lost.db?.lostReason ?? (unreachable ? e.message : null);
      if (!why || Date.now() >= until) throw e;
      log(
        'warn',
        `takeover: the database connection ${lost.db?.lostReason ? 'was lost' : 'could not be opened'} (${why}); attempt ${attempt + 1} on whichever host is the primary now`,
        { from: opts.from, to: opts.to ?? cfg.node },
      );
      await sleep(Math.min(500, Math.max(0, until - Date.now())));
    }
  }
}

/**
 * One takeover as the numbered list at the top of this file: each stage takes the run (what is decided and
 * held so far) and returns what the next needs, a report that ends the run early (nothing to do, a dry run),
 * or throws its refusal; finishRun logs, audits and lets go of what the run holds, whatever happened.
 */
async function takeoverOnce(cfg: Config, opts: TakeoverOptions, lost: { db: Db | null }): Promise<TakeoverReport> {
  const run = startRun(cfg, opts);
  try {
    // 1. the failed node must be provably dead (its first probe goes out beside the database connect)
    const firstProbe = probeNode(run.from.esl, [], run.from.esl?.timeoutMs ?? cfg.esl.timeoutMs);
    const db = await connect(run, lost);
    const death = await observeAndDecideDeath(run, db, firstProbe);
    // 2. the relations named recovery, the database's replication, the locks, what an earlier run left
    const stop = await guardRelations(run, db);
    if (stop) return stop;
    await lockAndRecheck(run, db, death);
    // 3 + 4. which adopters can recover exactly what they adopt
    const plan = await planAdopters(run, db);
    if ('result' in plan) return plan;
    // 5. the rewrite, all or nothing (a dry run and --no-recover end here)
    const early = await moveRowsFor(run, db, plan);
    if (early) return early;
    // 6 + 7. every adopter recovers its share; the verdict
    await recoverEach(run, db, plan);
    return verdict(run);
  } catch (e) {
    throw failRun(run, e);
  } finally {
    await finishRun(run);
  }
}

/** One takeover's state, shared by its stages: its facts, its report and timings, and what it holds until the end. */
interface Run {
  cfg: Config;
  opts: TakeoverOptions;
  from: NodeConfig;
  targets: NodeConfig[];
  id: string;
  started: Date;
  t0: number;
  timings: Record<string, number>;
  report: TakeoverReport;
  ctx: { from: string; to: string };
  table: string;
  db: Db | null;
  /** the failed node's lock, the adopters' locks, the event-socket sessions opened: released by finishRun */
  nodeLocked: boolean;
  adopterLocks: string[];
  sessions: Map<string, EslSession>;
  refusalLevel: 'info' | 'warn' | 'error';
  /** since when the failed node's address refuses (identity, core/liveness.ts) */
  seen: FirstSeen;
  /** the failed node is alive with this core: only the calls of its earlier FreeSWITCH are taken (decideEarlierProcess) */
  liveCore: string | null;
}

/** The failed node and the adopters as configured (usage and configuration errors first, before anything is asked). */
function startRun(cfg: Config, opts: TakeoverOptions): Run {
  const from = cfg.nodes[opts.from];
  if (!from) throw new UsageError(`unknown node "${opts.from}" (configured: ${Object.keys(cfg.nodes).join(', ')})`);
  const names =
    typeof opts.to === 'string'
      ? opts.to
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean)
      : (opts.to ?? cfg.adopters[from.name] ?? [cfg.node]);
  if (!names.length) throw new UsageError('--to needs at least one node');
  const targets = names.map((n) => {
    const node = cfg.nodes[n];
    if (!node) throw new UsageError(`unknown node "${n}" (configured: ${Object.keys(cfg.nodes).join(', ')})`);
    if (node.name === from.name) throw new UsageError(`cannot take over ${from.name} onto itself`);
    if (!opts.noRecover && !node.esl)
      throw new ConfigError(`config: nodes.${node.name}.esl is needed to recover on ${node.name}`);
    return node;
  });
  if (new Set(names).size !== names.length) throw new UsageError(`--to names a node twice: ${names.join(',')}`);
  if (!cfg.database) throw new ConfigError('config: missing key database (the takeover needs the shared database)');
  const t0 = opts.clockStart ?? Date.now();
  const timings: Record<string, number> = {};
  return {
    cfg,
    opts,
    from,
    targets,
    id: randomUUID(),
    started: new Date(t0),
    t0,
    timings,
    report: {
      result: 'failed',
      reason: '',
      from: from.name,
      to: names.join(','),
      adopted: 0,
      recovered: null,
      missing: [],
      skipped: [],
      timings,
      adopters: [],
    },
    ctx: { from: from.name, to: names.join(',') },
    table: store.recoveryTable(cfg.layout),
    db: null,
    nodeLocked: false,
    adopterLocks: [],
    sessions: new Map(),
    refusalLevel: 'error',
    seen: { refused: null, closed: null },
    liveCore: null,
  };
}

const nothing = (run: Run, reason: string): TakeoverReport => {
  run.report.result = 'nothing';
  run.report.reason = reason;
  return run.report;
};

/** The database: the agent's warm connection, else a new one; fs-ha's tables before anything (every outcome gets its audit row). */
async function connect(run: Run, lost: { db: Db | null }): Promise<Db> {
  const { cfg, opts } = run;
  const db =
    opts.db && !opts.db.lostReason
      ? opts.db
      : await Db.connect(
          cfg.database!,
          cfg.timeouts.databaseMs,
          `fs-ha takeover ${run.from.name}->${run.targets[0].name}`,
        );
  run.db = db;
  lost.db = db;
  run.timings.db_connect_ms = Date.now() - run.t0;
  if (!opts.dryRun) await store.applySchemaOnce(db, cfg.layout);
  return db;
}

/** Step 1: the verdict on the failed node (core/liveness.ts, core/decide.ts), the fence when configured. */
async function observeAndDecideDeath(
  run: Run,
  db: Db,
  firstProbe: Promise<NodeProbe>,
): Promise<{ life: Liveness; death: DeathDecision }> {
  const { cfg, opts, from } = run;
  const planned = !!(opts.planned && opts.dryRun);
  const seen = planned
    ? {
        life: {
          verdict: 'alive' as const,
          serving: true,
          reason: `${from.name} still runs: this is the plan of its drain, nothing is changed`,
        },
        core: null,
      }
    : await observeDeath(cfg, from, db, firstProbe, run.seen);
  const life: Liveness = seen.life;
  run.timings.liveness_ms = Date.now() - run.t0;
  let death = planned
    ? { action: 'go' as const, reason: life.reason, fence: false, forced: false }
    : decideDeath(from.name, life, { force: !!opts.force, fence: cfg.fence ? 'configured' : 'none' });
  // alive: only the calls of its earlier FreeSWITCH, if any, and never the ones of the core that answered
  const earlier =
    death.action === 'go' || planned
      ? null
      : decideEarlierProcess(
          from.name,
          life,
          seen.core,
          await store.rowsOfHost(db, cfg.layout, from.switchname, seen.core),
        );
  if (earlier?.action === 'go') {
    run.liveCore = earlier.liveCore;
    death = { action: 'go', reason: earlier.reason, fence: false, forced: false };
    run.refusalLevel = 'warn';
  }
  if (death.action !== 'go')
    throw new Refused(
      death.reason,
      death.action === 'refuse' ? death.level : 'error',
      death.action === 'refuse' ? (death.nothingToDo ?? null) : null,
    );
  log(death.forced || run.liveCore ? 'warn' : 'info', `takeover: ${death.reason}`, run.ctx);
  if (death.fence && !opts.dryRun) {
    await runFence(
      cfg.fence,
      { FSHA_FAILED_NODE: from.name, FSHA_FAILED_SWITCHNAME: from.switchname, FSHA_NODE: run.targets[0].name },
      cfg.timeouts.fenceMs,
    );
    run.timings.fence_ms = Date.now() - run.t0;
    log('info', `takeover: ${decideDeath(from.name, life, { force: false, fence: 'succeeded' }).reason}`, run.ctx);
  }
  return { life, death };
}
type DeathDecision = { action: 'go'; reason: string; fence: boolean; forced: boolean };

/** Step 2: only the relations named recovery the layout allows, one writable primary, a recovery table (else nothing to do). */
async function guardRelations(run: Run, db: Db): Promise<TakeoverReport | null> {
  const { cfg } = run;
  const schemas = nodeSchemas(Object.values(cfg.nodes));
  if ('problem' in schemas) throw new ConfigError(`config: ${schemas.problem}`);
  const seen = await store.recoveryRelationsAnd(db, run.table);
  const layoutProblem = recoveryRelationsProblem(cfg.layout, seen.relations, schemas.schemas, [
    run.from.switchname,
    ...run.targets.map((x) => x.switchname),
  ]);
  if (layoutProblem) throw new Refused(`refusing: ${layoutProblem}`);
  const replication = await store.replicationVerdict(db);
  if (replication.level === 'refuse') throw new Refused(`refusing: ${replication.reason}`);
  if (seen.tableExists) return null;
  if (cfg.layout === 'per-node')
    throw new Refused(
      `refusing: layout is per-node but ${run.table} does not exist (run fs-ha db init --layout per-node)`,
    );
  return nothing(run, `no recovery table yet (${run.table}): no calls are tracked`);
}

/**
 * Step 2, the locks: the failed node's; then, since the wait may have been long, a node judged dead by its
 * refusing socket is asked once more (one that came back meanwhile is never taken); then one lock per
 * adopter, held through its recover and verify (its recover deletes every foreign row it sees when it ends);
 * and what an earlier run of this takeover left is recorded.
 */
async function lockAndRecheck(run: Run, db: Db, d: { life: Liveness; death: DeathDecision }): Promise<void> {
  const { cfg, opts, from } = run;
  await store.lockNode(db, from.switchname, cfg.timeouts.lockMs);
  run.nodeLocked = true;
  run.timings.locked_ms = Date.now() - run.t0;
  if (!d.death.forced && !d.death.fence && d.life.verdict === 'dead' && !opts.dryRun) {
    const again = await probeNode(from.esl, [], Math.min(500, from.esl?.timeoutMs ?? cfg.esl.timeoutMs));
    const hb = needsHeartbeat(again.kind) ? await store.readHeartbeat(db, from.name) : null;
    const still = decideStillDead(
      from.name,
      judgeLiveness(from.name, again, hb, cfg.liveness.heartbeatStaleMs, whoIs(from, run.seen)),
    );
    if (still.action !== 'go') throw new Refused(still.reason);
  }
  // a node alive again: a takeover onto it may be under way (its rows wait for its recover, under another core):
  // its adopter lock too, so that one ends (and they are re-tracked under its core) before its rows are counted
  run.adopterLocks = await store.lockAdopters(
    db,
    [...run.targets.map((x) => x.switchname), ...(run.liveCore ? [from.switchname] : [])],
    cfg.timeouts.lockMs,
  );
  run.timings.adopters_locked_ms = Date.now() - run.t0;
  if (opts.dryRun) return;
  const r = await store.reconcile(db, run.table, from.name);
  if (r.dropped || r.interrupted) {
    log(
      'warn',
      `takeover: ${r.interrupted} earlier takeover(s) of ${from.name} interrupted before their audit row: recorded in fsha.audit as interrupted; ` +
        `dropped ${r.dropped} kept copies of calls re-tracked since`,
      run.ctx,
    );
  }
}

/** What steps 5 and 6 work on: the failed node's rows by group, each adopter's core, the adopters chosen. */
interface AdopterPlan {
  incoming: ScopeGroup[];
  cores: Map<string, string>;
  adopters: Adopter[];
  adopting: NodeConfig[];
}

/**
 * Steps 3 and 4: one event-socket session to each adopter (kept from this probe to its standby), who answers
 * checked; each one's recover scope against exactly what it would adopt, every profile it needs running
 * (core/decide.ts planRecover); the adopters that can (core/spread.ts decideAdopters).
 */
async function planAdopters(run: Run, db: Db): Promise<AdopterPlan | TakeoverReport> {
  const { cfg, opts, from, targets } = run;
  const incoming = await store.rowsOfHost(db, cfg.layout, from.switchname, run.liveCore);
  const cores = new Map<string, string>();
  const weights = new Map(targets.map((x) => [x.name, x.weight]));
  let adopters: Adopter[] = targets.map((x) => ({ name: x.name, weight: x.weight }));
  if (!opts.noRecover) {
    const facts = await Promise.all(
      targets.map(async (x): Promise<AdopterFacts & { nothing?: string }> => {
        const opened = await openTarget(x.esl!, x.name === cfg.node ? opts.session : undefined);
        if (opened.session) run.sessions.set(x.name, opened.session);
        const ready = decideTarget(x.name, opened.probe, { switchname: x.switchname, where: eslWhere(x.esl) });
        if (ready.action !== 'go') return { name: x.name, problem: ready.reason };
        cores.set(x.name, ready.coreUuid);
        const scope = await store.scopeOf(db, cfg.layout, x.switchname, ready.coreUuid);
        const mine =
          from.switchname === x.switchname
            ? []
            : incoming
                .filter((g) => g.runtimeUuid !== ready.coreUuid)
                .map((g) => ({ ...g, profile: profileFor(g.profile, from.profiles, x.profiles) }));
        const plan = planRecover({
          from: from.switchname,
          to: x.switchname,
          recover: cfg.recover,
          scope,
          incoming: mine,
          targetProfiles: opened.probe.profiles ?? new Map(),
          force: !!opts.force,
          liveCore: run.liveCore,
        });
        log('info', `takeover: plan ${plan.action} on ${x.name}: ${plan.reason}`, run.ctx);
        if (plan.action === 'nothing') return { name: x.name, problem: null, nothing: plan.reason };
        return { name: x.name, problem: plan.action === 'refuse' ? plan.reason : null };
      }),
    );
    run.timings.planned_ms = Date.now() - run.t0;
    const none = facts.find((f) => f.nothing);
    if (none) return nothing(run, none.nothing!);
    const chosen = decideAdopters(from.name, facts, cfg.layout, weights);
    if (chosen.action === 'refuse') throw new Refused(chosen.reason);
    for (const sk of chosen.skipped) log('warn', `takeover: adopter ${sk.name} skipped: ${sk.problem}`, run.ctx);
    adopters = chosen.adopters;
  } else {
    const chosen = decideAdopters(
      from.name,
      targets.map((x) => ({ name: x.name, problem: null })),
      cfg.layout,
      weights,
    );
    if (chosen.action === 'refuse') throw new Refused(chosen.reason);
  }
  run.report.to = adopters.map((a) => a.name).join(',');
  run.ctx.to = run.report.to;
  return { incoming, cores, adopters, adopting: adopters.map((a) => cfg.nodes[a.name]) };
}

/**
 * Step 5: one transaction, each group for its adopter (adapters/move-rows.ts), RTP ports placed on it
 * (core/ports.ts); a dry run reports what would move, --no-recover what moved: both end the run here.
 */
async function moveRowsFor(run: Run, db: Db, plan: AdopterPlan): Promise<TakeoverReport | null> {
  const { cfg, opts, from, report, timings } = run;
  const { adopting } = plan;
  if (adopting.length === 1 && from.switchname === adopting[0].switchname) {
    if (!opts.dryRun) return opts.noRecover ? movedOnly(run) : null;
    report.result = 'dry-run';
    report.reason = `${from.name} and ${adopting[0].name} share switchname ${adopting[0].switchname}: nothing to rewrite; would recover on ${adopting[0].name}`;
    return report;
  }
  const books = await portBooks(cfg, db, adopting);
  const moved = await moveRows(
    db,
    cfg.layout,
    run.table,
    adopting.map((x) => ({
      node: x.name,
      ports: books.get(x.name),
      spec: rewriteSpecFor(
        from,
        x,
        plan.incoming.map((g) => g.profile),
      ),
    })),
    {
      takeoverId: run.id,
      fromNode: from.name,
      toNode: report.to,
      targetCores: [...plan.cores.values(), ...(run.liveCore ? [run.liveCore] : [])],
      dryRun: !!opts.dryRun,
      assign: (groups) => assignGroups(groups, plan.adopters),
      prepared: opts.prepared,
    },
  );
  if (moved.prepared) timings.prepared_rows = moved.prepared;
  report.skipped = moved.held;
  report.adopted = moved.rows.length;
  Object.assign(timings, {
    rewrite_select_ms: moved.ms.select,
    rewrite_cpu_ms: moved.ms.rewrite,
    rewrite_write_ms: moved.ms.write,
    rewritten_ms: Date.now() - run.t0,
  });
  // ERROR: a held call is not recovered anywhere; the operator decides (its row is kept in fsha.takeover_rows)
  for (const s of moved.held)
    log('error', `takeover: call held back, not recovered: ${s.reason}`, { ...run.ctx, uuid: s.uuid });
  const perAdopter = adopting.map((x) => `${x.name} ${moved.rows.filter((r) => r.to === x.name).length}`).join(', ');
  if (opts.dryRun) {
    report.preview = moved.rows;
    report.result = 'dry-run';
    report.reason =
      `would move ${moved.rows.length} row(s) of ${from.name} to ${adopting.length > 1 ? perAdopter : report.to}` +
      (moved.held.length ? `, hold back ${moved.held.length}` : '') +
      (opts.noRecover ? '' : ` and recover them there`);
    return report;
  }
  for (const b of books.values()) {
    if (b.moved)
      log(
        'info',
        `takeover: ${b.moved} RTP port(s) moved into recovery_ports ${formatRange(b.band)} on ${b.node} (in its rtp_ports or in use there)`,
        run.ctx,
      );
  }
  log('info', `takeover: moved ${moved.rows.length} row(s) to ${adopting.length > 1 ? perAdopter : report.to}`, {
    ...run.ctx,
    calls: moved.rows.length,
    held: moved.held.length,
    ms: timings.rewritten_ms,
  });
  return opts.noRecover ? movedOnly(run) : null;
}

function movedOnly(run: Run): TakeoverReport {
  run.report.result = 'moved';
  run.report.reason = `moved ${run.report.adopted} row(s) of ${run.from.name} to ${run.report.to}; recover there by hand`;
  return run.report;
}

/** Step 6: every adopter recovers its share, in parallel, each verified on its own; the critical path measured. */
async function recoverEach(run: Run, db: Db, plan: AdopterPlan): Promise<void> {
  const { cfg, opts, report, timings, t0 } = run;
  timings.recover_start_ms = Date.now() - t0;
  report.adopters = await Promise.all(
    plan.adopting.map((x) =>
      recoverOn(cfg, x, run.sessions.get(x.name)!, plan.cores.get(x.name)!, db, run.from.name, run.ctx),
    ),
  );
  timings.recover_done_ms = Math.max(...report.adopters.map((a) => a.doneMs - t0));
  const sent = Math.max(...report.adopters.map((a) => a.sentMs));
  if (sent) {
    timings.recover_sent_ms = sent - t0;
    if (opts.heardAt) timings.critical_path_ms = Math.round(sent - opts.heardAt);
  }
  timings.verified_ms = Date.now() - t0;
}

/** Step 7: the adopters' outcomes as one result (core/decide.ts judgeSpread); failed is thrown. */
function verdict(run: Run): TakeoverReport {
  const { report } = run;
  report.adopted = report.adopters.reduce((n, a) => n + a.handed, 0);
  report.recovered = report.adopters.reduce((n, a) => n + (a.recovered ?? 0), 0);
  report.missing = report.adopters.flatMap((a) => a.missing);
  report.standbyOff = report.adopters.find((a) => a.node === run.cfg.node)?.standbyOff;
  const v = judgeSpread(run.from.name, report.adopters, report.skipped.length);
  report.result = v.result;
  report.reason = v.reason;
  if (v.result === 'failed') throw new ActionFailed(v.reason);
  return report;
}

/** A refusal or failure, into the report (its first reason kept), marked reported. */
function failRun(run: Run, e: unknown): unknown {
  if (e instanceof Refused) run.refusalLevel = e.level;
  if (run.report.result !== 'failed' || !run.report.reason) {
    run.report.result = e instanceof Refused ? 'refused' : 'failed';
    run.report.reason = errorMessage(e);
  }
  return reported(e);
}

/** Whatever happened: one log line, the audit row (but for nothing to do and dry runs), the locks and sessions released. */
async function finishRun(run: Run): Promise<void> {
  const { cfg, opts, report, timings, db } = run;
  timings.total_ms = Date.now() - run.t0;
  if (opts.before) Object.assign(timings, opts.before);
  for (const sess of run.sessions.values()) if (sess !== opts.session) sess.close();
  const level =
    report.result === 'refused'
      ? run.refusalLevel
      : report.result === 'failed' || report.result === 'partial'
        ? 'error'
        : 'info';
  log(level, `takeover ${report.result}: ${report.reason}`, {
    ...run.ctx,
    adopted: report.adopted,
    recovered: report.recovered ?? undefined,
    missing: report.missing.length,
    held: report.skipped.length,
    ms: timings.total_ms,
    critical_ms: timings.critical_path_ms,
  });
  if (!db) return;
  if (!opts.dryRun && report.result !== 'nothing') {
    const row: store.AuditRecord = {
      takeoverId: run.id,
      startedAt: run.started,
      actor: opts.actor ?? `${userInfo().username}@${cfg.node}`,
      command: opts.command,
      from: run.from.name,
      to: report.to,
      adopters: report.adopters.map(({ node, handed, recovered, missing, result, reason }) => ({
        node,
        handed,
        recovered,
        missing: missing.length,
        result,
        reason,
      })),
      result: report.result,
      reason: report.reason,
      adopted: report.adopted,
      recovered: report.recovered,
      missing: report.recovered === null ? null : report.missing.length,
      skipped: report.skipped.length,
      timings,
    };
    await (opts.auditId !== undefined
      ? store.updateAudit(db, opts.auditId, row)
      : store.writeAudit(db, row, cfg.audit.retentionDays)
    ).catch((e) => log('warn', `takeover: audit row not written: ${errorMessage(e)}`, run.ctx));
  }
  await store.unlockAdopters(db, run.adopterLocks);
  if (run.nodeLocked) await store.unlockNode(db, run.from.switchname);
  if (db !== opts.db) await db.close();
}

/** The report as people read it: the rows a dry run would move, the rows held back, one summary line. */
export function formatTakeover(r: TakeoverReport): string {
  const lines: string[] = [];
  for (const row of r.preview ?? [])
    lines.push(`  move ${row.uuid} to=${row.to} profile=${row.profile} replacements=${row.replaced}`);
  if (r.adopters.length > 1)
    for (const a of r.adopters)
      lines.push(
        `  ${a.node}: ${a.result}, ${a.handed} handed, ${a.recovered ?? '-'} recovered, ${a.missing.length} missing`,
      );
  for (const s of r.skipped) lines.push(`  held ${s.uuid}: ${s.reason}`);
  lines.push(
    `${r.result}: ${r.reason}` +
      (r.recovered !== null
        ? ` (adopted ${r.adopted}, recovered ${r.recovered}, missing ${r.missing.length}, ${r.timings.total_ms} ms)`
        : ''),
  );
  return lines.join('\n');
}

export const command: CommandSpec = {
  name: 'takeover',
  links: [],
  args: '',
  positionals: { min: 0, max: 0 },
  summary: "move NODE's calls here (or to --to) by hand: drills, maintenance",
  exits: '0 done or nothing to do, 1 refused, failed or partial, 2 usage or configuration error',
  options: {
    from: { type: 'string', arg: 'NODE', required: true, help: 'the node whose calls move' },
    to: {
      type: 'string',
      arg: 'NODE[,NODE...]',
      help: 'the adopting node(s); several: calls spread, groups kept whole (default: adopters.<from>, else this node)',
    },
    'dry-run': { type: 'boolean', help: 'list what would move; change nothing' },
    'no-recover': { type: 'boolean', help: 'rewrite only; recover by hand later' },
    force: { type: 'boolean', help: 'go on although the node looks alive or a profile is down' },
  },
  json: true,
  async run({ cfg, values, out }) {
    if (typeof values.from !== 'string') throw new UsageError('takeover needs --from NODE');
    const r = await takeover(cfg, {
      from: values.from,
      to: values.to as string | undefined,
      dryRun: !!values['dry-run'],
      noRecover: !!values['no-recover'],
      force: !!values.force,
      command: 'takeover',
    });
    out.result(r, formatTakeover(r));
    return r.result === 'partial' ? 1 : 0;
  },
};
