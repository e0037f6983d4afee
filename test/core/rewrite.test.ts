import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rewriteMetadata, fsUrlEncode, compilePatterns, leftoverAddress } from '../../src/core/rewrite';
import { loadRows, lifecycle } from '../helpers/fixtures';
import { xmlProblem } from '../../src/core/xml';

const SPEC = {
  fromSwitchname: 'freeswitch01',
  toSwitchname: 'freeswitch02',
  addresses: [['127.0.0.11', '127.0.0.12']] as Array<[string, string]>,
};

test('real rows: the rewrite equals what the real drill wrote (stage 3), plus the cdr switchname', () => {
  const before = loadRows('recovery_rows.sql');
  const after = lifecycle('3_after_rewrite');
  assert.equal(before.length, 5);
  for (const row of before) {
    const r = rewriteMetadata(row.metadata, SPEC);
    assert.ok(r.ok, r.ok ? '' : r.reason);
    const expected = after
      .find((a) => a.uuid === row.uuid)!
      .metadata.replace('switchname="freeswitch01"', 'switchname="freeswitch02"');
    assert.equal(r.metadata, expected);
    assert.equal(r.replaced, 12); // 11 address spots + the switchname
  }
});

test('real rows: every address of the failed node is gone, nothing else changed (line diff)', () => {
  for (const row of [...loadRows('recovery_rows.sql'), ...loadRows('bridged_rows.sql')]) {
    const r = rewriteMetadata(row.metadata, SPEC);
    assert.ok(r.ok);
    assert.equal(leftoverAddress(r.metadata, compilePatterns(SPEC)), null);
    assert.ok(!r.metadata.includes('127.0.0.11'));
    const a = row.metadata.split('\n');
    const b = r.metadata.split('\n');
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) {
      if (a[i] === b[i]) continue;
      // a changed line differs only where 127.0.0.11 became 127.0.0.12 (or the switchname)
      assert.equal(
        a[i].replace(/127\.0\.0\.11/g, 'X').replace('freeswitch01', 'S'),
        b[i].replace(/127\.0\.0\.12/g, 'X').replace('freeswitch02', 'S'),
        `line ${i}`,
      );
    }
    // the far ends stay
    assert.equal(
      (r.metadata.match(/127\.0\.0\.2[12]/g) ?? []).length,
      (row.metadata.match(/127\.0\.0\.2[12]/g) ?? []).length,
    );
  }
});

function md(vars: string, extra = ''): string {
  return `<cdr core-uuid="c" switchname="freeswitch01"><variables>${vars}</variables>${extra}</cdr>`;
}

test('whole addresses only: 10.0.0.1 never touches 10.0.0.10, 110.0.0.1 or 10.0.0.1.5', () => {
  const spec = {
    fromSwitchname: 'a',
    toSwitchname: 'b',
    addresses: [['10.0.0.1', '192.0.2.7']] as Array<[string, string]>,
  };
  const r = rewriteMetadata(
    md('<x>10.0.0.10</x><y>110.0.0.1</y><z>10.0.0.1</z><w>10.0.0.1.5</w><v>a10.0.0.1</v>'),
    spec,
  );
  assert.ok(r.ok);
  assert.match(
    r.metadata,
    /<x>10\.0\.0\.10<\/x><y>110\.0\.0\.1<\/y><z>192\.0\.2\.7<\/z><w>10\.0\.0\.1\.5<\/w><v>a10\.0\.0\.1<\/v>/,
  );
});

test('URL-encoded neighbours: %4010.0.0.1%3A5060 is found, %40110.0.0.1 is not', () => {
  const spec = {
    fromSwitchname: 'a',
    toSwitchname: 'b',
    addresses: [['10.0.0.1', '192.0.2.7']] as Array<[string, string]>,
  };
  const r = rewriteMetadata(
    md(
      '<u>sip%3A7000%4010.0.0.1%3A5060</u><t>sip%3A7000%40110.0.0.1%3A5060</t><s>IN%20IP4%2010.0.0.1%0D%0A</s><q>x%4010.0.0.10</q>',
    ),
    spec,
  );
  assert.ok(r.ok);
  assert.match(r.metadata, /<u>sip%3A7000%40192\.0\.2\.7%3A5060<\/u>/);
  assert.match(r.metadata, /<t>sip%3A7000%40110\.0\.0\.1%3A5060<\/t>/);
  assert.match(r.metadata, /<s>IN%20IP4%20192\.0\.2\.7%0D%0A<\/s>/);
  assert.match(r.metadata, /<q>x%4010\.0\.0\.10<\/q>/);
});

