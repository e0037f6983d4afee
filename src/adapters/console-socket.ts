/**
 * fs-ha's console socket: how `fsha …` typed in fs_cli (FreeSWITCH's `system` API, run as FreeSWITCH's user)
 * reaches the agent, which runs as root with the configuration and warm connections. Authority is the
 * socket's: a unix socket in a directory of its own, root:<console.group> 0750, the socket 0660, so only root
 * and members of that group can connect; everyone else gets EACCES from the kernel. One request a connection:
 * a JSON array of words on one line; the answer is plain text lines, streamed, then the connection closes.
 */
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';

/** A group's gid from /etc/group (null: no such group). */
export function groupId(name: string, file = '/etc/group'): number | null {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name && /^\d+$/.test(gid ?? '')) return Number(gid);
  }
  return null;
}

/** Terminal control characters (a console shows plain lines): stripped from every answer line. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it matches
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;

/** Longest request accepted (words of a console line). */
const MAX_REQUEST = 4096;

export class ConsoleServer {
  private server: Server | null = null;

  constructor(
    private readonly path: string,
    private readonly gid: number,
    private readonly handle: (words: string[], write: (line: string) => void) => Promise<void>,
  ) {}

  start(): Promise<void> {
    const dir = dirname(this.path);
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    chownSync(dir, 0, this.gid);
    chmodSync(dir, 0o750);
    rmSync(this.path, { force: true }); // a socket left by an agent that died: nobody listens on it
    return new Promise((resolve, reject) => {
      const server = createServer((sock) => this.serve(sock));
      server.once('error', reject);
      server.listen(this.path, () => {
        chownSync(this.path, 0, this.gid);
        chmodSync(this.path, 0o660);
        server.removeAllListeners('error');
        server.on('error', () => undefined);
        this.server = server;
        resolve();
      });
    });
  }

  stop(): void {
    this.server?.close();
    this.server = null;
    rmSync(this.path, { force: true });
  }

  private serve(sock: Socket): void {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.setTimeout(10_000, () => sock.destroy()); // a client that never says what it wants is not waited for
    const write = (line: string) => {
      if (!sock.destroyed) sock.write(line.replace(CONTROL, '') + '\n');
    };
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) {
        write('fsha: request too long');
        sock.end();
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      sock.removeAllListeners('data');
      sock.setTimeout(0);
      let words: unknown;
      try {
        words = JSON.parse(buf.slice(0, nl));
      } catch {
        words = null;
      }
      if (!Array.isArray(words) || !words.every((w) => typeof w === 'string')) {
        write('fsha: bad request');
        sock.end();
        return;
      }
      void this.handle(words as string[], write)
        .catch((e) => write(`fsha: ${(e as Error).message}`))
        .finally(() => sock.end());
    });
  }
}

/** The client side: send the words, print the answer as it streams; every failure is one line saying why. */
export function askConsole(
  path: string,
  words: string[],
  print: (text: string) => void,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok: boolean, why?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (why) print(`fsha: ${why}\n`);
      sock.destroy();
      resolve(ok);
    };
    const sock = createConnection(path);
    const timer = setTimeout(
      () => finish(false, `no answer from fs-ha's agent within ${timeoutMs / 1000} s`),
      timeoutMs,
    );
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(words) + '\n'));
    sock.on('data', (d: string) => print(d));
    sock.on('end', () => finish(true));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EACCES')
        finish(
          false,
          `this user may not use fs-ha's console (${path} admits root and the group the agent's console.group names)`,
        );
      else if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED')
        finish(false, `fs-ha's agent serves no console here (${path}: ${e.code}; console.group set, agent running?)`);
      else finish(false, `${path}: ${e.message}`);
    });
  });
}
