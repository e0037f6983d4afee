/**
 * The one YAML file (default /etc/fs-ha/fs-ha.yaml). Validated at load: every error names its key.
 * Nothing here does I/O beyond reading that file.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { ConfigError } from './errors';
import { nodeSchemas } from './core/per-node';

export interface EslTarget {
  host: string;
  port: number;
  password: string;
  timeoutMs: number;
}

export interface NodeConfig {
  /** key in `nodes`: how operators and keepalived name the node */
  name: string;
  /** FreeSWITCH switchname = the `hostname` column of its recovery rows (defaults to name) */
  switchname: string;
  addresses: string[];
  esl?: EslTarget;
}

export type RecoverCommand = 'sofia' | 'fsctl';
export type Layout = 'shared' | 'per-node';

export interface Config {
  path: string;
  node: string;
  database?: string;
  esl: EslTarget;
  nodes: Record<string, NodeConfig>;
  instances: Record<string, string>;
  check: { profiles: string[]; database: boolean; timeoutMs: number; heartbeat: boolean };
  recover: RecoverCommand;
  standby: boolean;
  fence: string;
  layout: Layout;
  timeouts: { databaseMs: number; recoverMs: number; verifyMs: number; lockMs: number; fenceMs: number };
  liveness: { heartbeatStaleMs: number };
  stateDir: string;
  log: { syslog: boolean; facility: string; file: string };
  /** fs-ha watch: where it writes 0/1 for keepalived's track_file, and how often it asks */
  watch: { file: string; intervalMs: number };
}

export const DEFAULT_CONFIG_PATH = '/etc/fs-ha/fs-ha.yaml';
/** syslog facilities log.facility may name (log.ts maps them to numbers) */
export const FACILITIES = ['daemon', 'user', 'local0', 'local1', 'local2', 'local3', 'local4', 'local5', 'local6', 'local7'] as const;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class Reader {
  constructor(private readonly obj: Obj, private readonly prefix: string, allowed: string[]) {
    for (const k of Object.keys(obj)) {
      if (!allowed.includes(k)) throw new ConfigError(`config: unknown key ${this.key(k)} (allowed: ${allowed.join(', ')})`);
    }
  }
  key(k: string): string {
    return this.prefix ? `${this.prefix}.${k}` : k;
  }
  has(k: string): boolean {
    return this.obj[k] !== undefined && this.obj[k] !== null;
  }
  str(k: string, def?: string): string {
    const v = this.obj[k];
    if (v === undefined || v === null) {
      if (def !== undefined) return def;
      throw new ConfigError(`config: missing key ${this.key(k)}`);
    }
    if (typeof v !== 'string' && typeof v !== 'number') throw new ConfigError(`config: ${this.key(k)} must be a string`);
    return String(v);
  }
  /** A file or directory: a non-empty string (allowEmpty: '' means "none"). */
  path(k: string, def: string, allowEmpty = false): string {
    const v = this.obj[k];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'string') throw new ConfigError(`config: ${this.key(k)} must be a path (a string)`);
    if (v === '' && !allowEmpty) throw new ConfigError(`config: ${this.key(k)} must not be empty`);
    if (v !== '' && !v.startsWith('/')) throw new ConfigError(`config: ${this.key(k)} must be an absolute path`);
    return v;
  }
  name(k: string): string {
    const v = this.str(k);
    if (!NAME_RE.test(v)) throw new ConfigError(`config: ${this.key(k)} "${v}" is not a valid node name (letters, digits, . _ -)`);
    return v;
  }
  int(k: string, def: number, min: number, max: number): number {
    const v = this.obj[k];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new ConfigError(`config: ${this.key(k)} must be an integer from ${min} to ${max}`);
    }
    return v;
  }
  bool(k: string, def: boolean): boolean {
    const v = this.obj[k];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') throw new ConfigError(`config: ${this.key(k)} must be true or false`);
    return v;
  }
  section(k: string): Reader | undefined;
  section(k: string, allowed: string[]): Reader | undefined;
  section(k: string, allowed: string[] = []): Reader | undefined {
    const v = this.obj[k];
    if (v === undefined || v === null) return undefined;
    if (!isObj(v)) throw new ConfigError(`config: ${this.key(k)} must be a mapping`);
    return new Reader(v, this.key(k), allowed);
  }
  raw(k: string): unknown {
    return this.obj[k];
  }
  strList(k: string): string[] {
    const v = this.obj[k];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) {
      throw new ConfigError(`config: ${this.key(k)} must be a list of strings`);
    }
    return v as string[];
  }
  oneOf<T extends string>(k: string, values: readonly T[], def: T): T {
    const v = this.str(k, def);
    if (!values.includes(v as T)) throw new ConfigError(`config: ${this.key(k)} must be one of ${values.join(', ')}`);
    return v as T;
  }
}

