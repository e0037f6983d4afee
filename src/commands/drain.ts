/**
 * `fs-ha drain --from NODE [--to A[,B...]] [--dry-run] [--yes]`: move every live call off a running server
 * now, for maintenance. observe -> decide (core/drain.ts) -> act, step by step, each logged:
 *  1 the plan: the takeover that will follow, as a dry run while the source still runs (nothing changes);
 *    without --yes that is all
 *  2 the source: standby on (new calls get 503), then at most settle_ms for calls still ringing (not
 *    tracked, so not recoverable) to be answered or end; those left are reported: they will drop
 *  3 stop it hard, without BYE: drain.stop_command, or `fsctl crash` over its event socket
 *  4 confirm it is gone (the liveness rule must find it dead), then the takeover, as after a crash
 * In a pair or farm keepalived notices the stop too and its MASTER starts the same takeover: the lock lets
 * one run; the other finds nothing left. Either way the drain reports where the calls went.
 */
import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config, EslTarget, NodeConfig } from '../config';
import { EslSession } from '../adapters/esl';
import { Db } from '../adapters/db';
import { runBounded } from '../adapters/fence';
import * as store from '../adapters/recovery-store';
import { decideSource, drainTargets, judgeGone, settling, sharedAddresses } from '../core/drain';
import { ActionFailed, ConfigError, Refused, UsageError, errorMessage } from '../errors';
import { log } from '../log';
import { wrongNode, probeNode, probeSession } from '../observe';
import { formatTakeover, takeover, type TakeoverReport } from './takeover';
import type { CommandSpec } from '../cli/spec';

/** the longest settle, on the command line as in the configuration (drain.settle_ms) */
export const MAX_SETTLE_MS = 600000;

export interface DrainOptions {
  from: string;
  to?: string;
  dryRun?: boolean;
  yes?: boolean;
  settleMs?: number;
  /**
   * a handover on demotion (commands/handover.ts): the adopter already holds the shared address and its
   * notify MASTER has run, so this drain runs the takeover itself instead of waiting for keepalived's
   */
  handover?: boolean;
  /** for the audit row and the log: what started it (default drain) */
  command?: string;
  /** who started it, for the audit row (default: this process's user @ this node) */
  actor?: string;
}

export interface DrainReport {
  result: 'planned' | 'done' | 'partial' | 'nothing';
  reason: string;
  from: string;
  to: string[];
  /** calls still in set-up when the source was stopped: not tracked, so dropped */
  dropped: number;
  plan: TakeoverReport;
  takeover?: TakeoverReport;
  timings: Record<string, number>;
}

/** How many channels the source has now (`show channels count`: "\n12 total.\n"). */
async function channels(s: EslSession, timeoutMs: number): Promise<number> {
  const m = /(\d+) total\./.exec(await s.api('show channels count', timeoutMs));
  if (!m) throw new ActionFailed('show channels count gave no count');
  return Number(m[1]);
}

export async function drain(cfg: Config, o: DrainOptions): Promise<DrainReport> {
  const src = cfg.nodes[o.from];
  if (!src) throw new UsageError(`unknown node "${o.from}" (configured: ${Object.keys(cfg.nodes).join(', ')})`);
  if (!src.esl) throw new ConfigError(`config: nodes.${src.name}.esl is needed to drain ${src.name}`);
  const esl = src.esl;
  if (!cfg.database) throw new ConfigError('config: missing key database (a drain needs the shared database)');
  const database = cfg.database;
  const picked = drainTargets(src.name, o.to, cfg.adopters, cfg.node, Object.keys(cfg.nodes));
  if ('problem' in picked) throw new UsageError(picked.problem);
  const to = picked.targets;
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  const ctx = { from: src.name, to: to.join(',') };

  // 1. the plan, the source still running (nothing changes); it refuses as the real takeover would
  const plan = await takeover(cfg, { from: src.name, to, dryRun: true, planned: true, command: 'drain --dry-run' });
  const report: DrainReport = { result: 'planned', reason: '', from: src.name, to, dropped: 0, plan, timings };
  if (o.dryRun || !o.yes) {
    report.reason = `${plan.reason}${o.dryRun ? '' : '; nothing stopped: run again with --yes to drain'}`;
    log('info', `drain: plan for ${src.name}: ${report.reason}`, ctx);
    return report;
  }

  const run: DrainRun = {
    cfg,
    o,
    src,
    esl,
    database,
    to,
    t0,
    started: new Date(t0),
    timings,
    ctx,
    report,
    audit: { id: null },
    undo: `sofia global standby off on ${src.name} undoes it`,
  };
  let failure: unknown = null;
  try {
    return await execute(run);
  } catch (e) {
    failure = e;
    throw e;
  } finally {
    await finishDrain(run, failure);
  }
}

