import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, nodeForInstance } from '../../src/config';

const GOOD = `
node: freeswitch02
database: postgres://fsha@192.0.2.5:5432/freeswitch
esl: { host: 127.0.0.1, port: 8021, password: ClueCon, timeout_ms: 1500 }
nodes:
  freeswitch01: { addresses: [192.0.2.10], esl: { host: 192.0.2.10, port: 8021, password: ClueCon } }
  freeswitch02: { addresses: [192.0.2.11] }
instances: { VI_FS01: freeswitch01 }
check: { profiles: [internal], database: false }
recover: sofia
standby: true
fence: ""
`;

test('the documented example loads, with defaults', () => {
  const c = parseConfig(GOOD);
  assert.equal(c.node, 'freeswitch02');
  assert.equal(c.nodes.freeswitch01.switchname, 'freeswitch01');
  assert.equal(c.check.timeoutMs, 1500);
  assert.equal(c.layout, 'shared');
  assert.equal(nodeForInstance(c, 'VI_FS01'), 'freeswitch01');
  assert.equal(nodeForInstance(c, undefined), 'freeswitch01');
});

test('errors name the key', () => {
  const cases: Array<[string, RegExp]> = [
    [GOOD.replace('node: freeswitch02', ''), /missing key node/],
    [GOOD.replace('node: freeswitch02', 'node: nosuch'), /node "nosuch" is not listed under nodes/],
    [GOOD.replace('recover: sofia', 'recover: magic'), /recover must be one of sofia, fsctl/],
    [GOOD.replace('[192.0.2.10]', '[not-an-ip]'), /nodes\.freeswitch01\.addresses/],
    [
      GOOD.replace('port: 8021, password: ClueCon, timeout_ms', 'port: 99999, password: ClueCon, timeout_ms'),
      /esl\.port/,
    ],
    [GOOD.replace('standby: true', 'standbye: true'), /unknown key standbye/],
    [GOOD.replace('{ VI_FS01: freeswitch01 }', '{ VI_FS01: ghost }'), /instances\.VI_FS01/],
    [GOOD.replace('postgres://', 'mysql://'), /database must be a postgres/],
    ['node: [', /not valid YAML/],
    [GOOD.replace('freeswitch01: {', '"fs01; drop table x": {'), /not a valid node name/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseConfig(text), re);
});

test('8.2 per-node layout: nodes whose schemas would collide (case, . - _, truncation at 63 bytes) are refused, naming them', () => {
  const farm = (names: string[]) =>
    `node: ${names[0]}\nlayout: per-node\nesl: { host: 127.0.0.1 }\nnodes:\n${names.map((n, i) => `  ${n}: { addresses: [127.0.0.${i + 1}] }`).join('\n')}\n`;
  assert.throws(
    () => parseConfig(farm(['fs-1', 'fs2', 'fs.1'])),
    /nodes fs-1, fs\.1 would share the per-node schema fsha_node_fs_1/,
  );
  assert.throws(() => parseConfig(farm(['fs1', 'FS1'])), /nodes fs1, FS1 would share/);
  assert.throws(() => parseConfig(farm(['fs_1', 'fs-1'])), /nodes fs_1, fs-1 would share/);
  const long = 'n'.repeat(57);
  assert.throws(() => parseConfig(farm([`${long}a`, `${long}b`])), /too long for the per-node layout/);
  assert.doesNotThrow(() => parseConfig(farm(['fs1', 'fs2', 'fs3'])));
  // the shared layout does not use schemas: the same names load
  assert.doesNotThrow(() => parseConfig(farm(['fs-1', 'fs2', 'fs.1']).replace('layout: per-node', 'layout: shared')));
});

test('8.10 values that used to pass or fail late are errors naming the key', () => {
  const cases: Array<[string, RegExp]> = [
    [GOOD + 'log: { facility: nonsense }\n', /log\.facility must be one of daemon/],
    [GOOD + "state_dir: ''\n", /state_dir must not be empty/],
    [GOOD + 'log: { file: 5 }\n', /log\.file must be a path/],
    [GOOD + "watch: { file: '' }\n", /watch\.file must not be empty/],
    [GOOD + 'state_dir: relative/dir\n', /state_dir must be an absolute path/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseConfig(text), re);
  assert.equal(parseConfig(GOOD + "log: { file: '' }\n").log.file, '', "log.file '' means no file");
});

test("8.7 addresses: only real IPs, IPv6 in FreeSWITCH's canonical form, one family per position", () => {
  for (const bad of [':', '1:2', '::::::::::::', '1:2:3:4:5:6:7:8:9:10', '300.1.1.1']) {
    assert.throws(
      () => parseConfig(GOOD.replace('[192.0.2.10]', `["${bad}"]`)),
      /nodes\.freeswitch01\.addresses has/,
      bad,
    );
  }
  const c = parseConfig(GOOD.replace('[192.0.2.10]', '["2001:DB8:0:0::1"]').replace('[192.0.2.11]', '["2001:db8::2"]'));
  assert.deepEqual(c.nodes.freeswitch01.addresses, ['2001:db8::1']);
  assert.throws(
    () => parseConfig(GOOD.replace('[192.0.2.10]', '[127.0.0.11, "fd00::11"]').replace('[192.0.2.11]', '[127.0.0.12]')),
    /pair fd00::11 with 127\.0\.0\.12 \(IPv6 with IPv4\)/,
  );
});

test('8.11 redaction: the configured secrets and DSN passwords, and no ordinary word', async () => {
  const { redact } = await import('../../src/log');
  const { configSecrets } = await import('../../src/config');
  const c = parseConfig(
    GOOD.replace('postgres://fsha@', 'postgres://fsha:s3cr%40t@').replace(
      'password: ClueCon }',
      'password: Pw-of-fs1 }',
    ),
  );
  const secrets = configSecrets(c);
  assert.deepEqual(
    redact('fs1 answers but rejected the password: cannot prove it is down', secrets),
    'fs1 answers but rejected the password: cannot prove it is down',
  );
  assert.equal(redact('auth Pw-of-fs1 failed; ClueCon', secrets), 'auth *** failed; ***');
  assert.equal(
    redact('connect postgres://fsha:s3cr%40t@db/x and host=db password=hunter2 dbname=x', secrets),
    'connect postgres://fsha:***@db/x and host=db password=*** dbname=x',
  );
  assert.equal(redact('the s3cr@t leaked', secrets), 'the *** leaked');
});

test('agent.metrics is served on loopback only', () => {
  assert.equal(parseConfig(GOOD + "agent: { metrics: '127.0.0.1:9642' }\n").agent.metrics, '127.0.0.1:9642');
  assert.equal(parseConfig(GOOD).agent.metrics, '');
  for (const bad of ['0.0.0.0:9642', '192.0.2.10:9642', 'localhost:9642', '127.0.0.1']) {
    assert.throws(
      () => parseConfig(GOOD + `agent: { metrics: '${bad}' }\n`),
      /agent\.metrics must be a loopback HOST:PORT/,
      bad,
    );
  }
});
