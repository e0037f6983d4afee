/**
 * The takeover's and status's SQL on the recovery table and fs-ha's own tables (the rewrite transaction
 * is move-rows.ts; check writes the heartbeat through here too). All parameterized.
 * shared layout: FreeSWITCH's public.recovery; per-node layout: the base table fsha.recovery_base.
 */
import { judgeReplication, type ReplicationFacts, type ReplicationVerdict } from '../core/replication';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Layout } from '../config';
import { SQL_FILES } from '../sql.generated';
import type { ScopeGroup } from '../core/decide';
import type { Heartbeat } from '../core/liveness';
import { nodeSchema, viewComment, type RecoveryRelation } from '../core/per-node';
import { type Db, quoteIdent } from './db';

export { nodeSchema };

export function recoveryTable(layout: Layout): string {
  return layout === 'per-node' ? 'fsha.recovery_base' : 'public.recovery';
}

const applied = new WeakMap<Db, Set<Layout>>();

/** This build's schema files for a layout, as one key (what fsha.schema_applied records once applied). */
function schemaKey(layout: Layout): string {
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const h = createHash('sha256');
  for (const [name, sql] of SQL_FILES)
    if (!name.includes('per_node') || layout === 'per-node') h.update(name).update(sql);
  return `${layout}:${h.digest('hex').slice(0, 16)}`;
}

/**
 * applySchema once per connection and layout, and only when the database does not have this version yet (one
 * lookup that takes no lock a takeover or FreeSWITCH holds): its DDL would wait behind any open transaction on
 * the recovery table. The agent's warm connection has it done before any takeover; `db init` always applies.
 */
export async function applySchemaOnce(db: Db, layout: Layout): Promise<void> {
  const done = applied.get(db) ?? new Set<Layout>();
  if (done.has(layout)) return;
  const key = schemaKey(layout);
  const [have] = await db
    .query<{ ok: boolean }>(
      `SELECT to_regclass('fsha.schema_applied') IS NOT NULL AND EXISTS (SELECT 1 FROM fsha.schema_applied WHERE key = $1) AS ok`,
      [key],
      "checking fs-ha's tables",
    )
    .catch(() => [{ ok: false }]);
  if (!have.ok) await applySchema(db, layout);
  done.add(layout);
  applied.set(db, done);
}

export async function applySchema(db: Db, layout: Layout): Promise<string[]> {
  const applied: string[] = [];
  for (const [name, sql] of SQL_FILES) {
    if (name.includes('per_node') && layout !== 'per-node') continue;
    await db.query(sql, [], `applying ${name}`);
    applied.push(name);
  }
  await db.query(
    'INSERT INTO fsha.schema_applied (key) VALUES ($1) ON CONFLICT (key) DO NOTHING',
    [schemaKey(layout)],
    'recording the schema version',
  );
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
       FROM fsha.recovery_base WHERE hostname = ${lit}
       WITH CASCADED CHECK OPTION`,
    [],
    `creating view ${schema}.recovery`,
  );
  await db.query(
    `COMMENT ON VIEW ${quoteIdent(schema)}.recovery IS '${viewComment(switchname).replace(/'/g, "''")}'`,
    [],
    `marking view ${schema}.recovery`,
  );
  return schema;
}

/** Every relation named recovery, in every schema (core/per-node.ts decides which may exist). */
export async function recoveryRelations(db: Db): Promise<RecoveryRelation[]> {
  return db.query<RecoveryRelation>(
    `SELECT n.nspname AS schema, c.relkind::text AS kind, obj_description(c.oid, 'pg_class') AS comment
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = 'recovery' AND c.relkind IN ('r', 'v', 'p', 'm', 'f') ORDER BY 1`,
    [],
    'looking for relations named recovery',
  );
}

/** recoveryRelations, and whether the recovery table exists, in one round trip (the takeover's step 2). */
export async function recoveryRelationsAnd(
  db: Db,
  table: string,
): Promise<{ relations: RecoveryRelation[]; tableExists: boolean }> {
  const [r] = await db.query<{ relations: RecoveryRelation[]; ok: boolean }>(
    `SELECT coalesce((SELECT json_agg(x ORDER BY x.schema) FROM (
              SELECT n.nspname AS schema, c.relkind::text AS kind, obj_description(c.oid, 'pg_class') AS comment
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relname = 'recovery' AND c.relkind IN ('r', 'v', 'p', 'm', 'f')) x), '[]') AS relations,
            to_regclass($1) IS NOT NULL AS ok`,
    [table],
    'looking for relations named recovery',
  );
  return { relations: r.relations, tableExists: r.ok };
}

