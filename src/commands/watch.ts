/**
 * `fs-ha watch`: a long-running companion of check_fs for sub-second crash detection. It keeps one
 * event-socket session to the local FreeSWITCH open and asks the check's questions every
 * watch.interval_ms over it; the moment the socket closes (a crash) or an answer is wrong, it writes
 * 1 to watch.file, and 0 once healthy again. keepalived's track_file (weight 0) follows that file with
 * inotify, so the instance goes FAULT within milliseconds instead of at the next check_fs run.
 * check_fs stays the authority: if this process is not running, the file keeps its last value and the
 * once-a-second check still fails the node. On SIGTERM it writes 0, handing back to check_fs.
 */
import type { Config } from '../config';
import { LocalHealth } from '../local-health';
import type { CommandSpec } from '../cli/spec';

export async function watch(cfg: Config): Promise<number> {
  const health = new LocalHealth(cfg, { who: 'watch' });
  const stop = () => health.stop(true);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await health.run();
  return 0;
}

export const command: CommandSpec = {
  name: 'watch', links: [], args: '', positionals: { min: 0, max: 0 },
  summary: "long-running: sub-second crash detection for keepalived's track_file",
  exits: '0 after SIGTERM, 2 configuration error', options: {},
  run: ({ cfg }) => watch(cfg),
};
