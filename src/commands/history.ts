/** `fs-ha history [--node N] [--last K] [--json]`: past takeovers and drains from fsha.audit, each with its timeline and counts. */
import type { Config } from '../config';
import { Db } from '../adapters/db';
import * as store from '../adapters/recovery-store';
import { ConfigError, UsageError } from '../errors';
import type { CommandSpec } from '../cli/spec';

/** The steps of one takeover (or drain) in the order they happened, from its timings (ms after its start). */
const STEPS: Array<[string, string]> = [
  ['drain_standby_ms', 'standby'],
  ['drain_settled_ms', 'settled'],
  ['drain_stopped_ms', 'stopped'],
  ['drain_gone_ms', 'gone'],
  ['db_connect_ms', 'db'],
  ['liveness_ms', 'probe'],
  ['fence_ms', 'fence'],
  ['locked_ms', 'lock'],
  ['planned_ms', 'plan'],
  ['rewritten_ms', 'rewrite'],
  ['recover_start_ms', 'recover'],
  ['recover_sent_ms', 'sent'],
  ['recover_done_ms', 'recovered'],
  ['verified_ms', 'verify'],
  ['total_ms', 'end'],
];

export function timeline(timings: Record<string, number>): Array<{ step: string; ms: number }> {
  return STEPS.filter(([k]) => typeof timings[k] === 'number').map(([k, step]) => ({ step, ms: timings[k] }));
}

export function formatHistory(rows: store.AuditRow[]): string {
  if (!rows.length) return 'no takeover recorded\n';
  const lines: string[] = [];
  for (const r of rows) {
    const when = new Date(r.started_at)
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, 'Z');
    lines.push(
      `#${r.id} ${when} ${r.command}: ${r.from_node} -> ${r.to_node} ${r.result}, ${r.adopted} adopted, ` +
        `${r.recovered ?? '-'} recovered, ${r.missing ?? '-'} missing, ${r.skipped} held, ${r.timings.total_ms ?? '-'} ms` +
        `${typeof r.timings.critical_path_ms === 'number' ? `, critical path ${r.timings.critical_path_ms} ms (heard -> recover sent)` : ''} (${r.actor})`,
    );
    const tl = timeline(r.timings);
    if (tl.length) lines.push(`    timeline: ${tl.map((s) => `${s.step} +${s.ms}`).join(', ')}`);
    if (r.adopters.length > 1)
      lines.push(
        `    adopters: ${r.adopters.map((a) => `${a.node} ${a.result} ${a.handed}/${a.recovered ?? '-'}`).join(', ')}`,
      );
    lines.push(`    ${r.reason}`);
  }
  return lines.join('\n') + '\n';
}

export const command: CommandSpec = {
  name: 'history',
  links: [],
  args: '',
  positionals: { min: 0, max: 0 },
  summary: 'past takeovers and drains (fsha.audit): who, from, to, result, counts, timeline',
  exits: '0, 1 database error, 2 usage or configuration error',
  options: {
    node: { type: 'string', arg: 'NODE', help: 'only those NODE was the source or an adopter of' },
    last: { type: 'string', arg: 'K', help: 'the K most recent (default 10)' },
  },
  json: true,
  async run({ cfg, values, out }) {
    if (!cfg.database) throw new ConfigError('config: missing key database (history is in fsha.audit)');
    const last = values.last === undefined ? 10 : Number(values.last);
    if (!Number.isInteger(last) || last < 1 || last > 10000)
      throw new UsageError('--last must be a whole number from 1 to 10000');
    const node = values.node as string | undefined;
    if (node !== undefined && !cfg.nodes[node])
      throw new UsageError(`unknown node "${node}" (configured: ${Object.keys(cfg.nodes).join(', ')})`);
    const rows = await readHistory(cfg, { node, last });
    out.result(
      rows.map((r) => ({ ...r, timeline: timeline(r.timings) })),
      formatHistory(rows),
    );
    return 0;
  },
};

export async function readHistory(cfg: Config, o: { node?: string; last: number }): Promise<store.AuditRow[]> {
  const db = await Db.connect(cfg.database!, cfg.timeouts.databaseMs, 'fs-ha history');
  try {
    return await store.readAudit(db, o);
  } finally {
    await db.close();
  }
}
