/** `fs-ha db init [--layout per-node]`: apply sql/ idempotently; for the per-node layout also one view per node, and print each node's DSN. */
import type { Config, Layout } from '../config';
import { Db } from '../adapters/db';
import * as store from '../adapters/recovery-store';
import { ConfigError } from '../errors';
import { log } from '../log';

export async function dbInit(cfg: Config, layoutArg?: Layout): Promise<string> {
  if (!cfg.database) throw new ConfigError('config: missing key database');
  const layout = layoutArg ?? cfg.layout;
  const db = await Db.connect(cfg.database, cfg.timeouts.databaseMs, 'fs-ha db init');
  const out: string[] = [];
  try {
    const applied = await db.transaction(async () => {
      const files = await store.applySchema(db, layout);
      if (layout === 'per-node') {
        const switchnames = [...new Set(Object.values(cfg.nodes).map((n) => n.switchname))];
        for (const sw of switchnames) out.push(`view ${await store.createNodeView(db, sw)}.recovery for ${sw}`);
      }
      return files;
    }, 'db init');
    out.unshift(`applied ${applied.join(', ')} (layout ${layout})`);
    if (layout === 'per-node') {
      out.push('', 'Point each node\'s core-db-dsn AND its sofia profiles\' odbc-dsn at its own view (public first):');
      for (const n of Object.values(cfg.nodes)) {
        out.push(`  ${n.name}: pgsql://hostaddr=DBHOST dbname=DB user=USER password=PASSWORD options='-c search_path=public,${store.nodeSchema(n.switchname)}'`);
      }
      if (await store.publicRecoveryIsTable(db)) {
        out.push('', 'WARNING: public.recovery exists. It shadows the per-node views: move its rows into fsha.recovery and drop it',
          'once every node uses its per-node DSN (fs-ha refuses to take over while it exists).');
      }
    }
    log('info', `db init: ${out[0]}`);
  } finally {
    await db.close();
  }
  return out.join('\n') + '\n';
}