test('plain XML outside <variables>: text and attributes, entities decoded', () => {
  const spec = {
    fromSwitchname: 'freeswitch01',
    toSwitchname: 'fs2',
    addresses: [['10.0.0.1', '192.0.2.7']] as Array<[string, string]>,
  };
  const r = rewriteMetadata(
    md(
      '',
      '<callflow><caller_profile><network_addr>10.0.0.1</network_addr><chan_name>sofia/internal/sipp@10.0.0.1:5060</chan_name></caller_profile><a x="&quot;10.0.0.1&quot;"/></callflow>',
    ),
    spec,
  );
  assert.ok(r.ok);
  assert.ok(r.metadata.startsWith('<cdr core-uuid="c" switchname="fs2">'));
  assert.match(
    r.metadata,
    /<network_addr>192\.0\.2\.7<\/network_addr><chan_name>sofia\/internal\/sipp@192\.0\.2\.7:5060<\/chan_name>/,
  );
  assert.match(r.metadata, /x="&quot;192\.0\.2\.7&quot;"/);
});

test('IPv6 addresses are re-encoded the way FreeSWITCH encodes (%3A)', () => {
  assert.equal(fsUrlEncode('fd00::12'), 'fd00%3A%3A12');
  assert.equal(fsUrlEncode('sip:a@b;c=d e'), 'sip%3Aa%40b%3Bc%3Dd%20e');
  const spec = {
    fromSwitchname: 'a',
    toSwitchname: 'b',
    addresses: [['fd00::2', 'fd00::12']] as Array<[string, string]>,
  };
  const r = rewriteMetadata(md('<a>%5Bfd00%3A%3A2%5D%3A5060</a><b>fd00%3A%3A20</b>', '<n>fd00::2</n>'), spec);
  assert.ok(r.ok);
  assert.match(r.metadata, /<a>%5Bfd00%3A%3A12%5D%3A5060<\/a><b>fd00%3A%3A20<\/b>/);
  assert.match(r.metadata, /<n>fd00::12<\/n>/);
});

test('several addresses at once are swapped, never chained', () => {
  const spec = {
    fromSwitchname: 'a',
    toSwitchname: 'b',
    addresses: [
      ['10.0.0.1', '10.0.0.2'],
      ['10.0.0.2', '10.0.0.3'],
    ] as Array<[string, string]>,
  };
  const r = rewriteMetadata(md('<a>10.0.0.1</a><b>10.0.0.2</b>'), spec);
  assert.ok(r.ok);
  assert.match(r.metadata, /<a>10\.0\.0\.2<\/a><b>10\.0\.0\.3<\/b>/);
});

test('malformed or truncated metadata is refused with a reason, never half-rewritten', () => {
  const real = loadRows('recovery_rows.sql')[0].metadata;
  for (const bad of [
    real.slice(0, real.length / 2),
    real.replace('</variables>', ''),
    real + '<cdr/>',
    '',
    'not xml',
    real.replace('<sip_req_host>', '<sip_req_host a=b>'),
  ]) {
    const r = rewriteMetadata(bad, SPEC);
    assert.equal(r.ok, false);
    assert.ok(!r.ok && r.reason.length > 0);
  }
});

test('an address in a place fs-ha does not rewrite (a comment) makes the row unsafe', () => {
  const r = rewriteMetadata(md('<a>10.0.0.1</a>', '<!-- 10.0.0.1 -->'), {
    fromSwitchname: 'a',
    toSwitchname: 'b',
    addresses: [['10.0.0.1', '10.0.0.9']],
  });
  assert.equal(r.ok, false);
  assert.match(!r.ok ? r.reason : '', /10\.0\.0\.1/);
});

test('a pair that shares its switchname and VIP: nothing to rewrite, metadata unchanged', () => {
  const row = loadRows('recovery_rows.sql')[0];
  const r = rewriteMetadata(row.metadata, {
    fromSwitchname: 'freeswitch01',
    toSwitchname: 'freeswitch01',
    addresses: [['127.0.0.11', '127.0.0.11']],
  });
  assert.ok(r.ok);
  assert.equal(r.metadata, row.metadata);
  assert.equal(r.replaced, 0);
});

