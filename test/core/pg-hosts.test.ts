import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keywordDsn, parsePgTarget, unusableFor } from '../../src/core/pg-hosts';
import { describeUrl } from '../../src/adapters/db';

test("libpq's multi-host URL: hosts in order, one URL per host for pg, the session attrs", () => {
  const t = parsePgTarget(
    'postgres://fsha:pw@db1:5433,db2,[fd00::5]:5434/freeswitch?target_session_attrs=read-write&connect_timeout=2&sslmode=disable',
  );
  assert.ok(!('error' in t));
  assert.deepEqual(t.hosts, [
    { host: 'db1', port: 5433 },
    { host: 'db2', port: 5432 },
    { host: '[fd00::5]', port: 5434 },
  ]);
  assert.equal(t.attrs, 'read-write');
  assert.equal(t.connectTimeoutS, 2);
  assert.deepEqual(t.urls, [
    'postgres://fsha:pw@db1:5433/freeswitch?sslmode=disable',
    'postgres://fsha:pw@db2:5432/freeswitch?sslmode=disable',
    'postgres://fsha:pw@[fd00::5]:5434/freeswitch?sslmode=disable',
  ]);
  assert.equal(
    describeUrl('postgres://fsha:pw@db1:5433,db2/freeswitch'),
    'fsha@db1:5433,db2:5432/freeswitch',
    'never the password',
  );
  for (const bad of [
    'postgres://u@db1:99999/x',
    'postgres://u@db1,/x',
    'postgres://u@db1/x?target_session_attrs=standby',
    'postgres://u@db1/x?connect_timeout=soon',
  ]) {
    assert.ok('error' in parsePgTarget(bad), bad);
  }
});

test("a standby or a read-only server is not usable for read-write; FreeSWITCH's DSN names every host, never the password", () => {
  assert.equal(unusableFor('read-write', true, true), 'a standby (in recovery): read-only');
  assert.equal(unusableFor('primary', false, true), 'read-only (default_transaction_read_only)');
  assert.equal(unusableFor('read-write', false, false), null);
  const t = parsePgTarget('postgres://fsha:secret@db1:5432,db2:5432/freeswitch?target_session_attrs=read-write');
  assert.ok(!('error' in t));
  assert.equal(
    keywordDsn(t, '-c search_path=public,fsha_node_fs1'),
    "host=db1,db2 port=5432,5432 dbname=freeswitch user=fsha target_session_attrs=read-write connect_timeout=3 options='-c search_path=public,fsha_node_fs1'",
  );
  assert.ok(!keywordDsn(t).includes('secret'));
});

test('22.13 a password with a raw @ / never shows: hosts, user and database read right, describeUrl and the DSN without it', async () => {
  const { describeUrl } = await import('../../src/adapters/db');
  for (const url of [
    'postgres://fsha2:TopSecret@Tail@db1:5432,db2:5433/freeswitch',
    'postgres://fsha2:Prefix/Part@db1:5432,db2:5433/freeswitch',
  ]) {
    const t = parsePgTarget(url);
    assert.ok(!('error' in t), JSON.stringify(t));
    assert.deepEqual(t.hosts, [
      { host: 'db1', port: 5432 },
      { host: 'db2', port: 5433 },
    ]);
    assert.equal(t.user, 'fsha2');
    assert.equal(t.database, 'freeswitch');
    for (const shown of [describeUrl(url), keywordDsn(t)]) assert.ok(!/Tail|Secret|Prefix|Part/.test(shown), shown);
    assert.ok(
      t.urls.every((u) => new URL(u).hostname.startsWith('db')),
      'each per-host URL parses to its host',
    );
  }
  const q = parsePgTarget('postgres://fsha2:Pre?fix@db1/freeswitch');
  assert.ok('error' in q && !/Pre|fix/.test(q.error), JSON.stringify(q));
});

test("22.14 db init's DSN: ?port= and ?host= as libpq reads them, a socket written %2F decoded, sslmode and other parameters kept; prefer/allow refused", () => {
  const dsn = (u: string) => {
    const t = parsePgTarget(u);
    assert.ok(!('error' in t), JSON.stringify(t));
    return keywordDsn(t);
  };
  assert.match(dsn('postgres://fsha@db1/fs?port=5499'), /^host=db1 port=5499 /);
  assert.match(dsn('postgres://fsha@%2Frun%2Fpostgresql/fs'), /^host=\/run\/postgresql port=5432 /);
  assert.match(dsn('postgres://fsha@localhost/fs?host=/run/postgresql'), /^host=\/run\/postgresql port=5432 /);
  assert.match(
    dsn('postgres://fsha@db1/fs?sslmode=require&application_name=fs'),
    / sslmode=require application_name=fs/,
  );
  for (const mode of ['prefer', 'allow']) {
    const t = parsePgTarget(`postgres://fsha@db1/fs?sslmode=${mode}`);
    assert.ok('error' in t && new RegExp(`sslmode=${mode} is not supported`).test(t.error));
  }
});

test('22.15 a stray % in the user or database is a configuration error (exit 2), not "URI malformed"; agent.metrics takes loopback ports 1-65535 only', async () => {
  const { parseConfig } = await import('../../src/config');
  const yaml = (extra: string) => `node: a\nesl: { host: 127.0.0.1 }\nnodes: { a: {} }\n${extra}\n`;
  for (const url of ['postgres://fs%ha@db1/fs', 'postgres://fsha@db1/free%switch']) {
    assert.throws(
      () => parseConfig(yaml(`database: ${url}`)),
      (e: Error) => e.name === 'ConfigError' && /holds a % that is not an escape/.test(e.message),
    );
  }
  for (const bad of ['127.0.0.1:99999', '127.0.0.1:0', '127.300.0.1:9642']) {
    assert.throws(() => parseConfig(yaml(`agent: { metrics: '${bad}' }`)), /config: agent\.metrics/, bad);
  }
  assert.doesNotThrow(() => parseConfig(yaml(`agent: { metrics: '127.0.0.1:9642' }`)));
});
