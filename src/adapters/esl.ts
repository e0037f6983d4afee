/**
 * The FreeSWITCH event socket, through modesl, with the deadlines modesl lacks: it never calls back on a
 * wrong password or a server that accepts and never answers, so every step here races a timer and the
 * socket is destroyed when the timer wins. Errors carry a kind, because "connection refused" (nothing
 * listens: FreeSWITCH is down) means something different from "timed out" (host or network unknown).
 */
import type { EslTarget } from '../config';

/**
 * refused: nothing listens. unreachable: no TCP connection within the deadline, or no route. silent: TCP
 * connected but no answer in time (a hung process). auth: password rejected. rejected: FreeSWITCH's
 * inbound ACL turned us away (text/rude-rejection). closed / error: it connected, then closed or broke.
 */
export type EslErrorKind = 'refused' | 'unreachable' | 'silent' | 'auth' | 'rejected' | 'closed' | 'error';

export class EslError extends Error {
  constructor(
    readonly kind: EslErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'EslError';
  }
}

interface ModeslEvent {
  getBody(): string;
  getHeader(name: string): string | undefined;
}

interface ModeslConnection {
  socket: { destroy(): void; setNoDelay?(v: boolean): void; connecting?: boolean } | null;
  on(event: string, fn: (...args: unknown[]) => void): void;
  api(command: string, cb: (evt: ModeslEvent) => void): void;
  send(command: string): void;
}

export class EslSession {
  private closedReason: string | null = null;
  /** who answers on this session, once asked (core uuid and switchname change only with a new connection) */
  known: { coreUuid: string; switchname: string } | null = null;
  private readonly waiters = new Set<(err: EslError) => void>();

  private constructor(
    private readonly conn: ModeslConnection,
    readonly where: string,
  ) {
    const onGone = (why: string) => () =>
      this.fail(new EslError('closed', `event socket ${where} closed the connection (${why})`));
    conn.on('esl::end', onGone('end'));
    conn.on('esl::event::disconnect::notice', onGone('disconnect notice'));
    conn.on('error', (e: unknown) =>
      this.fail(new EslError('error', `event socket ${where}: ${(e as Error)?.message ?? e}`)),
    );
  }

  static open(target: EslTarget, timeoutMs = target.timeoutMs): Promise<EslSession> {
    const where = `${target.host}:${target.port}`;
    return new Promise((resolve, reject) => {
      let settled = false;
      let conn: ModeslConnection;
      const done = (err: EslError | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          try {
            conn?.socket?.destroy();
          } catch {
            /* already gone */
          }
          reject(err);
        } else {
          resolve(new EslSession(conn, where));
        }
      };
      const timer = setTimeout(() => {
        const connected = conn?.socket ? conn.socket.connecting === false : false;
        done(
          connected
            ? new EslError(
                'silent',
                `event socket ${where} accepted the connection but did not complete auth within ${timeoutMs} ms`,
              )
            : new EslError('unreachable', `event socket ${where}: no connection within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      try {
        const { Connection } = require('modesl') as typeof import('modesl'); // loaded on first use
        conn = new Connection(target.host, target.port, target.password, () =>
          done(null),
        ) as unknown as ModeslConnection;
        // modesl writes a command in several small pieces: without this, Nagle + delayed ACK cost ~40 ms a command
        conn.socket?.setNoDelay?.(true);
      } catch (e) {
        done(new EslError('error', `event socket ${where}: ${(e as Error).message}`));
        return;
      }
      conn.on('error', (e: unknown) => {
        const code = (e as NodeJS.ErrnoException)?.code;
        if (code === 'ECONNREFUSED')
          done(new EslError('refused', `event socket ${where} refused the connection (FreeSWITCH not listening)`));
        else if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH')
          done(new EslError('unreachable', `event socket ${where} unreachable (${code})`));
        else if (code === 'ECONNRESET' || code === 'EPIPE')
          done(new EslError('closed', `event socket ${where} reset the connection before auth completed (${code})`));
        else done(new EslError('error', `event socket ${where}: ${(e as Error)?.message ?? e}`));
      });
      conn.on('esl::event::auth::fail', () =>
        done(new EslError('auth', `event socket ${where} rejected the password`)),
      );
      conn.on('esl::event::raw::text/rude-rejection', () =>
        done(
          new EslError(
            'rejected',
            `event socket ${where} rejected us by its ACL (text/rude-rejection): FreeSWITCH is running; admit this host in event_socket.conf.xml apply-inbound-acl`,
          ),
        ),
      );
      conn.on('esl::end', () =>
        done(new EslError('closed', `event socket ${where} closed the connection before auth completed`)),
      );
      conn.on('esl::event::disconnect::notice', () =>
        done(new EslError('closed', `event socket ${where} disconnected before auth completed`)),
      );
    });
  }

  private readonly closeListeners: Array<(reason: string, kind: EslErrorKind) => void> = [];
  private closedKind: EslErrorKind = 'closed';

  /** the session ended (the far side closed, an error, a timeout, close()) */
  get closed(): boolean {
    return this.closedReason !== null;
  }

  /** Called once when the session ends for any reason (the far side closed, an error, a timeout: kind silent, close()). */
  onClose(fn: (reason: string, kind: EslErrorKind) => void): void {
    if (this.closedReason) fn(this.closedReason, this.closedKind);
    else this.closeListeners.push(fn);
  }

  private fail(err: EslError): void {
    if (this.closedReason) return;
    this.closedReason = err.message;
    this.closedKind = err.kind;
    for (const w of this.waiters) w(err);
    this.waiters.clear();
    for (const l of this.closeListeners.splice(0)) l(err.message, err.kind);
    try {
      this.conn.socket?.destroy();
    } catch {
      /* gone */
    }
  }

  /** `api CMD`, body of the api/response; the session is unusable after a timeout (replies would misalign). */
  api(command: string, timeoutMs: number): Promise<string> {
    if (this.closedReason) return Promise.reject(new EslError('closed', this.closedReason));
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (err: EslError | null, body?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.waiters.delete(onFail);
        if (err) reject(err);
        else resolve(body ?? '');
      };
      const onFail = (err: EslError) => finish(err);
      const timer = setTimeout(() => {
        const err = new EslError(
          'silent',
          `event socket ${this.where}: no answer to "api ${command}" within ${timeoutMs} ms`,
        );
        finish(err);
        this.fail(err);
      }, timeoutMs);
      this.waiters.add(onFail);
      this.conn.api(command, (evt) => finish(null, evt.getBody() ?? ''));
    });
  }

  close(): void {
    if (this.closedReason) return;
    this.closedReason = 'closed by fs-ha';
    for (const w of this.waiters) w(new EslError('closed', 'closed by fs-ha'));
    this.waiters.clear();
    for (const l of this.closeListeners.splice(0)) l('closed by fs-ha', 'closed');
    try {
      this.conn.send('exit');
    } catch {
      /* gone */
    }
    try {
      this.conn.socket?.destroy();
    } catch {
      /* gone */
    }
  }
}

/** Open, run one api command, close: for one-shot questions. */
export async function eslApi(target: EslTarget, command: string, timeoutMs = target.timeoutMs): Promise<string> {
  const started = Date.now();
  const s = await EslSession.open(target, timeoutMs);
  try {
    return await s.api(command, Math.max(1, timeoutMs - (Date.now() - started)));
  } finally {
    s.close();
  }
}
