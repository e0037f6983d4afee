/**
 * The one YAML file (default /etc/fs-ha/fs-ha.yaml), as the program uses it. Its keys, types and defaults
 * are described once in config-schema.ts; here: the rules between keys, and the resolved Config.
 * Nothing here does I/O beyond reading that file.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { ConfigError } from './errors';
import { nodeSchemas } from './core/per-node';
import { FACILITIES, validate } from './config-schema';
import { parseRange, rangeProblems, type PortRange } from './core/ports';

const range = (v: string): PortRange => parseRange(v) as PortRange; // checked by the schema

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
  /** how this node reaches its event socket (resolved at load: for this node itself, the local esl) */
  esl?: EslTarget;
  /** its share when calls are spread (default 1) */
  weight: number;
  /** the cluster's profile name -> this node's own, where they differ */
  profiles: Record<string, string>;
  /** its FreeSWITCH's RTP port allocator range (rtp-start-port..rtp-end-port) */
  rtpPorts: PortRange;
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
  /** node -> the nodes that adopt its calls (spread); absent: the node running the takeover alone */
  adopters: Record<string, string[]>;
  /** the band adopted calls move into when their port is not safe on their adopter */
  recoveryPorts: PortRange;
  drain: { stopCommand: string; settleMs: number };
  check: { profiles: string[]; database: boolean; timeoutMs: number; heartbeat: boolean };
  recover: RecoverCommand;
  standby: boolean;
  fence: string;
  /** the provider's floating address hook: run on MASTER and on leaving it (adapters/floating.ts) */
  floating: { command: string; addresses: Record<string, string>; timeoutMs: number };
  layout: Layout;
  timeouts: { databaseMs: number; recoverMs: number; verifyMs: number; lockMs: number; fenceMs: number };
  liveness: { heartbeatStaleMs: number };
  audit: { retentionDays: number };
  stateDir: string;
  log: { syslog: boolean; facility: string; file: string };
  /** fs-ha watch and the agent: where it writes 0/1 for keepalived's track_file, and how often it asks */
  watch: { file: string; intervalMs: number };
  agent: { fifo: string; metrics: string };
  /** the agent's console socket for fsha in fs_cli (commands/console.ts); group '' : none */
  console: { group: string; socket: string };
}

export const DEFAULT_CONFIG_PATH = '/etc/fs-ha/fs-ha.yaml';
export { FACILITIES };

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

/** The file as the schema checked it (snake_case, defaults filled in). */
// biome-ignore lint/suspicious/noExplicitAny: the file as the schema checked it, read key by key below
type Raw = Record<string, any>;

const isObj = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);

function esl(raw: Raw, timeoutMs: number): EslTarget {
  return { host: raw.host, port: raw.port, password: raw.password, timeoutMs: raw.timeout_ms ?? timeoutMs };
}

/**
 * The file, checked key by key against the schema (config-schema.ts), then the rules between keys, and
 * the config as the program uses it: every node's event socket resolved (for this node: the local esl).
 */