const ESL_KEYS = ['host', 'port', 'password', 'timeout_ms'];

function readEsl(r: Reader | undefined, def: Partial<EslTarget>, fallbackTimeout: number): EslTarget | undefined {
  if (!r) return undefined;
  return {
    host: r.str('host', def.host ?? '127.0.0.1'),
    port: r.int('port', def.port ?? 8021, 1, 65535),
    password: r.str('password', def.password ?? 'ClueCon'),
    timeoutMs: r.int('timeout_ms', fallbackTimeout, 50, 600000),
  };
}

export function isAddress(a: string): boolean {
  return isIP(a) !== 0;
}

/** The form FreeSWITCH writes: IPv6 compressed and lower case (2001:db8:0:0::1 -> 2001:db8::1). */
export function canonicalAddress(a: string): string {
  return isIP(a) === 6 ? new URL(`http://[${a}]/`).hostname.slice(1, -1) : a;
}

/** Which of the target's addresses replaces each of the failed node's: position by position, else its first. */
export function addressPairs(from: NodeConfig, to: NodeConfig): Array<[string, string]> {
  return from.addresses.map((a, i): [string, string] => [a, to.addresses[i] ?? to.addresses[0] ?? a]);
}

export function parseConfig(text: string, path = '<inline>'): Config {
  let doc: unknown;
  try {
    // loaded on first use: check_fs runs every second, and every module it does not load is start-up saved
    const { parse: parseYaml } = require('yaml') as typeof import('yaml');
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config: ${path} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!isObj(doc)) throw new ConfigError(`config: ${path} must be a YAML mapping`);
  const r = new Reader(doc, '', [
    'node', 'database', 'esl', 'nodes', 'instances', 'check', 'recover', 'standby', 'fence',
    'layout', 'timeouts', 'liveness', 'state_dir', 'log', 'watch',
  ]);

  const node = r.name('node');
  const timeoutsR = r.section('timeouts', ['database_ms', 'recover_ms', 'verify_ms', 'lock_ms', 'fence_ms']);
  const timeouts = {
    databaseMs: timeoutsR?.int('database_ms', 3000, 50, 600000) ?? 3000,
    recoverMs: timeoutsR?.int('recover_ms', 30000, 100, 3600000) ?? 30000,
    verifyMs: timeoutsR?.int('verify_ms', 5000, 0, 600000) ?? 5000,
    lockMs: timeoutsR?.int('lock_ms', 10000, 0, 600000) ?? 10000,
    fenceMs: timeoutsR?.int('fence_ms', 10000, 100, 600000) ?? 10000,
  };

  const eslR = r.section('esl', ESL_KEYS);
  const localEsl = readEsl(eslR, {}, 1500);

  const nodesObj = r.raw('nodes');
  if (nodesObj === undefined || nodesObj === null) throw new ConfigError('config: missing key nodes');
  if (!isObj(nodesObj)) throw new ConfigError('config: nodes must be a mapping of node name to its settings');
  const nodes: Record<string, NodeConfig> = {};
  const seenSwitch = new Map<string, string>();
  for (const name of Object.keys(nodesObj)) {
    if (!NAME_RE.test(name)) throw new ConfigError(`config: nodes.${name} is not a valid node name (letters, digits, . _ -)`);
    const raw = nodesObj[name] ?? {};
    if (!isObj(raw)) throw new ConfigError(`config: nodes.${name} must be a mapping`);
    const nr = new Reader(raw, `nodes.${name}`, ['switchname', 'addresses', 'esl']);
    const switchname = nr.has('switchname') ? nr.name('switchname') : name;
    const addresses = nr.strList('addresses').map((a) => {
      if (!isAddress(a)) throw new ConfigError(`config: nodes.${name}.addresses has "${a}", which is not an IP address`);
      return canonicalAddress(a);
    });
    const esl = readEsl(nr.section('esl', ESL_KEYS), {}, localEsl?.timeoutMs ?? 1500);
    nodes[name] = { name, switchname, addresses, esl };
    const other = seenSwitch.get(switchname);
    if (other && addresses.length && nodes[other].addresses.length &&
        addresses.join(',') !== nodes[other].addresses.join(',')) {
      throw new ConfigError(
        `config: nodes.${name} and nodes.${other} share switchname ${switchname} but have different addresses; ` +
        'nodes that share a switchname must share their (VIP) addresses');
    }
    seenSwitch.set(switchname, name);
  }
  if (!nodes[node]) throw new ConfigError(`config: node "${node}" is not listed under nodes`);
  // a takeover replaces each address of one node by the one at the same position of another: same family, always
  for (const a of Object.values(nodes)) {
    for (const b of Object.values(nodes)) {
      if (a === b || !b.addresses.length) continue;
      for (const [x, y] of addressPairs(a, b)) {
        if (isIP(x) !== isIP(y)) {
          throw new ConfigError(`config: nodes.${a.name}.addresses and nodes.${b.name}.addresses pair ${x} with ${y} (IPv${isIP(x)} with IPv${isIP(y)}): list them in the same order, one family per position`);
        }
      }
    }
  }
  const esl = localEsl ?? nodes[node].esl;
  if (!esl) throw new ConfigError('config: missing key esl (the local FreeSWITCH event socket)');

  const instancesObj = r.raw('instances') ?? {};
  if (!isObj(instancesObj)) throw new ConfigError('config: instances must be a mapping of VRRP instance to node');
  const instances: Record<string, string> = {};
  for (const [inst, target] of Object.entries(instancesObj)) {
    if (typeof target !== 'string' || !nodes[target]) {
      throw new ConfigError(`config: instances.${inst} must name a node listed under nodes`);
    }
    instances[inst] = target;
  }

  const checkR = r.section('check', ['profiles', 'database', 'timeout_ms', 'heartbeat']);
  const database = r.has('database') ? r.str('database') : undefined;
  if (database !== undefined && !/^postgres(ql)?:\/\//.test(database)) {
    throw new ConfigError('config: database must be a postgres:// or postgresql:// URL');
  }
  const check = {
    profiles: checkR?.strList('profiles') ?? [],
    database: checkR?.bool('database', false) ?? false,
    timeoutMs: checkR?.int('timeout_ms', 1500, 50, 60000) ?? 1500,
    heartbeat: checkR?.bool('heartbeat', database !== undefined) ?? database !== undefined,
  };
  if ((check.database || check.heartbeat) && !database) {
    throw new ConfigError('config: check.database/check.heartbeat need the key database');
  }

  const layout = r.oneOf('layout', ['shared', 'per-node'] as const, 'shared');
  if (layout === 'per-node') {
    const named = nodeSchemas(Object.values(nodes));
    if ('problem' in named) throw new ConfigError(`config: ${named.problem}`);
  }

  const livenessR = r.section('liveness', ['heartbeat_stale_ms']);
  const logR = r.section('log', ['syslog', 'facility', 'file']);
  const watchR = r.section('watch', ['file', 'interval_ms']);

  return {
    path,
    node,
    database,
    esl,
    nodes,
    instances,
    check,
    recover: r.oneOf('recover', ['sofia', 'fsctl'] as const, 'sofia'),
    standby: r.bool('standby', true),
    fence: r.str('fence', ''),
    layout,
    timeouts,
    liveness: { heartbeatStaleMs: livenessR?.int('heartbeat_stale_ms', 3000, 0, 600000) ?? 3000 },
    stateDir: r.path('state_dir', '/run/fs-ha'),
    log: {
      syslog: logR?.bool('syslog', true) ?? true,
      facility: logR?.oneOf('facility', FACILITIES, 'daemon') ?? 'daemon',
      file: logR?.path('file', '', true) ?? '',
    },
    watch: { file: watchR?.path('file', '/run/fs-ha.health') ?? '/run/fs-ha.health', intervalMs: watchR?.int('interval_ms', 200, 20, 60000) ?? 200 },
  };
}

export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(`config: cannot read ${path}${code ? ` (${code})` : ''}`);
  }
  return parseConfig(text, path);
}

/** The node whose calls MASTER of a VRRP instance adopts: the mapping, else the only other node of a pair. */
export function nodeForInstance(cfg: Config, instance: string | undefined): string {
  if (instance && cfg.instances[instance]) return cfg.instances[instance];
  const others = Object.keys(cfg.nodes).filter((n) => n !== cfg.node);
  if (others.length === 1) return others[0];
  throw new ConfigError(
    instance ? `config: instances has no entry for VRRP instance ${instance}` : 'config: no instance given and more than two nodes');
}

/** Every secret the file holds (event-socket passwords, the database URL's password), for the log's redaction. */
export function configSecrets(cfg: Config): string[] {
  const out = new Set<string>([cfg.esl.password]);
  for (const n of Object.values(cfg.nodes)) if (n.esl) out.add(n.esl.password);
  if (cfg.database) {
    try { const p = decodeURIComponent(new URL(cfg.database).password); if (p) out.add(p); } catch { /* validated at load */ }
  }
  return [...out].filter(Boolean);
}
