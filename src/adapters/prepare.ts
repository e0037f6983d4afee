/**
 * The prepared takeover (what a BACKUP keeps ready, so MASTER only does what cannot be known before): the peer's
 * rows read and rewritten for this node, each from one version of its row (PostgreSQL's xmin: FreeSWITCH updates
 * a row during its call, and every update is a new version), RTP ports placed on the adopter as they stood then,
 * and staged in fsha.prepared. Refreshed in the background; only the metadata of new or changed rows is read.
 *
 * A takeover (adapters/move-rows.ts) copies a staged row in place server-side only when, under its row lock, the
 * row is still at the staged version and every port the staged row binds is still safe on the adopter (PortBook
 * .claim); any other row is read and rewritten afresh, as without a preparation. Never stale, never a collision.
 */
import { createHash } from 'node:crypto';
import type { Layout } from '../config';
import { compilePatterns, rewriteMetadata, type RewriteSpec } from '../core/rewrite';
import { formatRange, mediaPortsOf, movePorts, PortBook, type PortRange } from '../core/ports';
import { boundUdpPorts } from './bound-ports';
import { mediaPortsUnder, recoveryTable } from './recovery-store';
import type { Db } from './db';

export interface PreparedRow {
  /** the row version (xmin) the rewrite was made from */
  ver: string;
  /** replacements made (addresses, switchname, profiles, ports) */
  replaced: number;
  /** the tags tying it to other rows (legs, conference), as move-rows reads them */
  ties: string[] | null;
  /** the RTP ports the staged row binds on the adopter */
  ports: number[];
}

/** Where the rewritten rows go: the adopter, its allocator range, the recovery band; local: this node (its bound sockets count). */
export interface Placement {
  node: string;
  rtp: PortRange;
  band: PortRange;
  local: boolean;
}

/** One peer's rows prepared for one adopter under one rewrite and one placement. */
export class Prepared {
  readonly rows = new Map<string, PreparedRow>();
  /** what the rewrite depends on (a change of config starts the preparation afresh) */
  readonly key: string;
  refreshedAt = 0;

  constructor(
    readonly spec: RewriteSpec,
    readonly placement: Placement,
  ) {
    this.key = preparedKey(spec, placement);
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

/** The rewrite and the placement a preparation was made under: a takeover uses it only under the same. */
export function preparedKey(spec: RewriteSpec, placement: Omit<Placement, 'local'>): string {
  return createHash('sha256')
    .update(specKey(spec))
    .update(JSON.stringify([placement.node, formatRange(placement.rtp), formatRange(placement.band)]))
    .digest('hex')
    .slice(0, 24);
}

/** At most this much metadata is read per refresh (the rest at the next one): the refresh never hogs the database. */
const REFRESH_BYTES = 16 * 1024 * 1024;

const TIE_RE = /<(signal_bond|bridge_to|originating_leg_uuid|conference_uuid)>([^<]*)<\//g;
/** The tags that tie a row to others (the same as move-rows reads). */
export function tiesOf(md: string | null): string[] | null {
  if (!md) return null;
  const out: string[] = [];
  TIE_RE.lastIndex = 0;
  for (let m = TIE_RE.exec(md); m; m = TIE_RE.exec(md)) out.push(`${m[1]}=${m[2]}`);
  return out.length ? out : null;
}

/**
 * Bring the prepared rows up to date: the peer's row versions in one light read, the metadata of the new or
 * changed ones, rewritten and placed here, staged in one statement; rows gone are dropped. Returns how many
 * were (re)prepared.
 */
export async function refresh(db: Db, layout: Layout, p: Prepared): Promise<number> {
  const table = recoveryTable(layout);
  const adopter = p.spec.toSwitchname;
  const now = await db.query<{ uuid: string; ver: string; bytes: number | null }>(
    `SELECT uuid, xmin::text AS ver, octet_length(metadata) AS bytes FROM ${table} WHERE hostname = $1`,
    [p.spec.fromSwitchname],
    "reading the peer's row versions",
  );
  const seen = new Set(now.map((r) => r.uuid));
  const gone = [...p.rows.keys()].filter((u) => !seen.has(u));
  for (const uuid of gone) p.rows.delete(uuid);
  const want: string[] = [];
  let bytes = 0;
  for (const r of now) {
    if (p.get(r.uuid, r.ver)) continue;
    if (bytes + (r.bytes ?? 0) > REFRESH_BYTES && want.length) break;
    want.push(r.uuid);
    bytes += r.bytes ?? 0;
  }
  if (gone.length) {
    await db.query(
      'DELETE FROM fsha.prepared WHERE adopter = $1 AND peer = $2 AND uuid = ANY($3::text[])',
      [adopter, p.spec.fromSwitchname, gone],
      'dropping prepared rows of calls gone',
    );
  }
  if (want.length) {
    const got = await db.query<{ uuid: string; ver: string; metadata: string | null }>(
      `SELECT uuid, xmin::text AS ver, metadata FROM ${table} WHERE hostname = $1 AND uuid = ANY($2::text[])`,
      [p.spec.fromSwitchname, want],
      "reading the peer's changed rows",
    );
    // the adopter's ports as they stand now, and those of the rows prepared before (each staged row keeps its own)
    const held = (await mediaPortsUnder(db, layout, [adopter])).get(adopter) ?? [];
    const book = new PortBook(p.placement.node, p.placement.rtp, p.placement.band, [
      ...held,
      ...(p.placement.local ? await boundUdpPorts() : []),
      ...[...p.rows.entries()].filter(([u]) => !want.includes(u)).flatMap(([, r]) => r.ports),
    ]);
    const patterns = compilePatterns(p.spec);
    const staged: Array<{ uuid: string; ver: string; metadata: string; row: PreparedRow }> = [];
    for (const r of got) {
      p.rows.delete(r.uuid);
      if (r.metadata === null) continue;
      const rw = rewriteMetadata(r.metadata, p.spec, patterns);
      const placed = rw.ok ? movePorts(rw.metadata, book) : rw;
      if (!rw.ok || !placed.ok) continue; // the takeover finds it unprepared and judges it (held back, with the reason)
      const ports = mediaPortsOf(placed.metadata);
      staged.push({
        uuid: r.uuid,
        ver: r.ver,
        metadata: placed.metadata,
        row: {
          ver: r.ver,
          replaced: rw.replaced + placed.replaced,
          ties: tiesOf(r.metadata),
          ports: 'error' in ports ? [] : [...ports.values()],
        },
      });
    }
    if (staged.length) {
      await db.query(
        `INSERT INTO fsha.prepared (adopter, uuid, peer, spec, ver, metadata)
         SELECT $1, u, $2, $3, v, m FROM unnest($4::text[], $5::text[], $6::text[]) AS s(u, v, m)
         ON CONFLICT (adopter, uuid) DO UPDATE SET peer = EXCLUDED.peer, spec = EXCLUDED.spec, ver = EXCLUDED.ver, metadata = EXCLUDED.metadata`,
        [
          adopter,
          p.spec.fromSwitchname,
          p.key,
          staged.map((s) => s.uuid),
          staged.map((s) => s.ver),
          staged.map((s) => s.metadata),
        ],
        'staging the prepared rows',
      );
      for (const s of staged) p.rows.set(s.uuid, s.row); // usable once staged
    }
  }
  p.refreshedAt = Date.now();
  return want.length;
}
