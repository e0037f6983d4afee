/**
 * The chaos run's cluster: the end-to-end lab (test/e2e/lab.ts) as a pair or a farm, with what the nemesis and
 * the workload need of it: which nodes take calls now, who carries which leg, and the way back to full strength
 * after a fault (every process running, no process frozen, every link in its bridge, keepalived settled).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withClient } from '../helpers/pg';
import { type Fabric, Lab, type Proc, VIP, waitFor } from '../e2e/lab';
import type { ChaosDatabase } from './database';
import type { AuditRec, Recovery } from './judge';
import type { CallPlane } from './workload';

/** pair: two nodes and a VIP; farm: three, each the MASTER of its own instance; proxy: the farm behind Kamailio
 *  and RTPEngine, every call placed through the proxy to the far ends and anchored by RTPEngine */
export type Topology = 'pair' | 'farm' | 'proxy';

export class ChaosCluster implements CallPlane {
  readonly lab: Lab;
  readonly names: string[];
  /** every simulator process this run started (restarted ones too): their recover events */
  private readonly sims: Proc[] = [];
  readonly frozen = new Set<string>();
  readonly hogs: ChildProcess[] = [];
  readonly cut = new Set<string>();
  private taking: string[] = [];
  private poll: NodeJS.Timeout | null = null;
  private sipp: Proc | null = null;
  private stopped = false;

  constructor(
    fabric: Fabric,
    readonly database: ChaosDatabase,
    readonly topology: Topology,
  ) {
    this.names =
      topology === 'pair' ? ['freeswitch01', 'freeswitch02'] : ['freeswitch01', 'freeswitch02', 'freeswitch03'];
    this.lab = new Lab(fabric, database.url, {
      topology: topology === 'proxy' ? 'proxy-farm' : topology,
      nodes: this.names,
      database: database.forNodes,
      ...(topology === 'pair' ? { simAddress: () => VIP } : {}),
    });
  }

  /** the primary of the moment (the nodes follow it themselves) */
  get dbUrl(): string {
    return this.database.url;
  }

  /** the simulators' arguments: behind the proxy, each places its calls through it (dial-out) */
  private get simArgs(): string[] {
    return this.topology === 'proxy'
      ? ['--sip-ua', '--outbound-proxy', `${this.lab.proxy.address}:5060`, '--dial-out']
      : [];
  }

  /** The VRRP instance a node is MASTER of at full strength. */
  own(node: string): string {
    return this.topology === 'pair' ? 'VI_FS' : `VI_FS0${this.names.indexOf(node) + 1}`; // farm, proxy
  }

  async start(): Promise<void> {
    this.lab.build();
    if (this.topology === 'pair') await this.lab.startPair();
    else if (this.topology === 'proxy') {
      await this.lab.startProxy();
      this.sipp = await this.lab.startFarEnds();
      await this.lab.startFarm(this.simArgs);
      await sleep(1500); // the dispatcher's OPTIONS probes (every second) have found every node answering
    } else await this.lab.startFarm();
    for (const n of this.names) this.sims.push(this.lab.sims[n]);
    // the far ends' SIP: answers every re-INVITE of a recovered call, for as long as the run lasts (behind the
    // proxy: the far ends above, reached along each call's route set)
    this.sipp ??= await this.lab.startSipp(0);
    const refresh = async () => {
      const up = await Promise.all(
        this.names.map(async (n) => {
          if (!this.running(n) || this.frozen.has(n)) return null;
          try {
            const s = await this.lab.simState(n);
            if (s.standby) return null;
            return this.topology === 'pair' && !this.lab.hasVip(n) ? null : n;
          } catch {
            return null;
          }
        }),
      );
      // the run may have ended (stop() tore the namespaces down) while the nodes were asked: nothing to refresh
      if (this.stopped) return;
      this.taking = up.filter((n): n is string => n !== null);
      if (this.topology === 'pair') this.vipAt = new Set(this.names.filter((n) => this.lab.hasVip(n)));
      if (!this.stopped) this.poll = setTimeout(() => void refresh(), 250);
    };
    await refresh();
  }

  running(node: string): boolean {
    return this.lab.sims[node]?.exitCode === null;
  }

  accepting(): string[] {
    return this.taking.filter((n) => this.running(n) && !this.frozen.has(n));
  }

  nodes(): string[] {
    return this.names.filter((n) => this.running(n));
  }

