/**
 * The end-to-end lab: real keepalived doing real VRRP between network namespaces, one per node, each
 * running the simulator as its FreeSWITCH and our built dist/fs-ha as keepalived's scripts. Sealed: no
 * address of it is in the root namespace (subnets and guards: net.ts).
 *
 *   fabric namespace: bridge <p>s  S.254/24   service net: VRRP, the VIP, the far end (sipp)
 *                     bridge <p>m  M.5/24     management net: PostgreSQL, event sockets, the relay
 *   node i:           eth0 S.1i/24, eth1 M.1i/24 (veth into the fabric's bridges); no default route
 *   root namespace:   the test process; PostgreSQL through its unix socket, event sockets through the
 *                     relay's unix socket (relay.ts); an unreachable route for S and M
 *
 * S and M stand for the subnets of net.ts; the lab runs keepalived/pair/* and keepalived/farm/* with their
 * template addresses moved there, and of keepalived.conf only the parameter block at the top is replaced.
 * Everything is torn down afterwards, on failure too, and stale labs of an earlier killed run are removed
 * first. Needs root, iproute2, keepalived, sipp and tcpdump (.ci/run installs them).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { EslSession } from '../../src/adapters/esl';
import { startThrowawayPostgres, type PgServer } from '../helpers/pg';
import {
  MGMT,
  MGMT_DB,
  SERVICE,
  SERVICE_GW,
  VIP,
  addGuards,
  fromTemplate,
  host,
  refuseRoutedSubnets,
  removeGuards,
} from './net';
import { Door } from './relay';
import type { CallAudio } from '../sim/rtp-echo';
import type { ChannelMedia } from '../sim/media';

export { MGMT_DB, SERVICE_GW, VIP };

/** The checkout: found upwards from here, since this file also runs bundled (dist/bench.js). */
export const ROOT = (() => {
  for (let d = __dirname; ; d = dirname(d)) {
    if (existsSync(join(d, 'keepalived', 'pair', 'keepalived.conf')) && existsSync(join(d, 'package.json'))) return d;
    if (dirname(d) === d) throw new Error('fs-ha checkout not found above ' + __dirname);
  }
})();
export const PREFIX = 'fse2e';
/** the far ends' RTP echo on the fabric's service net (every call's remote_media_port) */
export const RTP_ECHO_PORT = 40000;
const LINKS = ['check_fs', 'notify_master', 'notify_backup', 'notify_fault', 'notify_stop', 'notify'];

export function sh(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, timeout: 30000 });
  if (r.status !== 0 && !opts.allowFail)
    throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  return r.stdout ?? '';
}

