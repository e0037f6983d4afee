import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseStatus, parseXmlStatus, parseRecoverReply, healthProblem, parseCoreUuid } from '../../src/core/health';
import { FIXTURES } from '../helpers/fixtures';

/** bodies of api/response messages in a transcript, by the command that asked */
function bodies(file: string): Array<[string, string]> {
  const t = readFileSync(join(FIXTURES, file), 'utf8');
  const out: Array<[string, string]> = [];
  const re = /'api ([^'\\]+)\\n\\n'\n<<< [^\n]*\nContent-Type: api\/response\nContent-Length: (\d+)\n\n/g;
  for (let m = re.exec(t); m; m = re.exec(t)) out.push([m[1], t.slice(re.lastIndex, re.lastIndex + Number(m[2]))]);
  return out;
}

test('real replies: status ready / not ready, xmlstatus with and without profiles, core uuid', () => {
  const all = [...bodies('esl_transcripts.txt'), ...bodies('esl_transcripts_health.txt')];
  const statuses = all.filter(([c]) => c === 'status').map(([, b]) => parseStatus(b));
  assert.deepEqual(
    statuses.map((s) => s.ready),
    [true, true, false],
  );
  const xml = all.filter(([c]) => c === 'sofia xmlstatus').map(([, b]) => parseXmlStatus(b));
  assert.equal(xml[0]!.get('internal'), 'RUNNING (0)');
  assert.ok(
    xml.some((x) => x && x.size === 0),
    'a stopped profile is absent',
  );
  const uuid = all.find(([c]) => c === 'global_getvar core_uuid')![1];
  assert.equal(parseCoreUuid(uuid), 'ddde6d18-bc11-4799-a805-f6c16420b111');
  const rec = all.filter(([c]) => /recover/.test(c)).map(([, b]) => parseRecoverReply(b));
  assert.deepEqual(rec, [0, 0]);
  assert.equal(parseRecoverReply('+OK 5 session(s) recovered in total\n'), 5);
  assert.equal(parseRecoverReply('Recovered 6 call(s)\n'), 6);
  assert.equal(parseRecoverReply('-ERR no'), null);
});

test('health verdicts carry a reason', () => {
  const ready = parseStatus('UP 0 years\nFreeSWITCH (Version 1.10.12-release  64bit) is ready\n');
  assert.equal(
    healthProblem({ status: ready, profiles: new Map([['internal', 'RUNNING (0)']]), wanted: ['internal'] }),
    null,
  );
  assert.match(healthProblem({ status: ready, profiles: new Map(), wanted: ['internal'] })!, /internal=absent/);
  assert.match(healthProblem({ status: parseStatus('garbage'), profiles: null, wanted: [] })!, /up and ready/);
});
