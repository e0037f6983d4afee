/**
 * A lock for this host (strictly: this network namespace), so overlapping keepalived notify scripts run one
 * at a time. It is an abstract-namespace unix socket: the kernel frees it the instant the holder dies,
 * so a killed notify never leaves a stale lock behind.
 */
import { createServer, type Server } from 'node:net';
import { ActionFailed } from '../errors';

export async function acquireHostLock(name: string, timeoutMs: number): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const server = await new Promise<Server | null>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(null));
      s.listen('\0' + name, () => resolve(s));
    });
    if (server) {
      server.unref();
      return () => server.close();
    }
    if (Date.now() >= deadline) throw new ActionFailed(`another fs-ha notify still holds the host lock after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
