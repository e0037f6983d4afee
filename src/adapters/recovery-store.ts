/**
 * Every SQL statement fs-ha runs against the recovery table and its own tables. All parameterized.
 * shared layout: FreeSWITCH's public.recovery; per-node layout: the base table fsha.recovery.
 */
import type { Layout } from '../config';
import { SQL_FILES } from '../sql.generated';
import { bondOf, partnersToHoldBack, type ScopeGroup, type Heartbeat } from '../core/plan';
import { rewriteMetadata, compilePatterns, type RewriteSpec } from '../core/rewrite';
import { ActionFailed } from '../errors';
import { Db, quoteIdent } from './db';

export function recoveryTable(layout: Layout): string {
  return layout === 'per-node' ? 'fsha.recovery' : 'public.recovery';
}

/** Schema holding a node's view in the per-node layout. */
export function nodeSchema(switchname: string): string {
  return 'fsha_node_' + switchname.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

export async function applySchema(db: Db, layout: Layout): Promise<string[]> {
  const applied: string[] = [];
  for (const [name, sql] of SQL_FILES) {
    if (name.includes('per_node') && layout !== 'per-node') continue;
    await db.query(sql, [], `applying ${name}`);
    applied.push(name);
  }
  return applied;
}

export async function createNodeView(db: Db, switchname: string): Promise<string> {
  const schema = nodeSchema(switchname);
  await db.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`, [], `creating schema ${schema}`);
  // literal, not a parameter: a view definition cannot take parameters; the name is validated by the config
  const lit = "'" + switchname.replace(/'/g, "''") + "'";
  await db.query(
    `CREATE OR REPLACE VIEW ${quoteIdent(schema)}.recovery AS
       SELECT runtime_uuid, technology, profile_name, hostname, uuid, metadata
       FROM fsha.recovery WHERE hostname = ${lit}
       WITH CASCADED CHECK OPTION`, [], `creating view ${schema}.recovery`);
  return schema;
}

export async function tableExists(db: Db, qualified: string): Promise<boolean> {
  const rows = await db.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [qualified], `looking for ${qualified}`);
  return rows[0].ok;
}

export async function publicRecoveryIsTable(db: Db): Promise<boolean> {
  const rows = await db.query<{ ok: boolean }>(
    "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = 'recovery') AS ok",
    [], 'looking for public.recovery');
  return rows[0].ok;
}

function groups(rows: Array<Record<string, unknown>>): ScopeGroup[] {
  return rows.map((r) => ({
    hostname: String(r.hostname ?? ''),
    runtimeUuid: String(r.runtime_uuid ?? ''),
    technology: String(r.technology ?? ''),
    profile: String(r.profile_name ?? ''),
    count: Number(r.n),
  }));
}

const GROUP_COLS = 'hostname, runtime_uuid, technology, profile_name, count(*)::int AS n';

/** Foreign rows (runtime_uuid != core) that the node's FreeSWITCH can see: all of them (shared) or its own hostname's (per-node). */
export async function scopeOf(db: Db, layout: Layout, switchname: string, coreUuid: string): Promise<ScopeGroup[]> {
  const t = recoveryTable(layout);
  const rows = layout === 'per-node'
    ? await db.query(`SELECT ${GROUP_COLS} FROM ${t} WHERE hostname = $1 AND runtime_uuid IS DISTINCT FROM $2 GROUP BY 1,2,3,4`, [switchname, coreUuid], 'reading the recover scope')
    : await db.query(`SELECT ${GROUP_COLS} FROM ${t} WHERE runtime_uuid IS DISTINCT FROM $1 GROUP BY 1,2,3,4`, [coreUuid], 'reading the recover scope');
  return groups(rows);
}

export async function rowsOfHost(db: Db, layout: Layout, switchname: string, exceptCore: string | null): Promise<ScopeGroup[]> {
  const rows = await db.query(
    `SELECT ${GROUP_COLS} FROM ${recoveryTable(layout)} WHERE hostname = $1 AND runtime_uuid IS DISTINCT FROM $2 GROUP BY 1,2,3,4`,
    [switchname, exceptCore], 'counting the failed node\'s rows');
  return groups(rows);
}

export async function census(db: Db, layout: Layout): Promise<ScopeGroup[]> {
  return groups(await db.query(`SELECT ${GROUP_COLS} FROM ${recoveryTable(layout)} GROUP BY 1,2,3,4 ORDER BY 1,2`, [], 'counting recovery rows'));
}

/** Session advisory lock per failed node: two nodes promoting at once cannot both take its calls. */
export async function lockNode(db: Db, switchname: string, timeoutMs: number): Promise<void> {
  await db.query(`SET lock_timeout = ${Math.max(1, Math.floor(timeoutMs))}`, [], 'setting lock_timeout');
  await db.query("SELECT pg_advisory_lock(1179862081, hashtext('fs-ha takeover ' || $1))", [switchname], `waiting for the takeover lock of ${switchname}`);
  await db.query(`SET lock_timeout = ${db.timeoutMs}`, [], 'setting lock_timeout');
}

export async function unlockNode(db: Db, switchname: string): Promise<void> {
  await db.query("SELECT pg_advisory_unlock(1179862081, hashtext('fs-ha takeover ' || $1))", [switchname], 'releasing the takeover lock').catch(() => undefined);
}

export interface MovePreview {
  rows: Array<{ uuid: string; profile: string; replaced: number }>;
  skipped: Array<{ uuid: string; reason: string }>;
}

export interface MoveResult extends MovePreview {
  ms: { select: number; rewrite: number; write: number };
}

/** Rows per round trip: fetched through a cursor, written as one batch statement. */
const CHUNK = 500;

/**
 * The rewrite transaction's settings, in one round trip: joins on ctid must be TID scans (or every
 * batch scans the whole table), and rewritten metadata is compressed with lz4 when the server has it
 * (~3x cheaper than pglz).
 */
const REWRITE_SETTINGS = `SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
  set_config('default_toast_compression',
    CASE WHEN 'lz4' = ANY(enumvals) THEN 'lz4' ELSE current_setting('default_toast_compression') END, true)
  FROM pg_settings WHERE name = 'default_toast_compression'`;

const bondReason = (bond: string | null) => `its bridged leg ${bond} cannot be moved, and the two legs must move together`;

/** A promise that is awaited later: mark it handled now so a failure meanwhile is not an unhandled rejection. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/** Keep a copy of each original row, then rewrite it: one statement per batch, rows joined by ctid (TID scans). */
function writeBatch(db: Db, table: string, batch: Array<{ ctid: string; metadata: string }>, p: { takeoverId: string; fromNode: string; toNode: string; toSwitchname: string }) {
  const values = batch.map((_, i) => `($${2 * i + 5}::tid, $${2 * i + 6}::text)`).join(', ');
  const params: unknown[] = [p.takeoverId, p.fromNode, p.toNode, p.toSwitchname];
  for (const b of batch) params.push(b.ctid, b.metadata);
  return db.query<{ n: number }>(
    `WITH v(ctid, metadata) AS (VALUES ${values}),
       kept AS (INSERT INTO fsha.takeover_rows (takeover_id, from_node, to_node, runtime_uuid, technology, profile_name, hostname, uuid, metadata)
                SELECT $1, $2, $3, r.runtime_uuid, r.technology, r.profile_name, r.hostname, r.uuid, r.metadata
                  FROM ${table} r JOIN v ON r.ctid = v.ctid RETURNING 1),
       done AS (UPDATE ${table} AS r SET hostname = $4, metadata = v.metadata FROM v WHERE r.ctid = v.ctid RETURNING 1)
     SELECT (SELECT count(*) FROM kept)::int + (SELECT count(*) FROM done)::int AS n`,
    params, 'rewriting the rows');
}

/**
 * Step 5, in ONE transaction: every row of the failed node gets hostname = target and its metadata
 * rewritten; the originals are kept in fsha.takeover_rows. Rows that cannot be rewritten safely stay
 * untouched and are reported. With dryRun the transaction is rolled back after computing.
 *
 * Pipelined: rows come through a FOR UPDATE cursor CHUNK at a time, and while this process rewrites
 * one chunk the server already sends the next and writes the previous one.
 */
export async function moveRows(db: Db, layout: Layout, spec: RewriteSpec, opts: {
  takeoverId: string; fromNode: string; toNode: string; targetCore: string | null; dryRun: boolean; chunk?: number;
}): Promise<MoveResult> {
  const t = recoveryTable(layout);
  const chunk = opts.chunk ?? CHUNK;
  const patterns = compilePatterns(spec);
  const result: MoveResult = { rows: [], skipped: [], ms: { select: 0, rewrite: 0, write: 0 } };
  const batchParams = { takeoverId: opts.takeoverId, fromNode: opts.fromNode, toNode: opts.toNode, toSwitchname: spec.toSwitchname };
  const work = async () => {
    await db.query(REWRITE_SETTINGS, [], 'planning the rewrite');
    await db.query(
      `DECLARE fsha_rows NO SCROLL CURSOR FOR SELECT ctid::text AS ctid, uuid, profile_name, metadata FROM ${t}
        WHERE hostname = $1 AND runtime_uuid IS DISTINCT FROM $2 FOR UPDATE`,
      [spec.fromSwitchname, opts.targetCore], 'locking the failed node\'s rows');
    type Row = { ctid: string; uuid: string; profile_name: string; metadata: string | null };
    const fetchChunk = (): Promise<Row[]> => handled(db.query<Row>(
      `FETCH ${chunk} FROM fsha_rows`, [], 'reading the failed node\'s rows'));
    const skippedUuids = new Set<string>();
    const moved: Array<{ uuid: string; bond: string | null }> = [];
    let written = 0;
    let expected = 0;
    let pendingWrite: Promise<unknown> | null = null;
    let next: Promise<Row[]> | null = fetchChunk();
    while (next) {
      let t0 = Date.now();
      const rows: Row[] = await next;
      result.ms.select += Date.now() - t0;
      next = rows.length === chunk ? fetchChunk() : null;
      t0 = Date.now();
      const batch: Array<{ ctid: string; metadata: string }> = [];
      for (const r of rows) {
        const bond = r.metadata === null ? null : bondOf(r.metadata);
        const rw = r.metadata === null ? { ok: false as const, reason: 'metadata is NULL' } : rewriteMetadata(r.metadata, spec, patterns);
        if (!rw.ok) { result.skipped.push({ uuid: r.uuid, reason: rw.reason }); skippedUuids.add(r.uuid); continue; }
        if (bond && skippedUuids.has(bond)) {
          result.skipped.push({ uuid: r.uuid, reason: bondReason(bond) });
          skippedUuids.add(r.uuid);
          continue;
        }
        batch.push({ ctid: r.ctid, metadata: rw.metadata });
        moved.push({ uuid: r.uuid, bond });
        result.rows.push({ uuid: r.uuid, profile: r.profile_name, replaced: rw.replaced });
      }
      result.ms.rewrite += Date.now() - t0;
      if (opts.dryRun || !batch.length) continue;
      t0 = Date.now();
      if (pendingWrite) await pendingWrite; // at most one batch in flight: every query keeps its own deadline
      result.ms.write += Date.now() - t0;
      expected += 2 * batch.length;
      pendingWrite = handled(writeBatch(db, t, batch, batchParams).then((r) => { written += r[0].n; }));
    }
    let t0 = Date.now();
    if (pendingWrite) await pendingWrite;
    await db.query('CLOSE fsha_rows', [], 'closing the cursor');
    if (written !== expected) throw new ActionFailed(`database: rewrote ${written / 2} of ${expected / 2} rows; rolled back`);

    // a leg moved before its partner turned out to be unmovable: put it back as it was
    const late = partnersToHoldBack(moved, skippedUuids);
    if (late.size) {
      for (const m of moved) if (late.has(m.uuid)) result.skipped.push({ uuid: m.uuid, reason: bondReason(m.bond) });
      result.rows = result.rows.filter((r) => !late.has(r.uuid));
      if (!opts.dryRun) {
        await db.query(
          `UPDATE ${t} AS r SET hostname = k.hostname, metadata = k.metadata FROM fsha.takeover_rows k
            WHERE k.takeover_id = $1 AND k.note = 'moved' AND k.uuid = ANY($2) AND r.uuid = k.uuid AND r.hostname = $3`,
          [opts.takeoverId, [...late], spec.toSwitchname], 'putting back a bridged leg');
        await db.query("DELETE FROM fsha.takeover_rows WHERE takeover_id = $1 AND note = 'moved' AND uuid = ANY($2)",
          [opts.takeoverId, [...late]], 'putting back a bridged leg');
      }
    }
    if (!opts.dryRun && result.skipped.length) {
      // in the shared layout FreeSWITCH's recover deletes these too (every foreign row): keep them for the operator
      await db.query(
        `INSERT INTO fsha.takeover_rows (takeover_id, from_node, to_node, runtime_uuid, technology, profile_name, hostname, uuid, metadata, note)
         SELECT $1, $2, $3, runtime_uuid, technology, profile_name, hostname, uuid, metadata, 'skipped: ' || v.reason
           FROM ${t} JOIN unnest($4::text[], $5::text[]) AS v(uuid, reason) USING (uuid)
          WHERE hostname = $6`,
        [opts.takeoverId, opts.fromNode, opts.toNode, result.skipped.map((x) => x.uuid), result.skipped.map((x) => x.reason), spec.fromSwitchname],
        'keeping a copy of the rows left untouched');
    }
    result.ms.write += Date.now() - t0;
    if (opts.dryRun) throw new DryRunRollback();
  };
  try {
    await db.transaction(work, 'takeover rewrite');
  } catch (e) {
    if (!(e instanceof DryRunRollback)) throw e;
  }
  return result;
}

class DryRunRollback extends Error {}

export async function pendingUuids(db: Db, layout: Layout, switchname: string, coreUuid: string): Promise<string[]> {
  const rows = await db.query<{ uuid: string }>(
    `SELECT uuid FROM ${recoveryTable(layout)} WHERE hostname = $1 AND runtime_uuid IS DISTINCT FROM $2`, [switchname, coreUuid], 'listing calls to recover');
  return rows.map((r) => r.uuid);
}

/** Poll until every uuid is tracked under coreUuid again, or the deadline; returns the ones still missing. */
export async function awaitRetracked(db: Db, layout: Layout, uuids: string[], coreUuid: string, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let missing = uuids;
  for (;;) {
    const rows = await db.query<{ uuid: string }>(
      `SELECT DISTINCT uuid FROM ${recoveryTable(layout)} WHERE uuid = ANY($1) AND runtime_uuid = $2`, [missing, coreUuid], 'checking re-tracked calls');
    const found = new Set(rows.map((r) => r.uuid));
    missing = missing.filter((u) => !found.has(u));
    if (!missing.length || Date.now() >= deadline) return missing;
    await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
  }
}

export async function dropKeptCopies(db: Db, uuids: string[]): Promise<void> {
  if (!uuids.length) return;
  await db.query("DELETE FROM fsha.takeover_rows WHERE uuid = ANY($1) AND note = 'moved'", [uuids], 'dropping copies of re-tracked rows');
}

export async function readHeartbeat(db: Db, node: string): Promise<Heartbeat | null> {
  if (!(await tableExists(db, 'fsha.heartbeat'))) return null;
  const rows = await db.query<{ age_ms: number; healthy: boolean; core_uuid: string | null }>(
    'SELECT (extract(epoch FROM clock_timestamp() - at) * 1000)::int AS age_ms, healthy, core_uuid FROM fsha.heartbeat WHERE node = $1',
    [node], 'reading the heartbeat');
  return rows.length ? { ageMs: rows[0].age_ms, healthy: rows[0].healthy, coreUuid: rows[0].core_uuid } : null;
}

export async function writeHeartbeat(db: Db, node: string, switchname: string, coreUuid: string | null, healthy: boolean, detail: string): Promise<void> {
  await db.query(
    `INSERT INTO fsha.heartbeat (node, switchname, core_uuid, healthy, detail, at) VALUES ($1,$2,$3,$4,$5, clock_timestamp())
     ON CONFLICT (node) DO UPDATE SET switchname = EXCLUDED.switchname, core_uuid = EXCLUDED.core_uuid,
       healthy = EXCLUDED.healthy, detail = EXCLUDED.detail, at = EXCLUDED.at`,
    [node, switchname, coreUuid, healthy, detail], 'writing the heartbeat');
}

export interface AuditRecord {
  startedAt: Date; actor: string; command: string; from: string; to: string; result: string; reason: string;
  adopted: number; recovered: number | null; missing: number | null; skipped: number; timings: Record<string, number>;
}

export async function writeAudit(db: Db, a: AuditRecord): Promise<void> {
  await db.query(
    `INSERT INTO fsha.audit (started_at, actor, command, from_node, to_node, result, reason, adopted, recovered, missing, skipped, timings)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`,
    [a.startedAt, a.actor, a.command, a.from, a.to, a.result, a.reason, a.adopted, a.recovered, a.missing, a.skipped, JSON.stringify(a.timings)],
    'writing the audit row');
}
