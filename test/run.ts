/**
 * `make test`: starts a throwaway PostgreSQL unless DATABASE_URL is given, then runs every test file
 * with node's test runner (the suites named on the command line, or all of test/).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startThrowawayPostgres, type PgServer } from './helpers/pg';

function find(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? find(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

async function main() {
  const args = process.argv.slice(2);
  const files = (args.length ? args : ['test']).flatMap((a) => (statSync(a).isDirectory() ? find(a) : [a])).sort();
  let pg: PgServer | null = null;
  const env = { ...process.env };
  if (!env.DATABASE_URL) {
    pg = await startThrowawayPostgres({ listen: process.env.FSHA_PG_LISTEN });
    env.DATABASE_URL = pg.url;
    process.stderr.write(`test: throwaway PostgreSQL at ${pg.url}\n`);
  }
  let status = 1;
  try {
    // TEST_PATTERN=regexp runs only the tests whose names match (node --test-name-pattern)
    const only = process.env.TEST_PATTERN ? [`--test-name-pattern=${process.env.TEST_PATTERN}`] : [];
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=300000', ...only, ...files],
      { stdio: 'inherit', env },
    );
    status = r.status ?? 1;
  } finally {
    pg?.stop();
  }
  process.exit(status);
}

void main();
