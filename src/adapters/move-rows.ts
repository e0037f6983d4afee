/**
 * The rewrite transaction (takeover step 5), all or nothing. It only runs SQL; what moves is decided in
 * core: groups (core/groups.ts), a group moving whole or held back whole (judgeGroup), held rows leaving
 * the table in the shared layout (core/decide.ts heldRowsLeaveTable).
 *   1 lock the failed node's rows and read their sizes; when their metadata fits ONE_READ_BYTES it is read
 *     in one statement and the ties (legs, conference) are found here, else the server finds the ties and
 *     metadata is read batch by batch (memory stays bounded whatever the rows weigh);
 *   2 group them, cut whole groups into batches bounded by rows and bytes;
 *   3 per batch: its metadata (read by ctid, the next batch while this one is rewritten), rewrite,
 *     keep each original in fsha.takeover_rows and write the moved groups in one statement;
 *   4 held rows: a copy with the reason in fsha.takeover_rows (one per call, whatever the reruns), and out
 *     of the table where the target's recover would otherwise take them unrewritten.
 */
import type { Layout } from '../config';
import {
  batches,
  groupRows,
  judgeGroup,
  DEFAULT_LIMITS,
  type BatchLimits,
  type CallGroup,
  type RowFacts,
} from '../core/groups';
import { heldRowsLeaveTable } from '../core/decide';
import { rewriteMetadata, compilePatterns, type RewriteSpec } from '../core/rewrite';
import { movePorts, type PortBook } from '../core/ports';
import { preparedKey, tiesOf, type Prepared, type PreparedRow } from './prepare';
import { ActionFailed } from '../errors';
import type { Db } from './db';

/** One adopter of the rows: its node, its switchname, and how a row is rewritten for it. */
export interface MoveTarget {
  node: string;
  spec: RewriteSpec;
  /** the RTP ports held on this adopter: a row whose port is not safe there moves into the recovery band */
  ports?: PortBook;
}

export interface MoveResult {
  rows: Array<{ uuid: string; profile: string; replaced: number; to: string }>;
  held: Array<{ uuid: string; reason: string }>;
  groups: number;
  ms: { select: number; rewrite: number; write: number };
  /** rows whose prepared rewrite was used */
  prepared: number;
}

/**
 * Joins on ctid must be TID scans (or every batch scans the whole table), and rewritten metadata is
 * compressed with lz4 when the server has it (~3x cheaper than pglz). One round trip.
 */
const REWRITE_SETTINGS = `SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
  set_config('default_toast_compression',
    CASE WHEN 'lz4' = ANY(enumvals) THEN 'lz4' ELSE current_setting('default_toast_compression') END, true)
  FROM pg_settings WHERE name = 'default_toast_compression'`;

/** The tags that tie rows together, read by the server in one pass over each row's metadata. */
const TIES = `(SELECT array_agg(m[1] || '=' || m[2]) FROM regexp_matches(r.metadata,
  '<(signal_bond|bridge_to|originating_leg_uuid|conference_uuid)>([^<]*)</', 'g') AS m)`;

/** Up to this much metadata in all is read in one statement and kept in memory for the rewrite. */
export const ONE_READ_BYTES = 32 * 1024 * 1024;

/** A promise that is awaited later: mark it handled now so a failure meanwhile is not an unhandled rejection. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

function facts(r: {
  ctid: string;
  uuid: string;
  profile_name: string;
  technology: string;
  ties: string[] | null;
  bytes: number | null;
}): RowFacts {
  const legs: string[] = [];
  let conference: string | null = null;
  for (const t of r.ties ?? []) {
    const eq = t.indexOf('=');
    const tag = t.slice(0, eq);
    const value = t.slice(eq + 1);
    if (!value) continue;
    if (tag === 'conference_uuid') conference = value;
    else if (!legs.includes(value) && value !== r.uuid) legs.push(value);
  }
  return {
    ctid: r.ctid,
    uuid: r.uuid,
    profile: r.profile_name,
    technology: r.technology,
    legs,
    conference,
    bytes: r.bytes ?? 0,
  };
}

interface Keep {
  takeoverId: string;
  fromNode: string;
  toNode: string;
}

interface Written {
  ctid: string;
  metadata: string;
  target: number;
  profile: string;
}

/**
 * Keep a copy of each original row, then rewrite it for its adopter (hostname, profile_name, metadata):
 * one statement per batch, rows joined by ctid.
 */
