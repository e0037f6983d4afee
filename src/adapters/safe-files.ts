/**
 * Files root writes where another user might have planted a link: fs-ha's private directory must be
 * a real directory owned by this user and writable by nobody else; a file is replaced through a temporary
 * created exclusively (O_EXCL: never an existing file or link) and renamed; a log is appended to without
 * following a link (O_NOFOLLOW).
 */
import { closeSync, constants, lstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ActionFailed } from '../errors';

/** Create dir (0700) if missing; refuse one that is a link, someone else's, or writable by group or others. */
export function privateDir(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? st.uid;
  if (!st.isDirectory()) throw new ActionFailed(`${dir} is not a directory (a link?): fs-ha will not write through it`);
  if (st.uid !== uid)
    throw new ActionFailed(`${dir} belongs to uid ${st.uid}, not to this user (${uid}): fs-ha will not write there`);
  if (st.mode & 0o022)
    throw new ActionFailed(`${dir} is writable by others (mode ${(st.mode & 0o777).toString(8)}): chmod 0700 ${dir}`);
  return dir;
}

/** Replace file's content atomically: a new temporary (exclusive, never followed) renamed over it. */
export function replaceFile(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.${Date.now().toString(36)}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Append to a file without following a link at its name. */
export function appendNoFollow(file: string, text: string, mode = 0o600): void {
  const fd = openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, mode);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

export { dirname };
