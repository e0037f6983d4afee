/**
 * A node that loses the address its calls use (keepalived restarted or stopped on the MASTER, a split brain
 * healing to the other side, a VRRP link flap) keeps FreeSWITCH running with calls that can no longer be
 * reached: their RTP and SIP go to the address, which is now on another node. The node demoted hands them over
 * (it knows it lost the address and holds the calls); the new MASTER's takeover found it alive and refused, so
 * the two can never both move them (and the takeover's locks make a second run find nothing).
 * Pure: what was observed in, the one decision and its sentence out.
 */
import type { VrrpState } from './vrrp';

export interface HandoverFacts {
  node: string;
  instance: string;
  state: VrrpState;
  /** the instance's address is the one this node's calls use (a pair's one instance, a farm node's own) */
  ours: boolean;
  /** answered calls tracked under this node's running FreeSWITCH (null: could not be counted; 0: none or not running) */
  calls: number | null;
  /** this node's configured addresses that are still on one of its interfaces */
  stillHere: string[];
  addresses: string[];
  /** every other node's last announced state for this instance */
  others: Array<{ node: string; state: string; ageMs: number; healthy: boolean }>;
}

export type Handover =
  | { action: 'handover'; to: string; reason: string }
  | { action: 'stay'; level: 'info' | 'warn' | 'error'; reason: string };

export function decideHandover(f: HandoverFacts): Handover {
  const at = `${f.node} (${f.state} of ${f.instance})`;
  if (f.state !== 'BACKUP' && f.state !== 'STOP') {
    // FAULT is this node's own health: its calls follow the crash path (a dead FreeSWITCH is taken over) or stay
    return { action: 'stay', level: 'info', reason: `${at}: no handover on ${f.state}` };
  }
  if (!f.ours) return { action: 'stay', level: 'info', reason: `${at}: not the instance of this node's calls` };
  if (f.calls === null)
    return {
      action: 'stay',
      level: 'error',
      reason: `${at}: could not count this node's calls; if its address is gone they are lost: check fs-ha status`,
    };
  if (f.calls === 0) return { action: 'stay', level: 'info', reason: `${at}: no answered call here` };
  if (f.stillHere.length)
    return {
      action: 'stay',
      level: 'info',
      reason: `${at}: ${f.calls} call(s) continue here, ${f.stillHere.join(', ')} is still on this node`,
    };
  const holders = f.others.filter((o) => o.state === 'MASTER');
  const gone = `${f.calls} call(s) use ${f.addresses.join(', ')}, which this node no longer holds`;
  if (!holders.length) {
    return {
      action: 'stay',
      level: 'error',
      reason: `${at}: ${gone} and no node is MASTER of ${f.instance}: they wait here and continue if the address returns`,
    };
  }
  if (holders.length > 1) {
    return {
      action: 'stay',
      level: 'error',
      reason: `${at}: ${gone}; ${holders.map((h) => h.node).join(' and ')} all say MASTER of ${f.instance}: not handing over to either`,
    };
  }
  const [h] = holders;
  if (!h.healthy)
    return {
      action: 'stay',
      level: 'error',
      reason: `${at}: ${gone}; ${h.node} is MASTER of ${f.instance} but its FreeSWITCH does not serve: not handing over`,
    };
  return {
    action: 'handover',
    to: h.node,
    reason: `${at}: ${gone}; ${h.node} holds ${f.instance}: handing them over (this FreeSWITCH stopped without BYE, ${h.node} recovers them)`,
  };
}