  /** SIP to a node cut off the service net is lost; a frozen node reads it only at its thaw, with the RTP queued
   *  meanwhile (the BYE is answered then: judged then, not by the last packet before the freeze); after a cut or a
   *  freeze, a moment for its media to flow again (one RTP round trip and more) before a BYE is judged by what its
   *  channel hears */
  reachable(node: string): boolean {
    if (this.cut.has(node) || this.frozen.has(node)) return false;
    if (Date.now() - (this.healedAt.get(node) ?? 0) <= 1000) return false;
    // the pair's calls are dialogs with its VIP: a far end's request reaches whoever holds it now
    return this.topology !== 'pair' || this.vipAt.has(node);
  }
  /** the nodes holding the pair's VIP now (refreshed with accepting(), every 250 ms) */
  private vipAt = new Set<string>();
  private readonly healedAt = new Map<string, number>();

  api(node: string, cmd: string, timeoutMs: number): Promise<string> {
    if (!this.running(node)) return Promise.reject(new Error(`${node}: not running`));
    return this.lab.api(node, cmd, timeoutMs);
  }

  /** The node holding the pair's VIP (keepalived's MASTER), or a random node of the farm. */
  master(): string | null {
    return this.names.find((n) => this.lab.vrrpState(n, this.own(n)) === 'MASTER' && this.lab.hasVip(n)) ?? null;
  }

  /** leg uuid -> node whose channel carries it now (frozen nodes are not asked: they answer nothing). */
  async carriers(): Promise<{ carriers: Record<string, string>; doubles: string[] }> {
    const out: Record<string, string> = {};
    const doubles: string[] = [];
    for (const n of this.names) {
      if (!this.running(n) || this.frozen.has(n)) continue;
      for (const ch of await this.lab.media(n).catch(() => [])) {
        if (out[ch.uuid]) doubles.push(`${ch.uuid} on ${out[ch.uuid]} and ${n}`);
        out[ch.uuid] = n;
      }
    }
    return { carriers: out, doubles };
  }

  /** When each simulator process this run started ended by a crash (fsctl crash: a fault, a handover, a drain). */
  crashes(): Array<{ node: string; at: number }> {
    return this.events<{ node: string; at: number }>('crash').map((e) => ({ node: e.node, at: e.at }));
  }

  /** Each far end's BYE a node had for a leg it carried, said before it hung the leg up. */
  byesHeard(): Array<{ node: string; uuid: string; at: number }> {
    return this.events<{ node: string; uuid: string; at: number }>('bye-heard').map((e) => ({
      node: e.node,
      uuid: e.uuid,
      at: e.at,
    }));
  }

  /** Every event of one kind that any simulator of this run wrote. */
  private events<T>(ev: string): T[] {
    return this.sims.flatMap((p) =>
      p.lines.filter((l) => l.text.includes(`"ev":"${ev}"`)).map((l) => JSON.parse(l.text) as T),
    );
  }

