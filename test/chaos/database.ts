/**
 * The chaos run's database: a primary and a hot standby inside the lab's fabric, as Patroni runs them. The nodes
 * (FreeSWITCH and fs-ha) are given both hosts with target_session_attrs=read-write, so they follow the primary;
 * the checker reads the primary of the moment. The fault stops the primary (a planned stop: it sends its last
 * WAL to the standby first) and promotes the standby; the way back to full strength rebuilds the old primary as
 * the new primary's standby on the same port, so the nodes' host list stays true.
 */
import { execFileSync } from 'node:child_process';
import { type PgServer, type Standby, startReplicaPair, startStandby } from '../helpers/pg';

export class ChaosDatabase {
  /** the nodes' database: both hosts, the writable one chosen */
  readonly forNodes: string;
  private primary: PgServer;
  private standby: Standby | null;
  /** the port the stopped primary listened on, waiting for its rebuild */
  private vacant: number | null = null;

  private constructor(
    pair: { primary: PgServer; standby: Standby },
    private readonly o: { listen: string; netns: string },
  ) {
    this.primary = pair.primary;
    this.standby = pair.standby;
    this.forNodes = `postgres://postgres@${o.listen}:${pair.primary.port},${o.listen}:${pair.standby.port}/postgres?target_session_attrs=read-write`;
  }

  static async start(o: { listen: string; netns: string }): Promise<ChaosDatabase> {
    const pair = await startReplicaPair(o);
    // the fabric's relay connects out to every node's event socket from this address, thousands of times a run:
    // no such connection may take the database's ports as its source port, or the primary rebuilt on its old port
    // after a switch-over could not listen there
    execFileSync('ip', [
      'netns',
      'exec',
      o.netns,
      'sysctl',
      '-qw',
      `net.ipv4.ip_local_reserved_ports=${pair.primary.port},${pair.standby.port}`,
    ]);
    return new ChaosDatabase(pair, o);
  }

  /** the primary of the moment, as the root namespace reaches it (its unix socket) */
  get url(): string {
    return this.primary.url;
  }

  /** The primary stopped (pg_ctl stop -m fast), the standby promoted (pg_ctl promote). Returns the ports. */
  failover(): { stopped: number; promoted: number } {
    const standby = this.standby;
    if (!standby) throw new Error('no standby to promote (the last switch-over not restored yet)');
    const old = this.primary;
    old.ctl!('pg_ctl', ['-D', old.dataDir!, '-m', 'fast', '-w', '-t', '30', 'stop']);
    old.stop(); // already stopped: its directory goes
    standby.promote();
    this.primary = standby;
    this.standby = null;
    this.vacant = old.port;
    return { stopped: old.port, promoted: standby.port };
  }

  /** Full strength: a standby streaming from the primary again, on the old primary's port. */
  async restore(): Promise<void> {
    if (this.standby) return;
    this.standby = await startStandby(this.primary, { ...this.o, port: this.vacant ?? undefined });
    this.vacant = null;
  }

  stop(): void {
    this.standby?.stop();
    this.primary.stop();
  }
}
