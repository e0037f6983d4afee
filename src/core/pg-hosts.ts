/**
 * libpq's multi-host connection URL, which node-postgres does not parse (brianc/node-postgres #1470):
 *   postgres://fsha@db1:5432,db2:5432/freeswitch?target_session_attrs=read-write&connect_timeout=2
 * Pure: the hosts in order, what each connection must be, and one single-host URL per host for pg.
 */

export type SessionAttrs = 'any' | 'read-write' | 'primary';

export interface PgTarget {
  hosts: Array<{ host: string; port: number }>;
  /** what a host must be to be used: read-write/primary = not in recovery, not read-only */
  attrs: SessionAttrs;
  /** libpq's connect_timeout (seconds), if given */
  connectTimeoutS: number | null;
  /** one URL per host, in order, each as pg understands it (the other parameters kept) */
  urls: string[];
  user: string;
  database: string;
}

/** null for a URL that is not of this form (let pg's own parser speak), else the target or the error. */
export function parsePgTarget(url: string): PgTarget | { error: string } {
  const m = url.match(/^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/);
  if (!m) return { error: 'not a postgres:// URL' };
  const [, scheme, auth = '', hostPart, path = '', query = ''] = m;
  const hosts: Array<{ host: string; port: number }> = [];
  for (const h of hostPart.split(',')) {
    const hm = h.match(/^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$/);
    if (!hm) return { error: `host "${h}" is not host[:port]` };
    const port = hm[2] ? Number(hm[2]) : 5432;
    if (port < 1 || port > 65535) return { error: `port ${hm[2]} of ${hm[1]} is out of range` };
    hosts.push({ host: hm[1], port });
  }
  const params = new URLSearchParams(query.slice(1));
  const attrsRaw = params.get('target_session_attrs') ?? 'any';
  if (!['any', 'read-write', 'primary'].includes(attrsRaw)) return { error: `target_session_attrs=${attrsRaw} is not one of any, read-write, primary` };
  params.delete('target_session_attrs');
  const ct = params.get('connect_timeout');
  params.delete('connect_timeout');
  if (ct !== null && !/^\d+$/.test(ct)) return { error: `connect_timeout=${ct} is not a whole number of seconds` };
  const rest = params.toString();
  const urls = hosts.map((h) => `${scheme}${auth}${h.host}:${h.port}${path}${rest ? `?${rest}` : ''}`);
  const user = decodeURIComponent(auth.replace(/@$/, '').split(':')[0] ?? '');
  return { hosts, attrs: attrsRaw as SessionAttrs, connectTimeoutS: ct === null ? null : Number(ct), urls, user, database: decodeURIComponent(path.replace(/^\//, '')) };
}

/** Is a server that answered these usable for attrs? Returns the reason it is not, or null. */
export function unusableFor(attrs: SessionAttrs, inRecovery: boolean, readOnly: boolean): string | null {
  if (attrs === 'any') return null;
  if (inRecovery) return 'a standby (in recovery): read-only';
  if (readOnly) return 'read-only (default_transaction_read_only)';
  return null;
}

/** libpq's per-host connect timeout in the DSNs fs-ha prints for FreeSWITCH, unless the URL gives one. */
export const DSN_CONNECT_TIMEOUT_S = 3;

/**
 * A FreeSWITCH DSN (libpq keyword form, as mod_pgsql passes it to PQconnectdb) for the same servers:
 * host=db1,db2 port=5432,5432 dbname=... user=... target_session_attrs=..., never the password.
 */
export function keywordDsn(t: PgTarget, options?: string): string {
  const parts = [
    `host=${t.hosts.map((h) => h.host.replace(/^\[|\]$/g, '')).join(',')}`,
    `port=${t.hosts.map((h) => h.port).join(',')}`,
    `dbname=${t.database || 'postgres'}`,
    ...(t.user ? [`user=${t.user}`] : []),
    ...(t.hosts.length > 1 || t.attrs !== 'any' ? [`target_session_attrs=${t.attrs === 'any' ? 'read-write' : t.attrs}`] : []),
    // libpq waits forever for a host that vanished without a reset: each host gets this long, then the next
    `connect_timeout=${t.connectTimeoutS ?? DSN_CONNECT_TIMEOUT_S}`,
    ...(options ? [`options='${options}'`] : []),
  ];
  return parts.join(' ');
}
