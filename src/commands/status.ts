/** `fs-ha status [--json]`: every node's event-socket health and core uuid, tracked calls per node, and what a recover on each live node would take right now. */
import { setTimeout as sleep } from 'node:timers/promises';
import { mediaRangeProblems, type Config } from '../config';
import { Db, describeUrl } from '../adapters/db';
import * as store from '../adapters/recovery-store';
import { errorMessage } from '../errors';
import { probeNode } from '../observe';
import { nodeSchemas, recoveryRelationsProblem } from '../core/per-node';
import { strangersOf } from '../core/decide';
import { identityProblem } from '../core/liveness';
import { boundAddressProblem } from '../core/bound-addresses';
import type { CommandSpec } from '../cli/spec';

export interface NodeStatus {
  node: string;
  switchname: string;
  esl: string;
  health: string;
  detail: string;
  coreUuid: string | null;
  /** null when they could not be counted (never a 0 that is not known) */
  trackedCalls: number | null;
  /** rows a recover there would select now, by hostname */
  recoverWouldTake: Record<string, number> | null;
  /** what its keepalived last announced, per VRRP instance (recorded by the agent and the notify hooks) */
  vrrp: Array<{ instance: string; state: string; ageMs: number }>;
  /** the last takeover or drain it was the source or an adopter of */
  lastTakeover: store.LastTakeover | null;
  /** the standby fs-ha last set there (a drain or notify that could not finish may have left it on) */
  standby: { on: boolean; by: string; ageMs: number } | null;
}

