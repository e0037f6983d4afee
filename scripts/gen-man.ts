/**
 * fs-ha(8), from the same sources as --help (the command table, src/cli/table.ts) and as the README's
 * configuration reference (src/config-schema.ts), so the three never drift.
 *   node --import tsx scripts/gen-man.ts VERSION LINKDIR > dist/fs-ha.8
 */
import { COMMANDS } from '../src/cli/table';
import { usageOf } from '../src/cli/help';
import { GLOBAL_OPTIONS } from '../src/cli/parse';
import { describe } from '../src/config-schema';
import { DEFAULT_CONFIG_PATH } from '../src/config';

/** roff-safe text: backslashes, and a line never starting with a control character */
const esc = (s: string) =>
  s
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/^([.'])/gm, '\\&$1');

export function manPage(version: string, linkDir: string): string {
  const out: string[] = [
    `.TH FS\\-HA 8 "2026-12-01" "fs-ha ${esc(version)}" "System Administration"`,
    '.SH NAME',
    'fs\\-ha \\- FreeSWITCH high availability with keepalived: health check, notify hooks, exactly\\-once takeover of calls',
    '.SH SYNOPSIS',
    '.B fs\\-ha',
    '[\\fB\\-\\-config\\fR \\fIPATH\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]',
    '.br',
    `\\fI${esc(linkDir)}/HOOK\\fR [\\fIARGS\\fR]`,
    '.br',
    `(HOOK: ${COMMANDS.flatMap((c) => c.links)
      .map(esc)
      .join(', ')})`,
    '.SH DESCRIPTION',
    esc(
      "keepalived (VRRP) decides which node is master; fs-ha is its health check and its notify hooks. On promotion it takes over the failed node's answered calls: it rewrites their rows in FreeSWITCH's recovery table for this node and has the local FreeSWITCH recover them, exactly once, and never the calls of a node that is still alive. The same takeover runs by hand for drills and maintenance.",
    ),
    '.SH COMMANDS',
  ];
  for (const c of COMMANDS) {
    out.push(
      '.TP',
      `.B ${esc(usageOf(c).replace(/^fs-ha /, ''))}`,
      esc(c.summary) +
        (c.links.length ? esc(` (keepalived runs it as ${c.links.map((l) => `${linkDir}/${l}`).join(', ')})`) : '') +
        '.',
    );
    for (const [k, o] of Object.entries(c.options))
      out.push('.RS', '.TP', `.B \\-\\-${esc(k)}${o.arg ? ` \\fI${esc(o.arg)}\\fR` : ''}`, esc(o.help), '.RE');
    out.push('.RS', `Exit: ${esc(c.exits)}.`, '.RE');
  }
  out.push('.SH OPTIONS');
  for (const [k, o] of Object.entries(GLOBAL_OPTIONS))
    out.push(
      '.TP',
      `.B ${o.short ? `\\-${o.short}, ` : ''}\\-\\-${esc(k)}${o.arg ? ` \\fI${esc(o.arg)}\\fR` : ''}`,
      esc(o.help),
    );
  out.push(
    '.SH KEEPALIVED HOOKS',
    esc(
      `The links in ${linkDir} are the names keepalived's configuration calls by absolute path (vrrp_script, notify_master, notify_backup, notify_fault, notify_stop, notify); they are not on PATH. Templates: /usr/share/fs-ha/keepalived/pair and farm.`,
    ),
    '.SH CONFIGURATION',
    esc(
      `${DEFAULT_CONFIG_PATH} (mode 0600: it holds passwords), or --config, or $FS_HA_CONFIG. Unknown keys and bad values are errors naming the key (exit 2).`,
    ),
  );
  for (const k of describe()) {
    out.push(
      '.TP',
      `.B ${esc(k.key)}`,
      esc(`${k.doc} (${k.type}${k.default !== '-' ? `; default ${k.default}` : ''})`),
    );
  }
  out.push(
    '.SH EXIT STATUS',
    '.TP',
    '.B 0',
    'ok, or nothing to do',
    '.TP',
    '.B 1',
    'the check or the action failed, or was refused as unsafe',
    '.TP',
    '.B 2',
    'usage or configuration error',
    '.SH FILES',
    '.TP',
    `.I ${DEFAULT_CONFIG_PATH}`,
    'the configuration',
    '.TP',
    `.I ${esc(linkDir)}`,
    'the keepalived hooks',
    '.TP',
    '.I /run/fs-ha',
    'notify ordering records and the host lock (state_dir)',
    '.TP',
    '.I /usr/share/doc/fs\\-ha/README.md',
    'the full documentation: install, configuration, keepalived examples, behaviour on failure',
    '.SH SEE ALSO',
    '.BR keepalived (8),',
    '.BR keepalived.conf (5)',
  );
  return out.join('\n') + '\n';
}

if (require.main === module)
  process.stdout.write(manPage(process.argv[2] ?? '0.0.0', process.argv[3] ?? '/usr/lib/fs-ha'));