/** Install what is missing from Debian's packages (root, apt), as the issue asks of the test setup. */
export function installMissing(): void {
  if (process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v apt-get']).status !== 0) return;
  const want: Array<[string, string]> = [
    ['ip', 'iproute2'],
    ['keepalived', 'keepalived'],
    ['sipp', 'sip-tester'],
    ['sysctl', 'procps'],
    ['tcpdump', 'tcpdump'],
    ['iptables', 'iptables'],
    ['kamailio', 'kamailio'],
    ['rtpengine', 'rtpengine-daemon'],
  ];
  const pkgs = want
    .filter(([tool]) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
    .map(([, pkg]) => pkg);
  if (!pkgs.length) return;
  process.stderr.write(`e2e: installing ${pkgs.join(' ')} (apt-get)\n`);
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', timeout: 300000 });
  spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], {
    stdio: 'ignore',
    timeout: 600000,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  // Debian starts them as services on install: the tests run their own, in namespaces
  for (const svc of ['keepalived', 'kamailio', 'rtpengine-daemon'])
    spawnSync('sh', ['-c', `systemctl stop ${svc} 2>/dev/null || service ${svc} stop 2>/dev/null || true`]);
}

export function prerequisites(): string | null {
  if (process.getuid?.() !== 0) return 'the end-to-end tests need root (network namespaces, keepalived)';
  for (const tool of ['ip', 'keepalived', 'sipp', 'tcpdump', 'iptables', 'kamailio', 'rtpengine']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
      return `${tool} is not installed (apt-get install iproute2 keepalived sip-tester tcpdump iptables kamailio rtpengine-daemon)`;
  }
  if (!existsSync(join(ROOT, 'dist', 'fs-ha'))) return 'dist/fs-ha is not built (make build)';
  return null;
}

/** Remove what a killed earlier run left behind: its namespaces, bridges (older labs had them in the root
 *  namespace), guard routes and run directories. */
export function cleanStale(): void {
  for (const line of sh('ip', ['netns', 'list'], { allowFail: true }).split('\n')) {
    const ns = line.split(' ')[0];
    if (ns.startsWith(PREFIX)) killNamespace(ns);
  }
  for (const line of sh('ip', ['-o', 'link', 'show', 'type', 'bridge'], { allowFail: true }).split('\n')) {
    const m = line.match(/^\d+: ([^:@]+)/);
    if (m?.[1].startsWith(PREFIX)) sh('ip', ['link', 'del', m[1]], { allowFail: true });
  }
  removeGuards();
  for (const d of readdirSync('/run').filter((x) => x.startsWith('fsha-e2e-')))
    rmSync(join('/run', d), { recursive: true, force: true });
}

function killNamespace(ns: string): void {
  const pids = sh('ip', ['netns', 'pids', ns], { allowFail: true }).split('\n').filter(Boolean);
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  sh('ip', ['netns', 'del', ns], { allowFail: true });
}

/** A namespace of the lab: loopback up, IPv6 off (nothing of the lab speaks it), no route but its subnets. */
function addNamespace(ns: string): void {
  sh('ip', ['netns', 'add', ns]);
  sh('ip', [
    'netns',
    'exec',
    ns,
    'sysctl',
    '-q',
    '-w',
    'net.ipv6.conf.all.disable_ipv6=1',
    'net.ipv6.conf.default.disable_ipv6=1',
  ]);
  sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

/** The fabric namespace with both bridges, the PostgreSQL server every scenario of a test file shares,
 *  and the relay to the event sockets. */
export class Fabric {
  readonly id = Math.random().toString(16).slice(2, 6);
  pg!: PgServer;
  readonly ns = `${PREFIX}${this.id}f`;
  readonly s = `${PREFIX}${this.id}s`;
  readonly m = `${PREFIX}${this.id}m`;
  readonly dir = `/run/fsha-e2e-${this.id}-fabric`;
  private relay: Proc | null = null;
  private readonly doors = new Map<string, Door>();

  async start(): Promise<void> {
    refuseRoutedSubnets(); // before anything is created
    addGuards();
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    addNamespace(this.ns);
    for (const [br, addr] of [
      [this.s, `${SERVICE_GW}/24`],
      [this.m, `${MGMT_DB}/24`],
    ]) {
      // an address of its own, as a switch's: a bridge otherwise takes the lowest MAC of its ports, and a port
      // leaving it (a link cut) would change the MAC of the far ends' and the database's address under the nodes
      this.ip([
        'link',
        'add',
        br,
        'address',
        br === this.s ? '02:00:5e:00:01:fe' : '02:00:5e:00:02:fe',
        'type',
        'bridge',
      ]);
      this.ip(['addr', 'add', addr, 'dev', br]);
      this.ip(['link', 'set', br, 'up']);
    }
    this.pg = await startThrowawayPostgres({ listen: MGMT_DB, netns: this.ns });
    process.env.DATABASE_URL = this.pg.url;
    const sock = join(this.dir, 'relay.sock');
    const child = spawn(
      'ip',
      ['netns', 'exec', this.ns, process.execPath, '--import', 'tsx', join(ROOT, 'test', 'e2e', 'relay-main.ts'), sock],
      { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT },
    );
    this.relay = new Proc('relay', child, join(this.dir, 'relay.out'));
    await this.relay.waitLine(/relay listening/, 15000);
  }

  /** `ip -n <fabric> ...`: the bridges and the nodes' outer veth ends live there. */
  ip(args: string[], opts: { allowFail?: boolean } = {}): string {
    return sh('ip', ['-n', this.ns, ...args], opts);
  }

  /** A process on the fabric (sipp, the far end), on the service and management nets. */
  spawn(cmd: string, args: string[], cwd: string): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd });
  }

  /** A loopback port of the root namespace that leads to host:port inside the lab (through the relay). */
  async door(hostPort: string): Promise<number> {
    let d = this.doors.get(hostPort);
    if (!d) {
      d = new Door(join(this.dir, 'relay.sock'), hostPort);
      await d.open();
      this.doors.set(hostPort, d);
    }
    return d.port;
  }

  /** The same database as seen from inside a namespace (over the management net). */
  inside(url: string): string {
    const u = new URL(url);
    u.hostname = MGMT_DB;
    u.searchParams.delete('host');
    return u.toString();
  }

  stop(): void {
    try {
      for (const d of this.doors.values()) d.close();
      this.relay?.kill('SIGKILL');
      this.pg?.stop();
    } finally {
      killNamespace(this.ns);
      removeGuards();
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

export interface Line {
  at: number;
  text: string;
}

/** A process we started, with its output lines timestamped as they arrive. */
export class Proc {
  readonly lines: Line[] = [];
  private exited: number | null = null;
  private readonly waiters: Array<() => void> = [];
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    logFile: string,
  ) {
    let buf = '';
    const take = (d: Buffer) => {
      buf += d.toString('utf8');
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const text = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.lines.push({ at: Date.now(), text });
        try {
          appendFileSync(logFile, `${new Date().toISOString()} ${text}\n`);
        } catch {
          /* lab already torn down */
        }
      }
      for (const w of this.waiters.splice(0)) w();
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    child.on('exit', (code, sig) => {
      this.exited = code ?? (sig ? 128 : 1);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get exitCode(): number | null {
    return this.exited;
  }

  /** Resolve with the first line (from `from` on) matching re, or reject after timeoutMs. */
  waitLine(re: RegExp, timeoutMs: number, from = 0): Promise<Line> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.lines.slice(from).find((l) => re.test(l.text));
        if (hit) return resolve(hit);
        if (Date.now() > deadline)
          return reject(
            new Error(
              `${this.name}: no line matching ${re} within ${timeoutMs} ms; last: ${this.lines
                .slice(-5)
                .map((l) => l.text)
                .join(' | ')}`,
            ),
          );
        this.waiters.push(check);
        setTimeout(check, Math.min(200, Math.max(1, deadline - Date.now())));
      };
      check();
    });
  }

  kill(sig: NodeJS.Signals = 'SIGTERM'): void {
    if (this.exited === null) {
      try {
        this.child.kill(sig);
      } catch {
        /* gone */
      }
    }
  }
}

export interface NodeSpec {
  name: string;
  ns: string;
  index: number;
  service: string;
  mgmt: string;
}

export interface LabOptions {
  topology: 'pair' | 'farm' | 'proxy-farm';
  nodes: string[];
  /** keepalived parameter block values (VRRP_VERSION, ADVERT, ...) */
  params?: Record<string, string>;
  /** extra settings merged into each node's fs-ha.yaml (the template's values otherwise) */
  fsha?: Record<string, unknown>;
  /** simulator SIP address per node (pair: the VIP) */
  simAddress?: (n: NodeSpec) => string;
  /** how keepalived is heard: the template as it ships (the agent, default), its scripts-only variant, or
   *  both at once (an operator who enabled the hooks and the agent) */
  variant?: 'agent' | 'scripts' | 'both';
  /** the database URL as the nodes see it (default: the fabric's server); may list several hosts */
  database?: string;
  /** a cloud without multicast: the templates' $UNICAST set to every node's peers (service addresses) */
  unicast?: boolean;
}

/**
 * The templates' scripts-only variant, made the way their header tells the operator: every line after a
 * "# [agent]" line goes, every "# [scripts] " prefix goes.
 */
export function scriptsOnly(conf: string, keepAgent = false): string {
  const out: string[] = [];
  let dropNext = false;
  for (const line of conf.split('\n')) {
    if (dropNext) {
      dropNext = false;
      continue;
    }
    if (/^\s*# \[agent\]/.test(line)) {
      dropNext = !keepAgent;
      continue;
    }
    out.push(line.replace(/^(\s*)# \[scripts\] /, '$1'));
  }
  return out.join('\n');
}

/** One scenario's nodes: namespaces, simulators, keepalived, configs. */
export class Lab {
  readonly dir: string;
  readonly bin: string;
  readonly nodes: Record<string, NodeSpec> = {};
  readonly sims: Record<string, Proc> = {};
  readonly keepalived: Record<string, Proc> = {};
  readonly others: Proc[] = [];
  private seq = 0;

  constructor(
    readonly fabric: Fabric,
    readonly dbUrl: string,
    readonly o: LabOptions,
  ) {
    this.dir = `/run/fsha-e2e-${fabric.id}-${Math.random().toString(16).slice(2, 6)}`;
    this.bin = join(this.dir, 'bin');
    o.nodes.forEach((name, i) => {
      this.nodes[name] = {
        name,
        ns: `${PREFIX}${fabric.id}n${i + 1}`,
        index: i + 1,
        service: host(SERVICE, 11 + i),
        mgmt: host(MGMT, 11 + i),
      };
    });
  }

  /** Namespaces, links, the binary with its links, and each node's configs. */
  build(): void {
    mkdirSync(this.bin, { recursive: true, mode: 0o755 });
    chmodSync(this.dir, 0o755);
    copyFileSync(join(ROOT, 'dist', 'fs-ha'), join(this.bin, 'fs-ha'));
    chmodSync(join(this.bin, 'fs-ha'), 0o755);
    copyFileSync(join(ROOT, 'keepalived', 'agent_alive'), join(this.bin, 'agent_alive'));
    chmodSync(join(this.bin, 'agent_alive'), 0o755);
    for (const l of LINKS) symlinkSync('fs-ha', join(this.bin, l));
    for (const n of Object.values(this.nodes)) {
      addNamespace(n.ns);
      const nsx = (...a: string[]) => sh('ip', ['netns', 'exec', n.ns, ...a]);
      for (const [kind, br, ifc, addr] of [
        ['s', this.fabric.s, 'eth0', n.service],
        ['m', this.fabric.m, 'eth1', n.mgmt],
      ] as const) {
        // both ends are created in their namespaces: the veth never exists in the root namespace
        const outer = this.port(n.name, kind);
        sh('ip', ['link', 'add', outer, 'netns', this.fabric.ns, 'type', 'veth', 'peer', 'name', ifc, 'netns', n.ns]);
        this.fabric.ip(['link', 'set', outer, 'master', br, 'up']);
        nsx('ip', 'addr', 'add', `${addr}/24`, 'dev', ifc);
        nsx('ip', 'link', 'set', ifc, 'up');
      }
      // FreeSWITCH binds its profiles to the VIP on both nodes of the pair (keepalived/pair/keepalived.conf)
      nsx('sysctl', '-q', '-w', 'net.ipv4.ip_nonlocal_bind=1');
      mkdirSync(join(this.dir, n.name), { recursive: true, mode: 0o755 });
      writeFileSync(this.confPath(n.name), this.keepalivedConf(n), { mode: 0o644 });
      writeFileSync(this.fshaPath(n.name), stringify(this.fshaConf(n)), { mode: 0o600 });
    }
  }

  /** The fabric end of node's veth into the service (s) or management (m) bridge. */
  port(node: string, kind: 's' | 'm'): string {
    return `${PREFIX}${this.fabric.id}${kind}${this.nodes[node].index}`;
  }

  confPath(node: string): string {
    return join(this.dir, node, 'keepalived.conf');
  }
  fshaPath(node: string): string {
    return join(this.dir, node, 'fs-ha.yaml');
  }
  logPath(node: string): string {
    return join(this.dir, node, 'fs-ha.log');
  }
  watchPath(node: string): string {
    return join(this.dir, node, 'health');
  }
  fifoPath(node: string): string {
    return join(this.dir, node, 'keepalived.fifo');
  }
  get variant(): 'agent' | 'scripts' | 'both' {
    return this.o.variant ?? 'agent';
  }

  /** keepalived/<topology>/keepalived.conf with its parameter block set for this lab; nothing else changes. */
  keepalivedConf(n: NodeSpec): string {
    const params: Record<string, string> = {
      IFACE: 'eth0',
      FSHA: this.bin,
      CONF: this.fshaPath(n.name),
      WATCH_FILE: this.watchPath(n.name),
      FIFO: this.fifoPath(n.name),
      VRRP_VERSION: '3',
      ADVERT: '0.1',
      ...(this.o.topology === 'pair'
        ? { VIP: `${VIP}/24`, VRID: String(100 + (Number.parseInt(this.fabric.id, 16) % 100)) }
        : {}),
      ...(this.o.unicast ? { UNICAST: this.unicastPeers() } : {}),
      ...this.o.params,
    };
    // the proxy farm runs the farm's keepalived.conf as it is (keepalived/proxy-farm/README: VRRP decides the adopter)
    const dir = this.o.topology === 'proxy-farm' ? 'farm' : this.o.topology;
    const text = fromTemplate(readFileSync(join(ROOT, 'keepalived', dir, 'keepalived.conf'), 'utf8'));
    const seen = new Set<string>();
    const out = text.replace(/^\$(\w+)=.*$/gm, (line, k: string) => {
      if (!(k in params)) return line;
      seen.add(k);
      return `$${k}=${params[k]}`;
    });
    for (const k of Object.keys(params))
      if (!seen.has(k)) throw new Error(`keepalived/${dir}/keepalived.conf has no $${k}= line`);
    return this.variant === 'agent' ? out : scriptsOnly(out, this.variant === 'both');
  }

  /** $UNICAST as the template's header shows it: a multiline definition, each peer behind its node's @name. */
  unicastPeers(): string {
    const all = Object.values(this.nodes);
    const peers = all.flatMap((n) => all.filter((m) => m !== n).map((m) => `        @${n.name} ${m.service} \\`));
    return ` \\\n    unicast_peer { \\\n${peers.join('\n')}\n    }`;
  }

  /** No multicast in or out of any node (a cloud's network): VRRP adverts by multicast are dropped. */
  blockMulticast(): void {
    for (const n of Object.values(this.nodes)) {
      for (const chain of ['OUTPUT', 'INPUT'])
        sh('ip', ['netns', 'exec', n.ns, 'iptables', '-A', chain, '-d', '224.0.0.0/4', '-j', 'DROP']);
    }
  }

  /** Packets the multicast block dropped on node (both chains). */
  multicastDropped(node: string): number {
    const out = execFileSync('ip', ['netns', 'exec', this.nodes[node].ns, 'iptables', '-L', '-v', '-n', '-x'], {
      encoding: 'utf8',
    });
    return out
      .split('\n')
      .filter((l) => /DROP.*224\.0\.0\.0\/4/.test(l))
      .reduce((a, l) => a + Number(l.trim().split(/\s+/)[0]), 0);
  }

  /** keepalived/<topology>/fs-ha.yaml for node n: the template's settings, this lab's database and paths. */
  fshaConf(n: NodeSpec): Record<string, unknown> {
    const t = parse(
      fromTemplate(readFileSync(join(ROOT, 'keepalived', this.o.topology, 'fs-ha.yaml'), 'utf8')),
    ) as Record<string, unknown>;
    const names = Object.keys(this.nodes);
    const templateNodes = Object.keys(t.nodes as object);
    if (names.some((x) => !templateNodes.includes(x)))
      throw new Error(`lab nodes ${names} are not the template's ${templateNodes}`);
    const nodes = Object.fromEntries(
      Object.entries(t.nodes as Record<string, Record<string, unknown>>).filter(([k]) => names.includes(k)),
    );
    const conf: Record<string, unknown> = {
      ...t,
      node: n.name,
      database: this.o.database ?? this.fabric.inside(this.dbUrl),
      nodes,
      state_dir: join(this.dir, n.name, 'state'),
      log: { syslog: false, file: this.logPath(n.name) },
      watch: { file: this.watchPath(n.name), interval_ms: 200 },
      agent: { fifo: this.fifoPath(n.name) },
      ...this.o.fsha,
    };
    if (this.o.topology === 'pair') {
      const other = names.find((x) => x !== n.name)!;
      conf.instances = { VI_FS: other };
    }
    return conf;
  }

  nsOf(node: string): string {
    return this.nodes[node].ns;
  }

  spawnIn(node: string, name: string, cmd: string, args: string[]): Proc {
    const child = spawn('ip', ['netns', 'exec', this.nsOf(node), cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    return new Proc(`${node}/${name}`, child, join(this.dir, node, `${name}-${this.seq++}.out`));
  }

  /** Each node's core-db-dsn as `fs-ha db init` printed it (what the operator pastes into FreeSWITCH). */
  readonly dsns: Record<string, string> = {};

  /** `fs-ha db init` on the first node, as the operator runs it; the DSNs it prints become the simulators'. */
  dbInit(layout?: 'shared' | 'per-node'): void {
    const init = this.fsha(Object.keys(this.nodes)[0], ['db', 'init', ...(layout ? ['--layout', layout] : [])]);
    if (init.code !== 0) throw new Error(`db init: ${init.err}`);
    for (const m of init.out.matchAll(/^ {2}(\S+): (pgsql:\/\/.*)$/gm)) this.dsns[m[1]] = m[2];
    for (const n of Object.keys(this.nodes))
      if (!this.dsns[n]) throw new Error(`db init printed no DSN for ${n}: ${init.out}`);
  }

  private echo: Proc | null = null;

  /** The far ends' media: one RTP echo on the service net, started before the first FreeSWITCH. */
  private async startEcho(): Promise<void> {
    if (this.echo) return;
    const child = this.fabric.spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'test', 'e2e', 'rtp-echo-main.ts'), SERVICE_GW, String(RTP_ECHO_PORT)],
      ROOT,
    );
    this.echo = new Proc('rtp-echo', child, join(this.dir, `rtp-echo-${this.seq++}.out`));
    this.others.push(this.echo);
    await this.echo.waitLine(/rtp echo listening/, 15000);
  }

  /** What the far ends heard, per call, and when they were asked. */
  async audio(): Promise<{ at: number; calls: Record<string, CallAudio> }> {
    if (!this.echo) throw new Error('no RTP echo in this lab');
    const from = this.echo.lines.length;
    this.echo.child.kill('SIGUSR1');
    const line = await this.echo.waitLine(/"ev":"audio"/, 10000, from);
    return JSON.parse(line.text) as { at: number; calls: Record<string, CallAudio> };
  }

  /** node's channels as its media plane sees them (each one's inbound RTP). */
  async media(node: string): Promise<ChannelMedia[]> {
    return JSON.parse(await this.api(node, 'simctl media', 10000)) as ChannelMedia[];
  }

  /** The simulator as node's FreeSWITCH: ESL on 0.0.0.0:8021 inside its namespace, with a media plane (RTP to the echo). */
  async startSim(node: string, extra: string[] = []): Promise<Proc> {
    await this.startEcho();
    const n = this.nodes[node];
    const layout = (this.fshaConf(n).layout as string | undefined) ?? 'shared';
    let dsn = this.dsns[node] ?? this.fabric.inside(this.dbUrl);
    if (!this.dsns[node] && layout === 'per-node')
      dsn += `?options=${encodeURIComponent(`-c search_path=public,fsha_node_${node}`)}`;
    const address = this.o.simAddress ? this.o.simAddress(n) : n.service;
    const p = this.spawnIn(node, 'sim', process.execPath, [
      join(ROOT, 'dist', 'fs-sim.js'),
      '--switchname',
      node,
      '--esl',
      '0.0.0.0:8021',
      '--address',
      address,
      '--dsn',
      dsn,
      '--far',
      `${SERVICE_GW}:5060`,
      '--sip',
      // apply-inbound-acl as the templates tell the operator: loopback and the management net (peers, the relay)
      '--acl',
      `127.0.0.0/8,${MGMT.cidr}`,
      '--media',
      '--far-media-port',
      String(RTP_ECHO_PORT),
      ...extra,
    ]);
    this.sims[node] = p;
    await p.waitLine(/"ev":"listening"/, 15000);
    return p;
  }

  coreUuid(node: string): string {
    const l = [...this.sims[node].lines].reverse().find((x) => x.text.includes('"ev":"listening"'));
    return (JSON.parse(l!.text) as { coreUuid: string }).coreUuid;
  }

  readonly watchers: Record<string, Proc> = {};

  /** What keeps FreeSWITCH's health for keepalived on node: the agent, or (scripts only) fs-ha watch. */
  startHealth(node: string): Promise<Proc> {
    return this.variant === 'scripts' ? this.startWatch(node) : this.startAgent(node);
  }

  /** fs-ha agent in node's namespace (fs-ha-agent.service in production). */
  async startAgent(node: string): Promise<Proc> {
    const p = this.spawnIn(node, 'agent', join(this.bin, 'fs-ha'), ['--config', this.fshaPath(node), 'agent']);
    this.watchers[node] = p;
    await p.waitLine(/agent: listening on/, 10000);
    await p.waitLine(/agent: \S+ (healthy|FAILED)/, 10000);
    return p;
  }

  /** fs-ha watch in node's namespace (a systemd service in production): sub-second crash detection. */
  async startWatch(node: string): Promise<Proc> {
    const p = this.spawnIn(node, 'watch', join(this.bin, 'fs-ha'), ['--config', this.fshaPath(node), 'watch']);
    this.watchers[node] = p;
    await p.waitLine(/watch: \S+ (healthy|FAILED)/, 10000);
    return p;
  }

  /** keepalived in node's namespace, in the foreground, logging to us. */
  startKeepalived(node: string): Proc {
    const d = join(this.dir, node);
    const p = this.spawnIn(node, 'keepalived', 'keepalived', [
      '-n',
      '-l',
      '-D',
      '-G',
      '-P',
      '-f',
      this.confPath(node),
      '-i',
      node,
      '-p',
      join(d, 'keepalived.pid'),
      '-r',
      join(d, 'vrrp.pid'),
      '-c',
      join(d, 'checkers.pid'),
    ]);
    this.keepalived[node] = p;
    return p;
  }

  /** Latest VRRP state keepalived logged for an instance. */
  vrrpState(node: string, instance: string): string | null {
    const k = this.keepalived[node];
    if (!k) return null;
    for (let i = k.lines.length - 1; i >= 0; i--) {
      const m = k.lines[i].text.match(new RegExp(`\\(${instance}\\) Entering (\\w+) STATE`));
      if (m) return m[1];
    }
    return null;
  }

  waitState(node: string, instance: string, state: string, timeoutMs: number, from = 0): Promise<Line> {
    return this.keepalived[node].waitLine(new RegExp(`\\(${instance}\\) Entering ${state} STATE`), timeoutMs, from);
  }

  hasVip(node: string): boolean {
    return sh('ip', ['-n', this.nsOf(node), '-o', 'addr', 'show', 'dev', 'eth0']).includes(` ${VIP}/`);
  }

  /** An `api` command to node's simulator from the root namespace: through the relay, over the management net. */
  async api(node: string, cmd: string, timeoutMs = 5000): Promise<string> {
    const port = await this.fabric.door(`${this.nodes[node].mgmt}:8021`);
    const s = await EslSession.open({ host: '127.0.0.1', port, password: 'ClueCon', timeoutMs }, timeoutMs);
    try {
      return await s.api(cmd, timeoutMs);
    } finally {
      s.close();
    }
  }

  /** db: the database host:port its connection is on */
  async simState(node: string): Promise<{ coreUuid: string; standby: boolean; calls: number; db: string }> {
    return JSON.parse(await this.api(node, 'simctl state')) as {
      coreUuid: string;
      standby: boolean;
      calls: number;
      db: string;
    };
  }

  /** `fsctl crash` on node's FreeSWITCH: the socket closes, the process dies. Returns when it sent it. */
  async crash(node: string): Promise<number> {
    const at = Date.now();
    await this.api(node, 'fsctl crash', 2000).catch(() => undefined);
    return at;
  }

  /** The host dies: every process in its namespace is killed at once (keepalived, FreeSWITCH). */
  killHost(node: string): number {
    const at = Date.now();
    for (const pid of sh('ip', ['netns', 'pids', this.nsOf(node)])
      .split('\n')
      .filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    return at;
  }

  /** Run the installed program inside node's namespace, as keepalived would (bare environment). */
  fsha(node: string, args: string[]): { code: number; out: string; err: string } {
    const r = spawnSync(
      'ip',
      ['netns', 'exec', this.nsOf(node), join(this.bin, 'fs-ha'), '--config', this.fshaPath(node), ...args],
      { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, timeout: 60000 },
    );
    return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
  }

  /** fs-ha's log lines of node (log.file), with their timestamps. */
  fshaLog(node: string): Line[] {
    if (!existsSync(this.logPath(node))) return [];
    return readFileSync(this.logPath(node), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const sp = l.indexOf(' ');
        return { at: Date.parse(l.slice(0, sp)), text: l.slice(sp + 1) };
      });
  }

  /**
   * sipp as the far end of every call, on the fabric's service net, answering the re-INVITEs of recovered calls;
   * resolves once it listens (the simulator sends each re-INVITE once: one sent before sipp binds is lost).
   */
  async startSipp(calls: number): Promise<Proc> {
    const child = this.fabric.spawn(
      'sipp',
      [
        '-sf',
        join(ROOT, 'test', 'e2e', 'uas_reinvite.xml'),
        '-i',
        SERVICE_GW,
        '-p',
        '5060',
        // 0: as many as come, for as long as the lab lives (the chaos run's far ends)
        ...(calls ? ['-m', String(calls), '-timeout', '120s', '-timeout_error'] : []),
        '-nostdin',
        '-buff_size',
        '1048576',
        '-trace_err',
        '-error_file',
        join(this.dir, 'sipp-errors.log'),
      ],
      this.dir,
    );
    const p = new Proc('sipp', child, join(this.dir, `sipp-${this.seq++}.out`));
    this.others.push(p);
    await waitFor(
      'sipp listening on the service net',
      () => sh('ip', ['netns', 'exec', this.fabric.ns, 'ss', '-Huln', `sport = :5060`]).includes(':5060'),
      10000,
      20,
    );
    return p;
  }

  /** The pair up as an operator starts it: db init, FreeSWITCH and fs-ha watch on both, keepalived on
   *  freeswitch01 first (MASTER with the VIP), then freeswitch02 (BACKUP, profiles in standby). */
  async startPair(): Promise<void> {
    this.dbInit();
    for (const n of ['freeswitch01', 'freeswitch02']) await this.startSim(n);
    for (const n of ['freeswitch01', 'freeswitch02']) await this.startHealth(n);
    this.startKeepalived('freeswitch01');
    await this.waitState('freeswitch01', 'VI_FS', 'MASTER', 20000);
    this.startKeepalived('freeswitch02');
    await this.waitState('freeswitch02', 'VI_FS', 'BACKUP', 20000);
    await waitFor('freeswitch02 in standby', async () => (await this.simState('freeswitch02')).standby, 10000);
    if ((await this.simState('freeswitch01')).standby) throw new Error('freeswitch01 (MASTER) is in standby');
    if (!this.hasVip('freeswitch01')) throw new Error('freeswitch01 (MASTER) does not hold the VIP');
  }

  /** The farm up as an operator starts it: db init per-node, FreeSWITCH, fs-ha and keepalived on every node at
   *  once (a storm of notifies, then calm); resolves when each is MASTER of its own instance, out of standby,
   *  and no transition happened for 2 s. */
  async startFarm(simArgs: string[] = []): Promise<void> {
    const nodes = Object.keys(this.nodes);
    this.dbInit('per-node');
    for (const n of nodes) await this.startSim(n, simArgs);
    for (const n of nodes) await this.startHealth(n);
    for (const n of nodes) this.startKeepalived(n);
    const own = (n: string) => `VI_FS0${nodes.indexOf(n) + 1}`;
    await waitFor(
      'every node MASTER of its own instance and out of standby, and calm for 2 s',
      async () => {
        const settled = nodes.every((n) => this.vrrpState(n, own(n)) === 'MASTER');
        const last = Math.max(
          ...nodes.map((n) => this.keepalived[n].lines.filter((l) => /Entering \w+ STATE/.test(l.text)).pop()?.at ?? 0),
        );
        if (!settled || Date.now() - last < 2000) return false;
        for (const n of nodes) if ((await this.simState(n)).standby) return false;
        return true;
      },
      90000,
      200,
    );
  }

  /** n answered calls on node (simctl call n); returns their uuids. */
  async placeCalls(node: string, n: number): Promise<string[]> {
    const out = await this.api(node, `simctl call ${n}`, 60000);
    const calls = out.trim().split('\n').filter(Boolean);
    if (calls.length !== n || calls.some((c) => c.startsWith('-ERR')))
      throw new Error(`simctl call ${n}: ${out.slice(0, 200)}`);
    return calls;
  }

  /** Everything down: processes, namespaces, the run directory. Safe to call twice. */
  teardown(keepDir = false): void {
    for (const p of [
      ...Object.values(this.keepalived),
      ...Object.values(this.sims),
      ...Object.values(this.watchers),
      ...this.others,
    ])
      p.kill('SIGKILL');
    for (const n of Object.values(this.nodes)) {
      killNamespace(n.ns);
      // the kernel removes a deleted namespace's veth pairs later, in the background: delete the fabric
      // ends now, or the next scenario's veth of the same name may find the old one still there
      for (const kind of ['s', 'm'] as const)
        this.fabric.ip(['link', 'del', this.port(n.name, kind)], { allowFail: true });
    }
    if (this.proxyState?.up) {
      killNamespace(this.proxyState.ns);
      this.fabric.ip(['link', 'del', `${PREFIX}${this.fabric.id}sp`], { allowFail: true });
    }
    if (!keepDir) rmSync(this.dir, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------ the proxy farm (keepalived/proxy-farm)
  /** Kamailio and RTPEngine's namespace, on the service net at the template's proxy address (192.0.2.5, moved). */
  get proxy(): { ns: string; address: string; up: boolean } {
    if (!this.proxyState)
      this.proxyState = { ns: `${PREFIX}${this.fabric.id}px`, address: host(SERVICE, 5), up: false };
    return this.proxyState;
  }
  private proxyState: { ns: string; address: string; up: boolean } | null = null;
  readonly proxyProcs: Record<string, Proc> = {};

  /**
   * Kamailio and RTPEngine as keepalived/proxy-farm ships them (kamailio.cfg, fs-ha-dispatcher.list,
   * rtpengine.conf; addresses moved into the lab, the dispatcher list to this lab's nodes): resolves once both
   * listen.
   */
  async startProxy(): Promise<void> {
    const px = this.proxy;
    if (!px.up) {
      addNamespace(px.ns);
      const outer = `${PREFIX}${this.fabric.id}sp`;
      sh('ip', ['link', 'add', outer, 'netns', this.fabric.ns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', px.ns]);
      this.fabric.ip(['link', 'set', outer, 'master', this.fabric.s, 'up']);
      sh('ip', ['-n', px.ns, 'addr', 'add', `${px.address}/24`, 'dev', 'eth0']);
      sh('ip', ['-n', px.ns, 'link', 'set', 'eth0', 'up']);
      px.up = true;
    }
    const dir = join(this.dir, 'proxy');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const tpl = (f: string) => fromTemplate(readFileSync(join(ROOT, 'keepalived', 'proxy-farm', f), 'utf8'));
    const ours = new Set(Object.values(this.nodes).map((n) => n.service));
    const list = tpl('fs-ha-dispatcher.list')
      .split('\n')
      .filter((l) => !/^1 sip:/.test(l) || ours.has(/^1 sip:([^:]+)/.exec(l)![1]))
      .join('\n');
    writeFileSync(join(dir, 'dispatcher.list'), list);
    const cfg = tpl('kamailio.cfg').replace(
      /^#!substdef "!DISPATCHER_LIST!.*$/m,
      `#!substdef "!DISPATCHER_LIST!${join(dir, 'dispatcher.list')}!g"`,
    );
    if (!cfg.includes(`!PROXY_IP!${px.address}!`))
      throw new Error("kamailio.cfg: the proxy address is not the template's 192.0.2.5");
    writeFileSync(join(dir, 'kamailio.cfg'), cfg);
    writeFileSync(join(dir, 'rtpengine.conf'), tpl('rtpengine.conf'));
    const spawnProxy = (name: string, cmd: string, args: string[]) => {
      const child = spawn('ip', ['netns', 'exec', px.ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      const p = new Proc(`proxy/${name}`, child, join(dir, `${name}-${this.seq++}.out`));
      this.proxyProcs[name] = p;
      this.others.push(p);
      return p;
    };
    const listening = (port: number, what: string) =>
      waitFor(
        what,
        () => sh('ip', ['netns', 'exec', px.ns, 'ss', '-Huln', `sport = :${port}`]).includes(`:${port}`),
        15000,
        50,
      );
    spawnProxy('rtpengine', 'rtpengine', [
      `--config-file=${join(dir, 'rtpengine.conf')}`,
      '--foreground',
      '--log-stderr',
      `--pidfile=${join(dir, 'rtpengine.pid')}`,
    ]);
    await listening(2223, 'rtpengine listening on 127.0.0.1:2223');
    spawnProxy('kamailio', 'kamailio', [
      '-f',
      join(dir, 'kamailio.cfg'),
      '-DD',
      '-E',
      '-m',
      '64',
      '-M',
      '8',
      '-P',
      join(dir, 'kamailio.pid'),
    ]);
    await listening(5060, 'kamailio listening on the proxy address');
  }

  /** The proxy farm up: per-node layout, FreeSWITCH with its SIP user agent on every node, fs-ha and keepalived, the proxy. */
  async startProxyFarm(): Promise<void> {
    await this.startProxy();
    await this.startFarm(['--sip-ua', '--outbound-proxy', `${this.proxy.address}:5060`]);
    // the dispatcher's OPTIONS probes (every second) have found every node answering
    await new Promise((r) => setTimeout(r, 1500));
  }

  /**
   * Far ends behind the proxy: sipp calling the proxy (test/e2e/uac_proxy.xml, RFC 3261 dialog handling),
   * echoing RTP (-rtp_echo) from its own port, each call held 12 s unless a re-INVITE picks it up (then
   * afterMs more), then BYE along the route set.
   */
  async startCallers(
    calls: number,
    o: { port: number; mediaPort: number; rate?: number; afterMs: number; user?: string },
  ): Promise<Proc> {
    const child = this.fabric.spawn(
      'sipp',
      [
        `${this.proxy.address}:5060`,
        '-sf',
        join(ROOT, 'test', 'e2e', 'uac_proxy.xml'),
        '-s',
        o.user ?? 'park',
        '-i',
        SERVICE_GW,
        '-p',
        String(o.port),
        '-m',
        String(calls),
        '-r',
        String(o.rate ?? 10),
        '-l',
        String(calls),
        '-d',
        String(o.afterMs),
        '-rtp_echo',
        '-mi',
        SERVICE_GW,
        '-mp',
        String(o.mediaPort),
        '-nostdin',
        '-timeout',
        '120s',
        '-timeout_error',
        '-buff_size',
        '1048576',
        '-trace_err',
        '-error_file',
        join(this.dir, `sipp-callers-${o.port}-errors.log`),
      ],
      this.dir,
    );
    const p = new Proc(`sipp-callers-${o.port}`, child, join(this.dir, `sipp-callers-${o.port}-${this.seq++}.out`));
    this.others.push(p);
    return p;
  }

  /** The callee of bridged calls' outbound legs (test/e2e/uas_proxy_callee.xml) at the far end's address, port 5090; resolves once it listens. */
  async startCallee(calls: number, mediaPort: number): Promise<Proc> {
    const child = this.fabric.spawn(
      'sipp',
      [
        '-sf',
        join(ROOT, 'test', 'e2e', 'uas_proxy_callee.xml'),
        '-i',
        SERVICE_GW,
        '-p',
        '5090',
        '-m',
        String(calls),
        '-rtp_echo',
        '-mi',
        SERVICE_GW,
        '-mp',
        String(mediaPort),
        '-nostdin',
        '-timeout',
        '120s',
        '-timeout_error',
        '-buff_size',
        '1048576',
        '-trace_err',
        '-error_file',
        join(this.dir, 'sipp-callee-errors.log'),
      ],
      this.dir,
    );
    const p = new Proc('sipp-callee', child, join(this.dir, `sipp-callee-${this.seq++}.out`));
    this.others.push(p);
    await this.farEndListening('the callee');
    return p;
  }

  /**
   * The far ends of calls the nodes place through the proxy, for as long as the lab runs (test/chaos/uas_chaos.xml):
   * sipp on the far end's address, port 5090, answering with media at the far ends' RTP echo. Resolves once it listens.
   */
  async startFarEnds(): Promise<Proc> {
    const scenario = join(this.dir, 'uas_chaos.xml');
    writeFileSync(
      scenario,
      readFileSync(join(ROOT, 'test', 'chaos', 'uas_chaos.xml'), 'utf8')
        .replace(/@ECHO_IP@/g, SERVICE_GW)
        .replace(/@ECHO_PORT@/g, String(RTP_ECHO_PORT)),
    );
    const child = this.fabric.spawn(
      'sipp',
      [
        '-sf',
        scenario,
        '-i',
        SERVICE_GW,
        '-p',
        '5090',
        '-mp',
        '6300', // its own media socket, unused: every call's media is the echo's
        '-nostdin',
        '-buff_size',
        '4194304',
        '-max_recv_loops',
        '10000',
        '-trace_err',
        '-error_file',
        join(this.dir, 'sipp-far-ends-errors.log'),
      ],
      this.dir,
    );
    const p = new Proc('sipp-far-ends', child, join(this.dir, `sipp-far-ends-${this.seq++}.out`));
    this.others.push(p);
    await this.farEndListening('the far ends');
    return p;
  }

  /** Until sipp listens on the far end's address, port 5090. */
  private farEndListening(who: string): Promise<unknown> {
    return waitFor(
      `${who} listening on the service net`,
      () => sh('ip', ['netns', 'exec', this.fabric.ns, 'ss', '-Huln', 'sport = :5090']).includes(':5090'),
      10000,
      20,
    );
  }

  /** For a failing test: the tails of every log, so CI shows what happened. */
  dump(): string {
    const out: string[] = [];
    for (const p of [
      ...Object.values(this.keepalived),
      ...Object.values(this.sims),
      ...Object.values(this.watchers),
      ...this.others,
    ]) {
      out.push(
        `--- ${p.name} (exit ${p.exitCode})`,
        ...p.lines.slice(-25).map((l) => `${new Date(l.at).toISOString()} ${l.text}`),
      );
    }
    const sippErrors = join(this.dir, 'sipp-errors.log');
    if (existsSync(sippErrors)) out.push('--- sipp errors', ...readFileSync(sippErrors, 'utf8').split('\n').slice(-30));
    for (const n of Object.keys(this.nodes))
      out.push(
        `--- ${n} fs-ha.log`,
        ...this.fshaLog(n)
          .slice(-25)
          .map((l) => `${new Date(l.at).toISOString()} ${l.text}`),
      );
    return out.join('\n');
  }
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
