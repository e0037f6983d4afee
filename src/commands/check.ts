/**
 * check_fs: keepalived's vrrp_script. Exit 0 only if, within the hard deadline, the local FreeSWITCH
 * accepts our password, says it is up and ready, runs every listed profile, and (if configured) the
 * database answers `select 1`. A healthy check also writes this node's heartbeat (best effort).
 */
import { mediaRangeProblems, type Config } from '../config';
import { Db } from '../adapters/db';
import { writeHeartbeat } from '../adapters/recovery-store';
import { ActionFailed, ConfigError, errorMessage, reported } from '../errors';
import { log } from '../log';
import { wrongNode, probeNode } from '../observe';
import type { Output } from '../cli/output';
import type { CommandSpec } from '../cli/spec';

export interface CheckResult {
  ok: boolean;
  reason: string;
  ms: number;
  configError?: boolean;
}

export async function check(cfg: Config): Promise<CheckResult> {
  const started = Date.now();
  const deadline = cfg.check.timeoutMs;
  const me = cfg.nodes[cfg.node];
  const wantDb = cfg.database && (cfg.check.database || cfg.check.heartbeat);
  const dbP = wantDb
    ? Db.connect(cfg.database!, Math.max(50, deadline - 100), 'fs-ha check').then(async (db) => {
        try {
          await db.query('select 1', [], 'select 1');
          return db;
        } catch (e) {
          await db.close();
          throw e;
        }
      })
    : null;
  dbP?.catch(() => undefined);
  const probe = await probeNode(cfg.esl, cfg.check.profiles, deadline);
  // who answered: the health of another FreeSWITCH says nothing about this node's
  const impostor = wrongNode(me, cfg.esl, probe);
  let reason = impostor ? `configuration error: ${impostor}` : probe.kind === 'healthy' ? '' : probe.detail;
  let db: Db | null = null;
  try {
    if (dbP) db = await dbP;
  } catch (e) {
    if (cfg.check.database && !reason) reason = errorMessage(e);
  }
  try {
    if (db && cfg.check.heartbeat) {
      // healthy=false is written too: a peer's takeover then need not wait for the heartbeat to age
      await writeHeartbeat(
        db,
        cfg.node,
        me.switchname,
        impostor ? null : probe.coreUuid,
        !reason,
        reason || 'healthy',
      ).catch((e) => log('debug', `heartbeat not written: ${errorMessage(e)}`));
    }
  } finally {
    await db?.close();
  }
  const ms = Date.now() - started;
  if (reason) return { ok: false, reason, ms, configError: !!impostor };
  return { ok: true, reason: `healthy (${probe.detail})`, ms };
}

export async function runCheck(cfg: Config, out: Output): Promise<number> {
  const r = await check(cfg);
  if (!r.ok) {
    // WARNING (docs/on-failure.md, log levels): keepalived fails this node over; no call is at risk from the check itself
    log('warn', `check failed on ${cfg.node}: ${r.reason}`, { node: cfg.node, ms: r.ms });
    throw reported(
      r.configError ? new ConfigError(`check failed: ${r.reason}`) : new ActionFailed(`check failed: ${r.reason}`),
    );
  }
  log('debug', `check ok on ${cfg.node}: ${r.reason}`, { ms: r.ms });
  // what the configured RTP ranges risk, for the operator who runs it by hand (keepalived reads the exit code)
  const ranges = mediaRangeProblems(cfg).map((p) => `${p.level}: ${p.text}`);
  out.result({ ...r, ranges }, [`ok: ${r.reason}`, ...ranges].join('\n'));
  return 0;
}

export const command: CommandSpec = {
  name: 'check',
  links: ['check_fs'],
  args: '',
  positionals: { min: 0, max: 0 },
  summary: 'keepalived vrrp_script: is the local FreeSWITCH serving?',
  exits: '0 healthy, 1 not (one line why), 2 configuration error',
  options: {},
  run({ cfg, out }) {
    // the hard deadline: whatever the far side does, keepalived gets an answer in time
    setTimeout(() => {
      process.stderr.write(`fs-ha: check failed: no verdict within ${cfg.check.timeoutMs} ms\n`);
      process.exit(1);
    }, cfg.check.timeoutMs + 150).unref();
    return runCheck(cfg, out);
  },
};