export async function tableExists(db: Db, qualified: string): Promise<boolean> {
  const rows = await db.query<{ ok: boolean }>(
    'SELECT to_regclass($1) IS NOT NULL AS ok',
    [qualified],
    `looking for ${qualified}`,
  );
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
  const table = recoveryTable(layout);
  const rows =
    layout === 'per-node'
      ? await db.query(
          `SELECT ${GROUP_COLS} FROM ${table} WHERE hostname = $1 AND runtime_uuid IS DISTINCT FROM $2 GROUP BY 1,2,3,4`,
          [switchname, coreUuid],
          'reading the recover scope',
        )
      : await db.query(
          `SELECT ${GROUP_COLS} FROM ${table} WHERE runtime_uuid IS DISTINCT FROM $1 GROUP BY 1,2,3,4`,
          [coreUuid],
          'reading the recover scope',
        );
  return groups(rows);
}

export async function rowsOfHost(
  db: Db,
  layout: Layout,
  switchname: string,
  exceptCore: string | null,
): Promise<ScopeGroup[]> {
  const rows = await db.query(
    `SELECT ${GROUP_COLS} FROM ${recoveryTable(layout)} WHERE hostname = $1 AND runtime_uuid IS DISTINCT FROM $2 GROUP BY 1,2,3,4`,
    [switchname, exceptCore],
    "counting the failed node's rows",
  );
  return groups(rows);
}

/** The RTP ports (audio, video, text) the rows under each switchname bind: its own calls and those handed to it. */
export async function mediaPortsUnder(db: Db, layout: Layout, switchnames: string[]): Promise<Map<string, number[]>> {
  const rows = await db.query<{ hostname: string; ports: Array<string | null> }>(
    `SELECT hostname, ARRAY[substring(metadata from '<local_media_port>([0-9]{1,5})<'), substring(metadata from '<local_video_port>([0-9]{1,5})<'),
            substring(metadata from '<local_text_port>([0-9]{1,5})<')] AS ports
       FROM ${recoveryTable(layout)} WHERE hostname = ANY($1)`,
    [switchnames],
    'reading the RTP ports the adopters hold',
  );
  const out = new Map<string, number[]>(switchnames.map((s) => [s, []]));
  for (const r of rows) for (const p of r.ports) if (p) out.get(r.hostname)?.push(Number(p));
  return out;
}

export async function census(db: Db, layout: Layout): Promise<ScopeGroup[]> {
  return groups(
    await db.query(
      `SELECT ${GROUP_COLS} FROM ${recoveryTable(layout)} GROUP BY 1,2,3,4 ORDER BY 1,2`,
      [],
      'counting recovery rows',
    ),
  );
}

/**
 * Session advisory locks. Per failed node (class 1179862081): two nodes promoting at once cannot both take its
 * calls. Per adopter (class 1179862082), held from before its plan through its recover and verify: FreeSWITCH's
 * recover deletes every foreign row it can see when it ends, recovered or not, so no other takeover may move
 * rows into an adopter's view while one recovers there. Order, so that no two takeovers wait on each other:
 * the failed node's lock first, then the adopters' in the order of their switchnames; an adopter lock is
 * never held while a node lock is awaited. The wait is bounded by lockMs alone: lock_timeout,
 * statement_timeout and the client's deadline are raised to it for this one statement.
 */
const NODE_LOCK = 1179862081;
const ADOPTER_LOCK = 1179862082;

async function advisoryLock(db: Db, cls: number, key: string, what: string, timeoutMs: number): Promise<void> {
  // free (the usual case): taken in one round trip; else waited for, bounded as said above
  const [free] = await db.query<{ ok: boolean }>(
    'SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok',
    [cls, key],
    what,
  );
  if (free.ok) return;
  const ms = String(Math.max(1, Math.floor(timeoutMs)));
  const set = (v: string) =>
    db.query(
      "SELECT set_config('lock_timeout', $1, false), set_config('statement_timeout', $1, false)",
      [v],
      'setting the lock wait',
    );
  await set(ms);
  try {
    await db.query('SELECT pg_advisory_lock($1, hashtext($2))', [cls, key], what, { timeoutMs: timeoutMs + 500 });
  } finally {
    await set(String(db.timeoutMs));
  }
}

