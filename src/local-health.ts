/**
 * One event-socket session to the local FreeSWITCH, kept open, asked the check's questions every
 * watch.interval_ms; watch.file holds 0 while it serves and 1 the moment it stops (the session closing is
 * seen at once), for keepalived's track_file. `fs-ha watch` runs it alone; the agent runs it beside its
 * FIFO reader. keepAlive: also touch watch.file's mtime every 200 ms, so keepalived's backstop can tell a
 * live writer from a file nobody updates (the agent; see the keepalived templates).
 * FAILED is declared on evidence: a refused, dropped or wrong answer at once; an answer that is only late (a
 * starved CPU) needs SLOW_FALL of them in a row, as keepalived's fall counts a script's failures.
 */
import { mkdirSync, utimesSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from './config';
import { EslSession } from './adapters/esl';
import { replaceFile } from './adapters/safe-files';
import { errorMessage } from './errors';
import { log } from './log';
import { wrongNode, failed, probeSession, type NodeProbe } from './observe';

/** how often keepAlive touches watch.file (keepalived's agent_alive allows 2000 ms: see the templates) */
export const TOUCH_MS = 200;
/** late answers in a row before a FreeSWITCH that still holds its socket open is declared FAILED */
export const SLOW_FALL = 2;

export class LocalHealth {
  private slow = 0;
  private last: string | null = null;
  private stopping = false;
  private handBack = false;
  private wake: (() => void) | null = null;
  private session: EslSession | null = null;
  private touch: NodeJS.Timeout | null = null;
  /** what the loop knows now: the last probe, or why there is no session (never an older healthy answer) */
  lastProbe: NodeProbe | null = null;
  /** called when the health changes (the agent writes the heartbeat at once) */
  onChange: (healthy: boolean) => void = () => undefined;

  constructor(
    private readonly cfg: Config,
    private readonly o: { keepAlive?: boolean; who: string },
  ) {}

  get healthy(): boolean {
    return this.last === '0';
  }

  private lent: Promise<void> | null = null;

  /**
   * The open session, lent to a takeover: the probes wait until it is given back (a recover may take
   * seconds, and a probe timing out behind it must not close the session under it). The session closing
   * is still seen at once, and the file's mtime is still touched. null when there is no session now.
   */
  borrow(): { session: EslSession; giveBack: () => void } | null {
    if (!this.session || this.session.closed || this.lent) return null;
    let giveBack!: () => void;
    this.lent = new Promise<void>((r) => {
      giveBack = () => {
        this.lent = null;
        r();
      };
    });
    return { session: this.session, giveBack };
  }

  private set(healthy: boolean, reason: string): void {
    const v = healthy ? '0' : '1';
    if (v === this.last) return;
    replaceFile(this.cfg.watch.file, v + '\n');
    log(healthy ? 'info' : 'warn', `${this.o.who}: ${this.cfg.node} ${healthy ? 'healthy' : 'FAILED'}: ${reason}`, {
      node: this.cfg.node,
      file: this.cfg.watch.file,
      value: v,
    });
    this.last = v;
    this.onChange(healthy);
  }

  /**
   * A late answer (or a connection that did not complete in time) while healthy: no evidence on a busy
   * machine until SLOW_FALL come in a row. True when this one is tolerated (logged, not failed).
   */
  private tolerateLate(p: NodeProbe): boolean {
    if (p.kind !== 'silent' && p.kind !== 'unreachable') {
      this.slow = 0;
      return false;
    }
    this.slow++;
    if (this.slow >= SLOW_FALL || this.last !== '0') return false;
    log(
      'warn',
      `${this.o.who}: ${this.cfg.node} answered late (${p.detail}); failed only if the next answer is late too`,
      { node: this.cfg.node },
    );
    return true;
  }

  private nap(ms: number): Promise<void> {
    return new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      this.wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }

  /** Runs until stop(). */
  async run(): Promise<void> {
    const { cfg } = this;
    const every = cfg.watch.intervalMs;
    mkdirSync(dirname(cfg.watch.file), { recursive: true, mode: 0o755 });
    if (this.o.keepAlive) {
      const touch = () => {
        const now = new Date();
        try {
          utimesSync(cfg.watch.file, now, now);
        } catch {
          /* written at the next change */
        }
      };
      touch(); // a restarted agent refreshes it at once: the backstop never sees a gap
      this.touch = setInterval(touch, TOUCH_MS);
    }
    log(
      'info',
      `${this.o.who}: watching ${cfg.esl.host}:${cfg.esl.port} every ${every} ms, state in ${cfg.watch.file}`,
      { node: cfg.node },
    );
    while (!this.stopping) {
      if (!this.session) {
        try {
          const mine = await EslSession.open(cfg.esl, cfg.check.timeoutMs);
          this.session = mine;
          mine.onClose((why, kind) => {
            if (this.session !== mine) return;
            this.session = null;
            // a late answer closes the session too: the probe that waited for it judges it (tolerateLate)
            if (!this.stopping && why !== 'closed by fs-ha' && kind !== 'silent') {
              this.lastProbe = failed(new Error(`event socket lost: ${why}`), Date.now());
              this.set(false, `event socket lost: ${why}`);
            }
            this.wake?.();
          });
        } catch (e) {
          this.lastProbe = failed(e, Date.now());
          if (!this.tolerateLate(this.lastProbe)) this.set(false, errorMessage(e));
          await this.nap(every);
          continue;
        }
      }
      if (this.lent) {
        await this.lent;
        continue;
      }
      const p = await probeSession(this.session, cfg.check.profiles, cfg.check.timeoutMs, Date.now());
      const me = cfg.nodes[cfg.node];
      const impostor = wrongNode(me, cfg.esl, p);
      this.lastProbe = impostor ? { ...p, kind: 'unhealthy', detail: impostor } : p;
      if (impostor) this.set(false, impostor);
      else if (p.kind === 'healthy') {
        this.slow = 0;
        this.set(true, p.detail);
      } else if (this.tolerateLate(p)) {
        this.session?.close(); // ask again on a new session
        this.session = null;
      } else {
        this.set(false, p.detail);
        if (p.kind !== 'unhealthy') {
          this.session?.close();
          this.session = null;
        } // timed out or broken: reconnect
      }
      if (!this.stopping) await this.nap(every);
    }
    if (this.touch) clearInterval(this.touch);
    this.session?.close();
    if (this.handBack) this.set(true, 'watch stopped: check_fs decides alone');
  }

  /** handBack: write 0 (fs-ha watch stopping: check_fs decides alone); the agent leaves the file as it is. */
  stop(handBack: boolean): void {
    this.handBack = handBack;
    this.stopping = true;
    this.wake?.();
  }
}
