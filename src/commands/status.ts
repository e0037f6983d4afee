/** `fs-ha status [--json]`: every node's event-socket health and core uuid, tracked calls per node, and what a recover on each live node would take right now. */
import type { Config } from '../config';
import { Db, describeUrl } from '../adapters/db';
import * as store from '../adapters/recovery-store';
import { errorMessage } from '../errors';
import { probeNode } from '../observe';
import { nodeSchemas, recoveryRelationsProblem } from '../core/per-node';
import { strangersOf } from '../core/decide';
import type { CommandSpec } from '../cli/spec';

export interface NodeStatus {
  node: string;
  switchname: string;
  esl: string;
  health: string;
  detail: string;
  coreUuid: string | null;
  trackedCalls: number;
  /** rows a recover there would select now, by hostname */
  recoverWouldTake: Record<string, number> | null;
}

export interface StatusReport {
  database: string;
  layout: string;
  warnings: string[];
  nodes: NodeStatus[];
}

/**
 * Within one deadline (o.deadlineMs, default: the event-socket timeout plus timeouts.database_ms), whatever
 * does not answer: the probes and the database are asked side by side, and what could not be read in time is
 * a warning naming it, never a hang.
 */
export async function status(cfg: Config, o: { deadlineMs?: number } = {}): Promise<StatusReport> {
  const budget = o.deadlineMs ?? cfg.esl.timeoutMs + cfg.timeouts.databaseMs;
  const deadline = Date.now() + budget;
  const names = Object.keys(cfg.nodes);
  const report: StatusReport = { database: cfg.database ? describeUrl(cfg.database) : '(none)', layout: cfg.layout, warnings: [], nodes: [] };
  const late = new Set<string>();
  /** p, or fallback once the deadline has passed (noting what was not read) */
  const within = async <T>(what: string, p: Promise<T>, fallback: T): Promise<T> => {
    p.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), Math.max(0, deadline - Date.now())); });
    try {
      const v = await Promise.race([p, timeout]);
      if (v === 'late') { late.add(what); return fallback; }
      return v as T;
    } catch (e) {
      report.warnings.push(`${what}: ${errorMessage(e)}`);
      return fallback;
    } finally {
      clearTimeout(timer);
    }
  };
  const probesP = Promise.all(names.map((n) => {
    const target = cfg.nodes[n].esl;
    return probeNode(target, cfg.check.profiles, Math.min(target?.timeoutMs ?? cfg.esl.timeoutMs, budget));
  }));
  const dbP = cfg.database ? Db.connect(cfg.database, Math.min(cfg.timeouts.databaseMs, budget), 'fs-ha status') : Promise.resolve(null);
  const db = await within('the database', dbP, null);
  if (!db) dbP.then((d) => d?.close(), () => undefined); // connected too late: close it when it arrives
  try {
    const rows = db ? await within('the tracked calls', store.census(db, cfg.layout), []) : [];
    if (db) {
      const named = nodeSchemas(Object.values(cfg.nodes));
      const relations = await within('the relations named recovery', store.recoveryRelations(db), null);
      const problem = 'problem' in named ? named.problem : relations ? recoveryRelationsProblem(cfg.layout, relations, named.schemas) : null;
      if (problem) report.warnings.push(`${problem}; every takeover is refused until this is fixed`);
    }
    const probes = await probesP; // each has its own deadline, within the budget
    for (const [i, n] of names.entries()) {
      const nc = cfg.nodes[n];
      const p = probes[i];
      const target = nc.esl;
      const st: NodeStatus = {
        node: n, switchname: nc.switchname, esl: target ? `${target.host}:${target.port}` : '(not configured)',
        health: p.kind, detail: p.detail, coreUuid: p.coreUuid,
        trackedCalls: rows.filter((r) => r.hostname === nc.switchname).reduce((a, r) => a + r.count, 0),
        recoverWouldTake: null,
      };
      if (db && p.coreUuid) {
        const scope = await within(`what a recover on ${n} would take`, store.scopeOf(db, cfg.layout, nc.switchname, p.coreUuid), null);
        if (scope) {
          st.recoverWouldTake = {};
          for (const g of scope) st.recoverWouldTake[g.hostname] = (st.recoverWouldTake[g.hostname] ?? 0) + g.count;
          const strangers = strangersOf(scope, nc.switchname);
          if (strangers.size) report.warnings.push(`a recover on ${n} now would take calls of ${[...strangers.keys()].join(', ')}`);
        }
      }
      report.nodes.push(st);
    }
  } finally {
    if (db) await db.close();
  }
  if (late.size) report.warnings.push(`not answered within ${budget} ms: ${[...late].join(', ')}`);
  return report;
}

export function formatStatus(r: StatusReport): string {
  const lines = [`database ${r.database}  layout ${r.layout}`];
  const head = ['NODE', 'SWITCHNAME', 'ESL', 'HEALTH', 'CORE UUID', 'CALLS', 'RECOVER WOULD TAKE'];
  const rows = r.nodes.map((n) => [
    n.node, n.switchname, n.esl, n.health, n.coreUuid ?? '-', String(n.trackedCalls),
    n.recoverWouldTake === null ? '-' : Object.entries(n.recoverWouldTake).map(([h, c]) => `${h}:${c}`).join(' ') || '0',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  for (const row of [head, ...rows]) lines.push(row.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd());
  for (const n of r.nodes) if (n.health !== 'healthy') lines.push(`  ${n.node}: ${n.detail}`);
  for (const wmsg of r.warnings) lines.push(`WARNING: ${wmsg}`);
  return lines.join('\n') + '\n';
}

export const command: CommandSpec = {
  name: 'status', links: [], args: '', positionals: { min: 0, max: 0 },
  summary: 'nodes, health, core uuids, tracked calls, what a recover would take',
  exits: '0 (what it could not read is in the report)', options: {}, json: true,
  async run({ cfg, out }) {
    const r = await status(cfg);
    out.result(r, formatStatus(r));
    return 0;
  },
};
