/**
 * fs-ha: one multi-call program. argv[0]/link name or the first argument picks the command.
 * The only place that exits. Exit codes: 0 ok, 1 the check or action failed, 2 usage or configuration error.
 */
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_PATH, configSecrets, loadConfig, type Config } from './config';
import { FsHaError, UsageError, errorMessage } from './errors';
import { closeLog, configureLog, log } from './log';

// modesl's parser still calls Buffer(): keep Node's deprecation warning off keepalived's one-line output
process.noDeprecation = true;

declare const FS_HA_VERSION: string | undefined;
const VERSION = typeof FS_HA_VERSION === 'string' ? FS_HA_VERSION : '0.0.0-dev';

const HELP = `fs-ha ${VERSION}: FreeSWITCH high availability with keepalived

usage: fs-ha [--config PATH] COMMAND [ARGS]
       (or through a link named check_fs, notify_master, notify_backup, notify_fault, notify_stop, notify)

commands:
  check                         keepalived vrrp_script: is the local FreeSWITCH serving? (link: check_fs)
  notify-master [INSTANCE]      take over the calls of the node INSTANCE stands for, leave standby
  notify-backup [INSTANCE]      put the local profiles into standby
  notify-fault [INSTANCE]       the same as backup
  notify-stop [INSTANCE]        log only
  notify TYPE NAME STATE [PRIO] keepalived's generic notify (TYPE GROUP|INSTANCE, STATE MASTER|BACKUP|FAULT|STOP|DELETED)
  takeover --from NODE [--to NODE] [--dry-run] [--no-recover] [--force]
                                move NODE's calls here (or to --to) by hand: drills, maintenance
  status [--json]               nodes, health, core uuids, tracked calls, what a recover would take
  watch                         long-running: sub-second crash detection for keepalived's track_file
  drill --crash NODE --yes [--takeover] [--wait-ms N]
                                failover drill: crash NODE's FreeSWITCH, await (or run) the takeover,
                                print the timeline and which calls came back
  db init [--layout shared|per-node]
                                create fs-ha's tables (idempotent); per-node: one view per node

options:
  --config PATH   configuration file (else $FS_HA_CONFIG, else ${DEFAULT_CONFIG_PATH})
  --help, --version

exit codes: 0 ok, 1 the check or action failed (or was refused as unsafe), 2 usage or configuration error
`;

const LINKS: Record<string, string[]> = {
  check_fs: ['check'],
  notify_master: ['notify-master'],
  notify_backup: ['notify-backup'],
  notify_fault: ['notify-fault'],
  notify_stop: ['notify-stop'],
  notify: ['notify'],
};

function cliArgs(): string[] {
  const argv = process.argv.slice(2);
  // node dist/fs-ha.js -> argv[1] is the script; a standalone binary or link -> argv0 / execPath
  const names = [basename(process.argv[1] ?? ''), basename(process.argv0 ?? ''), basename(process.execPath)];
  for (const n of names) {
    const link = LINKS[n.replace(/\.(js|cjs)$/, '')];
    if (link) return [...link, ...argv];
  }
  return argv;
}

