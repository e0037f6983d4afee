/**
 * The Debian copyright file (machine-readable format 1.0) of what dist/fs-ha contains: fs-ha itself (LICENSE),
 * the Node.js runtime it is built from (this machine's node, its own LICENSE), and every npm package esbuild
 * bundled (read from the bundle's metafile, each with its licence text).
 *   node --import tsx scripts/gen-copyright.ts dist/meta.json > copyright
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

const ROOT = join(__dirname, '..');

/** DEP-5 continuation lines: each line indented by one space, blank lines as " ." */
const indent = (text: string) =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => (l.trim() ? ` ${l}` : ' .'))
    .join('\n');

/**
 * Full Apache-2.0 texts inside Node's LICENSE become a reference to Debian's copy (Debian policy 12.5: a
 * licence in /usr/share/common-licenses is referred to, not repeated). Only the verbatim licence body
 * between its title and END OF TERMS AND CONDITIONS is replaced; every copyright notice stays.
 */
export function referApache(text: string): string {
  return text.replace(
    /^[ \t]*Apache License\s*\n[ \t]*Version 2\.0, January 2004[\s\S]*?END OF TERMS AND CONDITIONS[^\n]*\n/gm,
    '    [The Apache License, Version 2.0: on Debian systems its full text is in\n     /usr/share/common-licenses/Apache-2.0]\n',
  );
}

function nodeLicense(): string {
  const candidates = [
    join(dirname(process.execPath), '..', 'share', 'doc', 'nodejs', 'LICENSE'),
    join(dirname(process.execPath), '..', 'share', 'doc', 'node', 'LICENSE'),
    '/usr/share/doc/nodejs/LICENSE',
    '/usr/share/doc/nodejs/copyright',
  ];
  const found = candidates.find((f) => existsSync(f));
  if (!found) throw new Error(`gen-copyright: Node.js's LICENSE not found (looked in ${candidates.join(', ')})`);
  return referApache(readFileSync(found, 'utf8'));
}

interface Pkg {
  name: string;
  version: string;
  license: string;
  copyright: string;
  text: string | null;
}

function bundled(metafile: string): Pkg[] {
  const meta = JSON.parse(readFileSync(metafile, 'utf8')) as { inputs: Record<string, unknown> };
  const names = new Set<string>();
  for (const f of Object.keys(meta.inputs)) {
    const m = f.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
    if (m) names.add(m[1]);
  }
  return [...names].sort().map((name) => {
    const dir = join(ROOT, 'node_modules', name);
    const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      version: string;
      license?: string;
      author?: string | { name?: string };
    };
    const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
    const text = file ? readFileSync(join(dir, file), 'utf8') : null;
    let license = pj.license ?? '';
    if (!license && text && /Mozilla Public License Version 2\.0/.test(text)) license = 'MPL-2.0';
    const author = typeof pj.author === 'string' ? pj.author : pj.author?.name;
    const copyright =
      text
        ?.split('\n')
        .find((l) => /copyright (\(c\)|©|\d{4})/i.test(l))
        ?.replace(/^\s*copyright\s*/i, '')
        .trim() ??
      author ??
      `the ${name} authors`;
    return { name, version: pj.version, license, copyright, text };
  });
}

function main(): void {
  const pkgs = bundled(process.argv[2] ?? join(ROOT, 'dist', 'meta.json'));
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const out: string[] = [
    'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
    'Upstream-Name: fs-ha',
    `Comment: fs-ha ${version} ships as one executable, usr/bin/fs-ha: a copy of Node.js ${process.version}`,
    " (the build machine's node) with fs-ha's code and the npm packages listed below bundled into it",
    " by esbuild and injected with Node's single executable application support.",
    '',
    'Files: *',
    'Copyright: 2026 the fs-ha authors',
    'License: MIT',
    '',
    'Files: usr/bin/fs-ha',
    'Copyright: Node.js contributors, Joyent, Inc. and other Node contributors,',
    ' and the authors of the components named in the licence text below',
    'License: Node.js',
    indent(nodeLicense()),
  ];
  for (const p of pkgs) {
    out.push(
      '',
      `Files: node_modules/${p.name}/*`,
      `Copyright: ${p.copyright}`,
      `Comment: ${p.name} ${p.version}, bundled into usr/bin/fs-ha`,
    );
    // each package's own licence text (the notice inside differs from package to package); MPL-2.0 by reference
    out.push(p.license === 'MPL-2.0' || !p.text ? `License: ${p.license}` : `License: ${p.license}\n${indent(p.text)}`);
  }
  if (pkgs.some((p) => p.license === 'MPL-2.0')) {
    out.push(
      '',
      'License: MPL-2.0',
      ' On Debian systems the full text of the Mozilla Public License 2.0 is in',
      ' /usr/share/common-licenses/MPL-2.0.',
    );
  }
  out.push('', 'License: MIT', indent(readFileSync(join(ROOT, 'LICENSE'), 'utf8')));
  process.stdout.write(out.join('\n') + '\n');
}

main();
