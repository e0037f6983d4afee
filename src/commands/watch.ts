/**
 * `fs-ha watch`: a long-running companion of check_fs for sub-second crash detection. It keeps one
 * event-socket session to the local FreeSWITCH open and asks the check's questions every
 * watch.interval_ms over it; the moment the socket closes (a crash) or an answer is wrong, it writes
 * 1 to watch.file, and 0 once healthy again. keepalived's track_file (weight 0) follows that file with
 * inotify, so the instance goes FAULT within milliseconds instead of at the next check_fs run.
 * check_fs stays the authority: if this process is not running, the file keeps its last value and the
 * once-a-second check still fails the node. On SIGTERM it writes 0, handing back to check_fs.
 */
import { mkdirSync } from 'node:fs';
import { replaceFile } from '../adapters/safe-files';
import { dirname } from 'node:path';
import type { Config } from '../config';
import { EslSession } from '../adapters/esl';
import { errorMessage } from '../errors';
import { log } from '../log';
import { probeSession } from '../observe';
import type { CommandSpec } from '../cli/spec';

export async function watch(cfg: Config): Promise<number> {
  const file = cfg.watch.file;
  const every = cfg.watch.intervalMs;
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  let last: string | null = null;
  const set = (healthy: boolean, reason: string) => {
    const v = healthy ? '0' : '1';
    if (v === last) return;
    replaceFile(file, v + '\n');
    log(healthy ? 'info' : 'warn', `watch: ${cfg.node} ${healthy ? 'healthy' : 'FAILED'}: ${reason}`, { node: cfg.node, file, value: v });
    last = v;
  };
  let stopping = false;
  let wake: (() => void) | null = null;
  const nap = (ms: number) => new Promise<void>((r) => { const t = setTimeout(r, ms); wake = () => { clearTimeout(t); r(); }; });
  const stop = () => { stopping = true; wake?.(); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  log('info', `watch: watching ${cfg.esl.host}:${cfg.esl.port} every ${every} ms, state in ${file}`, { node: cfg.node });

  let session: EslSession | null = null;
  while (!stopping) {
    if (!session) {
      try {
        session = await EslSession.open(cfg.esl, cfg.check.timeoutMs);
        const mine = session;
        mine.onClose((why) => {
          if (session !== mine) return;
          session = null;
          if (!stopping && why !== 'closed by fs-ha') set(false, `event socket lost: ${why}`);
          wake?.();
        });
      } catch (e) {
        set(false, errorMessage(e));
        await nap(every);
        continue;
      }
    }
    const p = await probeSession(session, cfg.check.profiles, cfg.check.timeoutMs);
    if (p.kind === 'healthy') set(true, p.detail);
    else {
      set(false, p.detail);
      if (p.kind !== 'unhealthy') { session?.close(); session = null; } // timed out or broken: reconnect
    }
    if (!stopping) await nap(every);
  }
  (session as EslSession | null)?.close();
  set(true, 'watch stopped: check_fs decides alone');
  return 0;
}

export const command: CommandSpec = {
  name: 'watch', links: [], args: '', positionals: { min: 0, max: 0 },
  summary: "long-running: sub-second crash detection for keepalived's track_file",
  exits: '0 after SIGTERM, 2 configuration error', options: {},
  run: ({ cfg }) => watch(cfg),
};
