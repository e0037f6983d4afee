/**
 * check_fs: keepalived's vrrp_script. Exit 0 only if, within the hard deadline, the local FreeSWITCH
 * accepts our password, says it is up and ready, runs every listed profile, and (if configured) the
 * database answers `select 1`. A healthy check also writes this node's heartbeat (best effort).
 */
import type { Config } from '../config';
import { Db } from '../adapters/db';
import { writeHeartbeat } from '../adapters/recovery-store';
import { ActionFailed, errorMessage, reported } from '../errors';
import { log } from '../log';
import { probeNode } from '../observe';

export interface CheckResult { ok: boolean; reason: string; ms: number }

export async function check(cfg: Config): Promise<CheckResult> {
  const started = Date.now();
  const deadline = cfg.check.timeoutMs;
  const me = cfg.nodes[cfg.node];
  const wantDb = cfg.database && (cfg.check.database || cfg.check.heartbeat);
  const dbP = wantDb ? Db.connect(cfg.database!, Math.max(50, deadline - 100), 'fs-ha check').then(
    async (db) => { try { await db.query('select 1', [], 'select 1'); return db; } catch (e) { await db.close(); throw e; } }) : null;
  dbP?.catch(() => undefined);
  const probe = await probeNode(cfg.esl, cfg.check.profiles, deadline);
  let reason = probe.kind === 'healthy' ? '' : probe.detail;
  let db: Db | null = null;
  try {
    if (dbP) db = await dbP;
  } catch (e) {
    if (cfg.check.database && !reason) reason = errorMessage(e);
  }
  try {
    if (db && cfg.check.heartbeat) {
      // healthy=false is written too: a peer's takeover then need not wait for the heartbeat to age
      await writeHeartbeat(db, cfg.node, me.switchname, probe.coreUuid, !reason, reason || 'healthy')
        .catch((e) => log('debug', `heartbeat not written: ${errorMessage(e)}`));
    }
  } finally {
    await db?.close();
  }
  const ms = Date.now() - started;
  if (reason) return { ok: false, reason, ms };
  return { ok: true, reason: `healthy (${probe.detail})`, ms };
}

export async function runCheck(cfg: Config): Promise<number> {
  const r = await check(cfg);
  if (!r.ok) {
    log('error', `check failed on ${cfg.node}: ${r.reason}`, { node: cfg.node, ms: r.ms });
    throw reported(new ActionFailed(`check failed: ${r.reason}`));
  }
  log('debug', `check ok on ${cfg.node}: ${r.reason}`, { ms: r.ms });
  process.stdout.write(`ok: ${r.reason}\n`);
  return 0;
}