/** Seeded PRNG (mulberry32): the fuzz is the same on every run, and a failure names its seed. */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const markupOf = (xml: string) =>
  xml
    .match(/<[^>]*>/g)!
    .map((t) => t.replace(/"[^"]*"|'[^']*'/g, '""'))
    .join('');

test('fuzz (2000 mutated real rows): one-pass check agrees with a full parse; results keep the markup and parse', () => {
  const base = [...loadRows('recovery_rows.sql'), ...loadRows('bridged_rows.sql')].map((r) => r.metadata);
  const pieces = [
    '127.0.0.11',
    '%40127.0.0.11%3A5060',
    '127.0.0.110',
    '1127.0.0.11',
    '127.0.0.11.5',
    '&amp;127.0.0.11',
    '&#49;27.0.0.11',
    '127%2E0.0.11',
    '<',
    '&',
    '"',
    "'",
    '</x>',
    '<y a="127.0.0.11"/>',
    '%3',
    'freeswitch01',
    '\u00e9',
    '127.0.0.12',
    ']]>',
  ];
  let ok = 0;
  for (let seed = 1; seed <= 2000; seed++) {
    const rnd = prng(seed);
    let m = base[Math.floor(rnd() * base.length)];
    const edits = 1 + Math.floor(rnd() * 4);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rnd() * m.length);
      const kind = rnd();
      if (kind < 0.1)
        m = m.slice(0, at); // truncated
      else if (kind < 0.2) m = m.slice(0, at) + m.slice(at + 1 + Math.floor(rnd() * 20));
      else m = m.slice(0, at) + pieces[Math.floor(rnd() * pieces.length)] + m.slice(at);
    }
    const r = rewriteMetadata(m, SPEC);
    const parses = xmlProblem(m) === null;
    if (!parses) {
      assert.ok(!r.ok, `seed ${seed}: accepted metadata that does not parse`);
      assert.match(r.reason, /does not parse/, `seed ${seed}`);
      continue;
    }
    if (!r.ok) {
      assert.doesNotMatch(r.reason, /does not parse/, `seed ${seed}: rejected metadata that parses`);
      continue;
    }
    ok++;
    assert.equal(xmlProblem(r.metadata), null, `seed ${seed}: result does not parse`);
    assert.equal(markupOf(r.metadata), markupOf(m), `seed ${seed}: markup changed`);
    assert.equal(leftoverAddress(r.metadata, compilePatterns(SPEC)), null, `seed ${seed}`);
  }
  assert.ok(ok > 200, `only ${ok} mutated rows were rewritable: the fuzz does not reach the rewrite`);
});

test("the agent's warm-up rows are real work: every one is rewritten", async () => {
  const { warmRewrite } = await import('../../src/core/warmup');
  assert.equal(warmRewrite(20), 20);
});

test('a one-line element takes the short path with the same result: URL-decoding inside <variables>, also when <variables> holds only text', () => {
  const spec = {
    fromSwitchname: 'a',
    toSwitchname: 'b',
    addresses: [['192.0.2.1', '192.0.2.2']] as Array<[string, string]>,
  };
  const one = rewriteMetadata('<cdr switchname="a"><variables>sip%3A1%40192.0.2.1</variables></cdr>', spec);
  assert.deepEqual(one, {
    ok: true,
    metadata: '<cdr switchname="b"><variables>sip%3A1%40192.0.2.2</variables></cdr>',
    replaced: 2,
  });
  const nested = rewriteMetadata(
    '<cdr switchname="a"><variables>\n <x>sip%3A1%40192.0.2.1</x>\n <y/></variables><z>192.0.2.1</z></cdr>',
    spec,
  );
  assert.deepEqual(nested, {
    ok: true,
    metadata: '<cdr switchname="b"><variables>\n <x>sip%3A1%40192.0.2.2</x>\n <y/></variables><z>192.0.2.2</z></cdr>',
    replaced: 3,
  });
  // the same checks as the long path: a stray '&', a mismatched close, a second root
  assert.equal(rewriteMetadata('<cdr><v>a & b</v></cdr>', spec).ok, false);
  assert.equal(rewriteMetadata('<cdr><v>a</w></cdr>', spec).ok, false);
  assert.equal(rewriteMetadata('<cdr></cdr><v>x</v>', spec).ok, false);
});