/**
 * Does another session hold this node's takeover lock now? A takeover holds it from before its rewrite until
 * after its audit row is written, so while it is held the row of whoever moved the node's calls is coming.
 */
export async function nodeLockHeld(db: Db, switchname: string): Promise<boolean> {
  const [r] = await db.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND pid <> pg_backend_pid()
       AND classid = $1::bigint::text::oid AND objid = (hashtext($2)::bigint & 4294967295)::text::oid) AS held`,
    [NODE_LOCK, `fs-ha takeover ${switchname}`],
    'looking for a takeover under way',
  );
  return r.held;
}

export async function lockNode(db: Db, switchname: string, timeoutMs: number): Promise<void> {
  await advisoryLock(
    db,
    NODE_LOCK,
    `fs-ha takeover ${switchname}`,
    `waiting for the takeover lock of ${switchname}`,
    timeoutMs,
  );
}

export async function unlockNode(db: Db, switchname: string): Promise<void> {
  await db
    .query(
      'SELECT pg_advisory_unlock($1, hashtext($2))',
      [NODE_LOCK, `fs-ha takeover ${switchname}`],
      'releasing the takeover lock',
    )
    .catch(() => undefined);
}

/** Every adopter's lock, in switchname order, within timeoutMs in all; returns the ones taken (to release). */
export async function lockAdopters(db: Db, switchnames: string[], timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  const all = [...new Set(switchnames)].sort();
  // every one free (the usual case): all taken in one round trip (a try never waits, so never deadlocks);
  // else the ones taken are given back and each is waited for in order
  const tried = await db.query<{ sw: string; ok: boolean }>(
    "SELECT sw, pg_try_advisory_lock($1, hashtext('fs-ha adopter ' || sw)) AS ok FROM unnest($2::text[]) AS sw",
    [ADOPTER_LOCK, all],
    "taking the adopters' recover locks",
  );
  if (tried.every((t) => t.ok)) return all;
  await unlockAdopters(
    db,
    tried.filter((t) => t.ok).map((t) => t.sw),
  );
  const taken: string[] = [];
  try {
    for (const sw of all) {
      await advisoryLock(
        db,
        ADOPTER_LOCK,
        `fs-ha adopter ${sw}`,
        `waiting for ${sw}'s recover lock (another takeover recovers there)`,
        Math.max(1, deadline - Date.now()),
      );
      taken.push(sw);
    }
  } catch (e) {
    await unlockAdopters(db, taken);
    throw e;
  }
  return taken;
}

export async function unlockAdopters(db: Db, switchnames: string[]): Promise<void> {
  for (const sw of switchnames) {
    await db
      .query(
        'SELECT pg_advisory_unlock($1, hashtext($2))',
        [ADOPTER_LOCK, `fs-ha adopter ${sw}`],
        'releasing an adopter lock',
      )
      .catch(() => undefined);
  }
}

export async function pendingUuids(db: Db, layout: Layout, switchname: string, coreUuid: string): Promise<string[]> {
  const rows = await db.query<{ uuid: string }>(
    `SELECT uuid FROM ${recoveryTable(layout)} WHERE hostname = $1 AND runtime_uuid IS DISTINCT FROM $2`,
    [switchname, coreUuid],
    'listing calls to recover',
  );
  return rows.map((r) => r.uuid);
}

/** Poll until every uuid is tracked under coreUuid again, or the deadline; returns the ones still missing. */
export async function awaitRetracked(
  db: Db,
  layout: Layout,
  uuids: string[],
  coreUuid: string,
  timeoutMs: number,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let missing = uuids;
  for (;;) {
    const rows = await db.query<{ uuid: string }>(
      `SELECT DISTINCT uuid FROM ${recoveryTable(layout)} WHERE uuid = ANY($1) AND runtime_uuid = $2`,
      [missing, coreUuid],
      'checking re-tracked calls',
    );
    const found = new Set(rows.map((r) => r.uuid));
    missing = missing.filter((u) => !found.has(u));
    if (!missing.length || Date.now() >= deadline) return missing;
    await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
  }
}

