import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readConsoleWords } from '../../src/core/console-words';

test('console words: what an operator types after fsha, read into one action; a drain without --yes only plans; bad input is one usage line', () => {
  assert.deepEqual(readConsoleWords([]), { kind: 'status' });
  assert.deepEqual(readConsoleWords(['status']), { kind: 'status' });
  assert.deepEqual(readConsoleWords(['takeover', 'freeswitch01']), {
    kind: 'takeover',
    from: 'freeswitch01',
    to: undefined,
  });
  assert.deepEqual(readConsoleWords(['takeover', 'freeswitch01', '--to', 'fs2,fs3']), {
    kind: 'takeover',
    from: 'freeswitch01',
    to: 'fs2,fs3',
  });
  assert.deepEqual(readConsoleWords(['drain', 'freeswitch01']), {
    kind: 'drain',
    from: 'freeswitch01',
    to: undefined,
    yes: false,
  });
  assert.deepEqual(readConsoleWords(['drain', 'freeswitch01', '--yes']), {
    kind: 'drain',
    from: 'freeswitch01',
    to: undefined,
    yes: true,
  });
  assert.deepEqual(readConsoleWords(['history']), { kind: 'history', last: 5 });
  assert.deepEqual(readConsoleWords(['history', '12']), { kind: 'history', last: 12 });
  assert.deepEqual(readConsoleWords(['help']), { kind: 'help' });
  for (const bad of [
    ['takeover'],
    ['takeover', 'a', 'b'],
    ['takeover', 'fs1', '--yes'],
    ['drain', '--yes'],
    ['takeover', '$(reboot)'],
    ['frob'],
    ['status', 'x'],
    ['history', 'x'],
    ['takeover', 'fs1', '--to'],
    ['takeover', 'fs1', '--to', 'a;b'],
    ['drain', 'fs1', '--force'],
  ]) {
    const a = readConsoleWords(bad);
    assert.equal(a.kind, 'usage', bad.join(' '));
    assert.ok(!(a as { message: string }).message.includes('\n'), 'one line');
  }
});
