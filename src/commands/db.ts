/** `fs-ha db init [--layout per-node]`: apply sql/ idempotently; for the per-node layout also one view per node, and print each node's DSN. */
import type { Config, Layout } from '../config';
import { Db } from '../adapters/db';
import * as store from '../adapters/recovery-store';
import { ConfigError } from '../errors';
import { log } from '../log';
import { nodeSchemas, recoveryRelationsProblem } from '../core/per-node';

export async function dbInit(cfg: Config, layoutArg?: Layout): Promise<string> {
  if (!cfg.database) throw new ConfigError('config: missing key database');
  const layout = layoutArg ?? cfg.layout;
  const named = nodeSchemas(Object.values(cfg.nodes));
  if ('problem' in named) throw new ConfigError(`config: ${named.problem}`);
  const schemas = named.schemas;
  const db = await Db.connect(cfg.database, cfg.timeouts.databaseMs, 'fs-ha db init');
  const out: string[] = [];
  try {
    const applied = await db.transaction(async () => {
      const files = await store.applySchema(db, layout);
      if (layout === 'per-node') {
        for (const sw of schemas.keys()) out.push(`view ${await store.createNodeView(db, sw)}.recovery for ${sw}`);
      }
      return files;
    }, 'db init');
    out.unshift(`applied ${applied.join(', ')} (layout ${layout})`);
    if (layout === 'per-node') {
      out.push('', 'Point each node\'s core-db-dsn AND its sofia profiles\' odbc-dsn at its own view (public first):');
      for (const n of Object.values(cfg.nodes)) {
        out.push(`  ${n.name}: pgsql://hostaddr=DBHOST dbname=DB user=USER password=PASSWORD options='-c search_path=public,${store.nodeSchema(n.switchname)}'`);
      }
    }
    const problem = recoveryRelationsProblem(layout, await store.recoveryRelations(db), schemas);
    if (problem) {
      out.push('', `WARNING: ${problem}.`, 'fs-ha refuses every takeover until this is fixed.');
      log('error', `db init: ${problem}`);
    }
    log('info', `db init: ${out[0]}`);
  } finally {
    await db.close();
  }
  return out.join('\n') + '\n';
}
