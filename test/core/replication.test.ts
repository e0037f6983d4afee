/** Issue 26: a database fs-ha can trust (core/replication.ts), pure. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeReplication, type ReplicationFacts } from '../../src/core/replication';

const none: ReplicationFacts = { extensions: [], subscriptions: [], pglogicalSubscriptions: null };

test('replication: one writable primary (a physical standby is invisible here) is ok; multi-master extensions and writes into the calls from another server are refused; other logical replication warns', () => {
  assert.deepEqual(judgeReplication(none), { level: 'ok' });
  for (const ext of ['bdr', 'bdr3', 'spock']) {
    const v = judgeReplication({ ...none, extensions: [ext] });
    assert.equal(v.level, 'refuse', ext);
    assert.match(
      (v as { reason: string }).reason,
      new RegExp(`multi-master extension ${ext}.*both recover the same calls`),
    );
  }
  assert.equal(
    judgeReplication({ ...none, extensions: ['pglogical'], pglogicalSubscriptions: 2 }).level,
    'refuse',
    'pglogical subscriber',
  );
  assert.equal(
    judgeReplication({ ...none, extensions: ['pglogical'], pglogicalSubscriptions: 0 }).level,
    'warn',
    'pglogical provider only',
  );
  for (const t of ['recovery', 'public.recovery', 'fsha.recovery_base', 'fsha.audit', 'fs1.recovery']) {
    const v = judgeReplication({ ...none, subscriptions: [{ name: 's1', tables: ['public.cdr', t] }] });
    assert.equal(v.level, 'refuse', t);
    assert.match((v as { reason: string }).reason, new RegExp(`s1 writes into ${t.replace('.', '\\.')} here`));
  }
  const other = judgeReplication({
    ...none,
    subscriptions: [{ name: 'cdrs', tables: ['public.cdr', 'public.recovery_log'] }],
  });
  assert.equal(other.level, 'warn', 'a subscription into other tables');
  assert.equal(judgeReplication({ ...none, subscriptions: [{ name: 'empty', tables: [] }] }).level, 'warn');
});