export async function dropKeptCopies(db: Db, uuids: string[]): Promise<void> {
  if (!uuids.length) return;
  await db.query(
    "DELETE FROM fsha.takeover_rows WHERE uuid = ANY($1) AND note = 'moved'",
    [uuids],
    'dropping copies of re-tracked rows',
  );
}

/**
 * What an earlier takeover of this node left, found by a rerun (it was killed between rewrite and verify):
 * copies of calls re-tracked since are dropped, and each such takeover gets its audit row ("interrupted").
 * The rows still pending are recovered by the rerun itself. Returns how many copies were dropped.
 */
/**
 * What an earlier takeover of fromNode that died between its rewrite and its audit row left: it is recorded
 * first (as interrupted, with every call it moved, those re-tracked since included), then the copies of the
 * calls re-tracked since are dropped. (Dropping first left nothing to record: it vanished from history.)
 */
export async function reconcile(
  db: Db,
  table: string,
  fromNode: string,
): Promise<{ dropped: number; interrupted: number }> {
  // one statement: every part sees the same snapshot, so the copies are recorded from before they are dropped
  const [r] = await db.query<{ interrupted: number; dropped: number }>(
    `WITH lost AS (SELECT takeover_id, min(to_node) AS to_node, min(moved_at) AS at, count(*)::int AS n,
                          count(*) FILTER (WHERE EXISTS (SELECT 1 FROM ${table} r WHERE r.uuid = k.uuid AND r.runtime_uuid IS DISTINCT FROM k.runtime_uuid))::int AS done
                     FROM fsha.takeover_rows k WHERE from_node = $1 AND note = 'moved' GROUP BY takeover_id),
          added AS (INSERT INTO fsha.audit (takeover_id, started_at, actor, command, from_node, to_node, result, reason, adopted, recovered)
                    SELECT l.takeover_id, l.at, 'fs-ha', 'takeover (interrupted)', $1, l.to_node, 'interrupted',
                           'stopped between the rewrite and its audit row: ' || l.done || ' of ' || l.n || ' call(s) re-tracked since, the rest completed by the rerun', l.n, l.done
                      FROM lost l WHERE NOT EXISTS (SELECT 1 FROM fsha.audit a WHERE a.takeover_id = l.takeover_id) RETURNING id, to_node),
          last AS (INSERT INTO fsha.last_takeover (node, audit_id)
                   SELECT DISTINCT n, a.id FROM added a, unnest(array_prepend($1::text, string_to_array(a.to_node, ','))) AS n
                   ON CONFLICT (node) DO UPDATE SET audit_id = GREATEST(fsha.last_takeover.audit_id, EXCLUDED.audit_id) RETURNING 1),
          gone AS (DELETE FROM fsha.takeover_rows k WHERE k.from_node = $1 AND k.note = 'moved'
                     AND EXISTS (SELECT 1 FROM ${table} r WHERE r.uuid = k.uuid AND r.runtime_uuid IS DISTINCT FROM k.runtime_uuid)
                   RETURNING 1)
     SELECT (SELECT count(*) FROM added)::int AS interrupted, (SELECT count(*) FROM gone)::int AS dropped`,
    [fromNode],
    'recording interrupted takeovers, dropping copies of calls re-tracked since',
  );
  return { dropped: r.dropped, interrupted: r.interrupted };
}

export async function readHeartbeat(db: Db, node: string): Promise<Heartbeat | null> {
  // fs-ha's tables exist once applied on this connection (the takeover's first step): no lookup then
  if (!applied.has(db) && !(await tableExists(db, 'fsha.heartbeat'))) return null;
  const rows = await db.query<{ age_ms: number; healthy: boolean; core_uuid: string | null }>(
    'SELECT (extract(epoch FROM clock_timestamp() - at) * 1000)::int AS age_ms, healthy, core_uuid FROM fsha.heartbeat WHERE node = $1',
    [node],
    'reading the heartbeat',
  );
  return rows.length ? { ageMs: rows[0].age_ms, healthy: rows[0].healthy, coreUuid: rows[0].core_uuid } : null;
}

