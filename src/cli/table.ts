/** The command table: the one list of what fs-ha can do. Help, link names and parsing come from it. */
import { command as check } from '../commands/check';
import { commands as notifyHooks } from '../commands/notify';
import { command as takeover } from '../commands/takeover';
import { command as status } from '../commands/status';
import { command as watch } from '../commands/watch';
import { command as agent } from '../commands/agent';
import { command as drill } from '../commands/drill';
import { command as db } from '../commands/db';
import { command as drain } from '../commands/drain';
import { command as history } from '../commands/history';
import { command as consoleClient, installCommand as consoleInstall } from '../commands/console';
import type { CommandSpec } from './spec';

export const COMMANDS: CommandSpec[] = [
  check,
  ...notifyHooks,
  takeover,
  drain,
  status,
  history,
  agent,
  watch,
  drill,
  db,
  consoleClient,
  consoleInstall,
];
