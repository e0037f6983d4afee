/**
 * `fs-ha agent`: one long-lived process per node (systemd fs-ha-agent.service, Restart=always). It hears
 * keepalived through its notify FIFO and dispatches each transition exactly as `fs-ha notify TYPE NAME
 * STATE PRIORITY` does (same guards, same ordering, one at a time), keeps the local FreeSWITCH's health in
 * watch.file for keepalived's track_file (one event-socket session, kept open; the file's mtime touched
 * every 500 ms for keepalived's backstop), and keeps a database connection ready, so a takeover starts
 * warm. Stopping it (SIGTERM: systemctl restart, an upgrade) leaves watch.file as it is: no VRRP
 * transition; keepalived's backstop fails the node only if nobody touches the file for 2 s.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config';
import { Db } from '../adapters/db';
import { acquireHostLock, agentLockName } from '../adapters/host-lock';
import { applySchemaOnce, census, recoveryTable, writeHeartbeat } from '../adapters/recovery-store';
import { MetricsServer, type Sample } from '../adapters/metrics';
import { FifoReader } from '../adapters/fifo';
import { latestPerInstance, parseFifoLine, type FifoLine } from '../core/fifo-line';
import type { FireKey } from '../core/fire-order';
import { ActionFailed, ConfigError, errorMessage } from '../errors';
import { log } from '../log';
import { LocalHealth } from '../local-health';
import { Output } from '../cli/output';
import type { CommandSpec } from '../cli/spec';
import { acquireNotifyLock, notify } from './notify';
import { runConsole } from './console';
import { ConsoleServer, groupId } from '../adapters/console-socket';
import { rewriteSpecFor } from './takeover';
import { Prepared, preparedKey, refresh } from '../adapters/prepare';
import { warmRewrite } from '../core/warmup';

/** A database connection kept ready: reconnected with backoff, never in the way of events or health. */
export class WarmDb {
  private db: Db | null = null;
  private backoffMs = 100;
  private stopped = false;

  constructor(private readonly cfg: Config) {}

  private honest: NodeJS.Timeout | null = null;

  /**
   * Connects, and keeps the connection honest: a cheap question every 5 s with a short deadline, so one that a
   * firewall forgot (no reset) is found lost and replaced before a MASTER needs it, not during its takeover.
   */
  start(): void {
    void this.connect();
    this.honest = setInterval(() => {
      void this.db?.ping(Math.min(1000, this.cfg.timeouts.databaseMs));
    }, 5000);
    this.honest.unref();
  }

  private async connect(): Promise<void> {
    while (!this.stopped && this.cfg.database) {
      try {
        const db = await Db.connect(this.cfg.database, this.cfg.timeouts.databaseMs, `fs-ha agent ${this.cfg.node}`);
        if (this.stopped) {
          await db.close();
          return;
        }
        this.db = db;
        this.backoffMs = 100;
        // fs-ha's tables, once, before any takeover needs them (best effort: a takeover applies them itself)
        applySchemaOnce(db, this.cfg.layout).catch(() => undefined);
        db.onLost((why) => {
          if (this.db === db) this.db = null;
          if (this.stopped) return;
          log('warn', `agent: database connection lost (${why}); reconnecting`, { node: this.cfg.node });
          if (!this.stopped) void this.connect();
        });
        return;
      } catch (e) {
        log('warn', `agent: database not reachable (${errorMessage(e)}); next try in ${this.backoffMs} ms`, {
          node: this.cfg.node,
        });
        await sleep(this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, 5000);
      }
    }
  }

  /** The ready connection, if there is one (a takeover without it connects by itself). */
  get(): Db | undefined {
    return this.db && !this.db.lostReason ? this.db : undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.honest) clearInterval(this.honest);
    await this.db?.close();
  }
}