export function parseConfig(text: string, path = '<inline>'): Config {
  let doc: unknown;
  try {
    // loaded on first use: check_fs runs every second, and every module it does not load is start-up saved
    const { parse: parseYaml } = require('yaml') as typeof import('yaml');
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config: ${path} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = validate(doc, path) as Raw;
  const given = doc as Raw;
  const localEsl = isObj(given.esl) ? esl(r.esl, 1500) : undefined;
  const timeoutDefault = localEsl?.timeoutMs ?? 1500;

  const nodes: Record<string, NodeConfig> = {};
  const seenSwitch = new Map<string, string>();
  for (const [name, n] of Object.entries(r.nodes as Record<string, Raw>)) {
    const switchname = n.switchname ?? name;
    const addresses = (n.addresses as string[]).map(canonicalAddress);
    nodes[name] = {
      name,
      switchname,
      addresses,
      esl: isObj(given.nodes?.[name]?.esl) ? esl(n.esl, timeoutDefault) : undefined,
      weight: n.weight,
      profiles: n.profiles ?? {},
      rtpPorts: range(n.rtp_ports),
    };
    const other = seenSwitch.get(switchname);
    if (
      other &&
      addresses.length &&
      nodes[other].addresses.length &&
      addresses.join(',') !== nodes[other].addresses.join(',')
    ) {
      throw new ConfigError(
        `config: nodes.${name} and nodes.${other} share switchname ${switchname} but have different addresses; ` +
          'nodes that share a switchname must share their (VIP) addresses',
      );
    }
    seenSwitch.set(switchname, name);
  }
  const node = r.node as string;
  if (!nodes[node]) throw new ConfigError(`config: node "${node}" is not listed under nodes`);
  // another node's event socket is never on this host: without a host the default 127.0.0.1 would reach OUR FreeSWITCH
  for (const [name, n] of Object.entries(given.nodes as Raw)) {
    if (name !== node && isObj(n?.esl) && (n.esl.host === undefined || n.esl.host === null)) {
      throw new ConfigError(
        `config: nodes.${name}.esl needs a host (without one it would be 127.0.0.1, this node's own FreeSWITCH)`,
      );
    }
  }
  // a takeover replaces each address of one node by the one at the same position of another: same family, always
  for (const a of Object.values(nodes)) {
    for (const b of Object.values(nodes)) {
      if (a === b || !b.addresses.length) continue;
      for (const [x, y] of addressPairs(a, b)) {
        if (isIP(x) !== isIP(y)) {
          throw new ConfigError(
            `config: nodes.${a.name}.addresses and nodes.${b.name}.addresses pair ${x} with ${y} (IPv${isIP(x)} with IPv${isIP(y)}): list them in the same order, one family per position`,
          );
        }
      }
    }
  }
  const local = localEsl ?? nodes[node].esl;
  if (!local) throw new ConfigError('config: missing key esl (the local FreeSWITCH event socket)');
  nodes[node] = { ...nodes[node], esl: local }; // this node reaches itself through the local event socket

  const instances: Record<string, string> = {};
  for (const [inst, target] of Object.entries(r.instances as Record<string, string>)) {
    if (!nodes[target]) throw new ConfigError(`config: instances.${inst} must name a node listed under nodes`);
    instances[inst] = target;
  }
  for (const inst of Object.keys((r.floating.addresses ?? {}) as Record<string, string>)) {
    if (!instances[inst])
      throw new ConfigError(
        `config: floating.addresses.${inst} names an instance not listed under instances (fs-ha acts on those only)`,
      );
  }
  const adopters: Record<string, string[]> = {};
  for (const [of, list] of Object.entries(r.adopters as Record<string, string[]>)) {
    if (!nodes[of]) throw new ConfigError(`config: adopters.${of} must be a node listed under nodes`);
    for (const a of list) {
      if (!nodes[a]) throw new ConfigError(`config: adopters.${of} names ${a}, which is not listed under nodes`);
      if (a === of) throw new ConfigError(`config: adopters.${of} names ${of} itself`);
    }
    if (new Set(list).size !== list.length) throw new ConfigError(`config: adopters.${of} names a node twice`);
    if (!list.length)
      throw new ConfigError(
        `config: adopters.${of} is empty (leave it out: the node running the takeover adopts alone)`,
      );
    adopters[of] = list;
  }
  const database = r.database as string | undefined;
  const check = {
    profiles: r.check.profiles as string[],
    database: r.check.database as boolean,
    timeoutMs: r.check.timeout_ms as number,
    heartbeat: (r.check.heartbeat as boolean | undefined) ?? database !== undefined,
  };
  if ((check.database || check.heartbeat) && !database)
    throw new ConfigError('config: check.database/check.heartbeat need the key database');
  const layout = r.layout as Layout;
  if (layout === 'per-node') {
    const named = nodeSchemas(Object.values(nodes));
    if ('problem' in named) throw new ConfigError(`config: ${named.problem}`);
  }
  const t = r.timeouts;
  return {
    path,
    node,
    database,
    esl: local,
    nodes,
    instances,
    adopters,
    check,
    recoveryPorts: range(r.recovery_ports),
    drain: { stopCommand: r.drain.stop_command, settleMs: r.drain.settle_ms },
    recover: r.recover,
    standby: r.standby,
    fence: r.fence,
    layout,
    floating: { command: r.floating.command, addresses: r.floating.addresses ?? {}, timeoutMs: r.floating.timeout_ms },
    timeouts: {
      databaseMs: t.database_ms,
      recoverMs: t.recover_ms,
      verifyMs: t.verify_ms,
      lockMs: t.lock_ms,
      fenceMs: t.fence_ms,
    },
    liveness: { heartbeatStaleMs: r.liveness.heartbeat_stale_ms },
    audit: { retentionDays: r.audit.retention_days },
    stateDir: r.state_dir,
    log: { syslog: r.log.syslog, facility: r.log.facility, file: r.log.file },
    watch: { file: r.watch.file, intervalMs: r.watch.interval_ms },
    agent: { fifo: r.agent.fifo, metrics: r.agent.metrics },
    console: { group: r.console.group, socket: r.console.socket },
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
    instance
      ? `config: instances has no entry for VRRP instance ${instance}`
      : 'config: no instance given and more than two nodes',
  );
}

/** Every secret the file holds (event-socket passwords, the database URL's password), for the log's redaction. */
export function configSecrets(cfg: Config): string[] {
  const out = new Set<string>([cfg.esl.password]);
  for (const n of Object.values(cfg.nodes)) if (n.esl) out.add(n.esl.password);
  if (cfg.database) {
    try {
      const p = decodeURIComponent(new URL(cfg.database).password);
      if (p) out.add(p);
    } catch {
      /* validated at load */
    }
  }
  return [...out].filter(Boolean);
}

/** The configured RTP ranges against each other and the recovery band (status and check say these). */
export function mediaRangeProblems(cfg: Config): ReturnType<typeof rangeProblems> {
  return rangeProblems(
    Object.values(cfg.nodes).map((n) => ({ name: n.name, rtp: n.rtpPorts })),
    cfg.recoveryPorts,
  );
}
