/**
 * `fs-ha drill --crash NODE --yes [--takeover] [--wait-ms N]`: a failover drill against a real (staging)
 * cluster. It lists NODE's tracked calls, crashes NODE's FreeSWITCH (`fsctl crash` over its event
 * socket), then either runs the takeover here (--takeover) or waits for keepalived's notify_master on
 * a survivor to do it, and prints the timeline and, call by call, who tracks it now.
 * It refuses to run without --yes: it really crashes FreeSWITCH.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config';
import { Db } from '../adapters/db';
import { eslApi } from '../adapters/esl';
import * as store from '../adapters/recovery-store';
import { ActionFailed, UsageError, errorMessage } from '../errors';
import { log } from '../log';
import { probeNode } from '../observe';
import { takeover } from './takeover';
import type { Output } from '../cli/output';
import type { CommandSpec } from '../cli/spec';

export interface DrillOptions {
  crash: string;
  yes: boolean;
  takeover: boolean;
  waitMs: number;
}

interface Owner {
  uuid: string;
  hostname: string;
  runtime_uuid: string;
}

export async function drill(cfg: Config, o: DrillOptions, output: Output): Promise<number> {
  const out = (line: string) => output.line(line);
  const facts: { calls: number; back: number; lost: string[] } = { calls: 0, back: 0, lost: [] };
  const victim = cfg.nodes[o.crash];
  if (!victim) throw new UsageError(`drill: unknown node "${o.crash}" (nodes: ${Object.keys(cfg.nodes).join(', ')})`);
  const esl = victim.esl;
  if (!esl) throw new UsageError(`drill: nodes.${victim.name}.esl is not configured: cannot crash it`);
  if (!o.yes)
    throw new UsageError(`drill: this crashes FreeSWITCH on ${victim.name} (fsctl crash); run it again with --yes`);
  if (o.takeover && victim.name === cfg.node)
    throw new UsageError('drill --takeover must run on a survivor, not on the node it crashes');
  if (!cfg.database) throw new UsageError('drill needs `database` in the config (it reads the recovery table)');

  const db = await Db.connect(cfg.database, cfg.timeouts.databaseMs, 'fs-ha drill');
  const at = (ms: number) => `+${String(ms).padStart(6)} ms`;
  try {
    const before = await store.rowsOfHost(db, cfg.layout, victim.switchname, null);
    const calls = await store.pendingUuids(db, cfg.layout, victim.switchname, '');
    out(
      `drill: ${victim.name} tracks ${calls.length} call(s) (${before.map((g) => `${g.count} on profile ${g.profile}`).join(', ') || 'none'})`,
    );
    const t0 = Date.now();
    log('warn', `drill: crashing FreeSWITCH on ${victim.name}`, { node: victim.name, calls: calls.length });
    await eslApi(esl, 'fsctl crash', esl.timeoutMs).catch(() => undefined); // the socket just closes
    out(`${at(0)}  fsctl crash sent to ${victim.name}`);
    const deadline = t0 + o.waitMs;
    for (;;) {
      const p = await probeNode(esl, [], Math.min(500, esl.timeoutMs));
      if (p.kind === 'refused' || p.kind === 'unreachable' || p.kind === 'garbled' || p.kind === 'closed') {
        out(`${at(Date.now() - t0)}  ${victim.name}'s event socket gone (${p.kind})`);
        break;
      }
      if (Date.now() > deadline)
        throw new ActionFailed(`drill: ${victim.name} still answers ${o.waitMs} ms after fsctl crash`);
      await sleep(50);
    }
    if (o.takeover) {
      const r = await takeover(cfg, { from: victim.name, command: `drill ${victim.name}` });
      out(`${at(Date.now() - t0)}  takeover here: ${r.result}: ${r.reason}`);
    } else {
      out(`waiting up to ${o.waitMs} ms for keepalived's notify_master on a survivor to adopt the calls...`);
    }
    // every call re-tracked by a live node (a runtime uuid other than the crashed core's), or the deadline
    let owners: Owner[] = [];
    for (;;) {
      owners = await db.query<Owner>(
        `SELECT uuid, hostname, runtime_uuid FROM ${store.recoveryTable(cfg.layout)} WHERE uuid = ANY($1)`,
        [calls],
        'reading who tracks the calls',
      );
      const back = owners.filter((r) => r.hostname !== victim.switchname);
      if (back.length >= calls.length || Date.now() > deadline) break;
      await sleep(100);
    }
    const audits = await db
      .query<{
        started_at: Date;
        finished_at: Date;
        actor: string;
        to_node: string;
        result: string;
        adopted: number;
        recovered: number | null;
        timings: Record<string, number>;
      }>(
        `SELECT started_at, finished_at, actor, to_node, result, adopted, recovered, timings FROM fsha.audit
        WHERE from_node = $1 AND finished_at >= to_timestamp($2 / 1000.0) ORDER BY started_at`,
        [victim.name, t0],
        'reading the audit rows',
      )
      .catch(() => []);
    for (const a of audits) {
      out(`${at(a.started_at.getTime() - t0)}  takeover started on ${a.to_node} (${a.actor})`);
      if (a.timings.rewritten_ms !== undefined)
        out(`${at(a.started_at.getTime() - t0 + a.timings.rewritten_ms)}  rows rewritten for ${a.to_node}`);
      out(
        `${at(a.finished_at.getTime() - t0)}  takeover ${a.result} on ${a.to_node}: adopted ${a.adopted}, recovered ${a.recovered ?? '-'}`,
      );
    }
    const byUuid = new Map(owners.map((r) => [r.uuid, r]));
    const lost: string[] = [];
    out('calls:');
    for (const uuid of calls) {
      const r = byUuid.get(uuid);
      if (r && r.hostname !== victim.switchname) out(`  ${uuid}  came back on ${r.hostname}`);
      else {
        lost.push(uuid);
        out(`  ${uuid}  NOT back${r ? ` (still ${victim.switchname}'s row)` : ' (row gone)'}`);
      }
    }
    Object.assign(facts, { calls: calls.length, back: calls.length - lost.length, lost });
    output.result(
      { node: victim.name, ...facts, ms: Date.now() - t0 },
      `drill: ${calls.length - lost.length} of ${calls.length} call(s) came back in ${Date.now() - t0} ms`,
    );
    log(
      lost.length ? 'error' : 'info',
      `drill on ${victim.name}: ${calls.length - lost.length} of ${calls.length} calls came back`,
      { node: victim.name, calls: calls.length },
    );
    return lost.length ? 1 : 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof ActionFailed) throw e;
    throw new ActionFailed(`drill: ${errorMessage(e)}`);
  } finally {
    await db.close();
  }
}

export const command: CommandSpec = {
  name: 'drill',
  links: [],
  args: '',
  positionals: { min: 0, max: 0 },
  summary:
    "failover drill: crash NODE's FreeSWITCH, await (or run) the takeover, print the timeline and which calls came back",
  exits: '0 every call came back, 1 not, 2 usage or configuration error (without --yes it changes nothing)',
  options: {
    crash: { type: 'string', arg: 'NODE', required: true, help: 'the node whose FreeSWITCH is crashed (fsctl crash)' },
    yes: { type: 'boolean', help: 'really do it' },
    takeover: { type: 'boolean', help: 'run the takeover here instead of awaiting keepalived' },
    'wait-ms': { type: 'string', arg: 'N', help: 'how long to wait for the calls to come back (default 30000)' },
  },
  json: true,
  run({ cfg, values, out }) {
    if (typeof values.crash !== 'string') throw new UsageError('drill needs --crash NODE');
    const waitMs = values['wait-ms'] === undefined ? 30000 : Number(values['wait-ms']);
    if (!Number.isInteger(waitMs) || waitMs < 100)
      throw new UsageError('--wait-ms must be a whole number of milliseconds, at least 100');
    return drill(cfg, { crash: values.crash, yes: !!values.yes, takeover: !!values.takeover, waitMs }, out);
  },
};
