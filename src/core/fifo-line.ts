/**
 * keepalived's notify FIFO (global_defs notify_fifo / vrrp_notify_fifo), one line per transition, pure:
 *   INSTANCE "VI_1" MASTER 100      GROUP "G1" BACKUP 0
 * States MASTER, BACKUP, FAULT, STOP, DELETED are dispatched as `notify TYPE NAME STATE PRIORITY` is;
 * MASTER_RX_LOWER_PRI and the *_PRIORITY lines (notify_priority_changes) are not transitions: ignored.
 */
import { STATES, type VrrpState } from './vrrp';

export type FifoLine =
  | { kind: 'transition'; type: 'INSTANCE' | 'GROUP'; name: string; state: VrrpState; priority: number | null }
  | { kind: 'ignored'; reason: string };

export function parseFifoLine(line: string): FifoLine {
  const m = line.trim().match(/^(INSTANCE|GROUP)\s+"((?:[^"\\]|\\.)*)"\s+(\S+)(?:\s+(-?\d+))?\s*$/);
  if (!m) return { kind: 'ignored', reason: `not a keepalived notify line: ${JSON.stringify(line.slice(0, 80))}` };
  const [, type, name, state, prio] = m;
  if (!STATES.includes(state as VrrpState))
    return { kind: 'ignored', reason: `${type} ${name} ${state}: not a state transition` };
  return {
    kind: 'transition',
    type: type as 'INSTANCE' | 'GROUP',
    name,
    state: state as VrrpState,
    priority: prio === undefined ? null : Number(prio),
  };
}

/**
 * Lines that waited in the pipe while nobody read it (the agent was down) are history: only the last state
 * of each instance is still true. The backlog read at start is reduced to that, in the order last seen.
 */
export function latestPerInstance(lines: FifoLine[]): Array<Extract<FifoLine, { kind: 'transition' }>> {
  const last = new Map<string, Extract<FifoLine, { kind: 'transition' }>>();
  for (const l of lines) {
    if (l.kind !== 'transition') continue;
    const key = `${l.type} ${l.name}`;
    last.delete(key); // re-insert: order by the last line of each
    last.set(key, l);
  }
  return [...last.values()];
}