export interface StatusReport {
  database: string;
  layout: string;
  warnings: string[];
  /** facts of the configuration worth knowing, not wrong (overlapping RTP ranges: adopted calls change port) */
  notes: string[];
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
  const report: StatusReport = {
    database: cfg.database ? describeUrl(cfg.database) : '(none)',
    layout: cfg.layout,
    warnings: [],
    notes: [],
    nodes: [],
  };
  for (const p of mediaRangeProblems(cfg)) (p.level === 'warning' ? report.warnings : report.notes).push(p.text);
  const late = new Set<string>();
  /** p, or fallback once the deadline has passed (noting what was not read) */
  const within = async <T>(what: string, p: Promise<T>, fallback: T): Promise<T> => {
    p.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'late'>((r) => {
      timer = setTimeout(() => r('late'), Math.max(0, deadline - Date.now()));
    });
    try {
      const v = await Promise.race([p, timeout]);
      if (v === 'late') {
        late.add(what);
        return fallback;
      }
      return v as T;
    } catch (e) {
      report.warnings.push(`${what}: ${errorMessage(e)}`);
      return fallback;
    } finally {
      clearTimeout(timer);
    }
  };
  const probesP = Promise.all(
    names.map((n) => {
      const target = cfg.nodes[n].esl;
      return probeNode(target, cfg.check.profiles, Math.min(target?.timeoutMs ?? cfg.esl.timeoutMs, budget));
    }),
  );
  const dbP = cfg.database
    ? Db.connect(cfg.database, Math.min(cfg.timeouts.databaseMs, budget), 'fs-ha status')
    : Promise.resolve(null);
  const db = await within('the database', dbP, null);
  if (!db)
    dbP.then(
      (d) => d?.close(),
      () => undefined,
    ); // connected too late: close it when it arrives
  try {
    // small tables of fs-ha's own first: a lock on the recovery table (8.14) must not hold them up
    const ours = <T>(p: Promise<T>) =>
      p.catch((e) => {
        throw new Error(
          /does not exist/.test(errorMessage(e))
            ? "fs-ha's tables are missing or from an older fs-ha (run fs-ha db init)"
            : errorMessage(e),
        );
      });
    const vrrp = db ? await within('the VRRP states', ours(store.readVrrp(db)), []) : [];
    const last = db ? await within('the last takeovers', ours(store.lastTakeovers(db)), []) : [];
    const standby = db ? await within('the standby fs-ha set', ours(store.readStandby(db)), []) : [];
    const rows = db ? await within('the tracked calls', store.census(db, cfg.layout), null) : null;
    if (db) {
      const named = nodeSchemas(Object.values(cfg.nodes));
      const relations = await within('the relations named recovery', store.recoveryRelations(db), null);
      const problem =
        'problem' in named
          ? named.problem
          : relations
            ? recoveryRelationsProblem(cfg.layout, relations, named.schemas)
            : null;
      if (problem) report.warnings.push(`${problem}; every takeover is refused until this is fixed`);
      const replication = await within("the database's replication", store.replicationVerdict(db), null);
      if (replication?.level === 'refuse')
        report.warnings.push(`${replication.reason}; every takeover is refused until this is fixed`);
      if (replication?.level === 'warn') report.warnings.push(replication.reason);
    }
    const probes = await probesP; // each has its own deadline, within the budget
    for (const [i, n] of names.entries()) {
      const nc = cfg.nodes[n];
      const p = probes[i];
      const target = nc.esl;
      const where = target ? `${target.host}:${target.port}` : '(not configured)';
      // who answered: another FreeSWITCH at a node's address is a configuration error, never that node's health
      const impostor = identityProblem(n, nc.switchname, p, where);
      if (impostor) report.warnings.push(`configuration error: ${impostor}`);
      const st: NodeStatus = {
        node: n,
        switchname: nc.switchname,
        esl: where,
        health: impostor ? 'wrong-node' : p.kind,
        detail: impostor ?? p.detail,
        coreUuid: impostor ? null : p.coreUuid,
        trackedCalls: rows ? rows.filter((r) => r.hostname === nc.switchname).reduce((a, r) => a + r.count, 0) : null,
        recoverWouldTake: null,
        vrrp: vrrp.filter((v) => v.node === n).map(({ instance, state, ageMs }) => ({ instance, state, ageMs })),
        lastTakeover: last.find((x) => x.node === n) ?? null,
        standby: standby.find((x) => x.node === n) ?? null,
      };
      if (st.standby?.on && p.kind !== 'refused') {
        st.detail = `${st.detail}; in standby since ${age(st.standby.ageMs)} ago (set by ${st.standby.by}): new calls get 503 (sofia global standby off undoes it)`;
      }
      if (db && st.trackedCalls) {
        const bound = await within(
          `the addresses ${n}'s calls bind`,
          store.boundAddresses(db, cfg.layout, nc.switchname),
          null,
        );
        const mismatch = bound && boundAddressProblem(n, nc.addresses, bound);
        if (mismatch) report.warnings.push(mismatch);
      }
      if (db && p.coreUuid) {
        const scope = await within(
          `what a recover on ${n} would take`,
          store.scopeOf(db, cfg.layout, nc.switchname, p.coreUuid),
          null,
        );
        if (scope) {
          st.recoverWouldTake = {};
          for (const g of scope) st.recoverWouldTake[g.hostname] = (st.recoverWouldTake[g.hostname] ?? 0) + g.count;
          const strangers = strangersOf(scope, nc.switchname);
          if (strangers.size)
            report.warnings.push(`a recover on ${n} now would take calls of ${[...strangers.keys()].join(', ')}`);
        }
      }
      report.nodes.push(st);
    }
    for (const w of orphans(cfg, report.nodes, vrrp)) report.warnings.push(w);
  } finally {
    if (db) await db.close();
  }
  if (late.size) report.warnings.push(`not answered within ${budget} ms: ${[...late].join(', ')}`);
  return report;
}

/** 1234 ms -> "1s", 90000 -> "1m", for a table read at a glance. */
/**
 * Calls of a live node whose address another node holds: the node's last announced state for the instance of
 * its calls is not MASTER while another's is. They cannot continue there; its handover (BACKUP/STOP) moves them.
 */
