/**
 * The configuration file described once: every key with its type, default and rule. Validation and its
 * messages (each naming the key), the configuration reference in docs/configuration.md (scripts/gen-config-doc.ts; a
 * test fails when they drift) and the checks of the example files all come from this table.
 */
import { isIP } from 'node:net';
import { ConfigError } from './errors';
import { parsePgTarget } from './core/pg-hosts';
import { DEFAULT_RECOVERY_PORTS, FREESWITCH_RTP_PORTS, parseRange } from './core/ports';

const portRange = (doc: string, def: string): Field => ({
  kind: 'string',
  doc,
  default: def,
  check: (v) => {
    const r = parseRange(v);
    return 'error' in r ? r.error : null;
  },
});

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** syslog facilities log.facility may name (log.ts maps them to numbers) */
export const FACILITIES = [
  'daemon',
  'user',
  'local0',
  'local1',
  'local2',
  'local3',
  'local4',
  'local5',
  'local6',
  'local7',
] as const;

export type Field =
  | { kind: 'string'; doc: string; default?: string; required?: boolean; check?: (v: string) => string | null }
  | { kind: 'name'; doc: string; required?: boolean; defaultDoc?: string }
  | { kind: 'int'; doc: string; default?: number; defaultDoc?: string; min: number; max: number }
  | { kind: 'bool'; doc: string; default?: boolean; defaultDoc?: string }
  | { kind: 'enum'; doc: string; values: readonly string[]; default: string }
  | { kind: 'path'; doc: string; default: string; allowEmpty?: boolean }
  | { kind: 'list'; doc: string; item: 'string' | 'address' }
  | { kind: 'section'; doc: string; fields: Record<string, Field>; required?: boolean }
  | { kind: 'map'; doc: string; keyDoc: string; value: Field; required?: boolean };

const ms = (doc: string, def: number, min: number, max: number): Field => ({
  kind: 'int',
  doc,
  default: def,
  min,
  max,
});

const eslFields = (timeoutDefault: number | undefined, timeoutDoc?: string): Record<string, Field> => ({
  host: { kind: 'string', doc: 'address of the event socket', default: '127.0.0.1' },
  port: { kind: 'int', doc: 'its port', default: 8021, min: 1, max: 65535 },
  password: { kind: 'string', doc: 'its password (event_socket.conf.xml); never logged', default: 'ClueCon' },
  timeout_ms: {
    kind: 'int',
    doc: 'deadline of connect+auth and of each command',
    default: timeoutDefault,
    defaultDoc: timeoutDoc,
    min: 50,
    max: 600000,
  },
});

