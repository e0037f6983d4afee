/**
 * `fs-ha watch`: a long-running companion of check_fs for sub-second crash detection. It keeps one
 * event-socket session to the local FreeSWITCH open and asks the check's questions every
 * watch.interval_ms over it; the moment the socket closes (a crash) or an answer is wrong, it writes
 * 1 to watch.file, and 0 once healthy again. keepalived's track_file (weight 0) follows that file with
 * inotify, so the instance goes FAULT within milliseconds instead of at the next check_fs run.
 * check_fs stays the authority: if this process is not running, the file keeps its last value and the
 * once-a-second check still fails the node. On SIGTERM it writes 0, handing back to check_fs.
 * A change of health is also written to this node's heartbeat at once (check_fs writes it only once a
 * second): a peer's takeover that finds our event socket refusing reads what is known now.
 */
import type { Config } from '../config';
import { Db } from '../adapters/db';
import { writeHeartbeat } from '../adapters/recovery-store';
import { errorMessage } from '../errors';
import { LocalHealth } from '../local-health';
import { log } from '../log';
import type { CommandSpec } from '../cli/spec';

/** Best effort, bounded by timeouts.database_ms: the heartbeat as the health loop knows it now. */
async function beat(cfg: Config, health: LocalHealth): Promise<void> {
  if (!cfg.database || !cfg.check.heartbeat) return;
  const p = health.lastProbe;
  const me = cfg.nodes[cfg.node];
  let db: Db | null = null;
  try {
    db = await Db.connect(cfg.database, cfg.timeouts.databaseMs, `fs-ha watch ${cfg.node}`);
    await writeHeartbeat(
      db,
      cfg.node,
      me.switchname,
      p?.kind === 'healthy' ? p.coreUuid : null,
      p?.kind === 'healthy',
      p?.kind === 'healthy' ? 'healthy' : (p?.detail ?? 'unknown'),
    );
  } catch (e) {
    log('debug', `watch: heartbeat not written: ${errorMessage(e)}`);
  } finally {
    await db?.close();
  }
}

export async function watch(cfg: Config): Promise<number> {
  const health = new LocalHealth(cfg, { who: 'watch' });
  health.onChange = () => {
    void beat(cfg, health);
  };
  const stop = () => health.stop(true);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await health.run();
  return 0;
}

export const command: CommandSpec = {
  name: 'watch',
  links: [],
  args: '',
  positionals: { min: 0, max: 0 },
  summary: "long-running: sub-second crash detection for keepalived's track_file",
  exits: '0 after SIGTERM, 2 configuration error',
  options: {},
  run: ({ cfg }) => watch(cfg),
};