export async function writeHeartbeat(
  db: Db,
  node: string,
  switchname: string,
  coreUuid: string | null,
  healthy: boolean,
  detail: string,
): Promise<void> {
  await db.query(
    `INSERT INTO fsha.heartbeat (node, switchname, core_uuid, healthy, detail, at) VALUES ($1,$2,$3,$4,$5, clock_timestamp())
     ON CONFLICT (node) DO UPDATE SET switchname = EXCLUDED.switchname, core_uuid = EXCLUDED.core_uuid,
       healthy = EXCLUDED.healthy, detail = EXCLUDED.detail, at = EXCLUDED.at`,
    [node, switchname, coreUuid, healthy, detail],
    'writing the heartbeat',
  );
}

export interface AuditRecord {
  takeoverId: string;
  startedAt: Date;
  actor: string;
  command: string;
  from: string;
  to: string;
  result: string;
  reason: string;
  adopted: number;
  recovered: number | null;
  missing: number | null;
  skipped: number;
  timings: Record<string, number>;
  /** each adopter's share and result, when the calls were spread (or recovered) */
  adopters?: Array<{
    node: string;
    handed: number;
    recovered: number | null;
    missing: number;
    result: string;
    reason: string;
  }>;
}

/**
 * One audit row, the last takeover of each node it touches (what status reads), and a bounded trim of rows
 * older than retentionDays (1000 at most per write: the table stays bounded without a long delete).
 */
export async function writeAudit(db: Db, a: AuditRecord, retentionDays = 365): Promise<void> {
  await db.query(
    `WITH row AS (
       INSERT INTO fsha.audit (takeover_id, started_at, actor, command, from_node, to_node, result, reason, adopted, recovered, missing, skipped, timings, adopters)
       VALUES ($13,$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$14) RETURNING id)
     INSERT INTO fsha.last_takeover (node, audit_id)
     SELECT DISTINCT n, row.id FROM row, unnest(array_prepend($4::text, string_to_array($5::text, ','))) AS n WHERE n <> ''
     ON CONFLICT (node) DO UPDATE SET audit_id = GREATEST(fsha.last_takeover.audit_id, EXCLUDED.audit_id)`,
    [
      a.startedAt,
      a.actor,
      a.command,
      a.from,
      a.to,
      a.result,
      a.reason,
      a.adopted,
      a.recovered,
      a.missing,
      a.skipped,
      JSON.stringify(a.timings),
      a.takeoverId,
      JSON.stringify(a.adopters ?? []),
    ],
    'writing the audit row',
  );
  await db
    .query(
      `DELETE FROM fsha.audit WHERE id IN (SELECT id FROM fsha.audit WHERE started_at < now() - make_interval(days => $1) ORDER BY started_at LIMIT 1000)`,
      [retentionDays],
      'trimming the audit to its retention',
    )
    .catch(() => undefined);
}

/**
 * A drain's own audit row, written before it touches anything (result 'draining') and updated at each step,
 * so a drain killed half-way is in history with what it had done and how to undo it.
 */
export async function beginAudit(db: Db, a: AuditRecord): Promise<number> {
  const [r] = await db.query<{ id: string }>(
    `WITH row AS (
       INSERT INTO fsha.audit (takeover_id, started_at, actor, command, from_node, to_node, result, reason, adopted, recovered, missing, skipped, timings, adopters)
       VALUES ($13,$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,'[]') RETURNING id, to_node),
       last AS (INSERT INTO fsha.last_takeover (node, audit_id)
       SELECT DISTINCT n, row.id FROM row, unnest(array_prepend($4::text, string_to_array(row.to_node, ','))) AS n WHERE n <> ''
       ON CONFLICT (node) DO UPDATE SET audit_id = GREATEST(fsha.last_takeover.audit_id, EXCLUDED.audit_id) RETURNING 1)
     SELECT id::text FROM row`,
    [
      a.startedAt,
      a.actor,
      a.command,
      a.from,
      a.to,
      a.result,
      a.reason,
      a.adopted,
      a.recovered,
      a.missing,
      a.skipped,
      JSON.stringify(a.timings),
      a.takeoverId,
    ],
    "writing the drain's audit row",
  );
  return Number(r.id);
}