export const SCHEMA: Record<string, Field> = {
  node: { kind: 'name', doc: 'this node: its key under nodes', required: true },
  database: {
    kind: 'string',
    doc: "the shared PostgreSQL (postgres:// URL; libpq's multi-host form db1:5432,db2:5432 with target_session_attrs=read-write finds the primary; password also from PGPASSWORD / ~/.pgpass)",
    check: (v) => {
      if (!/^postgres(ql)?:\/\//.test(v)) return 'must be a postgres:// or postgresql:// URL';
      const t = parsePgTarget(v);
      return 'error' in t ? `is not a usable URL: ${t.error}` : null;
    },
  },
  esl: { kind: 'section', doc: 'the local FreeSWITCH event socket', fields: eslFields(1500) },
  nodes: {
    kind: 'map',
    doc: 'every node of the cluster',
    keyDoc: 'node name (letters, digits, . _ -)',
    required: true,
    value: {
      kind: 'section',
      doc: 'one node',
      fields: {
        switchname: {
          kind: 'name',
          doc: 'its FreeSWITCH switchname = the hostname column of its rows',
          defaultDoc: 'the node name',
        },
        addresses: {
          kind: 'list',
          item: 'address',
          doc: 'what FreeSWITCH writes into its calls (IPs; a takeover swaps them position by position)',
        },
        esl: {
          kind: 'section',
          doc: 'how this node reaches its event socket (for this node itself: the top-level esl)',
          fields: eslFields(undefined, 'esl.timeout_ms'),
        },
        weight: {
          kind: 'int',
          doc: "its share when a node's calls are spread over several adopters",
          default: 1,
          min: 1,
          max: 100,
        },
        rtp_ports: portRange(
          "its FreeSWITCH's RTP allocator range (switch.conf.xml rtp-start-port-rtp-end-port): adopted calls never keep a port inside it",
          FREESWITCH_RTP_PORTS,
        ),
        profiles: {
          kind: 'map',
          doc: "its SIP profiles named differently: the cluster's name -> its own (a takeover rewrites profile_name and recovery_profile_name)",
          keyDoc: 'profile name',
          value: { kind: 'name', doc: "this node's name for that profile" },
        },
      },
    },
  },
  recovery_ports: portRange(
    "the recovery band, outside every node's rtp_ports: an adopted call whose RTP port is in its adopter's range or in use there gets a free port pair of it",
    DEFAULT_RECOVERY_PORTS,
  ),
  adopters: {
    kind: 'map',
    doc: "the nodes that take a node's calls, spread over them (per-node layout); default: the node running the takeover alone",
    keyDoc: 'node name',
    value: { kind: 'list', item: 'string', doc: 'nodes under nodes, in order of preference' },
  },
  drain: {
    kind: 'section',
    doc: 'fs-ha drain (planned maintenance)',
    fields: {
      stop_command: {
        kind: 'string',
        doc: 'stops the drained FreeSWITCH without BYE (env FSHA_DRAIN_NODE), e.g. systemctl kill -s KILL freeswitch; empty: fsctl crash over its event socket',
        default: '',
      },
      settle_ms: ms('how long calls still ringing (not yet tracked) get to be answered or end', 5000, 0, 600000),
    },
  },
  instances: {
    kind: 'map',
    doc: 'VRRP instance -> the node whose calls MASTER of it adopts',
    keyDoc: 'VRRP instance',
    value: { kind: 'name', doc: 'a node under nodes' },
  },
  check: {
    kind: 'section',
    doc: 'check_fs',
    fields: {
      profiles: { kind: 'list', item: 'string', doc: 'SIP profiles that must be RUNNING' },
      database: { kind: 'bool', doc: 'also require the database to answer', default: false },
      timeout_ms: { kind: 'int', doc: 'hard deadline of one check', default: 1500, min: 50, max: 60000 },
      heartbeat: {
        kind: 'bool',
        doc: "write this node's heartbeat (fsha.heartbeat)",
        defaultDoc: 'true when database is set',
      },
    },
  },
  recover: {
    kind: 'enum',
    doc: 'the recover command (fsctl does not clear standby; fs-ha does)',
    values: ['sofia', 'fsctl'],
    default: 'sofia',
  },
  standby: { kind: 'bool', doc: 'BACKUP/FAULT put the profiles into standby', default: true },
  fence: {
    kind: 'string',
    doc: 'a command run before adopting (env FSHA_FAILED_NODE, FSHA_NODE); empty: none',
    default: '',
  },
  floating: {
    kind: 'section',
    doc: "a provider's floating address (clouds move a VIP by an API call, not by gratuitous ARP)",
    fields: {
      command: {
        kind: 'string',
        default: '',
        doc: 'run through /bin/sh when an instance under instances becomes MASTER (FSHA_STATE=MASTER: claim the address, beside the takeover) and when it leaves MASTER (BACKUP, FAULT, STOP); env FSHA_INSTANCE, FSHA_STATE, FSHA_ADDRESS, FSHA_NODE; empty: none',
      },
      addresses: {
        kind: 'map',
        doc: 'VRRP instance -> its floating address (FSHA_ADDRESS; empty when not listed)',
        keyDoc: 'VRRP instance',
        value: { kind: 'string', doc: "the address, or the provider's id for it" },
      },
      timeout_ms: ms('the command (then its process group is killed)', 30000, 100, 600000),
    },
  },
  layout: {
    kind: 'enum',
    doc: 'the recovery table: one shared table, or one view per node',
    values: ['shared', 'per-node'],
    default: 'shared',
  },
  timeouts: {
    kind: 'section',
    doc: 'deadlines',
    fields: {
      database_ms: ms('connect and each statement', 3000, 50, 600000),
      recover_ms: ms('the recover command', 30000, 100, 3600000),
      verify_ms: ms('waiting for the adopted calls to be re-tracked', 5000, 0, 600000),
      lock_ms: ms('waiting for the takeover lock of a node', 10000, 0, 600000),
      fence_ms: ms('the fence command (then its process group is killed)', 10000, 100, 600000),
    },
  },
  liveness: {
    kind: 'section',
    doc: 'judging the failed node',
    fields: { heartbeat_stale_ms: ms('a heartbeat older than this proves nothing', 3000, 0, 600000) },
  },
  audit: {
    kind: 'section',
    doc: 'fsha.audit (fs-ha history)',
    fields: {
      retention_days: {
        kind: 'int',
        doc: 'rows older than this are deleted, a bounded batch at each audit write',
        default: 365,
        min: 1,
        max: 36500,
      },
    },
  },
  state_dir: { kind: 'path', doc: "notify ordering records and the host lock (0700, root's)", default: '/run/fs-ha' },
  log: {
    kind: 'section',
    doc: 'logging',
    fields: {
      syslog: { kind: 'bool', doc: 'log to syslog', default: true },
      facility: { kind: 'enum', doc: 'syslog facility', values: FACILITIES, default: 'daemon' },
      file: { kind: 'path', doc: 'also append timestamped lines here (empty: no file)', default: '', allowEmpty: true },
    },
  },
  agent: {
    kind: 'section',
    doc: 'fs-ha agent',
    fields: {
      fifo: {
        kind: 'path',
        doc: "keepalived's notify FIFO (global_defs notify_fifo); the agent creates it (0600) if missing",
        default: '/run/fs-ha/keepalived.fifo',
      },
      metrics: {
        kind: 'string',
        doc: 'serve Prometheus metrics at http://HOST:PORT/metrics, on loopback only (127.0.0.1:9642); empty: none',
        default: '',
        check: (v) => {
          if (v === '') return null;
          const m = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]):(\d{1,5})$/.exec(v);
          const octets = m?.[1].startsWith('127.') ? m[1].split('.').map(Number) : [];
          if (!m || octets.some((o) => o > 255))
            return 'must be a loopback HOST:PORT (127.0.0.1:9642 or [::1]:9642), or empty';
          const port = Number(m[2]);
          return port >= 1 && port <= 65535 ? null : `port ${m[2]} must be from 1 to 65535`;
        },
      },
    },
  },
  console: {
    kind: 'section',
    doc: "fsha in FreeSWITCH's console (fs_cli): the agent's console socket",
    fields: {
      group: {
        kind: 'string',
        doc: "the group whose members may use it (FreeSWITCH's, e.g. freeswitch); empty: no console",
        default: '',
      },
      socket: {
        kind: 'path',
        doc: 'the socket (its directory root:group 0750, the socket 0660)',
        default: '/run/fs-ha-console/console.sock',
      },
    },
  },
  watch: {
    kind: 'section',
    doc: "fs-ha watch and the agent's health loop",
    fields: {
      file: { kind: 'path', doc: "where it writes 0/1 for keepalived's track_file", default: '/run/fs-ha.health' },
      interval_ms: { kind: 'int', doc: 'how often it asks', default: 200, min: 20, max: 60000 },
    },
  },
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function fail(key: string, msg: string): never {
  throw new ConfigError(`config: ${key} ${msg}`);
}

