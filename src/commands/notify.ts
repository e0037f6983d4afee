/**
 * keepalived's notify hooks. keepalived fires them without waiting, so they can overlap: they run one at
 * a time under a host lock, and each remembers when keepalived fired it (its process start), so a late
 * BACKUP never undoes a MASTER that was fired after it.
 *   MASTER: take over the calls of the node the instance stands for, then leave standby.
 *   BACKUP / FAULT: put the local profiles into standby (config `standby`); never touch the recovery table.
 *   STOP / DELETED: log only.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { firedAfter, startTicks, type FireKey } from '../core/fire-order';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { nodeForInstance, type Config } from '../config';
import { EslError, eslApi, type EslSession } from '../adapters/esl';
import { acquireHostLock, agentLockName, hostLockHeld } from '../adapters/host-lock';
import { privateDir, replaceFile } from '../adapters/safe-files';
import { ActionFailed, Refused, UsageError, errorMessage } from '../errors';
import { log } from '../log';
import { takeover, type TakeoverReport } from './takeover';
import { handOver, reportOrphans } from './handover';
import type { Prepared } from '../adapters/prepare';
import { Db } from '../adapters/db';
import * as store from '../adapters/recovery-store';
import { Output } from '../cli/output';
import { startFloating } from '../adapters/floating';
import type { CommandSpec } from '../cli/spec';

import { STATES, type VrrpState } from '../core/vrrp';

export type { VrrpState };

/** when keepalived forked this process: kernel start tick + pid within this boot (core/fire-order.ts) */
function ownFireKey(): FireKey {
  const read = (f: string) => {
    try {
      return readFileSync(f, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const ticks = startTicks(read('/proc/self/stat'));
  return {
    boot: read('/proc/sys/kernel/random/boot_id'),
    ticks: ticks ?? -1,
    pid: process.pid,
    wallMs: performance.timeOrigin,
  };
}
const FIRED = ownFireKey();

interface StateRecord {
  instance: string;
  state: VrrpState;
  fired: FireKey;
  at: string;
}

function stateFile(cfg: Config, instance: string): string {
  return join(cfg.stateDir, `notify-${instance.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}

function readState(cfg: Config, instance: string): StateRecord | null {
  try {
    return JSON.parse(readFileSync(stateFile(cfg, instance), 'utf8')) as StateRecord;
  } catch {
    return null;
  }
}

function writeState(cfg: Config, rec: StateRecord): void {
  privateDir(cfg.stateDir);
  replaceFile(stateFile(cfg, rec.instance), JSON.stringify(rec) + '\n');
}

/** Is this the instance whose address this node's calls use? Its own instance in a farm; the one shared instance of a pair. */
function callsInstance(cfg: Config, instance: string | undefined): boolean {
  if (instance && cfg.instances[instance] === cfg.node) return true;
  return Object.keys(cfg.nodes).length === 2;
}

/** Does standby apply to this instance? The instance of this node's calls, when standby is configured. */
function standbyApplies(cfg: Config, instance: string | undefined): boolean {
  return cfg.standby && callsInstance(cfg, instance);
}

/**
 * `sofia global standby on|off`, tried 3 times: a node left in the wrong standby state answers (or refuses)
 * new calls wrongly. Standby on for a FreeSWITCH that is not running (its socket refuses) is already true:
 * a dead FreeSWITCH takes no new calls. Returns false then (nothing was sent).
 */
async function setStandby(cfg: Config, on: boolean): Promise<boolean> {
  const cmd = `sofia global standby ${on ? 'on' : 'off'}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const reply = await eslApi(cfg.esl, cmd, cfg.esl.timeoutMs);
      if (!reply.startsWith('+OK')) throw new ActionFailed(`${cmd} answered ${JSON.stringify(reply.trim())}`);
      return true;
    } catch (e) {
      if (on && e instanceof EslError && e.kind === 'refused') return false;
      if (attempt >= 3) throw e;
      log('warn', `${cmd} failed (attempt ${attempt} of 3): ${errorMessage(e)}`, { node: cfg.node });
      await sleep(300);
    }
  }
}

/**
 * One keepalived transition. fired: when keepalived fired it (a hook process: its fork; the agent: when it
 * read the FIFO line); db: the agent's warm connection for the takeover.
 */
/**
 * This node's notify lock: one transition at a time on a host, whoever dispatches it. The agent takes it when
 * it starts and holds it for its life, so its transitions wait for no process.
 */
export function acquireNotifyLock(
  cfg: Config,
  timeoutMs = cfg.timeouts.lockMs + cfg.timeouts.recoverMs,
): Promise<() => void> {
  return acquireHostLock(cfg.stateDir, `notify-${cfg.node}`, timeoutMs);
}

/**
 * A notify hook's lock: while the agent runs, it holds the lock and handles every transition itself (keepalived
 * configured with both notify_fifo and notify scripts), so the hook steps aside at once, saying why; else it
 * waits for the hook before it, as ever.
 */
async function hookLock(cfg: Config): Promise<() => void> {
  const all = cfg.timeouts.lockMs + cfg.timeouts.recoverMs;
  const first = Math.min(200, all);
  const quick = await acquireNotifyLock(cfg, first).catch(() => null);
  if (quick) return quick;
  if (await hostLockHeld(cfg.stateDir, agentLockName(cfg.agent.fifo))) {
    throw new ActionFailed(
      `the fs-ha agent runs on ${cfg.node} and handles keepalived's transitions itself (notify_fifo): ` +
        'this notify hook did nothing (with the agent, keepalived.conf needs no notify scripts)',
    );
  }
  return acquireNotifyLock(cfg, all - first);
}

export async function notify(
  cfg: Config,
  state: VrrpState,
  instance: string | undefined,
  out = new Output(false),
  o: {
    fired?: FireKey;
    db?: Db;
    session?: EslSession;
    onTakeover?: (result: TakeoverReport['result'], ms: number | null) => void;
    /** the agent's prepared rows of a peer (the prepared takeover) */
    prepared?: (peer: string) => Prepared | undefined;
    /** the agent dispatches one transition after another: recording this one must not hold up the next */
    recordInBackground?: boolean;
    /** the caller holds this node's notify lock already (the agent, for its whole life): none is taken here */
    hostLocked?: boolean;
  } = {},
): Promise<number> {
  const fired = o.fired ?? FIRED;
  const name = instance ?? '_';
  const ctx = { node: cfg.node, instance: name, state };
  const release = o.hostLocked ? () => undefined : await hookLock(cfg);
  let applied = false;
  let floating: Promise<void> | null = null;
  /** the standby this transition set (recorded for status: FreeSWITCH does not show it) */
  let standbySet: boolean | undefined;
  try {
    const prev = readState(cfg, name);
    if (prev?.fired && firedAfter(prev.fired, fired)) {
      log(
        'info',
        `notify ${state} ignored: keepalived fired ${prev.state} after it (pid ${prev.fired.pid} after ${fired.pid})`,
        ctx,
      );
      return 0;
    }
    writeState(cfg, { instance: name, state, fired, at: new Date().toISOString() });
    applied = true;

    // the provider's floating address: claimed beside the takeover, released when leaving MASTER
    floating =
      instance && (state === 'MASTER' || prev?.state === 'MASTER') ? startFloating(cfg, instance, state) : null;
    if (state === 'MASTER') {
      const from = nodeForInstance(cfg, instance);
      log('info', `notify MASTER ${name}: ${from === cfg.node ? 'own instance' : `taking over ${from}`}`, ctx);
      let report: TakeoverReport | null = null;
      let failure: unknown = null;
      if (from !== cfg.node) {
        try {
          report = await takeover(cfg, {
            from,
            command: `notify MASTER ${name}`,
            db: o.db,
            session: o.session,
            heardAt: fired.wallMs,
            prepared: o.prepared?.(from),
          });
          o.onTakeover?.(report.result, report.timings.total_ms ?? null);
        } catch (e) {
          o.onTakeover?.(e instanceof Refused ? (e.nothingToDo ? 'nothing' : 'refused') : 'failed', null);
          if (e instanceof Refused && e.nothingToDo) {
            log('info', `notify MASTER ${name}: nothing to take over: ${e.nothingToDo}`, ctx);
            await reportOrphans(cfg, from, { db: o.db });
          } else failure = e;
        }
      }
      if (report?.standbyOff) standbySet = false;
      if ((standbyApplies(cfg, instance) || from === cfg.node) && !report?.standbyOff) {
        await setStandby(cfg, false).then(
          () => {
            standbySet = false;
            log('info', `notify MASTER: profiles out of standby on ${cfg.node}`, ctx);
          },
          (e) => log('error', `notify MASTER: could not leave standby: ${errorMessage(e)}`, ctx),
        );
      }
      if (failure) throw failure;
      if (report && report.result === 'partial') throw new ActionFailed(report.reason);
      out.result(
        report ?? { instance: name, from, nothing: true },
        report
          ? report.reason
          : from === cfg.node
            ? `instance ${name} is ${cfg.node}'s own: nothing to take over`
            : `nothing to take over: ${from} is alive`,
      );
      return 0;
    }
    if (state === 'BACKUP' || state === 'FAULT') {
      if (!standbyApplies(cfg, instance)) {
        log('info', `notify ${state}: instance ${name} is another node's; nothing to do here`, ctx);
      } else if (await setStandby(cfg, true)) {
        standbySet = true;
        log('info', `notify ${state}: profiles in standby on ${cfg.node} (new calls get 503)`, ctx);
      } else
        log(
          'warn',
          `notify ${state}: FreeSWITCH on ${cfg.node} is down (its event socket refused the connection): it takes no new calls, no standby needed`,
          ctx,
        );
    } else if (state !== 'STOP') {
      log('info', `notify ${state}: nothing to do`, ctx);
    }
    // demoted (BACKUP) or keepalived stopped (STOP): calls on an address now held elsewhere are handed over
    if (instance && (state === 'BACKUP' || state === 'STOP'))
      await handOver(cfg, state, instance, callsInstance(cfg, instance), { db: o.db });
    return 0;
  } finally {
    await floating;
    release();
    if (applied) {
      const recorded = recordVrrp(cfg, o.db, name, state, standbySet);
      if (!o.recordInBackground) await recorded; // a hook process waits for it before it exits
    }
  }
}

/**
 * What keepalived announced, in fsha.vrrp for `fs-ha status` (after the transition's work, outside the
 * host lock; at most 1 s; it informs operators, fs-ha never decides on it, so a failure is only noted).
 */
async function recordVrrp(
  cfg: Config,
  warm: Db | undefined,
  instance: string,
  state: VrrpState,
  standby?: boolean,
): Promise<void> {
  if (!cfg.database) return;
  const ms = Math.min(cfg.timeouts.databaseMs, 1000);
  const work = (async () => {
    const db = warm && !warm.lostReason ? warm : await Db.connect(cfg.database!, ms, 'fs-ha notify');
    try {
      await store.writeVrrp(db, cfg.node, instance, state);
      if (standby !== undefined) await store.recordStandby(db, cfg.node, standby, `notify ${state} ${instance}`);
    } finally {
      if (db !== warm) await db.close();
    }
  })();
  await Promise.race([
    work,
    sleep(ms + 200, undefined, { ref: false }).then(() => {
      throw new Error(`no answer within ${ms} ms`);
    }),
  ]).catch((e) =>
    log('info', `notify ${state}: VRRP state not recorded for fs-ha status: ${errorMessage(e)}`, {
      node: cfg.node,
      instance,
    }),
  );
}

/** keepalived's generic notify: TYPE NAME STATE PRIORITY */
export function parseGenericNotify(args: string[]): { state: VrrpState; instance: string } {
  const [type, name, state] = args;
  if (!type || !name || !state)
    throw new UsageError('notify needs TYPE NAME STATE [PRIORITY] (as keepalived passes them)');
  if (type !== 'GROUP' && type !== 'INSTANCE')
    throw new UsageError(`notify: TYPE must be GROUP or INSTANCE, not "${type}"`);
  if (!STATES.includes(state as VrrpState))
    throw new UsageError(`notify: STATE must be one of ${STATES.join(', ')}, not "${state}"`);
  return { state: state as VrrpState, instance: name };
}

const hook = (state: Exclude<VrrpState, 'DELETED'>, summary: string): CommandSpec => ({
  name: `notify-${state.toLowerCase()}`,
  links: [`notify_${state.toLowerCase()}`],
  args: '[INSTANCE]',
  positionals: { min: 0, max: 1 },
  summary,
  exits: '0 done or nothing to do, 1 failed or refused, 2 usage or configuration error',
  options: {},
  run: ({ cfg, positionals, out }) => notify(cfg, state, positionals[0], out),
});

export const commands: CommandSpec[] = [
  hook('MASTER', 'take over the calls of the node INSTANCE stands for, leave standby'),
  hook('BACKUP', 'put the local profiles into standby'),
  hook('FAULT', 'the same as backup'),
  hook('STOP', 'log only'),
  {
    name: 'notify',
    links: ['notify'],
    args: 'TYPE NAME STATE [PRIORITY]',
    positionals: { min: 3, max: 4 },
    summary: "keepalived's generic notify (TYPE GROUP|INSTANCE, STATE MASTER|BACKUP|FAULT|STOP|DELETED)",
    exits: '0 done or nothing to do, 1 failed or refused, 2 usage or configuration error',
    options: {},
    run({ cfg, positionals, out }) {
      const { state, instance } = parseGenericNotify(positionals);
      return notify(cfg, state, instance, out);
    },
  },
];
