/**
 * The per-node layout's safety rules, pure. Each node's FreeSWITCH finds `recovery` through its search
 * path: its own view, fsha_node_<name>.recovery, of the base table fsha.recovery_base. Two things must
 * never happen: two nodes sharing one view (schema names collide), and an unqualified `recovery`
 * resolving to a relation that holds several nodes' rows (a node whose DSN lost its options finds
 * whatever is first on PostgreSQL's default search path "$user", public). So the base table is not
 * named recovery, and any relation named recovery other than the expected views is a refusal.
 */

/** PostgreSQL keeps the first 63 bytes of an identifier. */
export const MAX_IDENT = 63;

/** Schema holding a node's view (unquoted-safe: lower case, digits and _). */
export function nodeSchema(switchname: string): string {
  return 'fsha_node_' + switchname.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

/**
 * The schema of every distinct switchname, or the sentence naming the nodes whose schemas collide (or
 * would be truncated). Nodes that share a switchname share a view by design (a pair on one switchname).
 */
export function nodeSchemas(
  nodes: Array<{ name: string; switchname: string }>,
): { schemas: Map<string, string> } | { problem: string } {
  const schemas = new Map<string, string>();
  const owners = new Map<string, Set<string>>();
  for (const n of nodes) {
    const schema = nodeSchema(n.switchname);
    if (Buffer.byteLength(schema) > MAX_IDENT) {
      return {
        problem: `nodes.${n.name}: switchname ${n.switchname} is too long for the per-node layout (its schema ${schema} has ${Buffer.byteLength(schema)} bytes; PostgreSQL keeps ${MAX_IDENT})`,
      };
    }
    schemas.set(n.switchname, schema);
    const set = owners.get(schema) ?? new Set<string>();
    set.add(n.switchname);
    owners.set(schema, set);
  }
  for (const [schema, sws] of owners) {
    if (sws.size > 1) {
      const names = nodes.filter((n) => sws.has(n.switchname)).map((n) => n.name);
      return {
        problem: `nodes ${names.join(', ')} would share the per-node schema ${schema} (switchnames ${[...sws].join(', ')}): give them switchnames that differ in more than case, '.', '-' and '_'`,
      };
    }
  }
  return { schemas };
}

/** The comment db init puts on each view: proof that it filters on exactly this switchname. */
export function viewComment(switchname: string): string {
  return `fs-ha per-node view: recovery rows of switchname ${switchname}`;
}

/** A relation named `recovery`, wherever it is. */
export interface RecoveryRelation {
  schema: string;
  /** r table, v view, p partitioned, m matview, f foreign */
  kind: string;
  comment: string | null;
}

const KIND: Record<string, string> = {
  r: 'table',
  v: 'view',
  p: 'partitioned table',
  m: 'materialized view',
  f: 'foreign table',
};

/**
 * null when every relation named recovery is one fs-ha expects, else the refusal. shared: exactly
 * public.recovery. per-node: only the expected views, each with its comment; those of `required`
 * (the failed and the adopting node) must exist.
 */
export function recoveryRelationsProblem(
  layout: 'shared' | 'per-node',
  found: RecoveryRelation[],
  expected: Map<string, string>,
  required: string[] = [],
): string | null {
  const bySchema = new Map(found.map((r) => [r.schema, r]));
  if (layout === 'shared') {
    const strangers = found.filter((r) => !(r.schema === 'public' && r.kind !== 'v'));
    if (strangers.length) {
      return (
        `relations named recovery besides public.recovery: ${strangers.map((r) => `${r.schema}.recovery (${KIND[r.kind] ?? r.kind})`).join(', ')}; ` +
        'a FreeSWITCH whose search path finds one of them does not use the table fs-ha checks, so fs-ha cannot prove what a recover would take'
      );
    }
    return null;
  }
  const ours = new Map([...expected].map(([sw, schema]) => [schema, sw]));
  const strangers = found.filter((r) => !(ours.has(r.schema) && r.kind === 'v'));
  if (strangers.length) {
    return (
      `${strangers.map((r) => `${r.schema}.recovery (${KIND[r.kind] ?? r.kind})`).join(', ')} exist${strangers.length === 1 ? 's' : ''} beside the per-node views: ` +
      "a node whose search path finds it sees other nodes' rows, so a recover there would steal calls (did a node lose the options of its DSN? move its rows to fsha.recovery_base and drop it)"
    );
  }
  for (const r of found) {
    const sw = ours.get(r.schema)!;
    if (r.comment !== viewComment(sw)) {
      return `the view ${r.schema}.recovery was not made by fs-ha db init for switchname ${sw}: run fs-ha db init --layout per-node to recreate it`;
    }
  }
  for (const sw of required) {
    const schema = expected.get(sw);
    if (!schema || !bySchema.has(schema))
      return `the per-node view of ${sw} (${schema ?? nodeSchema(sw)}.recovery) is missing: run fs-ha db init --layout per-node`;
  }
  return null;
}