/** One drain's state, shared by its stages (plan, source, standby and settle, stop, take over, audit). */
interface DrainRun {
  cfg: Config;
  o: DrainOptions;
  src: NodeConfig;
  esl: EslTarget;
  database: string;
  to: string[];
  t0: number;
  started: Date;
  timings: Record<string, number>;
  ctx: { from: string; to: string };
  report: DrainReport;
  /** the drain's audit row, once written (before it touches the source) */
  audit: { id: number | null };
  /** how to undo the standby, for every message after it */
  undo: string;
}

/** 2 and 3: the source checked (who answers, running), into standby and settled, stopped; then 4. */
async function execute(run: DrainRun): Promise<DrainReport> {
  const { cfg, o, src, esl, database, to, started, audit, undo } = run;
  // 2. the source: running, into standby, settled
  const session = await EslSession.open(esl, esl.timeoutMs).catch(() => null);
  const probe = session ? await probeSession(session, [], esl.timeoutMs) : await probeNode(esl, [], esl.timeoutMs);
  // who answered, before anything is put in standby or stopped: another FreeSWITCH at src's address is never touched
  const impostor = wrongNode(src, esl, probe);
  if (impostor) {
    session?.close();
    throw new Refused(`refusing to drain ${src.name}: ${impostor}; nothing was touched`);
  }
  const ok = decideSource(src.name, probe.kind, probe.detail);
  if (ok.action !== 'go' || !session || !probe.coreUuid) {
    session?.close();
    throw new Refused(ok.action === 'refuse' ? ok.reason : `refusing to drain ${src.name}: it gave no core uuid`);
  }
  const settleMs = o.settleMs ?? cfg.drain.settleMs;
  // one connection for the drain's own questions (the takeover has its own); past the stop it follows the primary
  const db = new DrainDb(
    cfg,
    await Db.connect(database, cfg.timeouts.databaseMs, `fs-ha drain ${src.name}`).catch((e) => {
      session.close();
      throw e;
    }),
  );
  try {
    audit.id = await store.beginAudit(db.now, {
      takeoverId: randomUUID(),
      startedAt: started,
      actor: o.actor ?? `${userInfo().username}@${cfg.node}`,
      command: o.command ?? 'drain',
      from: src.name,
      to: to.join(','),
      result: 'draining',
      reason: `putting ${src.name} in standby; if this drain stops here, ${undo}`,
      adopted: 0,
      recovered: null,
      missing: null,
      skipped: 0,
      timings: {},
    });
    const carried = await standbyAndSettle(run, session, probe.coreUuid, db.now, settleMs);
    await stop(run, session, db.now, carried);
    return await takeOverAfterStop(run, probe.coreUuid, db, carried);
  } finally {
    session.close();
    await db.close();
  }
}

/** A step done: the drain's audit row says where it is and how to undo it (best effort). */
async function step(run: DrainRun, db: Db, reason: string): Promise<void> {
  const { timings, t0, audit } = run;
  if (audit.id === null) return;
  await store
    .updateAudit(db, audit.id, { reason, timings: { ...timings, total_ms: Date.now() - t0 } })
    .catch(() => undefined);
}

/** Standby on (recorded for status), calls in set-up given settleMs; returns the answered calls it carries. */
async function standbyAndSettle(
  run: DrainRun,
  session: EslSession,
  core: string,
  db: Db,
  settleMs: number,
): Promise<number> {
  const { cfg, o, src, esl, t0, timings, ctx, report, undo } = run;
  const standby = await session.api('sofia global standby on', esl.timeoutMs);
  if (!standby.startsWith('+OK'))
    throw new ActionFailed(`sofia global standby on on ${src.name}: ${standby.trim().slice(0, 100)}`);
  timings.drain_standby_ms = Date.now() - t0;
  await store.recordStandby(db, src.name, true, o.command ?? 'drain').catch(() => undefined);
  await step(
    run,
    db,
    `${src.name} in standby, calls in set-up settling (up to ${settleMs} ms); if this drain stops here, ${undo}`,
  );
  log(
    'info',
    `drain: ${src.name} in standby (new calls get 503); waiting up to ${settleMs} ms for calls in set-up`,
    ctx,
  );
  const until = Date.now() + settleMs;
  let answered = 0;
  for (;;) {
    answered = await store.callsUnderCore(db, cfg.layout, core, src.switchname);
    const ringing = settling(await channels(session, esl.timeoutMs), answered);
    report.dropped = ringing;
    if (!ringing || Date.now() >= until) break;
    await sleep(Math.min(200, Math.max(1, until - Date.now())));
  }
  timings.drain_settled_ms = Date.now() - t0;
  if (report.dropped)
    log(
      'warn',
      `drain: ${report.dropped} call(s) still in set-up on ${src.name} after ${settleMs} ms: not answered, so not tracked; they drop with the stop`,
      { ...ctx, calls: report.dropped },
    );
  return answered;
}

