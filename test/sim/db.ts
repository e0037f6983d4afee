/**
 * The simulator's database connection, as FreeSWITCH's mod_pgsql holds one (facts in
 * ../shared/docs/freeswitch-recovery.md, "The database underneath"):
 *  - the DSN goes to libpq unchanged, so its multi-host keyword form works: `host=db1,db2 port=5432,5432
 *    target_session_attrs=read-write` connects to the first host that is a writable primary (libpq asks
 *    `SHOW transaction_read_only` for read-write, `pg_is_in_recovery()` for primary);
 *  - before each statement the connection is checked; a dead one is PQreset with the same host list, up to
 *    120 times, 1 s apart, each failed round reported ("The sql server is not responding for DSN ...");
 *  - a statement that fails because the connection died is lost (it is not replayed), and a connection to
 *    a server that is still up but was demoted is not reset by itself.
 * Accepts the keyword form FreeSWITCH is given (`pgsql://host=... dbname=...`, what `fs-ha db init`
 * prints) and the URL form (`postgres://...`, multi-host too).
 */
import { Client, type QueryResult } from 'pg';
import { parsePgTarget } from '../../src/core/pg-hosts';

interface Server {
  host: string;
  port: number;
}

export interface DsnParts {
  servers: Server[];
  attrs: 'any' | 'read-write' | 'primary';
  database: string;
  user: string;
  password?: string;
  options?: string;
  connectTimeoutS?: number;
}

/** libpq's keyword form: key=value pairs, values optionally in single quotes with \\' and \\\\ escapes. */
export function parseKeywordDsn(dsn: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /\s*([a-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))/gy;
  const text = dsn.trim();
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    out[m[1]] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
    end = re.lastIndex;
  }
  if (text.slice(end).trim()) throw new Error(`cannot parse DSN near "${text.slice(end, end + 20)}"`);
  return out;
}

