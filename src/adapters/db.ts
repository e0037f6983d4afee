/**
 * PostgreSQL with a deadline on everything: connect, each statement (server side and client side),
 * lock waits and idle transactions. Errors become one-line ActionFailed messages with no secrets.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client as PgClient, QueryResultRow } from 'pg';
import { ActionFailed } from '../errors';
import { redact } from '../log';

export class Db {
  private lost: string | null = null;
  private readonly lostListeners: Array<(why: string) => void> = [];

  private constructor(private readonly client: PgClient, readonly timeoutMs: number) {
    const gone = (why: string) => {
      if (this.lost) return;
      this.lost = why;
      for (const l of this.lostListeners.splice(0)) l(why);
    };
    client.on('error', (e: Error) => gone(cleanError(e)));
    client.on('end', () => gone('connection closed'));
  }

  /** null while the connection is usable, else why it is not */
  get lostReason(): string | null { return this.lost; }

  /** Called once when the connection breaks or ends. */
  onLost(fn: (why: string) => void): void {
    if (this.lost) fn(this.lost);
    else this.lostListeners.push(fn);
  }

  static async connect(url: string, timeoutMs: number, appName = 'fs-ha'): Promise<Db> {
    const { Client } = require('pg') as typeof import('pg'); // loaded on first use (start-up of check_fs)
    const client = new Client({
      connectionString: url,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs + 500,
      statement_timeout: timeoutMs,
      lock_timeout: timeoutMs,
      idle_in_transaction_session_timeout: Math.max(timeoutMs * 4, 10000),
      application_name: appName,
      keepAlive: true,
    });
    client.on('error', () => { /* reported by the query that fails */ });
    const timer = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs + 200).unref());
    try {
      await Promise.race([client.connect(), timer]);
    } catch (e) {
      client.end().catch(() => undefined);
      throw new ActionFailed(`database: cannot connect to ${describeUrl(url)}: ${cleanError(e)}`);
    }
    return new Db(client, timeoutMs);
  }

  /** o.timeoutMs: this statement's client-side deadline, when it may wait longer than the others (a lock wait). */
  async query<R extends QueryResultRow = QueryResultRow>(text: string, params: unknown[] = [], what = 'query', o: { timeoutMs?: number } = {}): Promise<R[]> {
    try {
      const res = o.timeoutMs
        ? await this.client.query<R>({ text, values: params, query_timeout: o.timeoutMs } as unknown as string, undefined)
        : await this.client.query<R>(text, params);
      return res.rows;
    } catch (e) {
      throw new ActionFailed(`database: ${what} failed: ${cleanError(e)}`);
    }
  }

  /** Run fn in one transaction; any error rolls everything back. */
  async transaction<T>(fn: () => Promise<T>, what = 'transaction'): Promise<T> {
    await this.query('BEGIN', [], `${what} (begin)`);
    try {
      const out = await fn();
      await this.query('COMMIT', [], `${what} (commit)`);
      return out;
    } catch (e) {
      await this.client.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }

  async close(): Promise<void> {
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
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.username ? u.username + '@' : ''}${u.host}${u.pathname}`;
  } catch {
    return '<unparsable database URL>';
  }
}

export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}
