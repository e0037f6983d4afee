/** Real rows captured from FreeSWITCH 1.10.12 (test/fixtures, a copy of shared/fixtures), parsed from their INSERTs. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** test/fixtures, found from here upwards (this file also runs bundled, as dist/bench.js). */
function fixturesDir(): string {
  for (let d = __dirname; ; d = dirname(d)) {
    for (const candidate of [join(d, 'fixtures'), join(d, 'test', 'fixtures')]) {
      if (existsSync(join(candidate, 'freeswitch-1.10.12'))) return join(candidate, 'freeswitch-1.10.12');
    }
    if (dirname(d) === d) throw new Error('test/fixtures not found');
  }
}

export const FIXTURES = fixturesDir();

export interface RecoveryRow {
  runtime_uuid: string;
  technology: string;
  profile_name: string;
  hostname: string;
  uuid: string;
  metadata: string;
  stage?: string;
}

/** Parse `INSERT INTO t (...) VALUES ('a', 'b', ...);` statements (standard_conforming_strings literals). */
export function parseInserts(sql: string): string[][] {
  const rows: string[][] = [];
  const re = /INSERT INTO \S+(?: \([^)]*\))? VALUES \(/g;
  for (let m = re.exec(sql); m; m = re.exec(sql)) {
    let i = re.lastIndex;
    const values: string[] = [];
    for (;;) {
      while (sql[i] === ' ' || sql[i] === ',') i++;
      if (sql[i] === ')') break;
      if (sql[i] !== "'") throw new Error(`unexpected ${sql.slice(i, i + 20)}`);
      let v = '';
      i++;
      for (;;) {
        const q = sql.indexOf("'", i);
        v += sql.slice(i, q);
        if (sql[q + 1] === "'") {
          v += "'";
          i = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      values.push(v);
    }
    rows.push(values);
    re.lastIndex = i;
  }
  return rows;
}

export function loadRows(file: string): RecoveryRow[] {
  return parseInserts(readFileSync(join(FIXTURES, file), 'utf8')).map((v) => {
    if (v.length === 8) {
      const [stage, , runtime_uuid, technology, profile_name, hostname, uuid, metadata] = v;
      return { stage, runtime_uuid, technology, profile_name, hostname, uuid, metadata };
    }
    const [runtime_uuid, technology, profile_name, hostname, uuid, metadata] = v;
    return { runtime_uuid, technology, profile_name, hostname, uuid, metadata };
  });
}

export function lifecycle(stage: string): RecoveryRow[] {
  return loadRows('recovery_rows_lifecycle.sql').filter((r) => r.stage === stage);
}