/** When the agent read a line, in the kernel's clock ticks since boot: comparable with a hook process's fork. */
function readKey(): FireKey {
  const read = (f: string) => {
    try {
      return readFileSync(f, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const up = Number(read('/proc/uptime').split(' ')[0]);
  return {
    boot: read('/proc/sys/kernel/random/boot_id'),
    ticks: Number.isFinite(up) ? Math.floor(up * 100) : -1,
    pid: process.pid,
    wallMs: performance.timeOrigin + performance.now(),
  };
}

export class Agent {
  private chain: Promise<void> = Promise.resolve();
  /** this node's notify lock, held for the agent's life (taken at start): a transition waits for no process */
  private notifyLock: Promise<(() => void) | null> = Promise.resolve(null);
  readonly health: LocalHealth;
  /** for takeovers */
  readonly db: WarmDb;
  /** for this node's heartbeat, apart: a heartbeat must never run inside a takeover's transaction */
  private readonly beatDb: WarmDb;
  private beat: NodeJS.Timeout | null = null;
  private fifo: FifoReader | null = null;
  private healthRun: Promise<void> | null = null;
  /** transitions handled, by state (metrics and tests) */
  readonly handled: Record<string, number> = {};
  /** the VRRP state of each instance as last heard */
  readonly vrrp: Record<string, string> = {};
  readonly takeovers: Record<string, number> = {};
  private lastTakeoverMs: number | null = null;
  private tracked: Array<{ hostname: string; count: number }> = [];
  private trackedAt = 0;
  private metrics: MetricsServer | null = null;

  constructor(
    private readonly cfg: Config,
    private readonly out = new Output(false),
  ) {
    this.health = new LocalHealth(cfg, { keepAlive: true, who: 'agent' });
    // a change of health is written at once: a peer judging this node must read what the loop knows now
    this.health.onChange = () => {
      this.beatAt = 0;
      this.heartbeat();
    };
    this.db = new WarmDb(cfg);
    this.beatDb = new WarmDb(cfg);
    this.prepDb = new WarmDb(cfg);
  }

  /**
   * This node's heartbeat, once a second, from the health loop's last answer (what check_fs wrote when
   * keepalived ran it): a peer that cannot reach our event socket judges us by it.
   */
  private beatAt = 0;

  private heartbeat(): void {
    const p = this.health.lastProbe;
    const db = this.beatDb.get();
    // the first as soon as there is an answer and a connection, then once a second
    if (!p || !db || Date.now() - this.beatAt < 1000) return;
    this.beatAt = Date.now();
    const me = this.cfg.nodes[this.cfg.node];
    if (this.metrics && Date.now() - this.trackedAt > 10000) {
      // the calls tracked per node: a cheap count, every 10 s at most
      this.trackedAt = Date.now();
      census(db, this.cfg.layout).then(
        (g) => {
          this.tracked = g;
        },
        () => undefined,
      );
    }
    if (!this.cfg.check.heartbeat) return;
    writeHeartbeat(
      db,
      this.cfg.node,
      me.switchname,
      p.coreUuid,
      p.kind === 'healthy',
      p.kind === 'healthy' ? 'healthy' : p.detail,
    ).catch((e) => log('debug', `agent: heartbeat not written: ${errorMessage(e)}`));
  }

  /** the peers' rows prepared for this node (adapters/prepare.ts), by peer; a MASTER's takeover uses them */
  readonly prepared = new Map<string, Prepared>();
  private readonly prepDb: WarmDb;
  private prepTimer: NodeJS.Timeout | null = null;
  private preparing = false;

  /**
   * Standing by: for every instance this node backs up (not MASTER of it now) whose calls it adopts alone, the
   * peer's rows read and rewritten for it, refreshed once a second (only new or changed rows are read again).
   */
  private async prepare(): Promise<void> {
    const db = this.prepDb.get();
    if (!db || this.preparing) return;
    this.preparing = true;
    try {
      const me = this.cfg.nodes[this.cfg.node];
      for (const [inst, peer] of Object.entries(this.cfg.instances)) {
        const from = this.cfg.nodes[peer];
        const adopters = this.cfg.adopters[peer];
        if (
          peer === this.cfg.node ||
          this.vrrp[inst] === 'MASTER' ||
          (adopters && (adopters.length !== 1 || adopters[0] !== this.cfg.node))
        )
          continue;
        const renamed = Object.keys(from.profiles).length || Object.keys(me.profiles).length;
        const profiles = renamed
          ? (
              await db.query<{ p: string }>(
                `SELECT DISTINCT profile_name AS p FROM ${recoveryTable(this.cfg.layout)} WHERE hostname = $1`,
                [from.switchname],
                "reading the peer's profiles",
              )
            ).map((r) => r.p)
          : [];
        const spec = rewriteSpecFor(from, me, profiles);
        const placement = { node: me.name, rtp: me.rtpPorts, band: this.cfg.recoveryPorts, local: true };
        let p = this.prepared.get(peer);
        if (!p || p.key !== preparedKey(spec, placement)) {
          p = new Prepared(spec, placement);
          this.prepared.set(peer, p);
        }
        const n = await refresh(db, this.cfg.layout, p);
        if (n)
          log('debug', `agent: ${n} row(s) of ${peer} prepared for a takeover here (${p.rows.size} ready)`, {
            node: this.cfg.node,
          });
      }
    } catch (e) {
      log('debug', `agent: preparing the takeover: ${errorMessage(e)}`, { node: this.cfg.node });
    } finally {
      this.preparing = false;
    }
  }

  /**
   * fs-ha's instances are those under `instances`, and no others: keepalived's notify_fifo carries every
   * vrrp_instance of the box (a web VIP's too), so an instance not named there is never acted on.
   */
  private readonly ignoredOnce = new Set<string>();
  private known(name: string): boolean {
    return name in this.cfg.instances;
  }

  /** One line, after the ones before it: in keepalived's order, one at a time. */
  private enqueue(l: FifoLine, fired: FireKey): Promise<void> {
    this.chain = this.chain.then(async () => {
      if (l.kind === 'ignored') {
        log('debug', `agent: ${l.reason}`);
        return;
      }
      if (!this.known(l.name)) {
        if (!this.ignoredOnce.has(l.name)) {
          this.ignoredOnce.add(l.name);
          log(
            'info',
            `agent: ${l.type} ${l.name} ${l.state}: not one of fs-ha's instances (${Object.keys(this.cfg.instances).join(', ')}); ignored, now and from now on`,
            { node: this.cfg.node },
          );
        }
        return;
      }
      log('info', `agent: keepalived says ${l.type} ${l.name} ${l.state}`, {
        node: this.cfg.node,
        instance: l.name,
        state: l.state,
      });
      this.handled[l.state] = (this.handled[l.state] ?? 0) + 1;
      this.vrrp[l.name] = l.state;
      // a MASTER's takeover borrows the health loop's session to the local FreeSWITCH and the warm connection
      const lent = l.state === 'MASTER' ? this.health.borrow() : null;
      try {
        const held = await this.holdNotifyLock();
        await notify(this.cfg, l.state, l.name, this.out, {
          fired,
          db: this.db.get(),
          session: lent?.session,
          recordInBackground: true,
          prepared: (peer) => this.prepared.get(peer),
          hostLocked: held,
          onTakeover: (result, ms) => {
            this.takeovers[result] = (this.takeovers[result] ?? 0) + 1;
            if (ms !== null) this.lastTakeoverMs = ms;
          },
        }).catch(() => undefined); // notify logged it
      } finally {
        lent?.giveBack();
      }
    });
    return this.chain;
  }

  /** The notify lock, taken again if a notify hook held it when the agent started; false: notify takes it itself. */
  private async holdNotifyLock(): Promise<boolean> {
    if (await this.notifyLock) return true;
    this.notifyLock = acquireNotifyLock(this.cfg).catch((e) => {
      log('error', `agent: ${errorMessage(e)}`, { node: this.cfg.node });
      return null;
    });
    return (await this.notifyLock) !== null;
  }

  private console: ConsoleServer | null = null;

  /** fsha in fs_cli (commands/console.ts): the console socket, for root and console.group only. */
  private startConsole(): void {
    const { group, socket } = this.cfg.console;
    if (!group) return;
    const gid = groupId(group);
    if (gid === null) {
      log(
        'error',
        `agent: console.group ${group} is not a group on this host: no console (fsha in fs_cli) until it is`,
        { node: this.cfg.node },
      );
      return;
    }
    const server = new ConsoleServer(socket, gid, (words, write) => runConsole(this.cfg, words, write));
    server.start().then(
      () => {
        this.console = server;
        log('info', `agent: console on ${socket} (root and group ${group})`, { node: this.cfg.node });
      },
      (e) => log('error', `agent: cannot serve the console on ${socket}: ${errorMessage(e)}`, { node: this.cfg.node }),
    );
  }

  /** What /metrics shows (agent.metrics). */
  samples(): Sample[] {
    const perNode = new Map<string, number>();
    for (const g of this.tracked) perNode.set(g.hostname, (perNode.get(g.hostname) ?? 0) + g.count);
    return [
      {
        name: 'fsha_freeswitch_healthy',
        help: 'the local FreeSWITCH answers, its core is ready and its profiles run (1) or not (0)',
        type: 'gauge',
        values: [{ value: this.health.healthy ? 1 : 0 }],
      },
      {
        name: 'fsha_calls_tracked',
        help: 'answered calls in the recovery table, by node switchname (counted every 10 s at most)',
        type: 'gauge',
        values: [...perNode].map(([node, value]) => ({ labels: { node }, value })),
      },
      {
        name: 'fsha_vrrp_state',
        help: 'the VRRP state of each instance as keepalived last reported it (1 for that state)',
        type: 'gauge',
        values: Object.entries(this.vrrp).map(([instance, state]) => ({ labels: { instance, state }, value: 1 })),
      },
      {
        name: 'fsha_takeovers_total',
        help: 'takeovers this agent ran, by result',
        type: 'counter',
        values: Object.entries(this.takeovers).map(([result, value]) => ({ labels: { result }, value })),
      },
      {
        name: 'fsha_last_takeover_duration_ms',
        help: 'how long the last takeover took, in milliseconds',
        type: 'gauge',
        values: this.lastTakeoverMs === null ? [] : [{ value: this.lastTakeoverMs }],
      },
      {
        name: 'fsha_events_total',
        help: 'keepalived transitions handled, by state',
        type: 'counter',
        values: Object.entries(this.handled).map(([state, value]) => ({ labels: { state }, value })),
      },
    ];
  }

  start(): void {
    if (this.cfg.agent.metrics) {
      const at = this.cfg.agent.metrics.lastIndexOf(':');
      const host = this.cfg.agent.metrics.slice(0, at).replace(/^\[|\]$/g, '');
      this.metrics = new MetricsServer(host, Number(this.cfg.agent.metrics.slice(at + 1)), () => this.samples());
      this.metrics.start().then(
        () => log('info', `agent: metrics on http://${this.cfg.agent.metrics}/metrics`, { node: this.cfg.node }),
        (e) =>
          log('error', `agent: cannot serve metrics on ${this.cfg.agent.metrics}: ${errorMessage(e)}`, {
            node: this.cfg.node,
          }),
      );
    }
    this.notifyLock = acquireNotifyLock(this.cfg).catch((e) => {
      log('warn', `agent: ${errorMessage(e)}; taken per transition until it is free`, { node: this.cfg.node });
      return null;
    });
    this.startConsole();
    this.db.start();
    if ((this.cfg.check.heartbeat || this.cfg.agent.metrics) && this.cfg.database) {
      this.beatDb.start();
      this.beat = setInterval(() => this.heartbeat(), 250);
    }
    if (this.cfg.database) {
      this.prepDb.start();
      this.prepTimer = setInterval(() => void this.prepare(), 1000);
      this.prepTimer.unref();
    }
    this.healthRun = this.health.run();
    this.fifo = new FifoReader(this.cfg.agent.fifo, {
      backlog: (lines) => {
        const fired = readKey();
        const kept = latestPerInstance(lines.map(parseFifoLine));
        if (lines.length)
          log(
            'info',
            `agent: ${lines.length} line(s) waited in the FIFO; acting on the last state of each instance (${kept.length})`,
            { node: this.cfg.node },
          );
        for (const l of kept) void this.enqueue(l, fired);
      },
      line: (line) => {
        void this.enqueue(parseFifoLine(line), readKey());
      },
      reopened: () =>
        log('info', `agent: ${this.cfg.agent.fifo} was recreated (keepalived reloaded); reading the new one`, {
          node: this.cfg.node,
        }),
      problem: (message) => log('error', `agent: ${message}`, { node: this.cfg.node }),
    });
    this.fifo.start();
    log('info', `agent: listening on ${this.cfg.agent.fifo}`, { node: this.cfg.node });
    // compile the rewrite's hot paths now, not during the first failover (after the first answers are in)
    setTimeout(() => {
      const t0 = Date.now();
      const n = warmRewrite();
      log('debug', `agent: rewrite warmed (${n} rows, ${Date.now() - t0} ms)`);
    }, 300).unref();
  }

  /** Stop reading, finish the transition under way, leave watch.file as it is. */
  async stop(): Promise<void> {
    this.fifo?.close();
    this.metrics?.close();
    this.console?.stop();
    if (this.beat) clearInterval(this.beat);
    if (this.prepTimer) clearInterval(this.prepTimer);
    this.health.stop(false);
    await this.chain;
    (await this.notifyLock)?.();
    await this.healthRun;
    await this.db.stop();
    await this.beatDb.stop();
    await this.prepDb.stop();
  }
}

export async function agent(cfg: Config, out: Output): Promise<number> {
  if (!Object.keys(cfg.instances).length) {
    throw new ConfigError(
      'config: the agent needs instances: the VRRP instance(s) fs-ha acts on, each with the node whose calls its MASTER adopts ' +
        "(keepalived's notify FIFO carries every instance of the box, other services' too)",
    );
  }
  // one agent per FIFO: a second one (run by hand beside the service) would split keepalived's lines with the
  // first and could act on them out of order. A restarted agent finds the lock free at once (it dies with
  // its holder); a second one waits a moment for it, then refuses.
  const release = await acquireHostLock(cfg.stateDir, agentLockName(cfg.agent.fifo), 1500).catch(() => {
    throw new ActionFailed(
      `another fs-ha agent is already reading ${cfg.agent.fifo} (state_dir ${cfg.stateDir}): refusing to start a second one`,
    );
  });
  const a = new Agent(cfg, out);
  a.start();
  await new Promise<void>((resolve) => {
    const stop = () => {
      void a.stop().then(() => {
        release();
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  log('info', 'agent: stopped; watch.file left as it was', { node: cfg.node });
  return 0;
}

export const command: CommandSpec = {
  name: 'agent',
  links: [],
  args: '',
  positionals: { min: 0, max: 0 },
  summary: "long-running: hears keepalived's notify FIFO, keeps FreeSWITCH's health for track_file, takes over warm",
  exits: '0 after SIGTERM, 1 the FIFO cannot be used, 2 configuration error',
  options: {},
  run: ({ cfg, out }) => agent(cfg, out),
};