async function run(): Promise<number> {
  const { values, positionals } = (() => {
    try {
      return parseArgs({
        args: cliArgs(),
        allowPositionals: true,
        strict: true,
        options: {
          config: { type: 'string', short: 'c' },
          help: { type: 'boolean', short: 'h' },
          version: { type: 'boolean', short: 'V' },
          from: { type: 'string' },
          to: { type: 'string' },
          'dry-run': { type: 'boolean' },
          'no-recover': { type: 'boolean' },
          force: { type: 'boolean' },
          json: { type: 'boolean' },
          layout: { type: 'string' },
          crash: { type: 'string' },
          yes: { type: 'boolean' },
          takeover: { type: 'boolean' },
          'wait-ms': { type: 'string' },
        },
      });
    } catch (e) {
      throw new UsageError(`${errorMessage(e)} (see fs-ha --help)`);
    }
  })();
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (values.version) { process.stdout.write(`fs-ha ${VERSION}\n`); return 0; }
  const [command, ...rest] = positionals;
  if (!command) throw new UsageError('no command given (see fs-ha --help)');
  configureLog({}, command);
  const known = ['check', 'notify-master', 'notify-backup', 'notify-fault', 'notify-stop', 'notify', 'takeover', 'status', 'db', 'drill', 'watch'];
  if (!known.includes(command)) throw new UsageError(`unknown command "${command}" (see fs-ha --help)`);
  const extra = (n: number) => { if (rest.length > n) throw new UsageError(`${command}: unexpected argument "${rest[n]}"`); };
  const cfg: Config = loadConfig(values.config ?? process.env.FS_HA_CONFIG ?? DEFAULT_CONFIG_PATH);
  configureLog({ syslog: cfg.log.syslog && process.env.FS_HA_SYSLOG !== '0', facility: cfg.log.facility, file: cfg.log.file, secrets: configSecrets(cfg) }, command);

  switch (command) {
    case 'check': {
      extra(0);
      // the hard deadline: whatever the far side does, keepalived gets an answer in time
      setTimeout(() => {
        process.stderr.write(`fs-ha: check failed: no verdict within ${cfg.check.timeoutMs} ms\n`);
        process.exit(1);
      }, cfg.check.timeoutMs + 150).unref();
      const { runCheck } = await import('./commands/check');
      return runCheck(cfg);
    }
    case 'notify-master': case 'notify-backup': case 'notify-fault': case 'notify-stop': {
      extra(1);
      const { notify } = await import('./commands/notify');
      const state = command.slice('notify-'.length).toUpperCase() as 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP';
      return notify(cfg, state, rest[0]);
    }
    case 'notify': {
      extra(4);
      const { notify, parseGenericNotify } = await import('./commands/notify');
      const { state, instance } = parseGenericNotify(rest);
      return notify(cfg, state, instance);
    }
    case 'takeover': {
      extra(0);
      if (!values.from) throw new UsageError('takeover needs --from NODE');
      const { takeover } = await import('./commands/takeover');
      const r = await takeover(cfg, {
        from: values.from, to: values.to, dryRun: values['dry-run'], noRecover: values['no-recover'], force: values.force,
        command: 'takeover',
      });
      if (values['dry-run'] && r.preview) {
        for (const row of r.preview) process.stdout.write(`  move ${row.uuid} profile=${row.profile} replacements=${row.replaced}\n`);
      }
      for (const s of r.skipped) process.stdout.write(`  leave ${s.uuid}: ${s.reason}\n`);
      process.stdout.write(`${r.result}: ${r.reason}` +
        (r.recovered !== null ? ` (adopted ${r.adopted}, recovered ${r.recovered}, missing ${r.missing.length}, ${r.timings.total_ms} ms)` : '') + '\n');
      return r.result === 'partial' ? 1 : 0;
    }
    case 'status': {
      extra(0);
      const { status, formatStatus } = await import('./commands/status');
      const r = await status(cfg);
      process.stdout.write(values.json ? JSON.stringify(r, null, 2) + '\n' : formatStatus(r));
      return 0;
    }
    case 'watch': {
      extra(0);
      const { watch } = await import('./commands/watch');
      return watch(cfg);
    }
    case 'drill': {
      extra(0);
      if (!values.crash) throw new UsageError('drill needs --crash NODE');
      const waitMs = values['wait-ms'] === undefined ? 30000 : Number(values['wait-ms']);
      if (!Number.isInteger(waitMs) || waitMs < 100) throw new UsageError('--wait-ms must be a whole number of milliseconds, at least 100');
      const { drill } = await import('./commands/drill');
      return drill(cfg, { crash: values.crash, yes: !!values.yes, takeover: !!values.takeover, waitMs }, (l) => process.stdout.write(l + '\n'));
    }
    case 'db': {
      if (rest[0] !== 'init') throw new UsageError('usage: fs-ha db init [--layout shared|per-node]');
      extra(1);
      const layout = values.layout;
      if (layout !== undefined && layout !== 'shared' && layout !== 'per-node') throw new UsageError('--layout must be shared or per-node');
      const { dbInit } = await import('./commands/db');
      process.stdout.write(await dbInit(cfg, layout));
      return 0;
    }
  }
  return 2;
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
