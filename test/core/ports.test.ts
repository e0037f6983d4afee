import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mediaPortsOf, movePorts, parseRange, PortBook, rangeProblems, rewritePorts } from '../../src/core/ports';
import { rewriteMetadata } from '../../src/core/rewrite';
import { loadRows } from '../helpers/fixtures';
import { xmlProblem } from '../../src/core/xml';

const RANGE = { lo: 16384, hi: 32768 };
const BAND = { lo: 12288, hi: 16383 };

test('ports: ranges parse and refuse what FreeSWITCH could not use', () => {
  assert.deepEqual(parseRange('16384-32768'), { lo: 16384, hi: 32768 });
  for (const bad of ['16384', '32768-16384', '80-90', '16384-99999', '100-103x', '2000-2001'])
    assert.ok('error' in parseRange(bad), bad);
});

test("ports: a real row's audio port is read from local_media_port and rewritten there and in the SDP's m=audio line, nothing else changes", () => {
  for (const row of loadRows('recovery_rows.sql')) {
    const ports = mediaPortsOf(row.metadata);
    assert.ok(!('error' in ports));
    const old = ports.get('media')!;
    assert.ok(old >= 20000 && old < 21000);
    const r = rewritePorts(row.metadata, ports, new Map([[old, 12288]]));
    assert.ok(r.ok, r.ok ? '' : r.reason);
    assert.equal(r.replaced, 2);
    assert.equal(xmlProblem(r.metadata), null);
    assert.ok(r.metadata.includes('<local_media_port>12288</local_media_port>'));
    assert.ok(r.metadata.includes('m%3Daudio%2012288%20RTP/AVP'));
    assert.ok(!r.metadata.includes(String(old)), `port ${old} is gone`);
    // line by line: only the two lines that hold the port changed
    const a = row.metadata.split('\n'),
      b = r.metadata.split('\n');
    assert.equal(a.length, b.length);
    assert.equal(a.filter((l, i) => l !== b[i]).length, 2);
  }
});

test('ports: video, text and a=rtcp lines move with their streams; RTCP on the next port or muxed', () => {
  const sdp =
    'v%3D0%0D%0Am%3Daudio%2020000%20RTP/AVP%200%0D%0Aa%3Drtcp%3A20001%20IN%20IP4%2010.0.0.1%0D%0Am%3Dvideo%2020100%20RTP/AVP%2096%0D%0Aa%3Drtcp%3A20100%0D%0A';
  const md = `<cdr><variables><local_media_port>20000</local_media_port><local_video_port>20100</local_video_port><rtp_local_sdp_str>${sdp}</rtp_local_sdp_str></variables></cdr>`;
  const ports = mediaPortsOf(md) as Map<'media' | 'video' | 'text', number>;
  const r = rewritePorts(
    md,
    ports,
    new Map([
      [20000, 12288],
      [20100, 12290],
    ]),
  );
  assert.ok(r.ok);
  assert.equal(
    r.metadata,
    md
      .replace('<local_media_port>20000', '<local_media_port>12288')
      .replace('<local_video_port>20100', '<local_video_port>12290')
      .replace('audio%2020000', 'audio%2012288')
      .replace('rtcp%3A20001', 'rtcp%3A12289')
      .replace('video%2020100', 'video%2012290')
      .replace('rtcp%3A20100', 'rtcp%3A12290'),
  );
});

