/** --help texts (and the man page's command section later), from the command table alone. */
import type { CommandSpec, OptionSpec } from './spec';
import { GLOBAL_OPTIONS } from './parse';

const EXITS =
  'exit codes: 0 ok, 1 the check or action failed (or was refused as unsafe), 2 usage or configuration error';

function optionLines(options: Record<string, OptionSpec>): string[] {
  return Object.entries(options).map(([k, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${k}${o.arg ? ` ${o.arg}` : ''}`;
    return `  ${flag.padEnd(22)} ${o.help}`;
  });
}

export function usageOf(c: CommandSpec): string {
  const opts = Object.entries(c.options).map(([k, o]) =>
    o.required ? `--${k}${o.arg ? ` ${o.arg}` : ''}` : `[--${k}${o.arg ? ` ${o.arg}` : ''}]`,
  );
  return [`fs-ha ${c.name}`, c.args, ...opts, ...(c.json ? ['[--json]'] : [])].filter(Boolean).join(' ');
}

export function mainHelp(commands: CommandSpec[], version: string): string {
  const links = commands.flatMap((c) => c.links);
  const lines = [
    `fs-ha ${version}: FreeSWITCH high availability with keepalived`,
    '',
    'usage: fs-ha [--config PATH] COMMAND [ARGS]',
    `       (or through a link named ${links.join(', ')})`,
    '',
    'commands:',
  ];
  for (const c of commands) {
    const head = `${c.name}${c.args ? ` ${c.args}` : ''}`;
    const link = c.links.length ? ` (link: ${c.links.join(', ')})` : '';
    lines.push(
      head.length > 28
        ? `  ${head}\n  ${''.padEnd(28)}  ${c.summary}${link}`
        : `  ${head.padEnd(28)}  ${c.summary}${link}`,
    );
  }
  lines.push(
    '',
    'options:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    "fs-ha COMMAND --help shows a command's options.",
    '',
    EXITS,
    '',
  );
  return lines.join('\n');
}

export function commandHelp(c: CommandSpec): string {
  const lines = [`usage: ${usageOf(c)}`, '', c.summary];
  if (c.links.length) lines.push(`(also run as ${c.links.join(', ')})`);
  const opts = { ...c.options, ...(c.json ? { json: { type: 'boolean' as const, help: 'the result as JSON' } } : {}) };
  if (Object.keys(opts).length) lines.push('', 'options:', ...optionLines(opts));
  lines.push('', `exit: ${c.exits}`, '');
  return lines.join('\n');
}
