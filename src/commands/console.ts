/**
 * fsha in FreeSWITCH's own console. `fs-ha console-install` adds, on this node's FreeSWITCH, the alias
 *   alias stickyadd fsha system <this binary> console --socket <console.socket>
 * so an operator types `fsha`, `fsha takeover freeswitch01`, `fsha drain freeswitch01 [--yes]`, `fsha history`
 * in fs_cli (or fs_cli -x 'fsha status'). mod_commands' `system` runs that line as FreeSWITCH's user and
 * streams its standard output back: `fs-ha console WORDS` reads no configuration (that user cannot), it asks
 * the agent over its console socket (adapters/console-socket.ts: root and console.group only) and prints the
 * answer. The agent (root, warm connections) does the work through the same takeover and drain as ever; every
 * action is audited with actor console@<node>. Output: short plain lines, no terminal control codes.
 */
import type { Config } from '../config';
import { askConsole } from '../adapters/console-socket';
import { eslApi } from '../adapters/esl';
import { CONSOLE_HELP, readConsoleWords } from '../core/console-words';
import { ActionFailed, Refused, UsageError, errorMessage } from '../errors';
import { log } from '../log';
import { status } from './status';
import { takeover } from './takeover';
import { drain, formatDrain } from './drain';
import { readHistory } from './history';
import type { CommandSpec } from '../cli/spec';

const ago = (ms: number) =>
  ms < 120_000
    ? `${Math.round(ms / 1000)}s`
    : ms < 7_200_000
      ? `${Math.round(ms / 60_000)}m`
      : `${Math.round(ms / 3_600_000)}h`;

/** The agent's side: one console line, executed here, answered line by line. */
export async function runConsole(cfg: Config, words: string[], write: (line: string) => void): Promise<void> {
  const a = readConsoleWords(words);
  const actor = `console@${cfg.node}`;
  if (a.kind !== 'status' && a.kind !== 'help' && a.kind !== 'usage')
    log('warn', `console: fsha ${words.join(' ')}`, { node: cfg.node, actor });
  switch (a.kind) {
    case 'usage':
      write(`fsha: ${a.message}`);
      return;
    case 'help':
      for (const l of CONSOLE_HELP) write(l);
      return;
    case 'status': {
      const r = await status(cfg);
      for (const n of r.nodes) {
        const vrrp = n.vrrp.map((v) => `${v.instance}:${v.state}`).join(' ') || '-';
        const last = n.lastTakeover
          ? `last ${n.lastTakeover.from}->${n.lastTakeover.to} ${n.lastTakeover.result} ${ago(n.lastTakeover.ageMs)} ago`
          : '';
        write(
          `${n.node.padEnd(14)} ${(n.standby?.on ? `${n.health},standby` : n.health).padEnd(17)} ${vrrp.padEnd(16)} calls ${n.trackedCalls ?? '-'} ${last}`.trimEnd(),
        );
      }
      for (const w of r.warnings) write(`WARNING: ${w}`);
      return;
    }
    case 'history': {
      const rows = await readHistory(cfg, { last: a.last });
      if (!rows.length) write('no takeover or drain yet');
      for (const h of rows)
        write(
          `${h.started_at.toISOString().slice(0, 19)}Z ${h.command} ${h.from_node}->${h.to_node} ${h.result} ${h.adopted} calls by ${h.actor}`,
        );
      return;
    }
    case 'takeover': {
      write(`taking over ${a.from}'s calls${a.to ? ` onto ${a.to}` : ''}...`);
      try {
        const r = await takeover(cfg, { from: a.from, to: a.to, command: 'console takeover', actor });
        write(`${r.result}: ${r.reason}`);
      } catch (e) {
        write(`${e instanceof Refused ? 'refused' : 'failed'}: ${errorMessage(e)}`);
      }
      return;
    }
    case 'drain': {
      try {
        const r = await drain(cfg, {
          from: a.from,
          to: a.to,
          dryRun: !a.yes,
          yes: a.yes,
          command: 'console drain',
          actor,
        });
        for (const l of formatDrain(r)
          .split('\n')
          .filter((x) => !x.startsWith('  move ')))
          write(l);
        if (!a.yes) write(`nothing done: fsha drain ${a.from} --yes drains it`);
      } catch (e) {
        write(`${e instanceof Refused ? 'refused' : 'failed'}: ${errorMessage(e)}`);
      }
    }
  }
}