export function parseDsn(dsn: string): DsnParts {
  if (/^postgres(ql)?:\/\//.test(dsn)) {
    const t = parsePgTarget(dsn);
    if ('error' in t) throw new Error(`DSN: ${t.error}`);
    const u = new URL(t.urls[0]);
    const socket = u.searchParams.get('host'); // postgres://user@localhost:port/db?host=/socket/dir
    const servers = t.hosts.map((h) => ({ host: socket ?? h.host.replace(/^\[|\]$/g, ''), port: h.port }));
    return {
      servers,
      attrs: t.attrs,
      database: t.database || 'postgres',
      user: t.user || 'postgres',
      password: u.password ? decodeURIComponent(u.password) : undefined,
      options: u.searchParams.get('options') ?? undefined,
      connectTimeoutS: t.connectTimeoutS ?? undefined,
    };
  }
  const kv = parseKeywordDsn(dsn.replace(/^pgsql:\/\//, ''));
  const hosts = (kv.host ?? kv.hostaddr ?? 'localhost').split(',');
  const ports = (kv.port ?? '5432').split(',');
  if (ports.length !== 1 && ports.length !== hosts.length)
    throw new Error(`DSN: ${hosts.length} hosts but ${ports.length} ports`);
  const attrs = (kv.target_session_attrs ?? 'any') as DsnParts['attrs'];
  if (!['any', 'read-write', 'primary'].includes(attrs)) throw new Error(`DSN: target_session_attrs=${attrs}`);
  return {
    servers: hosts.map((host, i) => ({ host, port: Number(ports[ports.length === 1 ? 0 : i]) })),
    attrs,
    database: kv.dbname ?? 'postgres',
    user: kv.user ?? 'postgres',
    password: kv.password,
    options: kv.options,
    connectTimeoutS: kv.connect_timeout ? Number(kv.connect_timeout) : undefined,
  };
}

/** A connection error (the server went away), as opposed to an error of the statement. */
function connectionLost(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? '';
  return (
    /^(08|57P0)/.test(code) ||
    /Connection terminated|ECONNRESET|ECONNREFUSED|EPIPE|not queryable|has been closed/i.test(
      String((e as Error).message),
    )
  );
}

export interface SimDbOptions {
  appName: string;
  /** PQreset attempts before a statement gives up (mod_pgsql: 120) */
  resetTries?: number;
  /** between attempts (mod_pgsql: 1 s) */
  resetIntervalMs?: number;
  onEvent?: (what: string, detail: Record<string, unknown>) => void;
}

export class SimDb {
  private client: Client | null = null;
  private bad = true;
  private closed = false;
  private readonly parts: DsnParts;
  private readonly tries: number;
  private readonly intervalMs: number;
  /** the server this connection is on now (host:port) */
  server = '';

  constructor(
    dsn: string,
    private readonly o: SimDbOptions,
  ) {
    this.parts = parseDsn(dsn);
    this.tries = o.resetTries ?? 120;
    this.intervalMs = o.resetIntervalMs ?? 1000;
  }

  /** The first connection, at start-up: the same host list and checks as every reset. */
  async connect(): Promise<void> {
    await this.ensure();
  }

  /** One round over the host list, in order (libpq's PQconnectdb / PQreset). */
  private async connectOnce(): Promise<string[]> {
    const why: string[] = [];
    for (const s of this.parts.servers) {
      const c = new Client({
        host: s.host,
        port: s.port,
        database: this.parts.database,
        user: this.parts.user,
        password: this.parts.password,
        options: this.parts.options,
        application_name: this.o.appName,
        connectionTimeoutMillis: (this.parts.connectTimeoutS ?? 10) * 1000,
        query_timeout: 10000,
      });
      c.on('error', () => {
        if (this.client === c) this.bad = true;
      });
      c.on('end', () => {
        if (this.client === c) this.bad = true;
      });
      try {
        await c.connect();
        if (this.parts.attrs !== 'any') {
          const sql =
            this.parts.attrs === 'primary'
              ? "SELECT CASE WHEN pg_is_in_recovery() THEN 'on' ELSE 'off' END AS ro"
              : 'SHOW transaction_read_only';
          const r = await c.query(sql);
          const ro = (r.rows[0] as Record<string, string>)[
            this.parts.attrs === 'primary' ? 'ro' : 'transaction_read_only'
          ];
          if (ro === 'on') {
            why.push(`${s.host}:${s.port} is read-only`);
            await c.end().catch(() => undefined);
            continue;
          }
        }
        this.client = c;
        this.bad = false;
        this.server = `${s.host}:${s.port}`;
        return [];
      } catch (e) {
        why.push(`${s.host}:${s.port}: ${(e as Error).message}`);
        await c.end().catch(() => undefined);
      }
    }
    return why;
  }

  private resetting: Promise<Client> | null = null;

  /** The connection, reset first when it is dead; statements arriving meanwhile wait for the same reset. */
  private ensure(): Promise<Client> {
    if (this.client && !this.bad) return Promise.resolve(this.client);
    if (this.closed) return Promise.reject(new Error('database connection closed'));
    this.resetting ??= this.reset().finally(() => {
      this.resetting = null;
    });
    return this.resetting;
  }

  private async reset(): Promise<Client> {
    const old = this.client;
    this.client = null;
    if (old) old.end().catch(() => undefined);
    for (let attempt = 1; ; attempt++) {
      const why = await this.connectOnce();
      if (!why.length) {
        if (old || attempt > 1) this.o.onEvent?.('db-reset', { server: this.server, attempt });
        return this.client!;
      }
      this.o.onEvent?.('db-not-responding', { attempt, why: why.join('; ') });
      if (attempt >= this.tries || this.closed) throw new Error(`The sql server is not responding: ${why.join('; ')}`);
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }

  /** one statement at a time on the connection, in call order (FreeSWITCH's SQL threads queue theirs too) */
  private queue: Promise<unknown> = Promise.resolve();

  query(text: string, params: unknown[] = []): Promise<QueryResult> {
    const run = this.queue.then(() => this.send(text, params));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async send(text: string, params: unknown[]): Promise<QueryResult> {
    const c = await this.ensure();
    try {
      return await c.query(text, params);
    } catch (e) {
      if (connectionLost(e)) this.bad = true; // this statement is lost; the next one resets
      throw e;
    }
  }

  async end(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = null;
    if (c) await c.end().catch(() => undefined);
  }
}
