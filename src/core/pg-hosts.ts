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
  /** the URL's other parameters (sslmode, application_name, ...), for FreeSWITCH's DSN too */
  params: Array<[string, string]>;
}

/** decodeURIComponent that names what holds a stray % instead of throwing "URI malformed" */
function decoded(text: string, what: string): string | { error: string } {
  try {
    return decodeURIComponent(text);
  } catch {
    return { error: `the ${what} holds a % that is not an escape (write it as %25)` };
  }
}

/** sslmode values node-postgres can honour as libpq does; prefer and allow would silently mean require there */
const SSLMODES = ['disable', 'require', 'verify-ca', 'verify-full', 'no-verify'];

/**
 * The target, or the error (which never repeats the URL's text: a password with a raw @ / ? # could be in it).
 * The user information ends at the last @ before the query, so a raw @ or / in a password stays in it; host and
 * port may also come as query parameters (?host=/run/postgresql&port=5499), as libpq allows.
 */
export function parsePgTarget(url: string): PgTarget | { error: string } {
  const sm = /^(postgres(?:ql)?:\/\/)/.exec(url);
  if (!sm) return { error: 'not a postgres:// URL' };
  const scheme = sm[1];
  let rest = url.slice(scheme.length);
  if (rest.includes('#')) rest = rest.slice(0, rest.indexOf('#'));
  const qAt = rest.indexOf('?');
  const pre = qAt >= 0 ? rest.slice(0, qAt) : rest;
  const query = qAt >= 0 ? rest.slice(qAt + 1) : '';
  const at = pre.lastIndexOf('@');
  const authRaw = at >= 0 ? pre.slice(0, at) : '';
  const afterAuth = pre.slice(at + 1);
  const slash = afterAuth.indexOf('/');
  let hostPart = slash >= 0 ? afterAuth.slice(0, slash) : afterAuth;
  const path = slash >= 0 ? afterAuth.slice(slash) : '';
  const params = new URLSearchParams(query);
  if (params.get('host'))
    hostPart = params
      .get('host')!
      .split(',')
      .map((h) => (h.startsWith('/') ? encodeURIComponent(h) : h))
      .join(',');
  const portParam = params.get('port')?.split(',');
  params.delete('host');
  params.delete('port');
  const hosts: Array<{ host: string; port: number }> = [];
  for (const [i, h] of hostPart.split(',').entries()) {
    const hm = h.match(/^(\[[0-9a-fA-F:.]+\]|%2[Ff][^:[\]]*|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/);
    if (!hm) return { error: `host ${i + 1} is not host[:port] (a password holding @ / ? # must be percent-encoded)` };
    const given = portParam ? (portParam[i] ?? portParam[portParam.length - 1]) : hm[2];
    if (given !== undefined && !/^\d{1,5}$/.test(given)) return { error: `port ${i + 1} is not a number` };
    const port = given ? Number(given) : 5432;
    if (port < 1 || port > 65535) return { error: `port ${given} of host ${i + 1} is out of range` };
    const host = hm[1].startsWith('%') ? decoded(hm[1], `host ${i + 1}`) : hm[1];
    if (typeof host !== 'string') return host;
    hosts.push({ host, port });
  }
  const attrsRaw = params.get('target_session_attrs') ?? 'any';
  if (!['any', 'read-write', 'primary'].includes(attrsRaw))
    return { error: `target_session_attrs=${attrsRaw} is not one of any, read-write, primary` };
  params.delete('target_session_attrs');
  const ct = params.get('connect_timeout');
  params.delete('connect_timeout');
  if (ct !== null && !/^\d+$/.test(ct)) return { error: `connect_timeout=${ct} is not a whole number of seconds` };
  const ssl = params.get('sslmode');
  if (ssl !== null && !SSLMODES.includes(ssl)) {
    return {
      error: `sslmode=${ssl} is not supported: node-postgres would require SSL where libpq falls back to plaintext; use ${SSLMODES.slice(0, 2).join(' or ')} (or verify-ca, verify-full)`,
    };
  }
  const colon = authRaw.indexOf(':');
  const userRaw = colon >= 0 ? authRaw.slice(0, colon) : authRaw;
  const passRaw = colon >= 0 ? authRaw.slice(colon + 1) : null;
  const user = decoded(userRaw, 'user name');
  if (typeof user !== 'string') return user;
  const database = decoded(path.replace(/^\//, ''), 'database name');
  if (typeof database !== 'string') return database;
  // the password as it was meant (a raw @ or / included), re-encoded so each per-host URL parses the same
  const pass =
    passRaw === null
      ? null
      : (() => {
          try {
            return decodeURIComponent(passRaw);
          } catch {
            return passRaw;
          }
        })();
  const auth = authRaw ? `${encodeURIComponent(user)}${pass === null ? '' : `:${encodeURIComponent(pass)}`}@` : '';
  const others = params.toString();
  const urls = hosts.map(
    (h) =>
      `${scheme}${auth}${h.host.startsWith('/') ? encodeURIComponent(h.host) : h.host}:${h.port}/${encodeURIComponent(database)}${others ? `?${others}` : ''}`,
  );
  return {
    hosts,
    attrs: attrsRaw as SessionAttrs,
    connectTimeoutS: ct === null ? null : Number(ct),
    urls,
    user,
    database,
    params: [...params.entries()],
  };
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
    ...(t.hosts.length > 1 || t.attrs !== 'any'
      ? [`target_session_attrs=${t.attrs === 'any' ? 'read-write' : t.attrs}`]
      : []),
    // libpq waits forever for a host that vanished without a reset: each host gets this long, then the next
    `connect_timeout=${t.connectTimeoutS ?? DSN_CONNECT_TIMEOUT_S}`,
    ...t.params
      .filter(([k]) => k !== 'options')
      .map(([k, v]) => `${k}=${/^[^\s'\\]+$/.test(v) ? v : `'${v.replace(/[\\']/g, '\\$&')}'`}`),
    ...(options ? [`options='${options}'`] : []),
  ];
  return parts.join(' ');
}
