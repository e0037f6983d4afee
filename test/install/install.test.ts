/** make install / uninstall / deb, as an operator runs them (into a DESTDIR, so the machine is not touched). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const make = (...args: string[]) =>
  execFileSync('make', ['--no-print-directory', '-C', ROOT, ...args], { encoding: 'utf8' });
const LINKS = ['check_fs', 'notify_master', 'notify_backup', 'notify_fault', 'notify_stop', 'notify'];

test('make install: the binary alone on PATH, the hooks as links in lib/fs-ha, unit, man page; config 0600 never overwritten; uninstall keeps it', () => {
  const dest = mkdtempSync(join(tmpdir(), 'fsha-destdir-'));
  make('install', `DESTDIR=${dest}`, 'PREFIX=/opt/fsha');
  const bin = join(dest, 'opt/fsha/bin');
  const hooks = join(dest, 'opt/fsha/lib/fs-ha');
  const st = statSync(join(bin, 'fs-ha'));
  assert.equal(st.mode & 0o777, 0o755);
  if (process.getuid?.() === 0) assert.equal(st.uid, 0);
  assert.deepEqual(readdirSync(bin), ['fs-ha'], 'only fs-ha on PATH');
  for (const l of LINKS) {
    assert.ok(lstatSync(join(hooks, l)).isSymbolicLink(), l);
    assert.equal(readlinkSync(join(hooks, l)), '../../bin/fs-ha');
  }
  assert.match(execFileSync(join(hooks, 'notify_master'), ['--version'], { encoding: 'utf8' }), /^fs-ha \d/);
  const conf = join(dest, 'etc/fs-ha/fs-ha.yaml');
  assert.equal(statSync(conf).mode & 0o777, 0o600);
  for (const f of ['pair/keepalived.conf', 'pair/fs-ha.yaml', 'farm/keepalived.conf', 'farm/fs-ha.yaml']) {
    const s = statSync(join(dest, 'opt/fsha/share/fs-ha/keepalived', f));
    assert.equal(s.mode & 0o022, 0, `${f} writable by others`);
  }
  const unit = readFileSync(join(dest, 'opt/fsha/lib/systemd/system/fs-ha-watch.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/opt\/fsha\/bin\/fs-ha --config \/etc\/fs-ha\/fs-ha.yaml watch$/m);
  const man = readFileSync(join(dest, 'opt/fsha/share/man/man8/fs-ha.8'), 'utf8');
  assert.match(man, /^\.TH FS\\-HA 8/m);
  writeFileSync(conf, 'node: mine\n');
  assert.match(make('install', `DESTDIR=${dest}`, 'PREFIX=/opt/fsha'), /kept the existing/);
  assert.equal(readFileSync(conf, 'utf8'), 'node: mine\n');
  make('uninstall', `DESTDIR=${dest}`, 'PREFIX=/opt/fsha');
  assert.ok(!existsSync(join(bin, 'fs-ha')));
  assert.ok(!existsSync(hooks));
  assert.ok(!existsSync(join(dest, 'opt/fsha/share/fs-ha')));
  assert.ok(!existsSync(join(dest, 'opt/fsha/lib/systemd/system/fs-ha-watch.service')));
  assert.equal(readFileSync(conf, 'utf8'), 'node: mine\n');
});

test('the man page and --help come from the same command table: every command, option and link is in both', async () => {
  const { COMMANDS } = await import('../../src/cli/table');
  const { manPage } = await import('../../scripts/gen-man');
  const man = manPage('0.0.0', '/usr/lib/fs-ha').replace(/\\-/g, '-');
  for (const c of COMMANDS) {
    assert.ok(man.includes(`.B ${c.name}`), `man: ${c.name}`);
    for (const o of Object.keys(c.options)) assert.ok(man.includes(`--${o}`), `man: ${c.name} --${o}`);
    for (const l of c.links) assert.ok(man.includes(`/usr/lib/fs-ha/${l}`), `man: ${l}`);
  }
});

const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
const DEB = join(ROOT, 'dist', `fs-ha_${VERSION}_amd64.deb`);

test('make deb: lintian finds no error and no warning that is not overridden (with its reason)', () => {
  make('deb');
  const list = execFileSync('dpkg-deb', ['-c', DEB], { encoding: 'utf8' });
  assert.match(list, /-rwxr-xr-x root\/root .* \.\/usr\/bin\/fs-ha\n/);
  for (const l of LINKS) assert.match(list, new RegExp(`\\./usr/lib/fs-ha/${l} -> \\.\\./\\.\\./bin/fs-ha`));
  assert.doesNotMatch(list, /\.\/usr\/bin\/(check_fs|notify)/, 'no hook on PATH');
  assert.match(list, /-rw------- root\/root .* \.\/etc\/fs-ha\/fs-ha\.yaml/);
  assert.match(list, /\.\/usr\/lib\/systemd\/system\/fs-ha-watch\.service/);
  assert.match(list, /\.\/usr\/share\/man\/man8\/fs-ha\.8\.gz/);
  assert.match(
    execFileSync('dpkg-deb', ['-f', DEB, 'Depends'], { encoding: 'utf8' }),
    /libc6 \(>= [\d.]+\).*libstdc\+\+6/,
  );
  assert.match(
    execFileSync('dpkg-deb', ['-I', DEB, 'conffiles'], { encoding: 'utf8' }),
    /^\/etc\/fs-ha\/fs-ha\.yaml$/m,
  );
  assert.match(execFileSync('file', ['-L', join(ROOT, 'dist', 'fs-ha')], { encoding: 'utf8' }), /, stripped/);
  const r = spawnSync('lintian', ['--no-tag-display-limit', DEB], { encoding: 'utf8' });
  const tags = r.stdout.split('\n').filter((l) => /^[EW]: /.test(l));
  assert.deepEqual(tags, [], `lintian:\n${r.stdout}${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
});

test("the package's life in a throwaway root: install, an edited conffile kept across an upgrade, remove, purge leaves nothing", () => {
  if (!existsSync(DEB)) make('deb');
  const root = mkdtempSync(join(tmpdir(), 'fsha-dpkg-root-'));
  for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates']) mkdirSync(join(root, d), { recursive: true });
  for (const f of ['var/lib/dpkg/status', 'var/lib/dpkg/available']) writeFileSync(join(root, f), '');
  // the root has no libc6 etc. registered: only our own package's dependencies are forced
  const dpkg = (...args: string[]) =>
    execFileSync('dpkg', [`--root=${root}`, '--force-depends', '--force-confold', ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  dpkg('-i', DEB);
  assert.ok(existsSync(join(root, 'usr/bin/fs-ha')));
  assert.ok(
    !existsSync(join(root, 'etc/systemd/system/multi-user.target.wants/fs-ha-watch.service')),
    'the unit is not enabled',
  );
  const conf = join(root, 'etc/fs-ha/fs-ha.yaml');
  writeFileSync(conf, readFileSync(conf, 'utf8') + '# edited by the operator\n');
  // the next version: the same package with a higher version number
  const tree = mkdtempSync(join(tmpdir(), 'fsha-deb-next-'));
  execFileSync('dpkg-deb', ['-R', DEB, tree]);
  const control = join(tree, 'DEBIAN', 'control');
  writeFileSync(control, readFileSync(control, 'utf8').replace(/^Version: .*$/m, `Version: ${VERSION}+1`));
  const next = join(tree, '..', `${basename(tree)}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '--build', tree, next], { stdio: 'ignore' });
  dpkg('-i', next);
  assert.match(dpkg('-s', 'fs-ha'), new RegExp(`Version: ${VERSION.replace(/\./g, '\\.')}\\+1`));
  assert.match(readFileSync(conf, 'utf8'), /# edited by the operator\n$/, 'the edit survives the upgrade');
  dpkg('-r', 'fs-ha');
  assert.ok(!existsSync(join(root, 'usr/bin/fs-ha')));
  assert.ok(existsSync(conf), 'remove keeps the configuration');
  dpkg('-P', 'fs-ha');
  const left = execFileSync(
    'find',
    [root, '-mindepth', '1', '-not', '-path', `${root}/var/lib/dpkg*`, '-not', '-type', 'd'],
    { encoding: 'utf8' },
  ).trim();
  assert.equal(left, '', "purge leaves no file outside dpkg's own database");
  assert.ok(!existsSync(join(root, 'etc/fs-ha')), 'nor the config directory');
});
