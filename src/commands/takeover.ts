/**
 * The takeover (what notify_master does, and `fs-ha takeover` by hand):
 *  1 refuse if the failed node looks alive (unless --force); fence if configured
 *  2 advisory lock per failed node
 *  3 this node must be able to recover (event socket up, the rows' profiles RUNNING)
 *  4 scope check: what `recover` here would select must hold only this node's and the failed node's rows
 *  5 one transaction: hostname + metadata rewrite, originals kept
 *  6 recover, parse the count, verify re-tracking under this node's core uuid
 *  7 one audit row and one log line
 */
import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import type { Config, NodeConfig } from '../config';
import { EslSession } from '../adapters/esl';
import { Db } from '../adapters/db';
import { runFence } from '../adapters/fence';
import * as store from '../adapters/recovery-store';
import { judgeLiveness, planRecover, type Liveness } from '../core/plan';
import { parseRecoverReply } from '../core/health';
import { ActionFailed, ConfigError, Refused, UsageError, errorMessage, reported } from '../errors';
import { log } from '../log';
import { probeNode, type NodeProbe } from '../observe';

export interface TakeoverOptions {
  from: string;
  to?: string;
  dryRun?: boolean;
  noRecover?: boolean;
  force?: boolean;
  /** how this takeover was started, for the audit row (notify-master VI_1, takeover, ...) */
  command: string;
}

export interface TakeoverReport {
  result: 'done' | 'partial' | 'nothing' | 'refused' | 'failed' | 'dry-run' | 'moved';
  reason: string;
  from: string;
  to: string;
  adopted: number;
  recovered: number | null;
  missing: string[];
  skipped: Array<{ uuid: string; reason: string }>;
  timings: Record<string, number>;
  preview?: Array<{ uuid: string; profile: string; replaced: number }>;
}

function targetEsl(cfg: Config, to: NodeConfig) {
  return to.name === cfg.node ? cfg.esl : to.esl;
}

/** Only these probe results leave the verdict to the heartbeat (core/plan.ts judgeLiveness). */
const needsHeartbeat = (kind: NodeProbe['kind']) => !['healthy', 'unhealthy', 'refused', 'auth'].includes(kind);

/** Step 1: is the failed node dead? The first probe may already be under way (started with the database connect). */
async function awaitDeath(cfg: Config, from: NodeConfig, db: Db | null, timings: Record<string, number>, t0: number, first?: Promise<NodeProbe>): Promise<Liveness> {
  const staleMs = cfg.liveness.heartbeatStaleMs;
  const giveUp = Date.now() + staleMs + 1000;
  let pending = first;
  for (;;) {
    const probe = await (pending ?? probeNode(from.esl, cfg.check.profiles, from.esl?.timeoutMs ?? cfg.esl.timeoutMs));
    pending = undefined;
    const hb = db && needsHeartbeat(probe.kind) ? await store.readHeartbeat(db, from.name) : null;
    const verdict = judgeLiveness(from.name, probe, hb, staleMs);
    timings.liveness_ms = Date.now() - t0;
    if (verdict.verdict !== 'wait' || Date.now() >= giveUp) return verdict;
    log('info', `takeover: waiting ${verdict.waitMs} ms before judging ${from.name}`, { reason: verdict.reason });
    await new Promise((r) => setTimeout(r, Math.min(verdict.waitMs + 50, Math.max(0, giveUp - Date.now()))));
  }
}

