import { test } from 'node:test';
import assert from 'node:assert/strict';
import sax from 'sax';
import { xmlProblem } from '../../src/core/xml';
import { loadRows } from '../helpers/fixtures';

function saxOk(text: string): boolean {
  const p = sax.parser(true);
  let roots = 0;
  let depth = 0;
  p.onopentag = () => {
    if (depth === 0) roots++;
    depth++;
  };
  p.onclosetag = () => {
    depth--;
  };
  try {
    p.write(text).close();
  } catch {
    return false;
  }
  return roots === 1 && depth === 0;
}

test('the fast checker agrees with sax on real rows and on every truncation/corruption of one', () => {
  const rows = [...loadRows('recovery_rows.sql'), ...loadRows('bridged_rows.sql')];
  for (const r of rows) assert.equal(xmlProblem(r.metadata), null);
  const real = rows[0].metadata;
  let checked = 0;
  for (let cut = 0; cut < real.length; cut += 97) {
    const t = real.slice(0, cut);
    assert.equal(xmlProblem(t) === null, saxOk(t), `truncated at ${cut}`);
    checked++;
  }
  const corruptions = ['<', '&', '</x>', '<a>', '"', "='", '>'];
  for (let at = 50; at < real.length; at += 131) {
    for (const c of corruptions) {
      const t = real.slice(0, at) + c + real.slice(at);
      // the fast checker may be stricter than sax, never more lenient
      if (xmlProblem(t) === null) assert.ok(saxOk(t), `accepted what sax rejects: ${JSON.stringify(c)} at ${at}`);
      checked++;
    }
  }
  assert.ok(checked > 500);
});