/** The same row, as the drain (or its own takeover) goes on: every given field replaced, finished_at now. */
export async function updateAudit(db: Db, id: number, a: Partial<AuditRecord>): Promise<void> {
  await db.query(
    `UPDATE fsha.audit SET finished_at = now(), to_node = coalesce($2, to_node), result = coalesce($3, result), reason = coalesce($4, reason),
            adopted = coalesce($5, adopted), recovered = CASE WHEN $10 THEN $6 ELSE recovered END, missing = CASE WHEN $10 THEN $7 ELSE missing END,
            skipped = coalesce($8, skipped), timings = coalesce($9::jsonb, timings), adopters = coalesce($11::jsonb, adopters)
      WHERE id = $1`,
    [
      id,
      a.to ?? null,
      a.result ?? null,
      a.reason ?? null,
      a.adopted ?? null,
      a.recovered ?? null,
      a.missing ?? null,
      a.skipped ?? null,
      a.timings ? JSON.stringify(a.timings) : null,
      'recovered' in a,
      a.adopters ? JSON.stringify(a.adopters) : null,
    ],
    "updating the drain's audit row",
  );
}

/** What fs-ha set a node's standby to, and when (best effort: status shows it). */
export async function recordStandby(db: Db, node: string, on: boolean, by: string): Promise<void> {
  await db.query(
    `INSERT INTO fsha.standby (node, "on", by, at) VALUES ($1, $2, $3, now())
                  ON CONFLICT (node) DO UPDATE SET "on" = EXCLUDED."on", by = EXCLUDED.by, at = EXCLUDED.at`,
    [node, on, by],
    'recording standby',
  );
}

export interface StandbySeen {
  node: string;
  on: boolean;
  by: string;
  ageMs: number;
}

export async function readStandby(db: Db): Promise<StandbySeen[]> {
  return db.query<StandbySeen>(
    `SELECT node, "on", by, (extract(epoch FROM now() - at) * 1000)::bigint::int AS "ageMs" FROM fsha.standby`,
    [],
    'reading standby',
  );
}

