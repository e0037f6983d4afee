/**
 * The prepared takeover (what a BACKUP keeps ready, so MASTER only does what cannot be known before): the peer's
 * rows read and rewritten for this node, each under its row version (PostgreSQL's xmin: FreeSWITCH updates a row
 * during its call, and every update is a new version). Refreshed in the background; a takeover that finds a row
 * at the version it was prepared from uses its rewrite, and rewrites afresh any other (never stale: the version
 * is read under the takeover's row lock). Only the metadata of new or changed rows is read again.
 */
import type { Layout } from '../config';
import { compilePatterns, rewriteMetadata, type RewriteSpec } from '../core/rewrite';
import { recoveryTable } from './recovery-store';
import type { Db } from './db';

export interface PreparedRow {
  /** the row version (xmin) the rewrite was made from */
  ver: string;
  /** the metadata rewritten for the adopter (addresses, switchname, profiles; RTP ports are placed at takeover) */
  metadata: string;
  replaced: number;
}

/** One peer's rows prepared for one adopter under one rewrite spec. */
export class Prepared {
  readonly rows = new Map<string, PreparedRow>();
  readonly key: string;
  refreshedAt = 0;

  constructor(readonly spec: RewriteSpec) {
    this.key = specKey(spec);
  }

  /** the prepared rewrite of this row at this version, if there is one */
  get(uuid: string, ver: string): PreparedRow | null {
    const p = this.rows.get(uuid);
    return p && p.ver === ver ? p : null;
  }
}

export function specKey(spec: RewriteSpec): string {
  return JSON.stringify([spec.fromSwitchname, spec.toSwitchname, spec.addresses, spec.profiles ?? []]);
}

/** At most this much metadata is read per refresh (the rest at the next one): the refresh never hogs the database. */
const REFRESH_BYTES = 16 * 1024 * 1024;

/**
 * Bring the prepared rows up to date: the peer's row versions in one light read, the metadata of the new or
 * changed ones, rewritten here; rows gone are dropped. Returns how many were (re)prepared.
 */
export async function refresh(db: Db, layout: Layout, p: Prepared): Promise<number> {
  const table = recoveryTable(layout);
  const now = await db.query<{ uuid: string; ver: string; bytes: number | null }>(
    `SELECT uuid, xmin::text AS ver, octet_length(metadata) AS bytes FROM ${table} WHERE hostname = $1`, [p.spec.fromSwitchname], 'reading the peer\'s row versions');
  const seen = new Set(now.map((r) => r.uuid));
  for (const uuid of p.rows.keys()) if (!seen.has(uuid)) p.rows.delete(uuid);
  const want: string[] = [];
  let bytes = 0;
  for (const r of now) {
    if (p.get(r.uuid, r.ver)) continue;
    if (bytes + (r.bytes ?? 0) > REFRESH_BYTES && want.length) break;
    want.push(r.uuid);
    bytes += r.bytes ?? 0;
  }
  if (want.length) {
    const got = await db.query<{ uuid: string; ver: string; metadata: string | null }>(
      `SELECT uuid, xmin::text AS ver, metadata FROM ${table} WHERE hostname = $1 AND uuid = ANY($2::text[])`, [p.spec.fromSwitchname, want], 'reading the peer\'s changed rows');
    const patterns = compilePatterns(p.spec);
    for (const r of got) {
      if (r.metadata === null) continue;
      const rw = rewriteMetadata(r.metadata, p.spec, patterns);
      if (rw.ok) p.rows.set(r.uuid, { ver: r.ver, metadata: rw.metadata, replaced: rw.replaced });
      else p.rows.delete(r.uuid); // the takeover finds it unprepared and judges it (held back, with the reason)
    }
  }
  p.refreshedAt = Date.now();
  return want.length;
}
