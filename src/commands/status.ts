/** `fs-ha status [--json]`: every node's event-socket health and core uuid, tracked calls per node, and what a recover on each live node would take right now. */
import type { Config } from '../config';
import { Db, describeUrl } from '../adapters/db';
import * as store from '../adapters/recovery-store';
import { errorMessage } from '../errors';
import { probeNode } from '../observe';
import { nodeSchemas, recoveryRelationsProblem } from '../core/per-node';

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

export async function status(cfg: Config): Promise<StatusReport> {
  const names = Object.keys(cfg.nodes);
  const probes = await Promise.all(names.map((n) => {
    const target = n === cfg.node ? cfg.esl : cfg.nodes[n].esl;
    return probeNode(target, cfg.check.profiles, target?.timeoutMs ?? cfg.esl.timeoutMs);
  }));
  const report: StatusReport = { database: cfg.database ? describeUrl(cfg.database) : '(none)', layout: cfg.layout, warnings: [], nodes: [] };
  let db: Db | null = null;
  try {
    if (cfg.database) db = await Db.connect(cfg.database, cfg.timeouts.databaseMs, 'fs-ha status');
  } catch (e) {
    report.warnings.push(errorMessage(e));
  }
  try {
    const rows = db ? await store.census(db, cfg.layout).catch((e) => { report.warnings.push(errorMessage(e)); return []; }) : [];
    if (db) {
      const named = nodeSchemas(Object.values(cfg.nodes));
      const problem = 'problem' in named ? named.problem
        : recoveryRelationsProblem(cfg.layout, await store.recoveryRelations(db).catch(() => []), named.schemas);
      if (problem) report.warnings.push(`${problem}; every takeover is refused until this is fixed`);
    }
    for (const [i, n] of names.entries()) {
      const nc = cfg.nodes[n];
      const p = probes[i];
      const target = n === cfg.node ? cfg.esl : nc.esl;
      const st: NodeStatus = {
        node: n, switchname: nc.switchname, esl: target ? `${target.host}:${target.port}` : '(not configured)',
        health: p.kind, detail: p.detail, coreUuid: p.coreUuid,
        trackedCalls: rows.filter((r) => r.hostname === nc.switchname).reduce((a, r) => a + r.count, 0),
        recoverWouldTake: null,
      };
      if (db && p.coreUuid) {
        const scope = await store.scopeOf(db, cfg.layout, nc.switchname, p.coreUuid).catch(() => []);
        st.recoverWouldTake = {};
        for (const g of scope) st.recoverWouldTake[g.hostname] = (st.recoverWouldTake[g.hostname] ?? 0) + g.count;
        const strangers = Object.keys(st.recoverWouldTake).filter((h) => h !== nc.switchname);
        if (strangers.length) report.warnings.push(`a recover on ${n} now would take calls of ${strangers.join(', ')}`);
      }
      report.nodes.push(st);
    }
  } finally {
    await db?.close();
  }
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