function orphans(cfg: Config, nodes: NodeStatus[], vrrp: store.VrrpSeen[]): string[] {
  const pair = Object.keys(cfg.nodes).length === 2;
  const out: string[] = [];
  for (const n of nodes) {
    if (!n.trackedCalls || (n.health !== 'healthy' && n.health !== 'unhealthy')) continue;
    const mine = pair
      ? [...new Set(vrrp.map((v) => v.instance))]
      : Object.entries(cfg.instances)
          .filter(([, x]) => x === n.node)
          .map(([i]) => i);
    for (const inst of mine) {
      const own = vrrp.find((v) => v.node === n.node && v.instance === inst)?.state;
      const holder = vrrp.find((v) => v.node !== n.node && v.instance === inst && v.state === 'MASTER');
      if (holder && own !== 'MASTER') {
        out.push(
          `orphaned calls: ${n.node} is alive with ${n.trackedCalls} call(s) while ${holder.node} holds ${inst} (${n.node}: ${own ?? 'no state'}); ` +
            `its handover moves them, else stop its FreeSWITCH and run fs-ha takeover --from ${n.node}`,
        );
      }
    }
  }
  return out;
}

function age(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120
    ? `${s}s`
    : s < 7200
      ? `${Math.round(s / 60)}m`
      : s < 172800
        ? `${Math.round(s / 3600)}h`
        : `${Math.round(s / 86400)}d`;
}

export function formatStatus(r: StatusReport): string {
  const lines = [`database ${r.database}  layout ${r.layout}`];
  const head = ['NODE', 'HEALTH', 'VRRP (age)', 'CALLS', 'RECOVER THERE WOULD TAKE', 'LAST TAKEOVER'];
  const rows = r.nodes.map((n) => [
    n.node,
    n.standby?.on && (n.health === 'healthy' || n.health === 'unhealthy') ? `${n.health}, standby` : n.health,
    n.vrrp.map((v) => `${v.instance}:${v.state} (${age(v.ageMs)})`).join(' ') || '-',
    n.trackedCalls === null ? '-' : String(n.trackedCalls),
    n.recoverWouldTake === null
      ? '-'
      : Object.entries(n.recoverWouldTake)
          .map(([h, c]) => `${h}:${c}`)
          .join(' ') || '0',
    n.lastTakeover
      ? `${age(n.lastTakeover.ageMs)} ago ${n.lastTakeover.from}->${n.lastTakeover.to} ${n.lastTakeover.result} ${n.lastTakeover.adopted} calls ${n.lastTakeover.ms ?? '-'} ms`
      : '-',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  for (const row of [head, ...rows])
    lines.push(
      row
        .map((c, i) => c.padEnd(w[i]))
        .join('  ')
        .trimEnd(),
    );
  for (const n of r.nodes) if (n.health !== 'healthy' || n.standby?.on) lines.push(`  ${n.node}: ${n.detail}`);
  for (const wmsg of r.warnings) lines.push(`WARNING: ${wmsg}`);
  for (const note of r.notes) lines.push(`note: ${note}`);
  return lines.join('\n') + '\n';
}

export const command: CommandSpec = {
  name: 'status',
  links: [],
  args: '',
  positionals: { min: 0, max: 0 },
  summary: "at a glance: each node's health, VRRP state, calls, what a recover there would take, last takeover",
  exits: '0 (what it could not read is in the report)',
  options: {
    watch: { type: 'boolean', help: 'refresh every second in place (JSON: one line per refresh) until interrupted' },
  },
  json: true,
  async run({ cfg, values, out }) {
    if (!values.watch) {
      const r = await status(cfg);
      out.result(r, formatStatus(r));
      return 0;
    }
    const stop = new AbortController();
    const quit = () => stop.abort();
    process.once('SIGINT', quit);
    process.once('SIGTERM', quit);
    try {
      while (!stop.signal.aborted) {
        const started = Date.now();
        const r = await status(cfg);
        if (stop.signal.aborted) break;
        out.frame(r, `${formatStatus(r)}(${new Date().toISOString()}, every 1 s; Ctrl-C to stop)\n`);
        await sleep(Math.max(0, 1000 - (Date.now() - started)), undefined, { signal: stop.signal }).catch(
          () => undefined,
        );
      }
    } finally {
      process.off('SIGINT', quit);
      process.off('SIGTERM', quit);
    }
    return 0;
  },
};
