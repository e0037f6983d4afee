/**
 * keepalived's notify FIFO, read without ever blocking: created (0600) if missing, opened O_RDWR|O_NONBLOCK
 * (so opening never waits for a writer and a writer closing is no end of file), read through a pipe
 * handle on the event loop, split into lines. keepalived recreates the FIFO on reload: its inode is
 * checked every second and the new one reopened. What waited in the pipe before the first read is handed
 * over apart, as the backlog (it may be stale: only its last state per instance is still true).
 */
import { spawnSync } from 'node:child_process';
import { constants, lstatSync, openSync, statSync } from 'node:fs';
import { Socket } from 'node:net';
import { dirname } from 'node:path';
import { ActionFailed } from '../errors';
import { privateDir } from './safe-files';

export interface FifoEvents {
  /** lines that were in the pipe when it was opened (read within the first moment) */
  backlog(lines: string[]): void;
  line(line: string): void;
  /** the FIFO was replaced (keepalived reloaded) and reopened */
  reopened(): void;
}

export class FifoReader {
  private sock: Socket | null = null;
  private ino = -1;
  private buf = '';
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(readonly path: string, private readonly on: FifoEvents, private readonly backlogMs = 50) {}

  private ensure(): void {
    privateDir(dirname(this.path));
    let st;
    try {
      st = lstatSync(this.path);
    } catch {
      const r = spawnSync('mkfifo', ['-m', '0600', this.path], { encoding: 'utf8', timeout: 5000 });
      if (r.status !== 0) throw new ActionFailed(`agent: cannot create the FIFO ${this.path}: ${(r.stderr || String(r.error)).trim()}`);
      st = lstatSync(this.path);
    }
    if (!st.isFIFO()) throw new ActionFailed(`agent: ${this.path} exists and is not a FIFO (a link or a file): fs-ha will not read it`);
    if (st.uid !== (process.getuid?.() ?? st.uid) || st.mode & 0o022) throw new ActionFailed(`agent: ${this.path} must be this user's and writable by nobody else`);
  }

  private open(first: boolean): void {
    this.ensure();
    const fd = openSync(this.path, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    this.ino = statSync(this.path).ino;
    const sock = new Socket({ fd, readable: true, writable: false });
    this.sock = sock;
    let backlog: string[] | null = first ? [] : null;
    if (backlog) setTimeout(() => { const b = backlog!; backlog = null; this.on.backlog(b); }, this.backlogMs);
    sock.on('data', (d: Buffer) => {
      this.buf += d.toString('utf8');
      for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (!line.trim()) continue;
        if (backlog) backlog.push(line);
        else this.on.line(line);
      }
    });
    sock.on('error', () => undefined);
  }

  start(): void {
    this.open(true);
    this.timer = setInterval(() => {
      if (this.closed) return;
      let ino = -1;
      try { ino = statSync(this.path).ino; } catch { /* removed: recreate */ }
      if (ino !== this.ino) {
        this.shut();
        try {
          this.open(false);
          this.on.reopened();
        } catch { /* try again at the next tick */ }
      }
    }, 1000);
    this.timer.unref?.();
  }

  private shut(): void {
    this.sock?.destroy(); // closes the fd
    this.sock = null;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.shut();
  }
}

