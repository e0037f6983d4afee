/**
 * One line per decision, to stderr and to syslog (keepalived throws scripts' output away), and to a
 * file when `log.file` is set (hosts without a syslog daemon; each line starts with an ISO timestamp).
 * Format: "fs-ha[pid]: LEVEL command: message key=value ..." so an operator can grep by node or reason.
 * Syslog goes through logger(1) reading stdin, so nothing we log ever shows up in `ps`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendNoFollow } from './adapters/safe-files';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const SYSLOG_SEVERITY: Record<Level, number> = { debug: 7, info: 6, warn: 4, error: 3 };
const FACILITY: Record<string, number> = {
  daemon: 3,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
  user: 1,
};

export interface LogOptions {
  syslog: boolean;
  stderr: boolean;
  debug: boolean;
  facility: string;
  /** append every line here too ('' = no file) */
  file: string;
  /** the configured secrets (event-socket passwords, the database password): never written anywhere */
  secrets: string[];
}

let options: LogOptions = {
  syslog: process.env.FS_HA_SYSLOG !== '0',
  stderr: true,
  debug: process.env.FS_HA_DEBUG === '1',
  facility: 'daemon',
  file: '',
  secrets: [],
};
let fileFailed = false;
let command = 'fs-ha';
let logger: ChildProcess | null = null;
let loggerFailed = false;

export function configureLog(opts: Partial<LogOptions>, cmd?: string): void {
  options = { ...options, ...opts };
  if (cmd) command = cmd;
}

/**
 * Never let a secret reach a log: the configured secrets wherever they appear, the password of a URL
 * (user:PASSWORD@) and of a libpq keyword DSN (password=...). Nothing else: ordinary words stay.
 */
export function redact(text: string, secrets: string[] = options.secrets): string {
  let out = text
    .replace(/(\w+:\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@')
    .replace(/(\bpassword=)("[^"]*"|'[^']*'|[^\s,}&]+)/gi, '$1***');
  for (const s of secrets) if (s.length >= 3) out = out.split(s).join('***');
  return out;
}

function fields(extra?: Record<string, unknown>): string {
  if (!extra) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) continue;
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(`${k}=${/[\s"]/.test(s) ? JSON.stringify(s) : s}`);
  }
  return parts.length ? ' ' + parts.join(' ') : '';
}

function toSyslog(level: Level, line: string): void {
  if (!options.syslog || loggerFailed) return;
  try {
    if (!logger) {
      logger = spawn('logger', ['--prio-prefix', '-t', `fs-ha[${process.pid}]`], {
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      logger.on('error', () => {
        loggerFailed = true;
        logger = null;
      });
      logger.stdin?.on('error', () => {
        loggerFailed = true;
      });
      logger.unref();
      (logger.stdin as unknown as { unref?: () => void })?.unref?.();
    }
    const pri = (FACILITY[options.facility] ?? 3) * 8 + SYSLOG_SEVERITY[level];
    logger.stdin?.write(`<${pri}>${line}\n`);
  } catch {
    loggerFailed = true;
  }
}

export function log(level: Level, message: string, extra?: Record<string, unknown>): void {
  if (level === 'debug' && !options.debug) return;
  const line = redact(`${level.toUpperCase()} ${command}: ${message}${fields(extra)}`);
  if (options.stderr) process.stderr.write(`fs-ha: ${line}\n`);
  toSyslog(level, line);
  if (options.file && !fileFailed) {
    try {
      appendNoFollow(options.file, `${new Date().toISOString()} fs-ha[${process.pid}]: ${line}\n`);
    } catch (e) {
      fileFailed = true;
      if (options.stderr)
        process.stderr.write(`fs-ha: WARN cannot write log.file ${options.file}: ${(e as Error).message}\n`);
    }
  }
}

/** Flush syslog before exit (logger exits when its stdin closes). */
export function closeLog(): Promise<void> {
  const l = logger;
  logger = null;
  if (!l?.stdin) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, 300);
    l.on('exit', () => {
      clearTimeout(t);
      resolve();
    });
    l.stdin!.end();
  });
}
