/**
 * argv -> which command, its options and positionals: derived from the command table. The command comes
 * from the link name (argv[0]: check_fs, notify_master, ...) or the first word; its options are parsed
 * strictly with node:util parseArgs, so an option another command takes (check --crash x) is an error
 * naming it (exit 2), never silently ignored.
 */
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError, errorMessage } from '../errors';
import type { CommandSpec, OptionSpec } from './spec';

export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  config: {
    type: 'string',
    short: 'c',
    arg: 'PATH',
    help: 'configuration file (else $FS_HA_CONFIG, else /etc/fs-ha/fs-ha.yaml)',
  },
  help: { type: 'boolean', short: 'h', help: "this help, or a command's (fs-ha COMMAND --help)" },
  version: { type: 'boolean', short: 'V', help: 'the version' },
};
const JSON_OPTION: OptionSpec = { type: 'boolean', help: 'the result as JSON' };

export interface CommandLine {
  spec: CommandSpec | null;
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** The command a link name stands for, if argv[0] (or the script) is one. */
export function commandOfLink(commands: CommandSpec[], names: string[]): CommandSpec | null {
  for (const n of names) {
    const spec = commands.find((c) => c.links.includes(basename(n).replace(/\.(js|cjs)$/, '')));
    if (spec) return spec;
  }
  return null;
}

function toParseArgs(options: Record<string, OptionSpec>) {
  return Object.fromEntries(
    Object.entries(options).map(([k, o]) => [k, o.short ? { type: o.type, short: o.short } : { type: o.type }]),
  );
}

export function parseCommandLine(commands: CommandSpec[], argv: string[], linked: CommandSpec | null): CommandLine {
  let spec = linked;
  let args = argv;
  if (!spec) {
    // the first word that is neither a global option nor the value of one
    let i = 0;
    while (i < argv.length && argv[i].startsWith('-')) i += /^(-c|--config)$/.test(argv[i]) ? 2 : 1;
    if (i < argv.length) {
      spec = commands.find((c) => c.name === argv[i]) ?? null;
      if (!spec) throw new UsageError(`unknown command "${argv[i]}" (see fs-ha --help)`);
      args = [...argv.slice(0, i), ...argv.slice(i + 1)];
    }
  }
  const options: Record<string, OptionSpec> = {
    ...GLOBAL_OPTIONS,
    ...(spec?.options ?? {}),
    ...(spec?.json ? { json: JSON_OPTION } : {}),
  };
  // a command that passes words on (console: fsha's words, --yes and --to among them): its own options come
  // first, everything from the first word on is a word
  let words: string[] | null = null;
  if (spec?.wordsAfterOptions) {
    let i = 0;
    while (i < args.length && args[i].startsWith('-')) {
      const name = args[i].replace(/^--?/, '').split('=')[0];
      const o = options[name] ?? Object.values(options).find((x) => x.short === name);
      i += o?.type === 'string' && !args[i].includes('=') ? 2 : 1;
    }
    words = args.slice(i);
    args = args.slice(0, i);
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options: toParseArgs(options), strict: true, allowPositionals: !words });
  } catch (e) {
    const m = errorMessage(e).match(/Unknown option '([^']+)'/);
    const where = spec ? `${spec.name}: ` : '';
    throw new UsageError(
      m
        ? `${where}unknown option ${m[1]} (see fs-ha ${spec ? `${spec.name} ` : ''}--help)`
        : `${where}${errorMessage(e).split('\n')[0]}`,
    );
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const positionals = words ?? parsed.positionals;
  if (spec && !values.help && !values.version) {
    if (positionals.length > spec.positionals.max)
      throw new UsageError(
        `${spec.name}: unexpected argument "${positionals[spec.positionals.max]}" (usage: fs-ha ${spec.name} ${spec.args})`,
      );
    if (positionals.length < spec.positionals.min)
      throw new UsageError(`${spec.name}: missing argument (usage: fs-ha ${spec.name} ${spec.args})`);
    for (const [k, o] of Object.entries(spec.options)) {
      if (o.required && values[k] === undefined)
        throw new UsageError(`${spec.name} needs --${k}${o.arg ? ` ${o.arg}` : ''} (see fs-ha ${spec.name} --help)`);
    }
  }
  return { spec, values, positionals };
}