  /** fs-ha on node, as the operator runs it, without holding up the event loop (the workload goes on). */
  fsha(node: string, args: string[], timeoutMs = 60000): Promise<{ code: number; out: string }> {
    const child = spawn(
      'ip',
      ['netns', 'exec', this.lab.nsOf(node), join(this.lab.bin, 'fs-ha'), '--config', this.lab.fshaPath(node), ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    return new Promise((resolve) =>
      child.on('exit', (code) => {
        clearTimeout(t);
        resolve({ code: code ?? -1, out });
      }),
    );
  }

  /** SIGSTOP / SIGCONT of node's FreeSWITCH (a process frozen by the kernel, a VM paused). */
  freeze(node: string): void {
    process.kill(this.lab.sims[node].child.pid!, 'SIGSTOP');
    this.frozen.add(node);
  }
  thaw(node: string): void {
    if (!this.frozen.delete(node)) return;
    process.kill(this.lab.sims[node].child.pid!, 'SIGCONT');
    this.healedAt.set(node, Date.now());
  }

  /** node's service link out of its bridge (VRRP adverts lost both ways, and its media) or back. */
  cutLink(node: string): void {
    this.lab.fabric.ip(['link', 'set', this.lab.port(node, 's'), 'nomaster']);
    this.cut.add(node);
  }
  healLink(node: string): void {
    if (!this.cut.delete(node)) return;
    this.lab.fabric.ip(['link', 'set', this.lab.port(node, 's'), 'master', this.lab.fabric.s]);
    this.healedAt.set(node, Date.now());
  }

  /** Busy loops on every core and then some (CPU starvation for everyone, the lab included). */
  starve(n: number): void {
    for (let i = 0; i < n; i++) this.hogs.push(spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
  }
  feed(): void {
    for (const h of this.hogs.splice(0)) h.kill('SIGKILL');
  }

  async startSim(node: string): Promise<void> {
    this.sims.push(await this.lab.startSim(node, this.simArgs));
  }

  /** Back to full strength: nothing frozen, starved or cut, every process running (again: a handover may stop a
   *  FreeSWITCH after it was started), each node in its place, and no VRRP transition for 1.5 s. */
  async restore(timeoutMs = 60000): Promise<void> {
    this.feed();
    for (const n of [...this.frozen]) this.thaw(n);
    for (const n of [...this.cut]) this.healLink(n);
    await this.database.restore();
    await waitFor(
      `the ${this.topology} at full strength`,
      async () => {
        await this.revive();
        const last = Math.max(
          ...this.names.map(
            (n) => this.lab.keepalived[n].lines.filter((l) => /Entering \w+ STATE/.test(l.text)).pop()?.at ?? 0,
          ),
        );
        if (Date.now() - last < 1500) return false;
        const states = await Promise.all(this.names.map((n) => this.lab.simState(n)));
        if (this.topology !== 'pair')
          return this.names.every((n, i) => this.lab.vrrpState(n, this.own(n)) === 'MASTER' && !states[i].standby);
        const masters = this.names.filter((n) => this.lab.vrrpState(n, 'VI_FS') === 'MASTER');
        if (masters.length !== 1 || !this.lab.hasVip(masters[0])) return false;
        // and every call with the VIP's holder: a BACKUP still tracking calls is handing them over (or failed to)
        return this.names.every(
          (n, i) => states[i].standby === (n !== masters[0]) && (n === masters[0] || !states[i].calls),
        );
      },
      timeoutMs,
      250,
    );
  }

  /** Every process of every node running: FreeSWITCH (as systemd restarts it), the agent, keepalived. */
  private async revive(): Promise<void> {
    for (const n of this.names) {
      if (!this.running(n)) await this.startSim(n);
      if (this.lab.watchers[n]?.exitCode !== null) await this.lab.startAgent(n);
      if (this.lab.keepalived[n]?.exitCode !== null) this.lab.startKeepalived(n);
    }
  }

  /** What every simulator this run started said it recovered. */
  recoveries(): Recovery[] {
    return this.events<Recovery>('recover').map((e) => ({
      node: e.node,
      at: e.at,
      uuids: e.uuids,
      firstLegAt: e.firstLegAt,
    }));
  }

  async audits(): Promise<AuditRec[]> {
    return withClient(this.dbUrl, async (c) =>
      (
        await c.query(
          'select started_at, command, from_node, to_node, result, adopted, recovered from fsha.audit order by started_at',
        )
      ).rows.map((r) => ({
        at: (r.started_at as Date).getTime(),
        command: r.command,
        from: r.from_node,
        to: r.to_node,
        result: r.result,
        adopted: r.adopted,
        recovered: r.recovered,
      })),
    );
  }

  /** Recovery rows of every node ("node uuid"), wherever the layout keeps them. */
  async rows(): Promise<string[]> {
    return withClient(this.dbUrl, async (c) => {
      const tables = (
        await c.query("select schemaname from pg_tables where tablename = 'recovery' order by schemaname")
      ).rows.map((r) => `${r.schemaname}.recovery`);
      const out: string[] = [];
      for (const t of tables)
        for (const r of (await c.query(`select hostname, uuid from ${t}`)).rows)
          out.push(`${t}: ${r.hostname} ${r.uuid}`);
      return out;
    });
  }

  /** Has a takeover of node's calls finished since t (its audit row)? */
  async takeoverSince(node: string, t: number): Promise<AuditRec | null> {
    return (await this.audits()).find((a) => a.from === node && a.at >= t - 1000) ?? null;
  }

  stop(): void {
    this.stopped = true;
    if (this.poll) clearTimeout(this.poll);
    this.poll = null;
    this.feed();
    for (const n of [...this.frozen]) this.thaw(n);
    this.sipp?.kill('SIGKILL');
    this.lab.teardown(true);
  }
}
