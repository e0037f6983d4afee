/**
 * fs-ha: one multi-call program. The link name (argv[0]) or the first word picks the command from the
 * command table (cli/table.ts); its options are parsed strictly (cli/parse.ts). The only place that exits.
 * Exit codes: 0 ok, 1 the check or action failed, 2 usage or configuration error.
 */
import { DEFAULT_CONFIG_PATH, configSecrets, loadConfig, type Config } from './config';
import { FsHaError, UsageError, errorMessage } from './errors';
import { closeLog, configureLog, log } from './log';
import { COMMANDS } from './cli/table';
import { commandOfLink, parseCommandLine } from './cli/parse';
import { commandHelp, mainHelp } from './cli/help';
import { Output } from './cli/output';

// modesl's parser still calls Buffer(): keep Node's deprecation warning off keepalived's one-line output
process.noDeprecation = true;

declare const FS_HA_VERSION: string | undefined;
const VERSION = typeof FS_HA_VERSION === 'string' ? FS_HA_VERSION : '0.0.0-dev';

/** What a command that runs without the configuration gets for it: any use is a bug, said at once. */
const NO_CONFIG = new Proxy(
  {},
  {
    get: (_t, key) => {
      throw new Error(`this command runs without the configuration (read cfg.${String(key)})`);
    },
  },
) as Config;

async function run(): Promise<number> {
  // node dist/fs-ha.js -> argv[1] is the script; a standalone binary or link -> argv0 / execPath
  const linked = commandOfLink(COMMANDS, [process.argv[1] ?? '', process.argv0 ?? '', process.execPath]);
  const { spec, values, positionals } = parseCommandLine(COMMANDS, process.argv.slice(2), linked);
  if (values.version) {
    process.stdout.write(`fs-ha ${VERSION}\n`);
    return 0;
  }
  if (values.help) {
    process.stdout.write(spec ? commandHelp(spec) : mainHelp(COMMANDS, VERSION));
    return 0;
  }
  if (!spec) throw new UsageError('no command given (see fs-ha --help)');
  configureLog({}, spec.name);
  if (spec.config === 'none') return spec.run({ cfg: NO_CONFIG, values, positionals, out: new Output(!!values.json) });
  const cfg = loadConfig((values.config as string | undefined) ?? process.env.FS_HA_CONFIG ?? DEFAULT_CONFIG_PATH);
  configureLog(
    {
      syslog: cfg.log.syslog && process.env.FS_HA_SYSLOG !== '0',
      facility: cfg.log.facility,
      file: cfg.log.file,
      secrets: configSecrets(cfg),
    },
    spec.name,
  );
  return spec.run({ cfg, values, positionals, out: new Output(!!values.json) });
}

async function main(): Promise<void> {
  let code: number;
  try {
    code = await run();
  } catch (e) {
    const msg = errorMessage(e);
    code = e instanceof FsHaError ? e.exitCode : 1;
    if (!(e instanceof FsHaError)) log('error', `unexpected: ${msg}`);
    else if (!e.reported) log('error', msg);
  }
  await closeLog();
  process.exit(code);
}

void main();
