/** Issue 22.10-11: keepalived's FIFO as the agent reads it, when what comes through it or the FIFO itself goes wrong. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FifoReader, MAX_LINE } from '../../src/adapters/fifo';

function reader(path: string) {
  const lines: string[] = [];
  const problems: string[] = [];
  let reopened = 0;
  const r = new FifoReader(
    path,
    {
      backlog: (b) => lines.push(...b),
      line: (l) => lines.push(l),
      reopened: () => {
        reopened++;
      },
      problem: (m) => problems.push(m),
    },
    10,
  );
  return { r, lines, problems, reopened: () => reopened };
}

/** A FIFO made and read, as the agent does it; closed when the test ends. */
async function started(t: { after(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'fsha-fifo-'));
  const path = join(dir, 'fifo');
  assert.equal(spawnSync('mkfifo', ['-m', '0600', path]).status, 0);
  const x = reader(path);
  x.r.start();
  t.after(() => x.r.close());
  await sleep(50);
  return { dir, path, x };
}

test('22.10 a 40 MB line without a newline is dropped, not buffered; the lines after it are heard', async (t) => {
  const { path, x } = await started(t);
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  t.after(() => closeSync(fd));
  const chunk = Buffer.alloc(64 * 1024, 'x');
  for (let sent = 0; sent < 40 * 1024 * 1024; ) {
    try {
      sent += writeSync(fd, chunk);
    } catch {
      await sleep(1);
    } // the pipe is full: the reader drains it
  }
  for (;;) {
    try {
      writeSync(fd, '\nINSTANCE "VI_FS" BACKUP 100\n');
      break;
    } catch {
      await sleep(1);
    }
  }
  for (let i = 0; i < 200 && !x.lines.includes('INSTANCE "VI_FS" BACKUP 100'); i++) await sleep(25);
  assert.deepEqual(x.lines, ['INSTANCE "VI_FS" BACKUP 100'], 'the long line dropped, the next one heard');
  assert.ok(x.lines.every((l) => l.length <= MAX_LINE));
  assert.equal(x.problems.length, 1);
  assert.match(x.problems[0], /more than 4096 bytes without a newline/);
});

test('22.11 the FIFO replaced by a regular file while the agent reads it: said at once (not silent), and heard again once it is a FIFO', async (t) => {
  const { dir, path, x } = await started(t);
  writeFileSync(join(dir, 'file'), 'INSTANCE "VI_FS" BACKUP 100\n', { mode: 0o600 });
  renameSync(join(dir, 'file'), path);
  for (let i = 0; i < 60 && !x.problems.length; i++) await sleep(50);
  assert.equal(x.problems.length, 1, 'one problem line');
  assert.match(x.problems[0], /is not a FIFO.*keepalived's transitions are NOT heard/);
  await sleep(1200);
  assert.equal(x.problems.length, 1, 'said once, not every second');
  assert.equal(spawnSync('rm', ['-f', path]).status, 0);
  assert.equal(spawnSync('mkfifo', ['-m', '0600', path]).status, 0);
  for (let i = 0; i < 60 && !x.reopened(); i++) await sleep(50);
  assert.equal(x.reopened(), 1);
});