/** Rows tracked under a core uuid (a node's answered calls' legs), in whichever relation holds them; hostname: only its own. */
export async function callsUnderCore(db: Db, layout: Layout, coreUuid: string, hostname?: string): Promise<number> {
  const [r] = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${recoveryTable(layout)} WHERE runtime_uuid = $1 AND ($2::text IS NULL OR hostname = $2)`,
    [coreUuid, hostname ?? null],
    'counting tracked calls',
  );
  return r.n;
}

export interface TakeoverSeen {
  command: string;
  to_node: string;
  result: string;
  adopted: number;
}

/** The newest audit row of a takeover of one of `nodes`, optionally since a time and with one of some results. */
export async function latestTakeoverOf(
  db: Db,
  nodes: string[],
  o: { since?: Date; results?: string[] } = {},
): Promise<TakeoverSeen | null> {
  const [a] = await db.query<TakeoverSeen>(
    `SELECT command, to_node, result, adopted FROM fsha.audit
      WHERE from_node = ANY($1::text[]) AND ($2::timestamptz IS NULL OR started_at >= $2) AND ($3::text[] IS NULL OR result = ANY($3))
      ORDER BY id DESC LIMIT 1`,
    [nodes, o.since ?? null, o.results ?? null],
    'reading the audit',
  );
  return a ?? null;
}

export async function writeVrrp(db: Db, node: string, instance: string, state: string): Promise<void> {
  await db.query(
    `INSERT INTO fsha.vrrp (node, instance, state, at) VALUES ($1, $2, $3, now())
     ON CONFLICT (node, instance) DO UPDATE SET state = EXCLUDED.state, at = EXCLUDED.at`,
    [node, instance, state],
    'recording the VRRP state',
  );
}

export interface VrrpSeen {
  node: string;
  instance: string;
  state: string;
  ageMs: number;
}

export async function readVrrp(db: Db): Promise<VrrpSeen[]> {
  return db.query<VrrpSeen>(
    `SELECT node, instance, state, (extract(epoch FROM now() - at) * 1000)::bigint::int AS "ageMs" FROM fsha.vrrp ORDER BY node, instance`,
    [],
    'reading VRRP states',
  );
}

export interface AuditRow {
  id: number;
  started_at: Date;
  finished_at: Date;
  actor: string;
  command: string;
  from_node: string;
  to_node: string;
  result: string;
  reason: string;
  adopted: number;
  recovered: number | null;
  missing: number | null;
  skipped: number;
  timings: Record<string, number>;
  adopters: Array<{
    node: string;
    handed: number;
    recovered: number | null;
    missing: number;
    result: string;
    reason: string;
  }>;
}

/** Past takeovers and drains, newest first; node: those it was the source or an adopter of. */
export async function readAudit(db: Db, o: { node?: string; last: number }): Promise<AuditRow[]> {
  return db.query<AuditRow>(
    `SELECT id::int, started_at, finished_at, actor, command, from_node, to_node, result, reason, adopted, recovered, missing, skipped, timings, adopters
       FROM fsha.audit WHERE $1::text IS NULL OR from_node = $1 OR $1 = ANY(string_to_array(to_node, ','))
      ORDER BY id DESC LIMIT $2`,
    [o.node ?? null, o.last],
    'reading the audit',
  );
}

export interface LastTakeover {
  node: string;
  ageMs: number;
  from: string;
  to: string;
  result: string;
  adopted: number;
  ms: number | null;
  command: string;
}

/** Per node, the last takeover or drain it was the source or an adopter of. */
export async function lastTakeovers(db: Db): Promise<LastTakeover[]> {
  return db.query<LastTakeover>(
    `SELECT l.node, (extract(epoch FROM now() - a.started_at) * 1000)::bigint::int AS "ageMs", a.from_node AS "from", a.to_node AS "to",
            a.result, a.adopted, (a.timings->>'total_ms')::int AS ms, a.command
       FROM fsha.last_takeover l JOIN fsha.audit a ON a.id = l.audit_id ORDER BY l.node`,
    [],
    'reading the last takeovers',
  );
}

/** What core/replication.ts judges: multi-master extensions, logical subscriptions and what they write into. */
export async function replicationFacts(db: Db): Promise<ReplicationFacts> {
  const [r] = await db.query<{ extensions: string[]; subscriptions: Array<{ name: string; tables: string[] }> }>(
    `SELECT (SELECT coalesce(array_agg(extname::text ORDER BY extname), '{}') FROM pg_extension
              WHERE extname IN ('bdr', 'bdr3', 'spock', 'pglogical')) AS extensions,
            (SELECT coalesce(json_agg(json_build_object('name', s.subname,
                      'tables', (SELECT coalesce(array_agg(x.srrelid::regclass::text), '{}') FROM pg_subscription_rel x WHERE x.srsubid = s.oid))), '[]')
               FROM pg_subscription s WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())) AS subscriptions`,
    [],
    'looking for multi-master replication',
  );
  let pglogicalSubscriptions: number | null = null;
  if (r.extensions.includes('pglogical')) {
    const [p] = await db
      .query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pglogical.subscription',
        [],
        'counting pglogical subscriptions',
      )
      .catch(() => [{ n: 0 }]);
    pglogicalSubscriptions = p.n;
  }
  return { extensions: r.extensions, subscriptions: r.subscriptions, pglogicalSubscriptions };
}

const judged = new WeakMap<Db, { at: number; verdict: ReplicationVerdict }>();

/** judgeReplication over this connection's server, asked at most once a minute per connection (a warm one answers at once). */
export async function replicationVerdict(db: Db): Promise<ReplicationVerdict> {
  const seen = judged.get(db);
  if (seen && Date.now() - seen.at < 60_000) return seen.verdict;
  const verdict = judgeReplication(await replicationFacts(db));
  judged.set(db, { at: Date.now(), verdict });
  return verdict;
}

/** The addresses a node's calls bind (its rows' local_media_ip and sip_local_network_addr), from a sample of its rows. */
export async function boundAddresses(db: Db, layout: Layout, switchname: string, sample = 50): Promise<string[]> {
  const rows = await db.query<{ a: string }>(
    `SELECT DISTINCT m[1] AS a FROM (SELECT metadata FROM ${recoveryTable(layout)} WHERE hostname = $1 LIMIT $2) r,
            regexp_matches(r.metadata, '<(?:local_media_ip|sip_local_network_addr)>([^<]+)</', 'g') AS m`,
    [switchname, sample],
    'reading the addresses the calls bind',
  );
  return rows.map((r) => r.a);
}