/** 3. stop it hard, without BYE */
async function stop(run: DrainRun, session: EslSession, db: Db, carried: number): Promise<void> {
  const { cfg, src, esl, to, t0, timings, ctx } = run;
  await step(
    run,
    db,
    `stopping ${src.name} with ${carried} answered call(s); if it is stopped, finish with: fs-ha takeover --from ${src.name} --to ${to.join(',')}`,
  );
  log(
    'info',
    `drain: stopping ${src.name} without BYE (${cfg.drain.stopCommand ? 'drain.stop_command' : 'fsctl crash'})`,
    ctx,
  );
  if (cfg.drain.stopCommand) {
    session.close();
    await runBounded(
      'drain.stop_command',
      cfg.drain.stopCommand,
      { FSHA_DRAIN_NODE: src.name, FSHA_DRAIN_SWITCHNAME: src.switchname },
      cfg.timeouts.fenceMs,
    );
  } else {
    // the process dies before it answers (fixtures: fs_cli prints "Request timed out."): no reply is the answer
    await session.api('fsctl crash', Math.min(2000, esl.timeoutMs)).catch(() => undefined);
  }
  timings.drain_stopped_ms = Date.now() - t0;
}

/** 4. confirmed gone, then its calls taken over (here, or by keepalived's MASTER in a pair), whoever moves them, reported */
async function takeOverAfterStop(run: DrainRun, core: string, db: DrainDb, carried: number): Promise<DrainReport> {
  const { cfg, o, src, esl, to, t0, timings, ctx, report, audit, undo } = run;
  const goneBy = Date.now() + cfg.timeouts.fenceMs;
  for (;;) {
    const p = await probeNode(esl, [], Math.min(1000, esl.timeoutMs));
    const gone = judgeGone(src.name, p.kind, p.detail);
    if (gone.gone) {
      log('info', `drain: ${gone.reason}`, ctx);
      break;
    }
    if (Date.now() >= goneBy)
      throw new ActionFailed(
        `drain: ${gone.reason} (waited ${cfg.timeouts.fenceMs} ms); its calls were NOT moved: it may still be carrying them, in standby (${undo})`,
      );
    await sleep(100);
  }
  timings.drain_gone_ms = Date.now() - t0;
  const down = `${src.name} is DOWN (stopped by this drain) with ${carried} call(s) waiting in the recovery table: finish with fs-ha takeover --from ${src.name} --to ${to.join(',')}`;
  const shared = sharedAddresses(
    src.addresses,
    to.map((n) => cfg.nodes[n].addresses),
  );
  const left = await db.retry((d) => store.callsUnderCore(d, cfg.layout, core), down);
  await step(
    run,
    db.now,
    `${src.name} stopped, ${left} call(s) to take over; if this drain stops here: ${down.slice(down.indexOf('finish'))}`,
  );
  const since = new Date(t0 - 5000); // clocks of the nodes may differ a little
  if (left === 0) {
    // nothing left under its core: it carried none, or someone took them over first (keepalived's MASTER saw the stop too)
    // whoever moved them writes its audit row once their recover is verified, still holding the node's takeover
    // lock: waited for while that lock is held (calls that simply ended hold nothing, so nothing is waited for)
    let by: Awaited<ReturnType<typeof store.latestTakeoverOf>> = null;
    const until = Date.now() + cfg.timeouts.recoverMs + cfg.timeouts.verifyMs;
    while (carried) {
      const underWay = await db.retry((d) => store.nodeLockHeld(d, src.switchname), down);
      by = await db.retry((d) => store.latestTakeoverOf(d, [src.name], { since, results: ['done', 'partial'] }), down);
      if (by || !underWay || Date.now() >= until) break;
      await sleep(100);
    }
    report.result = 'done';
    report.reason = by
      ? `${src.name} drained: its ${carried} call(s) were taken over by ${by.command} (${by.result}: ${by.adopted} call(s) to ${by.to_node})`
      : carried
        ? `${src.name} drained: its ${carried} call(s) ended or were taken over before this drain could (no audit row names them)`
        : `${src.name} drained: it carried no answered call`;
  } else if (shared.length && !o.handover) {
    // the pair: the adopter re-INVITEs from the VIP, which keepalived moves to it before its notify MASTER
    log(
      'info',
      `drain: ${src.name} shares ${shared.join(', ')} with ${to.join(', ')} (a VIP): keepalived's new MASTER takes the calls over once it holds it; waiting`,
      ctx,
    );
    const a = await db.retry((d) => awaitAutomaticTakeover(cfg, d, src.switchname, core, since), down);
    report.result = a.result === 'done' ? 'done' : 'partial';
    report.reason = `${src.name} drained: its ${carried} call(s) were taken over by ${a.command} (${a.result}: ${a.adopted} call(s) to ${a.to_node})`;
  } else {
    const r = await takeover(cfg, {
      from: src.name,
      to,
      command: o.command ?? 'drain',
      actor: o.actor,
      before: { ...timings },
      auditId: audit.id ?? undefined,
      clockStart: t0,
    }).catch((e) => {
      throw /database/.test(errorMessage(e)) ? new ActionFailed(`${down} (${errorMessage(e)})`) : e;
    });
    report.takeover = r;
    if (r.result === 'nothing') {
      // keepalived's MASTER was first (it saw the stop too): the lock let it run; say where the calls went
      const by = await db
        .retry((d) => store.latestTakeoverOf(d, [src.name], { since, results: ['done', 'partial'] }), down)
        .catch(() => null);
      report.result = 'nothing';
      report.reason = `${src.name} drained: its ${carried} call(s) were already taken over ${by ? `by ${by.command} (${by.result}: ${by.adopted} call(s) to ${by.to_node})` : '(no audit row names them)'}`;
    } else {
      report.result = r.result === 'done' ? 'done' : 'partial';
      report.reason = `${src.name} drained: ${r.reason}`;
    }
  }
  timings.total_ms = Date.now() - t0;
  if (report.dropped) report.reason += `; ${report.dropped} call(s) in set-up dropped`;
  log(report.result === 'partial' ? 'error' : 'info', `drain ${report.result}: ${report.reason}`, {
    ...ctx,
    ms: timings.total_ms,
  });
  return report;
}