/** Where the console socket is when `console` gets no --socket (the configuration's default). */
const DEFAULT_SOCKET = '/run/fs-ha-console/console.sock';

export const command: CommandSpec = {
  name: 'console',
  links: [],
  args: '[WORDS...]',
  positionals: { min: 0, max: 20 },
  config: 'none',
  wordsAfterOptions: true,
  summary:
    "fsha in fs_cli: ask the agent over its console socket (run by FreeSWITCH's `system`; reads no configuration)",
  exits: '0 answered (the answer says what happened), 1 the agent could not be asked',
  options: {
    socket: {
      type: 'string',
      arg: 'PATH',
      help: `the agent's console socket (console.socket; default ${DEFAULT_SOCKET})`,
    },
  },
  async run({ values, positionals }) {
    // everything on stdout: that is what FreeSWITCH's system API streams back to the console
    const ok = await askConsole(
      (values.socket as string | undefined) ?? DEFAULT_SOCKET,
      positionals,
      (t) => process.stdout.write(t),
      120_000,
    );
    return ok ? 0 : 1;
  },
};

/**
 * `fs-ha console-install`: the alias on this node's FreeSWITCH, kept across restarts (alias stickyadd), once
 * mod_commands (which provides system and alias) is loaded there.
 */
export async function consoleInstall(cfg: Config, binary: string): Promise<string> {
  if (!cfg.console.group)
    throw new UsageError(
      "config: console.group is empty: the agent serves no console (set it to FreeSWITCH's group, e.g. freeswitch)",
    );
  if (/\s/.test(binary) || /\s/.test(cfg.console.socket))
    throw new UsageError(`the binary (${binary}) and console.socket must not contain spaces`);
  const loaded = (await eslApi(cfg.esl, 'module_exists mod_commands', cfg.esl.timeoutMs)).trim();
  if (loaded !== 'true')
    throw new ActionFailed(
      `mod_commands is not loaded on this FreeSWITCH (module_exists said ${JSON.stringify(loaded)}): load it (modules.conf.xml), then run this again`,
    );
  const line = `fsha system ${binary} console --socket ${cfg.console.socket}`;
  const reply = (await eslApi(cfg.esl, `alias stickyadd ${line}`, cfg.esl.timeoutMs)).trim();
  if (!reply.startsWith('+OK')) throw new ActionFailed(`alias stickyadd ${line}: ${reply.slice(0, 120)}`);
  return `added to this node's FreeSWITCH: alias ${line}\nin fs_cli: fsha | fsha takeover NODE | fsha drain NODE [--yes] | fsha history (fs_cli -x 'fsha status' from scripts)`;
}

export const installCommand: CommandSpec = {
  name: 'console-install',
  links: [],
  args: '',
  positionals: { min: 0, max: 0 },
  summary: "add the fsha word to this node's FreeSWITCH console (alias stickyadd, once mod_commands is loaded)",
  exits: '0 added, 1 FreeSWITCH refused or mod_commands is not loaded, 2 configuration error',
  options: { binary: { type: 'string', arg: 'PATH', help: 'the fs-ha FreeSWITCH runs (default: this program)' } },
  async run({ cfg, values, out }) {
    const text = await consoleInstall(cfg, (values.binary as string | undefined) ?? process.execPath);
    out.result({ alias: 'fsha', socket: cfg.console.socket }, text);
    return 0;
  },
};