function writeBatch(db: Db, table: string, batch: Written[], keep: Keep, targets: MoveTarget[]) {
  const values = batch
    .map((_, i) => `($${4 * i + 3}::tid, $${4 * i + 4}::text, $${4 * i + 5}::int, $${4 * i + 6}::text)`)
    .join(', ');
  const params: unknown[] = [keep.takeoverId, keep.fromNode];
  for (const b of batch) params.push(b.ctid, b.metadata, b.target, b.profile);
  const names = targets.map((t) => t.node);
  const switchnames = targets.map((t) => t.spec.toSwitchname);
  params.push(names, switchnames);
  const n = params.length;
  return db.query<{ n: number }>(
    `WITH v(ctid, metadata, target, profile) AS (VALUES ${values}),
       kept AS (${keepOriginals(table, `($${n - 1}::text[])[v.target + 1]`)}),
       done AS (UPDATE ${table} AS r SET hostname = ($${n}::text[])[v.target + 1], profile_name = v.profile, metadata = v.metadata
                  FROM v WHERE r.ctid = v.ctid RETURNING 1)
     SELECT (SELECT count(*) FROM kept)::int + (SELECT count(*) FROM done)::int AS n`,
    params,
    'rewriting the rows',
  );
}

/**
 * The statement that keeps each original row (joined from CTE v by ctid) in fsha.takeover_rows before it is
 * rewritten: $1 the takeover, $2 the failed node, toNode the SQL of its adopter's name.
 */
const keepOriginals = (table: string, toNode: string) =>
  `INSERT INTO fsha.takeover_rows (takeover_id, from_node, to_node, runtime_uuid, technology, profile_name, hostname, uuid, metadata)
                SELECT $1, $2, ${toNode}, r.runtime_uuid, r.technology, r.profile_name, r.hostname, r.uuid, r.metadata
                  FROM ${table} r JOIN v ON r.ctid = v.ctid RETURNING 1`;

/** A row whose staged rewrite (fsha.prepared) is copied in place: joined by ctid, guarded by its version. */
interface Staged {
  ctid: string;
  uuid: string;
  ver: string;
  profile: string;
}

/**
 * Keep a copy of each original row, then copy its staged rewrite in place, server-side: one statement for them
 * all. A row no longer at its staged version (or whose staged row is gone) is not rewritten, so the counts
 * tell: any short count rolls the whole transaction back and the rows are rewritten afresh.
 */
function writeStaged(db: Db, table: string, rows: Staged[], keep: Keep, target: MoveTarget, key: string) {
  return db.query<{ kept: number; done: number }>(
    `WITH v AS (SELECT * FROM unnest($3::tid[], $4::text[], $5::text[], $6::text[]) AS v(ctid, uuid, ver, profile)),
       kept AS (${keepOriginals(table, '$7')}),
       done AS (UPDATE ${table} AS r SET hostname = $8, profile_name = v.profile, metadata = p.metadata
                  FROM v CROSS JOIN LATERAL (SELECT metadata FROM fsha.prepared p
                                              WHERE p.adopter = $8 AND p.uuid = v.uuid AND p.spec = $9 AND p.ver = v.ver LIMIT 1) p
                 WHERE r.ctid = v.ctid AND r.xmin::text = v.ver RETURNING 1),
       used AS (DELETE FROM fsha.prepared p WHERE p.adopter = $8 AND p.uuid = ANY($4::text[]) RETURNING 1)
     SELECT (SELECT count(*) FROM kept)::int AS kept, (SELECT count(*) FROM done)::int AS done`,
    [
      keep.takeoverId,
      keep.fromNode,
      rows.map((r) => r.ctid),
      rows.map((r) => r.uuid),
      rows.map((r) => r.ver),
      rows.map((r) => r.profile),
      target.node,
      target.spec.toSwitchname,
      key,
    ],
    'copying the prepared rows in place',
  );
}

