/**
 * The operator's commands fs-ha runs: the optional fence (STONITH, a PDU, a cloud API...) before adopting a
 * node's calls, and drain.stop_command. Run through /bin/sh with the facts in the environment, never on its
 * command line; each has a deadline, and when it passes, the command's whole process group is killed.
 */
import { spawn } from 'node:child_process';
import { ActionFailed } from '../errors';

export function runFence(command: string, env: Record<string, string>, timeoutMs: number): Promise<void> {
  return runBounded('fence command', command, env, timeoutMs);
}

export function runBounded(
  what: string,
  command: string,
  env: Record<string, string>,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    // its own process group, so a timeout kills everything the command started, not only /bin/sh
    const child = spawn('/bin/sh', ['-c', command], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr = (stderr + d.toString()).slice(-500);
    });
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      reject(new ActionFailed(`${what} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new ActionFailed(`${what} could not start: ${e.message}`));
    });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else
        reject(
          new ActionFailed(
            `${what} failed (${sig ?? `exit ${code}`})${stderr.trim() ? ': ' + stderr.trim().split('\n').pop() : ''}`,
          ),
        );
    });
  });
}
