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
  /** something is wrong with the FIFO or what comes through it (said once per kind of problem until it is gone) */
  problem(message: string): void;
}

/** keepalived's lines are under 200 bytes; a longer run without a newline is dropped, not buffered */
export const MAX_LINE = 4096;

export class FifoReader {
  private sock: Socket | null = null;
  private ino = -1;
  private buf = '';
  /** dropping a line too long, up to its newline */
  private skipping = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private lastProblem: string | null = null;

  constructor(
    readonly path: string,
    private readonly on: FifoEvents,
    private readonly backlogMs = 50,
  ) {}

  private ensure(): void {
    privateDir(dirname(this.path));
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(this.path);
    } catch {
      const r = spawnSync('mkfifo', ['-m', '0600', this.path], { encoding: 'utf8', timeout: 5000 });
      if (r.status !== 0)
        throw new ActionFailed(`agent: cannot create the FIFO ${this.path}: ${(r.stderr || String(r.error)).trim()}`);
      st = lstatSync(this.path);
    }
    if (!st.isFIFO())
      throw new ActionFailed(`agent: ${this.path} exists and is not a FIFO (a link or a file): fs-ha will not read it`);
    if (st.uid !== (process.getuid?.() ?? st.uid) || st.mode & 0o022)
      throw new ActionFailed(`agent: ${this.path} must be this user's and writable by nobody else`);
  }

  private open(first: boolean): void {
    this.ensure();
    const fd = openSync(this.path, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    this.ino = statSync(this.path).ino;
    const sock = new Socket({ fd, readable: true, writable: false });
    this.sock = sock;
    let backlog: string[] | null = first ? [] : null;
    if (backlog)
      setTimeout(() => {
        const b = backlog!;
        backlog = null;
        this.on.backlog(b);
      }, this.backlogMs);
    const take = (line: string) => {
      if (!line.trim()) return;
      if (backlog) backlog.push(line);
      else this.on.line(line);
    };
    sock.on('data', (d: Buffer) => {
      // only the new chunk is scanned (a huge line without a newline costs its own length once, not its square)
      const chunk = d.toString('utf8');
      let from = 0;
      for (let i = chunk.indexOf('\n'); i >= 0; i = chunk.indexOf('\n', from)) {
        if (!this.skipping) take(this.buf + chunk.slice(from, i));
        this.buf = '';
        this.skipping = false;
        from = i + 1;
      }
      if (!this.skipping) this.buf += chunk.slice(from);
      if (this.buf.length > MAX_LINE) {
        this.on.problem(
          `a line of more than ${MAX_LINE} bytes without a newline came through ${this.path}: dropped (keepalived's lines are short)`,
        );
        this.buf = '';
        this.skipping = true;
      }
    });
    sock.on('error', () => undefined);
  }

  start(): void {
    this.open(true);
    this.timer = setInterval(() => {
      if (this.closed) return;
      let ino = -1;
      try {
        ino = statSync(this.path).ino;
      } catch {
        /* removed: recreate */
      }
      if (ino !== this.ino) {
        this.shut();
        try {
          this.open(false);
          this.lastProblem = null;
          this.on.reopened();
        } catch (e) {
          // said once, tried again every second: keepalived's transitions are not heard until it is fixed
          const msg = `${(e as Error).message}; keepalived's transitions are NOT heard until it is a FIFO again (retrying every second)`;
          if (msg !== this.lastProblem) this.on.problem(msg);
          this.lastProblem = msg;
        }
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
