/** A simulated FreeSWITCH cluster on loopback (127.0.0.1x), sharing a fresh database, plus fs-ha configs for each node. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type Config } from '../../src/config';
import { dbInit } from '../../src/commands/db';
import { nodeSchema } from '../../src/adapters/recovery-store';
import { FsSim } from '../sim/freeswitch';
import { RtpEcho } from '../sim/rtp-echo';
import { createDatabase, freePort } from './pg';

export interface Cluster {
  url: string;
  sims: Record<string, FsSim>;
  ports: Record<string, number>;
  addr: Record<string, string>;
  config(node: string, extra?: string): Config;
  /** the same config as a YAML file (mode 0600), for the program run as a process */
  configFile(node: string, extra?: string): string;
  restart(node: string): Promise<FsSim>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  nodes: string[];
  layout?: 'shared' | 'per-node';
  switchname?: string;
  sip?: boolean;
  retrackDelayMs?: number;
  /** the timeouts line of every node's fs-ha.yaml */
  timeouts?: string;
  /** a node's FreeSWITCH database DSN, instead of the one the layout prescribes (a misconfigured node) */
  dsn?: Record<string, (url: string) => string>;
  /** the user the simulators' `system` API runs commands as (FreeSWITCH's own user) */
  systemUser?: string;
  /** a node's event-socket apply-inbound-acl (CIDRs), instead of loopback */
  acl?: Record<string, string[]>;
  /** an existing database instead of a fresh one on DATABASE_URL (the database-HA tests' replica pair) */
  url?: string;
  /** per recovered leg, as the real server paces them (~3 ms); default 0 */
  recoverDelayMs?: number;
  /** a node's SIP profiles (default: internal) */
  profiles?: Record<string, string[]>;
  /** the simulators' PQreset pause on a dead database connection (default: mod_pgsql's 1000 ms) */
  dbResetIntervalMs?: number;
  /** a node's FreeSWITCH RTP allocator range (simulator and nodes.<n>.rtp_ports) */
  rtpPorts?: Record<string, { lo: number; hi: number }>;
  /** the simulators' media plane (RTP sockets, packets, MEDIA_TIMEOUT): see test/sim/media.ts */
  media?: { timeoutSec: number; intervalMs?: number; robustness?: boolean };
  /** the far end's RTP port written into new calls */
  farEndMediaPort?: number;
  /** the simulators' events (recover, reinvite, crash, ...) */
  onEvent?: (node: string, what: string, detail: Record<string, unknown>) => void;
}

/** The far ends' media: an RTP echo on 127.0.0.21 that records what it hears of each call, stopped when the test ends. */
export async function withFarEnd(t: { after(fn: () => Promise<void> | void): void }): Promise<RtpEcho> {
  const echo = new RtpEcho('127.0.0.21', await freePort('127.0.0.21'));
  await echo.start();
  t.after(() => echo.stop());
  return echo;
}

/** A cluster stopped when the test ends, whatever happens in it. */
export async function withCluster(
  t: { after(fn: () => Promise<void> | void): void },
  opts: ClusterOptions,
): Promise<Cluster> {
  const c = await startCluster(opts);
  t.after(() => c.stop());
  return c;
}

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const url = opts.url ?? (await createDatabase('c'));
  const layout = opts.layout ?? 'shared';
  const addr: Record<string, string> = {};
  const ports: Record<string, number> = {};
  opts.nodes.forEach((n, i) => {
    addr[n] = `127.0.0.${11 + i}`;
  });
  for (const n of opts.nodes) ports[n] = await freePort(addr[n]);
  const switchOf = (n: string) => opts.switchname ?? n;
  const yaml = (node: string, extra = '') =>
    [
      `node: ${node}`,
      `database: ${url}`,
      `esl: { host: ${addr[node]}, port: ${ports[node]}, password: ClueCon, timeout_ms: 1000 }`,
      'nodes:',
      ...opts.nodes.map(
        (n) =>
          `  ${n}: { switchname: ${switchOf(n)}, addresses: [${opts.switchname ? '127.0.0.100' : addr[n]}],${opts.rtpPorts?.[n] ? ` rtp_ports: ${opts.rtpPorts[n].lo}-${opts.rtpPorts[n].hi},` : ''} esl: { host: ${addr[n]}, port: ${ports[n]}, password: ClueCon, timeout_ms: 1000 } }`,
      ),
      `check: { profiles: [internal], database: false }`,
      `layout: ${layout}`,
      `timeouts: ${opts.timeouts ?? '{ verify_ms: 3000, lock_ms: 5000, database_ms: 3000 }'}`,
      'liveness: { heartbeat_stale_ms: 1500 }',
      /^state_dir:/m.test(extra) ? '' : `state_dir: /tmp/fsha-test-state-${process.pid}-${node}`,
      'log: { syslog: false }',
      extra,
    ].join('\n');
  if (layout === 'per-node') await dbInit(parseConfig(yaml(opts.nodes[0])), 'per-node');
  const sims: Record<string, FsSim> = {};
  const make = (n: string) => {
    const dsn = opts.dsn?.[n]
      ? opts.dsn[n](url)
      : layout === 'per-node'
        ? `${url}?options=${encodeURIComponent(`-c search_path=public,${nodeSchema(switchOf(n))}`)}`
        : url;
    return new FsSim({
      host: addr[n],
      port: ports[n],
      switchname: switchOf(n),
      address: opts.switchname ? '127.0.0.100' : addr[n],
      dsn,
      sip: opts.sip,
      retrackDelayMs: opts.retrackDelayMs,
      acl: opts.acl?.[n],
      recoverDelayMs: opts.recoverDelayMs,
      dbResetIntervalMs: opts.dbResetIntervalMs,
      profiles: opts.profiles?.[n],
      rtpPorts: opts.rtpPorts?.[n],
      media: opts.media,
      farEndMediaPort: opts.farEndMediaPort,
      systemUser: opts.systemUser,
      onEvent: opts.onEvent ? (what, d) => opts.onEvent!(n, what, d) : undefined,
    });
  };
  for (const n of opts.nodes) {
    sims[n] = make(n);
    await sims[n].start();
  }
  return {
    url,
    sims,
    ports,
    addr,
    config: (node, extra) => parseConfig(yaml(node, extra)),
    configFile(node, extra) {
      const f = join(mkdtempSync(join(tmpdir(), 'fsha-cfg-')), 'fs-ha.yaml');
      writeFileSync(f, yaml(node, extra) + '\n', { mode: 0o600 });
      return f;
    },
    async restart(n) {
      await sims[n].stop();
      sims[n] = make(n);
      await sims[n].start();
      return sims[n];
    },
    async stop() {
      for (const s of Object.values(sims)) await s.stop();
    },
  };
}
