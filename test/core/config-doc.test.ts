/** The configuration is described once (src/config-schema.ts): the reference in docs/configuration.md and every example file must agree with it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../src/config';
import { describe as describeKeys } from '../../src/config-schema';
import { END, START, withReference } from '../../scripts/gen-config-doc';

const ROOT = join(__dirname, '..', '..');
const README = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');

test("the README's configuration reference is the schema's (run make docs after changing a key)", () => {
  assert.ok(README.includes(START) && README.includes(END), 'docs/configuration.md has the markers');
  assert.equal(README, withReference(README), 'docs/configuration.md and src/config-schema.ts drifted: run make docs');
  for (const k of describeKeys()) assert.ok(README.includes(`\`${k.key}\``), `${k.key} documented`);
});

test("the example files load as they ship: the templates and the README's example", () => {
  for (const f of ['keepalived/pair/fs-ha.yaml', 'keepalived/farm/fs-ha.yaml', 'keepalived/proxy-farm/fs-ha.yaml']) {
    const c = parseConfig(readFileSync(join(ROOT, f), 'utf8'), f);
    assert.ok(Object.keys(c.nodes).length >= 2, f);
  }
  const section = README.slice(README.indexOf('## Configuration'));
  const example = section.match(/```yaml\n([\s\S]*?)```/)![1];
  const c = parseConfig(example, 'docs/configuration.md');
  assert.equal(c.node, 'freeswitch02');
  // every top-level key of the schema appears in the README's example, so an operator sees its place in the file
  for (const k of new Set(describeKeys().map((d) => d.key.split('.')[0])))
    assert.match(example, new RegExp(`^${k}:`, 'm'), `${k} in the README example`);
});