export async function takeover(cfg: Config, opts: TakeoverOptions): Promise<TakeoverReport> {
  const from = cfg.nodes[opts.from];
  if (!from) throw new UsageError(`unknown node "${opts.from}" (configured: ${Object.keys(cfg.nodes).join(', ')})`);
  const toName = opts.to ?? cfg.node;
  const to = cfg.nodes[toName];
  if (!to) throw new UsageError(`unknown node "${toName}" (configured: ${Object.keys(cfg.nodes).join(', ')})`);
  if (from.name === to.name) throw new UsageError(`cannot take over ${from.name} onto itself`);
  if (!cfg.database) throw new ConfigError('config: missing key database (the takeover needs the shared database)');
  const eslTo = targetEsl(cfg, to);
  if (!opts.noRecover && !eslTo) throw new ConfigError(`config: nodes.${to.name}.esl is needed to recover on ${to.name}`);

  const started = new Date();
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  const report: TakeoverReport = {
    result: 'failed', reason: '', from: from.name, to: to.name, adopted: 0, recovered: null, missing: [], skipped: [], timings,
  };
  const ctx = { from: from.name, to: to.name };
  let db: Db | null = null;
  let locked = false;
  let session: EslSession | null = null;
  try {
    // the database connect and the first look at the failed node, side by side
    const firstProbe = probeNode(from.esl, cfg.check.profiles, from.esl?.timeoutMs ?? cfg.esl.timeoutMs);
    db = await Db.connect(cfg.database, cfg.timeouts.databaseMs, `fs-ha takeover ${from.name}->${to.name}`);
    timings.db_connect_ms = Date.now() - t0;

    // 1. the failed node must be dead
    const life = await awaitDeath(cfg, from, db, timings, t0, firstProbe);
    if (life.verdict !== 'dead') {
      if (!opts.force) throw new Refused(`refusing to take over ${from.name}: ${life.reason}`);
      log('warn', `takeover: --force given, going on although ${life.reason}`, ctx);
    } else {
      log('info', `takeover: ${life.reason}`, ctx);
    }
    if (cfg.fence && !opts.dryRun) {
      await runFence(cfg.fence, { FSHA_FAILED_NODE: from.name, FSHA_FAILED_SWITCHNAME: from.switchname, FSHA_NODE: to.name }, cfg.timeouts.fenceMs);
      timings.fence_ms = Date.now() - t0;
      log('info', `takeover: fenced ${from.name}`, ctx);
    }

    // 2. schema, layout guard, lock
    if (!opts.dryRun) await store.applySchema(db, cfg.layout);
    if (cfg.layout === 'per-node') {
      if (await store.publicRecoveryIsTable(db)) {
        throw new Refused('refusing: public.recovery exists beside the per-node layout; it shadows the per-node views, so a recover would steal calls (a node lost its search_path?)');
      }
      if (!(await store.tableExists(db, 'fsha.recovery'))) throw new Refused('refusing: layout is per-node but fsha.recovery does not exist (run fs-ha db init --layout per-node)');
    } else if (!(await store.tableExists(db, 'public.recovery'))) {
      report.result = 'nothing';
      report.reason = 'no recovery table yet (public.recovery): no calls are tracked';
      return report;
    }
    await store.lockNode(db, from.switchname, cfg.timeouts.lockMs);
    locked = true;
    timings.locked_ms = Date.now() - t0;

    // 3 + 4. can this node recover, and would its recover touch only what it adopts?
    let core: string | null = null;
    let targetProbe: NodeProbe | null = null;
    if (!opts.noRecover) {
      targetProbe = await probeNode(eslTo, [], eslTo!.timeoutMs);
      if (!targetProbe.coreUuid || (targetProbe.kind !== 'healthy' && targetProbe.kind !== 'unhealthy')) {
        throw new Refused(`refusing: this node's FreeSWITCH (${to.name}) cannot recover: ${targetProbe.detail}`);
      }
      if (targetProbe.kind === 'unhealthy' && !/profile/.test(targetProbe.detail)) {
        throw new Refused(`refusing: ${to.name} is not ready to recover: ${targetProbe.detail}`);
      }
      core = targetProbe.coreUuid;
      const scope = await store.scopeOf(db, cfg.layout, to.switchname, core);
      const incoming = from.switchname === to.switchname ? [] : await store.rowsOfHost(db, cfg.layout, from.switchname, core);
      const plan = planRecover({
        from: from.switchname, to: to.switchname, targetCoreUuid: core, recover: cfg.recover,
        scope, incoming, targetProfiles: targetProbe.profiles ?? new Map(), force: !!opts.force,
      });
      timings.planned_ms = Date.now() - t0;
      log('info', `takeover: plan ${plan.action}: ${plan.reason}`, ctx);
      if (plan.action === 'refuse') throw new Refused(`refusing: ${plan.reason}`);
      if (plan.action === 'nothing') {
        report.result = 'nothing';
        report.reason = plan.reason;
        return report;
      }
    }

    // 5. the rewrite, all or nothing
    const takeoverId = randomUUID();
    const spec = {
      fromSwitchname: from.switchname,
      toSwitchname: to.switchname,
      addresses: from.addresses.map((a, i): [string, string] => [a, to.addresses[i] ?? to.addresses[0] ?? a]),
    };
    if (from.switchname !== to.switchname) {
      const moved = await store.moveRows(db, cfg.layout, spec, { takeoverId, fromNode: from.name, toNode: to.name, targetCore: core, dryRun: !!opts.dryRun });
      report.skipped = moved.skipped;
      report.adopted = moved.rows.length;
      timings.rewrite_select_ms = moved.ms.select;
      timings.rewrite_cpu_ms = moved.ms.rewrite;
      timings.rewrite_write_ms = moved.ms.write;
      timings.rewritten_ms = Date.now() - t0;
      for (const s of moved.skipped) log('warn', `takeover: row left untouched: ${s.reason}`, { ...ctx, uuid: s.uuid });
      if (opts.dryRun) {
        report.preview = moved.rows;
        report.result = 'dry-run';
        report.reason = `would move ${moved.rows.length} row(s) of ${from.name} to ${to.name}` +
          (moved.skipped.length ? `, leave ${moved.skipped.length} untouched` : '') + (opts.noRecover ? '' : ` and recover them on ${to.name}`);
        return report;
      }
      log('info', `takeover: moved ${moved.rows.length} row(s) to ${to.name}`, { ...ctx, calls: moved.rows.length, skipped: moved.skipped.length, ms: timings.rewritten_ms });
    } else if (opts.dryRun) {
      report.result = 'dry-run';
      report.reason = `${from.name} and ${to.name} share switchname ${to.switchname}: nothing to rewrite; would recover on ${to.name}`;
      return report;
    }
    if (opts.noRecover) {
      report.result = 'moved';
      report.reason = `moved ${report.adopted} row(s) of ${from.name} to ${to.name}; recover on ${to.name} by hand`;
      return report;
    }

    // 6. recover, verify
    const pending = await store.pendingUuids(db, cfg.layout, to.switchname, core!);
    report.adopted = pending.length;
    session = await EslSession.open(eslTo!, eslTo!.timeoutMs);
    const cmd = cfg.recover === 'fsctl' ? 'fsctl recover' : 'sofia recover';
    timings.recover_start_ms = Date.now() - t0;
    const reply = await session.api(cmd, cfg.timeouts.recoverMs);
    timings.recover_done_ms = Date.now() - t0;
    const count = parseRecoverReply(reply);
    if (count === null) throw new ActionFailed(`"${cmd}" gave an answer fs-ha does not understand: ${JSON.stringify(reply.trim().slice(0, 120))}`);
    report.recovered = count;
    if (cfg.standby) await session.api('sofia global standby off', eslTo!.timeoutMs).catch((e) => log('warn', `takeover: standby off failed: ${errorMessage(e)}`, ctx));
    report.missing = await store.awaitRetracked(db, cfg.layout, pending, core!, cfg.timeouts.verifyMs);
    timings.verified_ms = Date.now() - t0;
    const retracked = pending.filter((u) => !report.missing.includes(u));
    await store.dropKeptCopies(db, retracked);
    if (report.missing.length) {
      report.result = 'partial';
      report.reason = `${to.name} recovered ${count} of ${pending.length} call(s); ${report.missing.length} not re-tracked (originals kept in fsha.takeover_rows)`;
    } else {
      report.result = 'done';
      report.reason = `${to.name} took over ${pending.length} call(s) of ${from.name}`;
    }
    return report;
  } catch (e) {
    report.result = e instanceof Refused ? 'refused' : 'failed';
    report.reason = errorMessage(e);
    throw reported(e);
  } finally {
    timings.total_ms = Date.now() - t0;
    session?.close();
    const level = report.result === 'done' || report.result === 'nothing' || report.result === 'dry-run' || report.result === 'moved' ? 'info' : 'error';
    log(level, `takeover ${report.result}: ${report.reason}`, {
      ...ctx, adopted: report.adopted, recovered: report.recovered ?? undefined, missing: report.missing.length, skipped: report.skipped.length, ms: timings.total_ms,
    });
    if (db) {
      if (!opts.dryRun && report.result !== 'nothing') {
        await store.writeAudit(db, {
          startedAt: started, actor: `${userInfo().username}@${cfg.node}`, command: opts.command, from: from.name, to: to.name,
          result: report.result, reason: report.reason, adopted: report.adopted, recovered: report.recovered,
          missing: report.recovered === null ? null : report.missing.length, skipped: report.skipped.length, timings,
        }).catch((e) => log('warn', `takeover: audit row not written: ${errorMessage(e)}`, ctx));
      }
      if (locked) await store.unlockNode(db, from.switchname);
      await db.close();
    }
  }
}
