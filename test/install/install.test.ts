/** make install / uninstall / deb, as an operator runs them (into a DESTDIR, so the machine is not touched). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const make = (...args: string[]) => execFileSync('make', ['--no-print-directory', '-C', ROOT, ...args], { encoding: 'utf8' });
const LINKS = ['check_fs', 'notify_master', 'notify_backup', 'notify_fault', 'notify_stop', 'notify'];

test('make install: binary and links root-owned and not writable by others, config 0600 never overwritten; uninstall keeps it', () => {
  const dest = mkdtempSync(join(tmpdir(), 'fsha-destdir-'));
  make('install', `DESTDIR=${dest}`, 'PREFIX=/opt/fsha');
  const bin = join(dest, 'opt/fsha/bin');
  const st = statSync(join(bin, 'fs-ha'));
  assert.equal(st.mode & 0o777, 0o755);
  if (process.getuid?.() === 0) assert.equal(st.uid, 0);
  for (const l of LINKS) assert.ok(lstatSync(join(bin, l)).isSymbolicLink(), l);
  assert.match(execFileSync(join(bin, 'notify_master'), ['--version'], { encoding: 'utf8' }), /^fs-ha \d/);
  const conf = join(dest, 'etc/fs-ha/fs-ha.yaml');
  assert.equal(statSync(conf).mode & 0o777, 0o600);
  for (const f of ['pair/keepalived.conf', 'pair/fs-ha.yaml', 'farm/keepalived.conf', 'farm/fs-ha.yaml']) {
    const s = statSync(join(dest, 'opt/fsha/share/fs-ha/keepalived', f));
    assert.equal(s.mode & 0o022, 0, `${f} writable by others`);
  }
  const unit = readFileSync(join(dest, 'opt/fsha/share/fs-ha/systemd/fs-ha-watch.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/opt\/fsha\/bin\/fs-ha --config \/etc\/fs-ha\/fs-ha.yaml watch$/m);
  writeFileSync(conf, 'node: mine\n');
  assert.match(make('install', `DESTDIR=${dest}`, 'PREFIX=/opt/fsha'), /kept the existing/);
  assert.equal(readFileSync(conf, 'utf8'), 'node: mine\n');
  make('uninstall', `DESTDIR=${dest}`, 'PREFIX=/opt/fsha');
  assert.ok(!existsSync(join(bin, 'fs-ha')));
  for (const l of LINKS) assert.ok(!existsSync(join(bin, l)));
  assert.ok(!existsSync(join(dest, 'opt/fsha/share/fs-ha')));
  assert.equal(readFileSync(conf, 'utf8'), 'node: mine\n');
});

test('make deb: a package with the binary, the links, the examples and the config as a conffile', () => {
  make('deb');
  const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
  const deb = join(ROOT, 'dist', `fs-ha_${version}_amd64.deb`);
  const list = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8' });
  assert.match(list, /-rwxr-xr-x root\/root .* \.\/usr\/bin\/fs-ha\n/);
  for (const l of LINKS) assert.match(list, new RegExp(`\\./usr/bin/${l} -> fs-ha`));
  assert.match(list, /-rw------- root\/root .* \.\/etc\/fs-ha\/fs-ha\.yaml/);
  assert.match(list, /\.\/usr\/share\/fs-ha\/keepalived\/farm\/keepalived\.conf/);
  assert.equal(execFileSync('dpkg-deb', ['-f', deb, 'Package'], { encoding: 'utf8' }).trim(), 'fs-ha');
  assert.match(execFileSync('dpkg-deb', ['-I', deb, 'conffiles'], { encoding: 'utf8' }), /^\/etc\/fs-ha\/fs-ha\.yaml$/m);
});
