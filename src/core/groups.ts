/**
 * Calls that must land on one node in one recover, pure. Two legs of a bridged call are tied by
 * signal_bond / bridge_to / originating_leg_uuid (each names the other leg's uuid); the members of a
 * conference share conference_uuid. Moved apart, bridged halves never re-bridge and a conference splits
 * into two of the same name (fixtures README). So rows are grouped (connected components), a group moves
 * or is held back as a whole, and writes are cut only between groups.
 */

/** What the takeover needs to know of one row before reading its metadata. */
export interface RowFacts {
  ctid: string;
  uuid: string;
  profile: string;
  technology: string;
  /** uuids of other legs this row names (signal_bond, bridge_to, originating_leg_uuid) */
  legs: string[];
  conference: string | null;
  bytes: number;
}

export interface CallGroup {
  /** position in the order rows are read and written */
  index: number;
  rows: RowFacts[];
  /** why these rows belong together, for reports: "bridged", "conference <uuid>", or "" for a lone call */
  tie: string;
  bytes: number;
}

/** Connected components over legs and conferences; groups in the order of their first row, rows in input order. */
export function groupRows(rows: RowFacts[]): CallGroup[] {
  const parent = rows.map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i]];
      i = parent[i];
    }
    return i;
  };
  const union = (a: number, b: number) => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
  };
  const byUuid = new Map<string, number>();
  rows.forEach((r, i) => {
    if (!byUuid.has(r.uuid)) byUuid.set(r.uuid, i);
    else union(i, byUuid.get(r.uuid)!);
  });
  const byConference = new Map<string, number>();
  rows.forEach((r, i) => {
    for (const leg of r.legs) {
      const j = byUuid.get(leg);
      if (j !== undefined) union(i, j);
    }
    if (r.conference) {
      const j = byConference.get(r.conference);
      if (j === undefined) byConference.set(r.conference, i);
      else union(i, j);
    }
  });
  const groups = new Map<number, RowFacts[]>();
  rows.forEach((r, i) => {
    const root = find(i);
    const g = groups.get(root);
    if (g) g.push(r);
    else groups.set(root, [r]);
  });
  return [...groups.values()].map((members, index) => ({
    index,
    rows: members,
    tie: tieOf(members),
    bytes: members.reduce((n, r) => n + r.bytes, 0),
  }));
}

function tieOf(members: RowFacts[]): string {
  if (members.length < 2) return '';
  const conf = members.find((r) => r.conference)?.conference;
  if (conf) return `conference ${conf}`;
  return 'bridged';
}

/** The reason a member is held back because another member of its group cannot be moved. */
export function heldWithGroup(group: CallGroup, culprit: string): string {
  const what = group.tie.startsWith('conference')
    ? `its ${group.tie} (${group.rows.length} members)`
    : `its bridged leg`;
  return `${what} cannot move: ${culprit} cannot be rewritten, and a group moves together or not at all`;
}

export interface GroupVerdict {
  move: boolean;
  /** uuid -> reason, for every row of a held-back group */
  held: Map<string, string>;
}

/** One group, after its rows were rewritten: moves whole, or is held back whole. */
export function judgeGroup(group: CallGroup, failures: Map<string, string>): GroupVerdict {
  const bad = group.rows.filter((r) => failures.has(r.uuid));
  if (!bad.length) return { move: true, held: new Map() };
  const held = new Map<string, string>();
  for (const r of group.rows) held.set(r.uuid, failures.get(r.uuid) ?? heldWithGroup(group, bad[0].uuid));
  return { move: false, held };
}

/** Limits of one read or write round trip: whole groups only; a group larger than the limits goes alone. */
export interface BatchLimits {
  rows: number;
  bytes: number;
}

export const DEFAULT_LIMITS: BatchLimits = { rows: 100, bytes: 8 * 1024 * 1024 };

/** Consecutive groups cut into batches within the limits; never splits a group. */
export function batches(groups: CallGroup[], limits: BatchLimits = DEFAULT_LIMITS): CallGroup[][] {
  const out: CallGroup[][] = [];
  let cur: CallGroup[] = [];
  let rows = 0;
  let bytes = 0;
  for (const g of groups) {
    if (cur.length && (rows + g.rows.length > limits.rows || bytes + g.bytes > limits.bytes)) {
      out.push(cur);
      cur = [];
      rows = 0;
      bytes = 0;
    }
    cur.push(g);
    rows += g.rows.length;
    bytes += g.bytes;
  }
  if (cur.length) out.push(cur);
  return out;
}
