import { test } from 'node:test';
import assert from 'node:assert/strict';
import { latestPerInstance, parseFifoLine } from '../../src/core/fifo-line';

test("keepalived's FIFO lines: transitions parsed, priority changes and garbage ignored with a reason", () => {
  assert.deepEqual(parseFifoLine('INSTANCE "VI_1" MASTER 100'), {
    kind: 'transition',
    type: 'INSTANCE',
    name: 'VI_1',
    state: 'MASTER',
    priority: 100,
  });
  assert.deepEqual(parseFifoLine('GROUP "G 1" BACKUP 0\n'), {
    kind: 'transition',
    type: 'GROUP',
    name: 'G 1',
    state: 'BACKUP',
    priority: 0,
  });
  assert.deepEqual(parseFifoLine('INSTANCE "VI_1" STOP'), {
    kind: 'transition',
    type: 'INSTANCE',
    name: 'VI_1',
    state: 'STOP',
    priority: null,
  });
  for (const s of ['FAULT', 'DELETED']) assert.equal(parseFifoLine(`INSTANCE "x" ${s} 1`).kind, 'transition');
  for (const l of [
    'INSTANCE "VI_1" MASTER_RX_LOWER_PRI 100',
    'INSTANCE "VI_1" MASTER_PRIORITY 90',
    'hello',
    'INSTANCE VI_1 MASTER 100',
    '',
  ]) {
    const r = parseFifoLine(l);
    assert.equal(r.kind, 'ignored', l);
  }
});

test('a backlog keeps only the last state of each instance, in the order of those last lines', () => {
  const lines = [
    'INSTANCE "A" MASTER 1',
    'INSTANCE "B" BACKUP 1',
    'INSTANCE "A" BACKUP 1',
    'INSTANCE "A" MASTER_PRIORITY 1',
    'GROUP "A" FAULT 0',
  ].map(parseFifoLine);
  assert.deepEqual(
    latestPerInstance(lines).map((l) => `${l.type} ${l.name} ${l.state}`),
    ['INSTANCE B BACKUP', 'INSTANCE A BACKUP', 'GROUP A FAULT'],
  );
});
