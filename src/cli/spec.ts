/**
 * What every command module exports: its name, the link names keepalived calls it by, its usage, its
 * options and its handler. The command table (table.ts) is the one list; help, link dispatch and strict
 * per-command parsing are derived from it (parse.ts, help.ts).
 */
import type { Config } from '../config';
import type { Output } from './output';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** placeholder of the value in help ("NODE") */
  arg?: string;
  /** the command cannot run without it (usage error, exit 2) */
  required?: boolean;
  help: string;
}

export interface Invocation {
  cfg: Config;
  /** the command's own options, parsed strictly */
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  out: Output;
}

export interface CommandSpec {
  name: string;
  /** names of links (argv[0]) that run this command: check_fs, notify_master, ... */
  links: string[];
  /** the positionals as usage shows them, e.g. "[INSTANCE]" */
  args: string;
  /** how many positionals it takes */
  positionals: { min: number; max: number };
  summary: string;
  /** the exit codes it returns, for help and the man page */
  exits: string;
  options: Record<string, OptionSpec>;
  /** --json prints the result as JSON instead of text */
  json?: boolean;
  /** 'none': runs without the configuration file (the console client, run as FreeSWITCH's user, cannot read it) */
  config?: 'none';
  /** its positionals are words passed on as they are, options among them (console): only options before the first word are its own */
  wordsAfterOptions?: boolean;
  run(inv: Invocation): Promise<number>;
}
