/** The simulator's media plane is FreeSWITCH's: last bind wins on a shared port, deaf calls time out, robustness skips bound ports. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { MediaPlane } from './media';
import { RtpEcho } from './rtp-echo';
import { freePort } from '../helpers/pg';

test('media: two channels on one port (SO_REUSEADDR): the one bound last hears everything, the first goes deaf and is hung up MEDIA_TIMEOUT', async (t) => {
  const echo = new RtpEcho('127.0.0.21', await freePort('127.0.0.21'));
  await echo.start();
  const hung: string[] = [];
  const a = new MediaPlane({
    ports: { lo: 20000, hi: 20001 },
    timeoutSec: 1,
    onEvent: (w, d) => {
      if (w === 'media-hangup') hung.push(`${d.uuid}:${d.cause}`);
    },
  });
  const b = new MediaPlane({ ports: { lo: 20000, hi: 20001 }, timeoutSec: 1 });
  t.after(() => {
    a.closeAll();
    b.closeAll();
    echo.stop();
  });
  const own = '11111111-1111-1111-1111-111111111111',
    recovered = '22222222-2222-2222-2222-222222222222';
  const port = await freePort('127.0.0.12');
  await a.open(
    own,
    { ip: '127.0.0.12', port },
    { ip: echo.ip, port: echo.port },
    { recovered: false, allocated: true },
  );
  await sleep(200);
  assert.ok(a.report()[0].rx > 0, 'alone, it hears its far end');
  await b.open(
    recovered,
    { ip: '127.0.0.12', port },
    { ip: echo.ip, port: echo.port },
    { recovered: true, allocated: false },
  );
  await sleep(1500);
  assert.deepEqual(hung, [`${own}:MEDIA_TIMEOUT`]);
  assert.ok(b.report()[0].rxAgoMs! < 200, 'the last bind hears');
});

test('media: the allocator hands out even ports of its range, never twice; with rtp-port-usage-robustness it skips a port bound by someone else', async (t) => {
  const m = new MediaPlane({ ports: { lo: 20100, hi: 20105 }, timeoutSec: 0 });
  const got = [await m.allocate('127.0.0.1'), await m.allocate('127.0.0.1'), await m.allocate('127.0.0.1')].sort();
  assert.deepEqual(got, [20100, 20102, 20104]);
  await assert.rejects(m.allocate('127.0.0.1'), /no free RTP port/);
  const robust = new MediaPlane({ ports: { lo: 20200, hi: 20203 }, timeoutSec: 0, robustness: true });
  const other = new MediaPlane({ ports: { lo: 1, hi: 2 }, timeoutSec: 0 });
  t.after(() => other.closeAll());
  await other.open(
    'x',
    { ip: '127.0.0.1', port: 20200 },
    { ip: '127.0.0.1', port: 9 },
    { recovered: true, allocated: false },
  );
  for (let i = 0; i < 5; i++) {
    const p = await robust.allocate('127.0.0.1');
    assert.equal(p, 20202);
    robust.close('none');
    (robust as unknown as { allocated: Set<number> }).allocated.clear();
  }
});
