/**
 * Is the database fs-ha writes to the one writable copy of the calls? fs-ha's exactly-once rests on it: the
 * takeover's advisory lock is held on one server, so with two writable servers (multi-master: BDR, Spock,
 * bidirectional pglogical or native logical replication) two survivors could each take "the" lock on their
 * own server and both recover the same calls. A physical standby (streaming replication) is read-only and
 * fine. Pure: the facts come from adapters/recovery-store.replicationFacts.
 */

export interface ReplicationFacts {
  /** installed extensions among those that make or join multi-master setups */
  extensions: string[];
  /** native logical subscriptions of this database, each with the relations it writes into here */
  subscriptions: Array<{ name: string; tables: string[] }>;
  /** pglogical's subscriptions in this database (null: pglogical is not installed) */
  pglogicalSubscriptions: number | null;
}

export type ReplicationVerdict = { level: 'ok' } | { level: 'refuse' | 'warn'; reason: string };

const MULTI_MASTER = ['bdr', 'bdr3', 'spock'];
const WHY =
  "fs-ha's takeover lock is per server, so two survivors could each take it on their own server and both recover the same calls";

/** A relation fs-ha and FreeSWITCH must write on this server only: the recovery table (any schema) and fs-ha's own. */
const ours = (t: string) => /(^|\.)"?recovery(_base)?"?$/.test(t) || /^"?fsha"?\./.test(t);

export function judgeReplication(f: ReplicationFacts): ReplicationVerdict {
  const mm = f.extensions.filter((e) => MULTI_MASTER.includes(e));
  if (mm.length) {
    return {
      level: 'refuse',
      reason: `the database has the multi-master extension ${mm.join(', ')}: more than one server accepts writes to the calls, and ${WHY}; use one writable primary (a physical standby for its failover)`,
    };
  }
  if (f.pglogicalSubscriptions) {
    return {
      level: 'refuse',
      reason: `this database receives writes from another server (${f.pglogicalSubscriptions} pglogical subscription(s)): if that server is writable too, ${WHY}; use one writable primary`,
    };
  }
  const into = f.subscriptions.filter((s) => s.tables.some(ours));
  if (into.length) {
    return {
      level: 'refuse',
      reason: `logical subscription ${into.map((s) => s.name).join(', ')} writes into ${[...new Set(into.flatMap((s) => s.tables.filter(ours)))].join(', ')} here: the calls are written on another server too, and ${WHY}`,
    };
  }
  if (f.subscriptions.length) {
    return {
      level: 'warn',
      reason: `logical subscription ${f.subscriptions.map((s) => s.name).join(', ')} brings another server's writes into this database (not the recovery table or fs-ha's): keep the calls written here only`,
    };
  }
  if (f.pglogicalSubscriptions === 0) {
    return {
      level: 'warn',
      reason: 'pglogical is installed: if this database is replicated to a writable server, ' + WHY,
    };
  }
  return { level: 'ok' };
}