test('ports: an SDP that offers another port than the row binds is not rewritten (held back), a garbled port is an error', () => {
  const md =
    '<cdr><variables><local_media_port>20000</local_media_port><rtp_local_sdp_str>m%3Daudio%2020002%20RTP/AVP%200</rtp_local_sdp_str></variables></cdr>';
  const r = rewritePorts(md, mediaPortsOf(md) as Map<'media', number>, new Map([[20000, 12288]]));
  assert.ok(!r.ok);
  assert.match(r.reason, /offers audio on port 20002, the row's local port is 20000/);
  assert.ok('error' in mediaPortsOf('<local_media_port>2x</local_media_port>'));
  assert.ok(
    'error' in mediaPortsOf('<local_media_port>2000</local_media_port><local_media_port>2002</local_media_port>'),
  );
});

test('ports: the book keeps a port that is safe on the adopter and moves one in its allocator range or in use there', () => {
  const book = new PortBook('fs2', { lo: 20000, hi: 20999 }, BAND, [30000, 30011]);
  const keep = book.place(new Map([['media', 40000]]));
  assert.ok(keep.ok && keep.moves.size === 0, 'outside the range, free: kept');
  const inRange = book.place(new Map([['media', 20500]]));
  assert.ok(inRange.ok && inRange.moves.get(20500) === 12288, 'inside the allocator range: into the band');
  const busy = book.place(new Map([['media', 30000]]));
  assert.ok(busy.ok && busy.moves.get(30000) === 12290, 'in use on the adopter: into the band');
  const rtcpBusy = book.place(new Map([['media', 30010]]));
  assert.ok(rtcpBusy.ok && rtcpBusy.moves.get(30010) === 12292, 'its RTCP port in use: into the band');
  const twice = book.place(new Map([['media', 40000]]));
  assert.ok(twice.ok && twice.moves.get(40000) === 12294, 'a port another adopted call kept: moved');
});

test('ports: the band never hands out a pair in use or inside the allocator range, and runs out with a refusal naming it', () => {
  const book = new PortBook('fs2', { lo: 12292, hi: 32768 }, { lo: 12288, hi: 12299 }, [12288]);
  const a = book.place(new Map([['media', 20000]]));
  assert.ok(a.ok && a.moves.get(20000) === 12290, '12288 busy, 12292.. in the allocator range: 12290');
  const b = book.place(new Map([['media', 20002]]));
  assert.ok(!b.ok);
  assert.match(b.reason, /recovery_ports 12288-12299 has no free port pair left on fs2 for its port 20002/);
});

test('ports: random calls over random adopters never share a port pair on one adopter and never land in its allocator range (fuzz)', () => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    const range = { lo: 20000, hi: 20000 + 2 * (5 + rnd(50)) };
    const own = Array.from({ length: rnd(30) }, () => range.lo + 2 * rnd((range.hi - range.lo) / 2));
    const book = new PortBook(
      'a',
      range,
      { lo: 12288, hi: 12288 + 2 * (10 + rnd(100)) - 1 },
      own.flatMap((p) => [p, p + 1]),
    );
    const held = new Set(own.flatMap((p) => [p, p + 1]));
    for (let i = 0; i < 60; i++) {
      const p = rnd(3) === 0 ? 30000 + 2 * rnd(20) : range.lo + 2 * rnd(20);
      const r = book.place(new Map([['media', p]]));
      if (!r.ok) continue;
      const q = r.moves.get(p) ?? p;
      assert.ok(!held.has(q) && !held.has(q + 1), `round ${round}: ${q} shared`);
      assert.ok(q + 1 < range.lo || q > range.hi, `round ${round}: ${q} in the allocator range`);
      held.add(q).add(q + 1);
    }
  }
});

test('ports: a real row rewritten for its adopter moves its port in the same pass as its addresses', () => {
  const [row] = loadRows('recovery_rows.sql');
  const rw = rewriteMetadata(row.metadata, {
    fromSwitchname: 'freeswitch01',
    toSwitchname: 'freeswitch02',
    addresses: [['127.0.0.11', '127.0.0.12']],
  });
  assert.ok(rw.ok);
  const r = movePorts(rw.metadata, new PortBook('freeswitch02', RANGE, BAND, []));
  assert.ok(r.ok);
  assert.ok(r.metadata.includes('<local_media_port>12288<'));
  assert.ok(r.metadata.includes('IN%20IP4%20127.0.0.12'));
});

test('ports: status and check name overlapping allocator ranges and a band inside a range', () => {
  const p = rangeProblems(
    [
      { name: 'fs1', rtp: RANGE },
      { name: 'fs2', rtp: RANGE },
      { name: 'fs3', rtp: { lo: 40000, hi: 41000 } },
    ],
    { lo: 16000, hi: 16500 },
  );
  assert.equal(p.length, 3);
  assert.equal(p[0].level, 'warning');
  assert.match(p[0].text, /recovery_ports 16000-16500 overlaps fs1's rtp_ports 16384-32768/);
  assert.equal(p[2].level, 'note');
  assert.match(p[2].text, /rtp_ports of fs1 \(16384-32768\) and fs2 \(16384-32768\) overlap/);
  assert.deepEqual(
    rangeProblems(
      [
        { name: 'a', rtp: { lo: 20000, hi: 21000 } },
        { name: 'b', rtp: { lo: 21002, hi: 22000 } },
      ],
      BAND,
    ),
    [],
  );
});

test("ports: a prepared row's ports are claimed only when every one is still safe (outside the allocator, unused, not claimed twice); a refused claim takes nothing", () => {
  const book = new PortBook('fs2', { lo: 16384, hi: 32768 }, { lo: 12288, hi: 16383 }, [12300]);
  assert.equal(book.claim([12290]), true);
  assert.equal(book.claim([12290]), false, 'claimed already in this takeover');
  assert.equal(book.claim([12291]), false, 'the RTCP port of a claimed pair');
  assert.equal(book.claim([12300]), false, 'in use on the adopter');
  assert.equal(book.claim([12299]), false, 'its RTCP port is in use');
  assert.equal(book.claim([20000]), false, "inside the adopter's allocator");
  assert.equal(book.claim([12310, 20000]), false);
  assert.equal(book.claim([12310]), true, 'a refused claim took nothing (12310 still free)');
  assert.equal(book.claim([]), true, 'a row without media claims nothing');
});
