/**
 * When keepalived fired a notify, as an order that survives start-up jitter. keepalived forks its notify
 * scripts in the order the states change, without waiting; two of our processes forked 5 ms apart can
 * reach Node's first line in either order, so Node's own start time cannot order them. The kernel can:
 * the fork's start time (clock ticks since boot, /proc/self/stat field 22) and, within one tick, the
 * pid (handed out increasingly). Keys from another boot are always older. Pure: the parsing and the
 * comparison; reading /proc is the caller's.
 */
export interface FireKey {
  boot: string;
  ticks: number;
  pid: number;
  wallMs: number;
}

/** Field 22 (starttime) of /proc/<pid>/stat; the command name (field 2) may hold spaces and parentheses. */
export function startTicks(stat: string): number | null {
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const fields = stat.slice(close + 2).split(' ');
  const v = Number(fields[22 - 3]); // fields[0] is field 3 (state)
  return Number.isFinite(v) ? v : null;
}

/** Was `a` fired after `b`? Unknown boots or missing data: the newer wall clock decides. */
export function firedAfter(a: FireKey, b: FireKey): boolean {
  if (a.boot && a.boot === b.boot && a.ticks >= 0 && b.ticks >= 0) {
    if (a.ticks !== b.ticks) return a.ticks > b.ticks;
    if (a.pid !== b.pid) return a.pid > b.pid;
    return false;
  }
  if (a.boot && b.boot && a.boot !== b.boot) return true; // b is from before a reboot
  return a.wallMs > b.wallMs;
}