function missing(key: string): never {
  throw new ConfigError(`config: missing key ${key}`);
}

/** One value checked against its field; defaults filled in (keys left out when they have none). */
function value(f: Field, v: unknown, key: string): unknown {
  const absent = v === undefined || v === null;
  switch (f.kind) {
    case 'section':
    case 'map': {
      if (absent) {
        if (f.required) missing(key);
        return f.kind === 'section' ? section(f.fields, {}, key) : {};
      }
      if (!isObj(v))
        fail(key, f.kind === 'map' ? `must be a mapping of ${f.keyDoc} to its settings` : 'must be a mapping');
      if (f.kind === 'section') return section(f.fields, v, key);
      const out: Obj = {};
      for (const [k, x] of Object.entries(v)) {
        if (f.value.kind === 'section' && !NAME_RE.test(k))
          fail(`${key}.${k}`, 'is not a valid node name (letters, digits, . _ -)');
        out[k] = value(f.value, x ?? (f.value.kind === 'section' ? {} : x), `${key}.${k}`);
      }
      return out;
    }
    case 'string': {
      if (absent) {
        if (f.required) missing(key);
        return f.default;
      }
      if (typeof v !== 'string' && typeof v !== 'number') fail(key, 'must be a string');
      const s = String(v);
      const problem = f.check?.(s);
      if (problem) fail(key, problem);
      return s;
    }
    case 'name': {
      if (absent) {
        if (f.required) missing(key);
        return undefined;
      }
      const s = typeof v === 'string' || typeof v === 'number' ? String(v) : fail(key, 'must be a string');
      if (!NAME_RE.test(s)) fail(key, `"${s}" is not a valid node name (letters, digits, . _ -)`);
      return s;
    }
    case 'int':
      if (absent) return f.default;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < f.min || v > f.max)
        fail(key, `must be an integer from ${f.min} to ${f.max}`);
      return v;
    case 'bool':
      if (absent) return f.default;
      if (typeof v !== 'boolean') fail(key, 'must be true or false');
      return v;
    case 'enum': {
      if (absent) return f.default;
      const s = String(v);
      if (!f.values.includes(s)) fail(key, `must be one of ${f.values.join(', ')}`);
      return s;
    }
    case 'path':
      if (absent) return f.default;
      if (typeof v !== 'string') fail(key, 'must be a path (a string)');
      if (v === '' && !f.allowEmpty) fail(key, 'must not be empty');
      if (v !== '' && !v.startsWith('/')) fail(key, 'must be an absolute path');
      return v;
    case 'list': {
      if (absent) return [];
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) fail(key, 'must be a list of strings');
      if (f.item === 'address')
        for (const a of v as string[]) if (isIP(a) === 0) fail(key, `has "${a}", which is not an IP address`);
      return v;
    }
  }
}

