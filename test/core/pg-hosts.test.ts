import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keywordDsn, parsePgTarget, unusableFor } from '../../src/core/pg-hosts';
import { describeUrl } from '../../src/adapters/db';

test('libpq\'s multi-host URL: hosts in order, one URL per host for pg, the session attrs', () => {
  const t = parsePgTarget('postgres://fsha:pw@db1:5433,db2,[fd00::5]:5434/freeswitch?target_session_attrs=read-write&connect_timeout=2&sslmode=disable');
  assert.ok(!('error' in t));
  assert.deepEqual(t.hosts, [{ host: 'db1', port: 5433 }, { host: 'db2', port: 5432 }, { host: '[fd00::5]', port: 5434 }]);
  assert.equal(t.attrs, 'read-write');
  assert.equal(t.connectTimeoutS, 2);
  assert.deepEqual(t.urls, ['postgres://fsha:pw@db1:5433/freeswitch?sslmode=disable', 'postgres://fsha:pw@db2:5432/freeswitch?sslmode=disable', 'postgres://fsha:pw@[fd00::5]:5434/freeswitch?sslmode=disable']);
  assert.equal(describeUrl('postgres://fsha:pw@db1:5433,db2/freeswitch'), 'fsha@db1:5433,db2:5432/freeswitch', 'never the password');
  for (const bad of ['postgres://u@db1:99999/x', 'postgres://u@db1,/x', 'postgres://u@db1/x?target_session_attrs=standby', 'postgres://u@db1/x?connect_timeout=soon']) {
    assert.ok('error' in parsePgTarget(bad), bad);
  }
});

test('a standby or a read-only server is not usable for read-write; FreeSWITCH\'s DSN names every host, never the password', () => {
  assert.equal(unusableFor('read-write', true, true), 'a standby (in recovery): read-only');
  assert.equal(unusableFor('primary', false, true), 'read-only (default_transaction_read_only)');
  assert.equal(unusableFor('read-write', false, false), null);
  const t = parsePgTarget('postgres://fsha:secret@db1:5432,db2:5432/freeswitch?target_session_attrs=read-write');
  assert.ok(!('error' in t));
  assert.equal(keywordDsn(t, '-c search_path=public,fsha_node_fs1'),
    "host=db1,db2 port=5432,5432 dbname=freeswitch user=fsha target_session_attrs=read-write connect_timeout=3 options='-c search_path=public,fsha_node_fs1'");
  assert.ok(!keywordDsn(t).includes('secret'));
});
