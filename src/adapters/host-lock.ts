/**
 * A lock for this host, so overlapping keepalived notify scripts run one at a time: flock(1) on a file in
 * fs-ha's private directory (state_dir, 0700, this user's), which no other user can open, so no other user
 * can take or block it. flock holds the lock while it runs `cat` on a pipe from us; the pipe closes when we
 * release or die (SIGKILL too), so a killed notify never leaves a stale lock behind.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ActionFailed } from '../errors';
import { privateDir } from './safe-files';

const lockFile = (dir: string, name: string) => join(privateDir(dir), `${name.replace(/[^A-Za-z0-9._-]/g, '_')}.lock`);

/** The lock the agent holds for its life, one per FIFO (a second agent on it refuses to start). */
export const agentLockName = (fifo: string) => `agent-${fifo}`;

/** Is this lock held now (by a live process)? Asked without waiting. */
export function hostLockHeld(dir: string, name: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const child = spawn('flock', ['-n', lockFile(dir, name), 'true'], { stdio: 'ignore' });
    child.on('error', (e) => reject(new ActionFailed(`host lock: cannot run flock (util-linux): ${e.message}`)));
    child.on('exit', (code) => resolve(code !== 0));
  });
}

export async function acquireHostLock(dir: string, name: string, timeoutMs: number): Promise<() => void> {
  const file = lockFile(dir, name);
  const child = spawn('flock', ['-x', '-w', (Math.max(1, timeoutMs) / 1000).toFixed(3), file, 'cat'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
  });
  child.stdin!.on('error', () => undefined);
  const ready = await new Promise<boolean>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (out.includes('locked\n')) resolve(true);
    });
    child.on('error', (e) => reject(new ActionFailed(`host lock: cannot run flock (util-linux): ${e.message}`)));
    child.on('exit', (code) => {
      if (code === 1 && !stderr.trim()) resolve(false);
      else
        reject(
          new ActionFailed(
            `host lock: flock ${file} failed (exit ${code})${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`,
          ),
        );
    });
    child.stdin!.write('locked\n'); // cat, which runs once flock holds the lock, echoes it back
  });
  if (!ready) throw new ActionFailed(`another fs-ha notify still holds the host lock after ${timeoutMs} ms`);
  child.unref();
  for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void })?.unref?.();
  return () => {
    child.stdin!.end();
  };
}