/** The staged rows did not all apply (a staged row gone, a version changed): the transaction is redone without them. */
class StagedShort extends Error {}

/**
 * The failed node's rows, rewritten group by group for the adopter `assign` gives each group (one adopter:
 * every group to it). targetCores: the adopters' core uuids (rows already under one of them are theirs).
 */
export async function moveRows(
  db: Db,
  layout: Layout,
  table: string,
  targets: MoveTarget[],
  o: Keep & {
    targetCores: string[];
    dryRun: boolean;
    limits?: BatchLimits;
    assign?: (groups: CallGroup[]) => number[];
    /** metadata up to this many bytes in all is read at once (default ONE_READ_BYTES); above, batch by batch */
    oneReadBytes?: number;
    /** rows prepared for the one adopter (adapters/prepare.ts): used for rows still at their prepared version */
    prepared?: Prepared;
  },
): Promise<MoveResult> {
  const spec = targets[0].spec; // what every target shares: the failed node
  const compiled = targets.map((t) => compilePatterns(t.spec));
  const profileMaps = targets.map((t) => new Map(t.spec.profiles ?? []));
  let result: MoveResult = { rows: [], held: [], groups: 0, ms: { select: 0, rewrite: 0, write: 0 }, prepared: 0 };
  // a preparation made for exactly this rewrite and placement (one adopter, the same spec, its port book) may
  // stand in for reading, rewriting and sending a row
  const t0ports = targets[0].ports;
  let prep =
    o.prepared &&
    targets.length === 1 &&
    t0ports &&
    o.prepared.key ===
      preparedKey(targets[0].spec, { node: targets[0].node, rtp: t0ports.allocator, band: t0ports.band })
      ? o.prepared
      : null;
  /** ctid -> the prepared row, for rows whose staged rewrite is copied in place */
  const ready = new Map<string, PreparedRow>();
  const work = async () => {
    result = { rows: [], held: [], groups: 0, ms: { select: 0, rewrite: 0, write: 0 }, prepared: 0 };
    ready.clear();
    const staged: Staged[] = [];
    let t0 = Date.now();
    // the rows' light facts and their lock first; their metadata in one read when it fits the memory budget
    // (ties then found here, one pass), else the server finds the ties and metadata is read batch by batch
    const light = await db.query<{
      ctid: string;
      uuid: string;
      profile_name: string;
      technology: string;
      bytes: number | null;
      ver: string;
    }>(
      `SELECT r.ctid::text AS ctid, r.uuid, r.profile_name, r.technology, octet_length(r.metadata) AS bytes, r.xmin::text AS ver
         FROM ${table} r WHERE r.hostname = $1 AND (r.runtime_uuid IS NULL OR r.runtime_uuid <> ALL($2::text[]))${o.dryRun ? '' : ' FOR UPDATE'}`,
      [spec.fromSwitchname, o.targetCores],
      "locking the failed node's rows",
    );
    const total = light.reduce((n, r) => n + (r.bytes ?? 0), 0);
    type Got = { ctid: string; metadata: string | null };
    const readCtids = (ctids: string[]) =>
      db.query<Got>(
        `SELECT ctid::text AS ctid, metadata FROM ${table} WHERE ctid = ANY($1::tid[])`,
        [ctids],
        "reading the failed node's rows",
      );
    let all: Map<string, string | null> | null = null;
    let found: Array<Parameters<typeof facts>[0]>;
    if (total <= (o.oneReadBytes ?? ONE_READ_BYTES)) {
      // rows at the version they were prepared from (read under this lock: never stale) whose ports are still
      // safe on the adopter (claimed in its book now) are not read, rewritten or sent: their staged rewrite is used
      for (const r of light) {
        const h = prep?.get(r.uuid, r.ver);
        if (h && t0ports!.claim(h.ports)) ready.set(r.ctid, h);
      }
      const unprepared = light.filter((r) => !ready.has(r.ctid)).map((r) => r.ctid);
      all = new Map(unprepared.length ? (await readCtids(unprepared)).map((r) => [r.ctid, r.metadata]) : []);
      result.prepared = ready.size;
      found = light.map((r) => ({
        ...r,
        ties: ready.has(r.ctid) ? ready.get(r.ctid)!.ties : tiesOf(all!.get(r.ctid) ?? null),
      }));
    } else {
      found = await db.query<{
        ctid: string;
        uuid: string;
        profile_name: string;
        technology: string;
        ties: string[] | null;
        bytes: number | null;
      }>(
        `SELECT r.ctid::text AS ctid, r.uuid, r.profile_name, r.technology, ${TIES} AS ties, octet_length(r.metadata) AS bytes
           FROM ${table} r WHERE r.ctid = ANY($1::tid[])`,
        [light.map((r) => r.ctid)],
        "reading the ties between the failed node's rows",
      );
    }
    result.ms.select += Date.now() - t0;
    const groups = groupRows(found.map(facts));
    result.groups = groups.length;
    const targetOf = o.assign ? o.assign(groups) : groups.map(() => 0);
    const plan = batches(groups, o.limits ?? DEFAULT_LIMITS);
    const read = (i: number): Promise<Got[]> => {
      const ctids = plan[i].flatMap((g) => g.rows.map((r) => r.ctid));
      return all
        ? Promise.resolve(ctids.filter((c) => all!.has(c)).map((c) => ({ ctid: c, metadata: all!.get(c)! })))
        : handled(readCtids(ctids));
    };
    let written = 0;
    let expected = 0;
    let pendingWrite: Promise<unknown> | null = null;
    let next: Promise<Got[]> | null = plan.length ? read(0) : null;
    for (let i = 0; next; i++) {
      t0 = Date.now();
      const got = new Map((await next).map((r) => [r.ctid, r.metadata]));
      result.ms.select += Date.now() - t0;
      next = i + 1 < plan.length ? read(i + 1) : null;
      t0 = Date.now();
      const batch: Written[] = [];
      for (const g of plan[i]) {
        const failures = new Map<string, string>();
        const t = targetOf[g.index];
        const out: Array<Written & { uuid: string; replaced: number }> = [];
        const stagedHere: Array<Staged & { replaced: number }> = [];
        for (const r of g.rows) {
          const h = ready.get(r.ctid);
          if (h) {
            stagedHere.push({
              ctid: r.ctid,
              uuid: r.uuid,
              ver: h.ver,
              profile: profileMaps[t].get(r.profile) ?? r.profile,
              replaced: h.replaced,
            });
            continue;
          }
          const md = got.get(r.ctid);
          const rw =
            md === undefined
              ? { ok: false as const, reason: 'the row changed under the lock' }
              : md === null
                ? { ok: false as const, reason: 'metadata is NULL' }
                : rewriteRow(md, targets[t], compiled[t]);
          if (rw.ok)
            out.push({
              ctid: r.ctid,
              metadata: rw.metadata,
              uuid: r.uuid,
              profile: profileMaps[t].get(r.profile) ?? r.profile,
              replaced: rw.replaced,
              target: t,
            });
          else failures.set(r.uuid, rw.reason);
        }
        const verdict = judgeGroup(g, failures);
        if (!verdict.move) {
          for (const [uuid, reason] of verdict.held) result.held.push({ uuid, reason });
          continue;
        }
        for (const x of out) {
          batch.push({ ctid: x.ctid, metadata: x.metadata, target: x.target, profile: x.profile });
          result.rows.push({ uuid: x.uuid, profile: x.profile, replaced: x.replaced, to: targets[x.target].node });
        }
        for (const x of stagedHere) {
          staged.push(x);
          result.rows.push({ uuid: x.uuid, profile: x.profile, replaced: x.replaced, to: targets[0].node });
        }
      }
      result.ms.rewrite += Date.now() - t0;
      if (o.dryRun || !batch.length) continue;
      t0 = Date.now();
      if (pendingWrite) await pendingWrite; // one batch in flight: every query keeps its own deadline
      result.ms.write += Date.now() - t0;
      expected += 2 * batch.length;
      pendingWrite = handled(
        writeBatch(db, table, batch, o, targets).then((r) => {
          written += r[0].n;
        }),
      );
    }
    t0 = Date.now();
    if (pendingWrite) await pendingWrite;
    if (written !== expected)
      throw new ActionFailed(`database: rewrote ${written / 2} of ${expected / 2} rows; rolled back`);
    if (!o.dryRun && staged.length) {
      const [w] = await writeStaged(db, table, staged, o, targets[0], prep!.key);
      if (w.kept !== staged.length || w.done !== staged.length)
        throw new StagedShort(`${w.done} of ${staged.length} prepared rows applied`);
    }
    if (!o.dryRun && result.held.length) await holdBack(db, layout, table, spec.fromSwitchname, result.held, o);
    result.ms.write += Date.now() - t0;
    if (o.dryRun) throw new DryRunRollback();
  };
  // a dry run (a drain's plan, while the source still runs) reads a snapshot and locks nothing: the live
  // source's hangups never wait on it. The settings go with BEGIN, in one round trip.
  const begin = `${o.dryRun ? 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY' : 'BEGIN'}; ${REWRITE_SETTINGS}`;
  for (;;) {
    try {
      await db.transaction(work, 'takeover rewrite', begin);
    } catch (e) {
      if (e instanceof StagedShort && prep) {
        prep = null;
        continue;
      } // rolled back: every row rewritten afresh
      if (!(e instanceof DryRunRollback)) throw e;
    }
    return result;
  }
}

