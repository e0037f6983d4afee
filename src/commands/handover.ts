/**
 * The handover on demotion (core/handover.ts decides): observe this node's calls, whether its addresses are
 * still on its interfaces, and who is MASTER of the instance now (as each node's fs-ha recorded it, and its
 * FreeSWITCH answering as itself); then, if so decided, the drain's stop-and-takeover with this node as the
 * source and the holder as the adopter. Called by notify BACKUP and STOP.
 */
import { networkInterfaces } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config';
import { Db } from '../adapters/db';
import * as store from '../adapters/recovery-store';
import { decideHandover, type Handover, type HandoverFacts } from '../core/handover';
import type { VrrpState } from '../core/vrrp';
import { errorMessage } from '../errors';
import { log } from '../log';
import { wrongNode, probeNode } from '../observe';
import { drain } from './drain';

/** The addresses on this host's interfaces (the namespace's, where fs-ha runs). */
function localAddresses(): Set<string> {
  return new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address)));
}

async function observe(cfg: Config, db: Db, state: VrrpState, instance: string, ours: boolean): Promise<HandoverFacts> {
  const me = cfg.nodes[cfg.node];
  const local = await probeNode(cfg.esl, [], cfg.esl.timeoutMs);
  let calls: number | null = 0;
  if (local.kind === 'healthy' || local.kind === 'unhealthy') {
    calls =
      local.coreUuid && !wrongNode(me, cfg.esl, local)
        ? await store.callsUnderCore(db, cfg.layout, local.coreUuid, me.switchname).catch(() => null)
        : null;
  }
  const here = localAddresses();
  const vrrp = await store.readVrrp(db);
  const others = await Promise.all(
    vrrp
      .filter((v) => v.instance === instance && v.node !== cfg.node && cfg.nodes[v.node])
      .map(async (v) => {
        const n = cfg.nodes[v.node];
        const p = v.state === 'MASTER' ? await probeNode(n.esl, [], n.esl?.timeoutMs ?? cfg.esl.timeoutMs) : null;
        const healthy = !!p && p.kind === 'healthy' && !wrongNode(n, n.esl, p);
        return { node: v.node, state: v.state, ageMs: v.ageMs, healthy };
      }),
  );
  return {
    node: cfg.node,
    instance,
    state,
    ours,
    calls,
    addresses: me.addresses,
    stillHere: me.addresses.filter((a) => here.has(a)),
    others,
  };
}

/**
 * After BACKUP or STOP of an instance: hand this node's calls to the node that holds their address now, or
 * say (one line, at the level the decision gives) why not. The holder's record may lag its transition (it is
 * written after its notify): asked again for up to waitMs while no node holds the instance.
 */
export async function handOver(
  cfg: Config,
  state: VrrpState,
  instance: string,
  ours: boolean,
  o: { db?: Db; waitMs?: number } = {},
): Promise<Handover | null> {
  if (!cfg.database || (state !== 'BACKUP' && state !== 'STOP') || !ours) return null;
  const ctx = { node: cfg.node, instance, state };
  const db =
    o.db && !o.db.lostReason
      ? o.db
      : await Db.connect(cfg.database, cfg.timeouts.databaseMs, `fs-ha handover ${cfg.node}`).catch((e) => {
          log('error', `handover: ${instance} ${state}: cannot check this node's calls: ${errorMessage(e)}`, ctx);
          return null;
        });
  if (!db) return null;
  try {
    const until = Date.now() + (o.waitMs ?? 3000);
    let d: Handover;
    let facts: HandoverFacts;
    for (;;) {
      facts = await observe(cfg, db, state, instance, ours);
      d = decideHandover(facts);
      const noHolder = d.action === 'stay' && d.level === 'error' && !facts.others.some((x) => x.state === 'MASTER');
      if (!noHolder || Date.now() >= until) break;
      await sleep(200);
    }
    if (d.action === 'stay') {
      log(d.level, `handover: ${d.reason}`, { ...ctx, calls: facts.calls ?? undefined });
      return d;
    }
    log('error', `handover: ${d.reason}`, { ...ctx, calls: facts.calls ?? undefined, to: d.to });
    const r = await drain(cfg, {
      from: cfg.node,
      to: d.to,
      yes: true,
      settleMs: 0,
      handover: true,
      command: `handover ${state} ${instance}`,
    });
    log(r.result === 'done' ? 'warn' : 'error', `handover ${r.result}: ${r.reason}`, { ...ctx, to: d.to });
    return d;
  } catch (e) {
    log(
      'error',
      `handover: ${instance} ${state} failed: ${errorMessage(e)}; this node's calls may be stranded: fs-ha status, then fs-ha takeover --from ${cfg.node} on the MASTER once this FreeSWITCH is stopped`,
      ctx,
    );
    return null;
  } finally {
    if (db !== o.db) await db.close();
  }
}

/**
 * The new MASTER found `from` alive and serving: if `from` still tracks calls on an address this node now holds,
 * they are orphaned there (their media and signalling reach this node) until `from` hands them over. Never
 * silent: one ERROR line with the count. Returns the count (0: nothing orphaned).
 */
export async function reportOrphans(cfg: Config, from: string, o: { db?: Db } = {}): Promise<number> {
  const n = cfg.nodes[from];
  const here = localAddresses();
  const held = n.addresses.filter((a) => here.has(a));
  if (!held.length || !cfg.database) return 0;
  const db =
    o.db && !o.db.lostReason
      ? o.db
      : await Db.connect(cfg.database, cfg.timeouts.databaseMs, `fs-ha orphans ${cfg.node}`).catch(() => null);
  if (!db) return 0;
  try {
    const rows = await store.rowsOfHost(db, cfg.layout, n.switchname, null);
    const count = rows.reduce((a, g) => a + g.count, 0);
    if (count) {
      log(
        'error',
        `orphaned calls: ${from} is alive with ${count} call(s) on ${held.join(', ')}, which ${cfg.node} now holds: ` +
          `they are handed over when ${from} leaves MASTER (its BACKUP or STOP); if it does not, stop its FreeSWITCH and run fs-ha takeover --from ${from}`,
        { node: cfg.node, from, calls: count },
      );
    }
    return count;
  } catch (e) {
    log('warn', `orphaned calls: could not count ${from}'s calls: ${errorMessage(e)}`, { node: cfg.node, from });
    return 0;
  } finally {
    if (db !== o.db) await db.close();
  }
}