function section(fields: Record<string, Field>, obj: Obj, prefix: string): Obj {
  const at = (k: string) => (prefix ? `${prefix}.${k}` : k);
  for (const k of Object.keys(obj)) {
    if (!(k in fields))
      throw new ConfigError(`config: unknown key ${at(k)} (allowed: ${Object.keys(fields).join(', ')})`);
  }
  const out: Obj = {};
  for (const [k, f] of Object.entries(fields)) {
    const v = value(f, obj[k], at(k));
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** The whole document checked key by key, defaults filled in: still the file's shape (snake_case). */
export function validate(doc: unknown, path: string): Obj {
  if (!isObj(doc)) throw new ConfigError(`config: ${path} must be a YAML mapping`);
  return section(SCHEMA, doc, '');
}

export interface KeyDoc {
  key: string;
  type: string;
  default: string;
  doc: string;
}

function typeOf(f: Field): string {
  switch (f.kind) {
    case 'int':
      return `integer ${f.min}-${f.max}`;
    case 'enum':
      return f.values.join(' \\| ');
    case 'list':
      return f.item === 'address' ? 'list of IPs' : 'list of strings';
    case 'name':
      return 'name';
    default:
      return f.kind;
  }
}

function defaultOf(f: Field): string {
  if ('defaultDoc' in f && f.defaultDoc) return f.defaultDoc;
  if ('required' in f && f.required) return '(required)';
  if (f.kind === 'list') return '[]';
  if ('default' in f && f.default !== undefined) return f.default === '' ? "''" : String(f.default);
  return '-';
}

/** Every key as the reference documents it, parents before children. */
export function describe(fields: Record<string, Field> = SCHEMA, prefix = ''): KeyDoc[] {
  const out: KeyDoc[] = [];
  for (const [k, f] of Object.entries(fields)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (f.kind === 'section') out.push(...describe(f.fields, key));
    else if (f.kind === 'map') {
      out.push({ key, type: `mapping of ${f.keyDoc}`, default: f.required ? '(required)' : '{}', doc: f.doc });
      if (f.value.kind === 'section') out.push(...describe(f.value.fields, `${key}.NAME`));
      else out.push({ key: `${key}.NAME`, type: typeOf(f.value), default: '-', doc: f.value.doc });
    } else out.push({ key, type: typeOf(f), default: defaultOf(f), doc: f.doc });
  }
  return out;
}

/** The reference table for docs/configuration.md (between its config-reference markers). */
export function referenceTable(): string {
  const shown = (v: string) => (v === '-' ? '' : v.startsWith('(') || v.includes(' ') ? v : `\`${v}\``); // prose is not a literal
  const rows = describe().map((d) => `| \`${d.key}\` | ${d.type} | ${shown(d.default)} | ${d.doc} |`);
  return ['| key | type | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