/**
 * The drain's own row, written before it touched anything, gets its last word (its takeover updated the same
 * row); a drain that never got that far writes one now, so history shows every drain.
 */
async function finishDrain(run: DrainRun, failure: unknown): Promise<void> {
  const { cfg, o, src, to, t0, started, timings, report, audit } = run;
  const last: store.AuditRecord = {
    takeoverId: randomUUID(),
    startedAt: started,
    actor: o.actor ?? `${userInfo().username}@${cfg.node}`,
    command: o.command ?? 'drain',
    from: src.name,
    to: to.join(','),
    // its own takeover's result stands (done, partial); else drained: the calls went by another hand, or there were none
    result: failure
      ? failure instanceof Refused
        ? 'refused'
        : 'failed'
      : report.takeover && report.takeover.result !== 'nothing'
        ? report.takeover.result
        : 'drained',
    reason: failure ? errorMessage(failure) : report.reason,
    adopted: report.takeover?.adopted ?? 0,
    recovered: report.takeover?.recovered ?? null,
    missing: report.takeover ? report.takeover.missing.length : null,
    skipped: report.takeover?.skipped.length ?? 0,
    timings: { ...report.takeover?.timings, ...timings, total_ms: Date.now() - t0 },
  };
  await recordDrain(cfg, audit.id, last);
}

/**
 * The drain's connection. Past the stop, a database switch-over must not end the drain half-way: a question
 * that fails is asked again on a new connection (the URL's hosts, the primary found anew) for 3 x database_ms;
 * then the error says in one line that the source is DOWN and how to finish.
 */
class DrainDb {
  constructor(
    private readonly cfg: Config,
    public now: Db,
  ) {}

  async retry<T>(fn: (db: Db) => Promise<T>, down: string): Promise<T> {
    const until = Date.now() + 3 * this.cfg.timeouts.databaseMs;
    for (;;) {
      try {
        return await fn(this.now);
      } catch (e) {
        if (Date.now() >= until) throw new ActionFailed(`${down} (${errorMessage(e)})`);
        log('warn', `drain: database question failed (${errorMessage(e)}); asking again on a new connection`);
        await this.now.close();
        this.now = await Db.connect(this.cfg.database!, this.cfg.timeouts.databaseMs, 'fs-ha drain').catch(
          () => this.now,
        );
        await sleep(200);
      }
    }
  }

