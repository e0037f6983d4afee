/**
 * PostgreSQL with a deadline on everything: connect, each statement (server side and client side),
 * lock waits and idle transactions. Errors become one-line ActionFailed messages with no secrets.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client as PgClient, QueryResultRow } from 'pg';
import { ActionFailed } from '../errors';
import { parsePgTarget, unusableFor } from '../core/pg-hosts';
import { redact } from '../log';

export class Db {
  private lost: string | null = null;
  private closing = false;
  private readonly lostListeners: Array<(why: string) => void> = [];

  private readonly gone: (why: string) => void;

  private constructor(
    private readonly client: PgClient,
    readonly timeoutMs: number,
  ) {
    this.gone = (why: string) => {
      if (this.lost || this.closing) return; // our own close() is no loss
      this.lost = why;
      for (const l of this.lostListeners.splice(0)) l(why);
    };
    client.on('error', (e: Error) => this.gone(cleanError(e)));
    client.on('end', () => this.gone('connection closed'));
  }

  /** null while the connection is usable, else why it is not */
  get lostReason(): string | null {
    return this.lost;
  }

  /** Called once when the connection breaks or ends. */
  onLost(fn: (why: string) => void): void {
    if (this.lost) fn(this.lost);
    else this.lostListeners.push(fn);
  }

  /**
   * The first writable primary among the URL's hosts (libpq's multi-host form, core/pg-hosts.ts), within
   * timeoutMs in all. fs-ha writes (heartbeat, takeover, audit): a standby or a read-only server reached by
   * mistake is skipped, and when no host is usable the error names each host and why.
   */
  static async connect(url: string, timeoutMs: number, appName = 'fs-ha'): Promise<Db> {
    const target = parsePgTarget(url);
    if ('error' in target) throw new ActionFailed(`database: ${target.error}`);
    const deadline = Date.now() + timeoutMs;
    const perHost = target.connectTimeoutS !== null ? target.connectTimeoutS * 1000 : timeoutMs;
    const why: string[] = [];
    let readOnly = false;
    for (const [i, hostUrl] of target.urls.entries()) {
      const left = deadline - Date.now();
      const where = `${target.hosts[i].host}:${target.hosts[i].port}`;
      if (left <= 0) {
        why.push(`${where}: not tried (deadline)`);
        continue;
      }
      // a fair share of what is left for each host not yet tried: a silent first host (no reset) cannot eat
      // the whole deadline and hide the primary behind it
      const share = Math.max(50, Math.floor(left / (target.urls.length - i)));
      let db: Db;
      try {
        db = await Db.connectOne(hostUrl, Math.min(share, perHost), timeoutMs, appName);
      } catch (e) {
        why.push(`${where}: ${cleanError(e)}`);
        continue;
      }
      try {
        const [r] = await db.query<{ r: boolean; ro: string }>(
          "SELECT pg_is_in_recovery() AS r, current_setting('transaction_read_only') AS ro",
          [],
          'asking whether it is a primary',
          { timeoutMs: Math.max(50, deadline - Date.now()) },
        );
        const bad = unusableFor(target.attrs === 'any' ? 'read-write' : target.attrs, r.r, r.ro === 'on');
        if (!bad) return db;
        readOnly = true;
        why.push(`${where}: ${bad}`);
      } catch (e) {
        why.push(`${where}: ${cleanError(e)}`);
      }
      await db.close();
    }
    if (target.hosts.length > 1)
      throw new ActionFailed(`database: no writable primary among ${describeUrl(url)}: ${why.join('; ')}`);
    const reason = why[0].slice(why[0].indexOf(': ') + 2);
    throw new ActionFailed(
      readOnly
        ? `database: ${describeUrl(url)} is ${reason}; fs-ha needs the primary (list every server in database: postgres://user@db1,db2/db?target_session_attrs=read-write)`
        : `database: cannot connect to ${describeUrl(url)}: ${reason}`,
    );
  }

  private static async connectOne(url: string, connectMs: number, timeoutMs: number, appName: string): Promise<Db> {
    const { Client } = require('pg') as typeof import('pg'); // loaded on first use (start-up of check_fs)
    const client = new Client({
      connectionString: url,
      connectionTimeoutMillis: connectMs,
      query_timeout: timeoutMs + 500,
      statement_timeout: timeoutMs,
      lock_timeout: timeoutMs,
      idle_in_transaction_session_timeout: Math.max(timeoutMs * 4, 10000),
      application_name: appName,
      keepAlive: true,
      // a peer that vanished without a reset is noticed by the kernel too, not only by our deadlines
      keepAliveInitialDelayMillis: 5000,
    });
    client.on('error', () => {
      /* reported by the query that fails */
    });
    const timer = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no connection within ${connectMs} ms`)), connectMs + 200).unref(),
    );
    try {
      await Promise.race([client.connect(), timer]);
    } catch (e) {
      client.end().catch(() => undefined);
      throw e;
    }
    return new Db(client, timeoutMs);
  }

  /** statements wait for the one before them: one connection runs one at a time (pg 9 will require it) */
  private queue: Promise<unknown> = Promise.resolve();

  /**
   * o.timeoutMs: this statement's client-side deadline, when it may wait longer than the others (a lock wait).
   * Concurrent callers (adopters verified in parallel, the rewrite's next read) are run in call order, each
   * with its own deadline from when it is sent.
   */
  query<R extends QueryResultRow = QueryResultRow>(
    text: string,
    params: unknown[] = [],
    what = 'query',
    o: { timeoutMs?: number } = {},
  ): Promise<R[]> {
    const run = this.queue.then(() => this.send<R>(text, params, what, o));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async send<R extends QueryResultRow>(
    text: string,
    params: unknown[],
    what: string,
    o: { timeoutMs?: number },
  ): Promise<R[]> {
    try {
      const res = o.timeoutMs
        ? await this.client.query<R>(
            { text, values: params, query_timeout: o.timeoutMs } as unknown as string,
            undefined,
          )
        : await this.client.query<R>(text, params);
      return res.rows;
    } catch (e) {
      // the client gave up waiting (a connection a firewall forgot, a host gone without a reset): the server may
      // never answer on it again, so it is lost; whoever holds it reconnects (the takeover retries on a new one)
      if (/Query read timeout/.test(String((e as Error)?.message))) {
        this.gone(`no answer within the deadline (${what})`);
        (this.client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      }
      throw new ActionFailed(`database: ${what} failed: ${cleanError(e)}`);
    }
  }

  /** A cheap question with a short deadline: a connection that does not answer it is marked lost. */
  async ping(timeoutMs: number): Promise<boolean> {
    try {
      await this.query('SELECT 1', [], 'keeping the connection honest', { timeoutMs });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Run fn in one transaction; any error rolls everything back. begin: statements without parameters sent with
   * BEGIN in one round trip (the transaction's mode, its settings), e.g. 'BEGIN READ ONLY; SELECT set_config(...)'.
   */
  async transaction<T>(fn: () => Promise<T>, what = 'transaction', begin = 'BEGIN'): Promise<T> {
    await this.query(begin, [], `${what} (begin)`);
    try {
      const out = await fn();
      await this.query('COMMIT', [], `${what} (commit)`);
      return out;
    } catch (e) {
      // through the queue: after every statement already sent in this transaction, never before one of them
      await this.query('ROLLBACK', [], `${what} (rollback)`).catch(() => undefined);
      throw e;
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.race([this.client.end().catch(() => undefined), sleep(500, undefined, { ref: false })]);
  }
}

export function cleanError(e: unknown): string {
  const err = e as { message?: string; code?: string };
  let msg = (err?.message ?? String(e)).split('\n')[0];
  if (/Query read timeout|canceling statement due to statement timeout/.test(msg)) msg = `timed out (${msg})`;
  if (/lock timeout/.test(msg)) msg = `lock wait timed out (${msg})`;
  return redact(msg);
}

/** user@host:port/db, never the password. */
/** user@host:port[,host:port...]/db, never the password. */
export function describeUrl(url: string): string {
  const t = parsePgTarget(url);
  if ('error' in t) return '<unparsable database URL>';
  return `${t.user ? `${t.user}@` : ''}${t.hosts.map((h) => `${h.host}:${h.port}`).join(',')}/${t.database}`;
}

export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}