/** One row for one adopter: its addresses and switchname, then its RTP ports where they are not safe there. */
function rewriteRow(md: string, target: MoveTarget, patterns: ReturnType<typeof compilePatterns>) {
  const rw = rewriteMetadata(md, target.spec, patterns);
  if (!rw.ok || !target.ports) return rw;
  const moved = movePorts(rw.metadata, target.ports);
  return moved.ok ? { ok: true as const, metadata: moved.metadata, replaced: rw.replaced + moved.replaced } : moved;
}

/** One copy per held call (a rerun replaces the older one), and out of the table where the recover would take it. */
async function holdBack(
  db: Db,
  layout: Layout,
  table: string,
  fromSwitchname: string,
  held: Array<{ uuid: string; reason: string }>,
  k: Keep,
): Promise<void> {
  const uuids = held.map((h) => h.uuid);
  await db.query(
    "DELETE FROM fsha.takeover_rows WHERE uuid = ANY($1) AND note LIKE 'held: %'",
    [uuids],
    'replacing older copies of held rows',
  );
  await db.query(
    `INSERT INTO fsha.takeover_rows (takeover_id, from_node, to_node, runtime_uuid, technology, profile_name, hostname, uuid, metadata, note)
     SELECT $1, $2, $3, runtime_uuid, technology, profile_name, hostname, uuid, metadata, 'held: ' || v.reason
       FROM ${table} JOIN unnest($4::text[], $5::text[]) AS v(uuid, reason) USING (uuid)
      WHERE hostname = $6`,
    [k.takeoverId, k.fromNode, k.toNode, uuids, held.map((h) => h.reason), fromSwitchname],
    'keeping a copy of the rows held back',
  );
  if (heldRowsLeaveTable(layout)) {
    await db.query(
      `DELETE FROM ${table} WHERE hostname = $1 AND uuid = ANY($2)`,
      [fromSwitchname, uuids],
      'taking held rows out of the recovery table',
    );
  }
}

class DryRunRollback extends Error {}