  close(): Promise<void> {
    return this.now.close();
  }
}

async function recordDrain(cfg: Config, id: number | null, a: store.AuditRecord): Promise<void> {
  try {
    const db = await Db.connect(cfg.database!, cfg.timeouts.databaseMs, 'fs-ha drain');
    try {
      if (id === null) await store.writeAudit(db, a, cfg.audit.retentionDays);
      else await store.updateAudit(db, id, a);
    } finally {
      await db.close();
    }
  } catch (e) {
    log('warn', `drain: its audit row was not written: ${errorMessage(e)}`, { from: a.from, to: a.to });
  }
}

/**
 * Wait (timeouts.lock_ms + verify_ms at most) until no call is tracked under the stopped source's core any
 * more and a takeover of it since the drain began is in the audit; its row is the answer. Otherwise the calls
 * are still safe in the table, and the error says how to finish.
 */
async function awaitAutomaticTakeover(
  cfg: Config,
  db: Db,
  switchname: string,
  core: string,
  since: Date,
): Promise<store.TakeoverSeen> {
  const waitMs = cfg.timeouts.lockMs + cfg.timeouts.verifyMs;
  const until = Date.now() + waitMs;
  const names = Object.values(cfg.nodes)
    .filter((n) => n.switchname === switchname)
    .map((n) => n.name);
  for (;;) {
    const left = await store.callsUnderCore(db, cfg.layout, core);
    const a = await store.latestTakeoverOf(db, names, { since, results: ['done', 'partial'] });
    if (left === 0 && a) return a;
    if (Date.now() >= until) {
      throw new ActionFailed(
        `drain: no takeover of the drained node's ${left} call(s) within ${waitMs} ms: keepalived has not made another node MASTER ` +
          'with the VIP; the calls are safe in the recovery table: run fs-ha takeover --from the drained node on the node that holds the VIP',
      );
    }
    await sleep(100);
  }
}

export function formatDrain(r: DrainReport): string {
  const lines: string[] = [];
  if (r.result === 'planned') {
    const byTo = new Map<string, number>();
    for (const p of r.plan.preview ?? []) byTo.set(p.to, (byTo.get(p.to) ?? 0) + 1);
    lines.push(`drain ${r.from}: the plan (nothing changed)`);
    for (const [n, c] of byTo) lines.push(`  ${n}: ${c} call leg(s)`);
    for (const p of r.plan.preview ?? [])
      lines.push(`  move ${p.uuid} to=${p.to} profile=${p.profile} replacements=${p.replaced}`);
    for (const s of r.plan.skipped) lines.push(`  held ${s.uuid}: ${s.reason}`);
    lines.push(`planned: ${r.reason}`);
    return lines.join('\n');
  }
  if (r.takeover && r.takeover.result !== 'nothing') lines.push(formatTakeover(r.takeover));
  lines.push(`${r.result}: ${r.reason} (${r.timings.total_ms} ms)`);
  return lines.join('\n');
}

export const command: CommandSpec = {
  name: 'drain',
  links: [],
  args: '',
  positionals: { min: 0, max: 0 },
  summary: 'maintenance: move every live call off a running server now (dry run first; --yes stops it)',
  exits: '0 planned or done, 1 refused, failed or partial, 2 usage or configuration error',
  options: {
    from: { type: 'string', arg: 'NODE', required: true, help: 'the running server to empty' },
    to: {
      type: 'string',
      arg: 'NODE[,NODE...]',
      help: "the adopters (default: adopters.<from>, else this node, else the pair's other node)",
    },
    'dry-run': { type: 'boolean', help: 'print the plan per adopter; change nothing' },
    yes: { type: 'boolean', help: 'really do it: standby, settle, stop without BYE, take over' },
    'settle-ms': { type: 'string', arg: 'MS', help: 'how long calls in set-up get (default: drain.settle_ms)' },
  },
  json: true,
  async run({ cfg, values, out }) {
    const settle = values['settle-ms'];
    if (settle !== undefined && (!/^\d{1,6}$/.test(String(settle)) || Number(settle) > MAX_SETTLE_MS)) {
      throw new UsageError(
        `--settle-ms must be a whole number of milliseconds from 0 to ${MAX_SETTLE_MS} (as drain.settle_ms)`,
      );
    }
    const r = await drain(cfg, {
      from: values.from as string,
      to: values.to as string | undefined,
      dryRun: !!values['dry-run'],
      yes: !!values.yes,
      settleMs: settle === undefined ? undefined : Number(settle),
    });
    out.result(r, formatDrain(r));
    return r.result === 'partial' ? 1 : 0;
  },
};
