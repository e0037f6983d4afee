/** `fs-ha db init [--layout per-node]`: apply sql/ idempotently; for the per-node layout also one view per node, and print each node's DSN. */
import type { Config, Layout } from '../config';
import { Db } from '../adapters/db';
import * as store from '../adapters/recovery-store';
import { ConfigError, Refused, UsageError } from '../errors';
import { log } from '../log';
import { nodeSchemas, recoveryRelationsProblem } from '../core/per-node';
import { keywordDsn, parsePgTarget } from '../core/pg-hosts';
import type { CommandSpec } from '../cli/spec';

export async function dbInit(cfg: Config, layoutArg?: Layout): Promise<string> {
  if (!cfg.database) throw new ConfigError('config: missing key database');
  const layout = layoutArg ?? cfg.layout;
  const named = nodeSchemas(Object.values(cfg.nodes));
  if ('problem' in named) throw new ConfigError(`config: ${named.problem}`);
  const schemas = named.schemas;
  const db = await Db.connect(cfg.database, cfg.timeouts.databaseMs, 'fs-ha db init');
  const out: string[] = [];
  try {
    const replication = await store.replicationVerdict(db);
    if (replication.level === 'refuse') throw new Refused(`db init refused: ${replication.reason}`);
    if (replication.level === 'warn') log('warn', `db init: ${replication.reason}`);
    const applied = await db.transaction(async () => {
      const files = await store.applySchema(db, layout);
      if (layout === 'per-node') {
        for (const sw of schemas.keys()) out.push(`view ${await store.createNodeView(db, sw)}.recovery for ${sw}`);
      }
      return files;
    }, 'db init');
    out.unshift(`applied ${applied.join(', ')} (layout ${layout})`);
    // FreeSWITCH's DSNs for the same servers, in libpq's keyword form (mod_pgsql passes it to PQconnectdb):
    // every host, the primary chosen by target_session_attrs; the password comes from ~/.pgpass or PGPASSWORD
    const target = parsePgTarget(cfg.database);
    if (!('error' in target)) {
      out.push(
        '',
        layout === 'per-node'
          ? "Point each node's core-db-dsn AND its sofia profiles' odbc-dsn at its own view (public first):"
          : "Each node's core-db-dsn and its sofia profiles' odbc-dsn:",
      );
      for (const n of Object.values(cfg.nodes)) {
        const options = layout === 'per-node' ? `-c search_path=public,${store.nodeSchema(n.switchname)}` : undefined;
        out.push(`  ${n.name}: pgsql://${keywordDsn(target, options)}`);
      }
      out.push("  (the password: in FreeSWITCH's ~/.pgpass, or add password=... yourself; fs-ha never prints it)");
    }
    const problem = recoveryRelationsProblem(layout, await store.recoveryRelations(db), schemas);
    if (problem) {
      out.push('', `WARNING: ${problem}.`, 'fs-ha refuses every takeover until this is fixed.');
      log('error', `db init: ${problem}`);
    }
    if (replication.level === 'warn') out.push('', `WARNING: ${replication.reason}.`);
    log('info', `db init: ${out[0]}`);
  } finally {
    await db.close();
  }
  return out.join('\n') + '\n';
}

export const command: CommandSpec = {
  name: 'db',
  links: [],
  args: 'init',
  positionals: { min: 1, max: 1 },
  summary: "create fs-ha's tables (idempotent); per-node: one view per node",
  exits: '0, 1 database error or refused (a multi-master database), 2 usage or configuration error',
  options: {
    layout: { type: 'string', arg: 'shared|per-node', help: 'the layout to create (default: the configured one)' },
  },
  async run({ cfg, values, positionals, out }) {
    if (positionals[0] !== 'init') throw new UsageError('usage: fs-ha db init [--layout shared|per-node]');
    const layout = values.layout;
    if (layout !== undefined && layout !== 'shared' && layout !== 'per-node')
      throw new UsageError('--layout must be shared or per-node');
    const text = await dbInit(cfg, layout);
    out.result({ layout: layout ?? cfg.layout, text }, text);
    return 0;
  },
};
