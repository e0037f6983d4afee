/**
 * Planned maintenance (`fs-ha drain`), pure: whom the calls go to, whether the source may be stopped, when
 * it has settled, whether it is gone. FreeSWITCH cannot hand a live channel to another process and a
 * graceful shutdown sends BYE to every caller, so a drain stops the source hard (no BYE) and takes its
 * calls over exactly as after a crash: the same liveness rule (core/liveness.ts) must find it dead.
 */
import type { ProbeKind } from './liveness';

/** --to, else adopters.<from>, else this node (when it is not the one drained), else the pair's other node. */
export function drainTargets(
  from: string,
  to: string | undefined,
  adopters: Record<string, string[]>,
  self: string,
  nodes: string[],
): { targets: string[] } | { problem: string } {
  if (to)
    return {
      targets: to
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    };
  if (adopters[from]) return { targets: adopters[from] };
  if (self !== from) return { targets: [self] };
  const others = nodes.filter((n) => n !== from);
  if (others.length === 1) return { targets: others };
  return { problem: `drain --from ${from}: name the adopters with --to A[,B...] (or configure adopters.${from})` };
}

/** The source must be a running FreeSWITCH that answers: what a drain stops and whose calls it moves. */
export function decideSource(
  node: string,
  kind: ProbeKind,
  detail: string,
): { action: 'go' } | { action: 'refuse'; reason: string } {
  if (kind === 'healthy' || kind === 'unhealthy') return { action: 'go' };
  if (kind === 'refused')
    return {
      action: 'refuse',
      reason: `refusing to drain ${node}: its FreeSWITCH is not running (${detail}); its calls are taken over with fs-ha takeover --from ${node}`,
    };
  return {
    action: 'refuse',
    reason: `refusing to drain ${node}: fs-ha cannot talk to its FreeSWITCH (${detail}), so it cannot put it into standby or stop it`,
  };
}

/**
 * Calls still in set-up: channels FreeSWITCH counts that are not (yet) tracked. Ringing calls are not in the
 * recovery table (only answered ones are), so they cannot be recovered: they drop when the source stops.
 * Each channel of a tracked call has its row, so channels - tracked rows is what is still ringing.
 */
export function settling(channels: number, tracked: number): number {
  return Math.max(0, channels - tracked);
}

/** After the stop: gone only when nothing listens (refused) or nothing answers at all (unreachable). */
export function judgeGone(node: string, kind: ProbeKind, detail: string): { gone: boolean; reason: string } {
  if (kind === 'refused' || kind === 'unreachable') return { gone: true, reason: `${node} is stopped (${detail})` };
  return { gone: false, reason: `${node} still answers after the stop (${kind}: ${detail})` };
}

/**
 * The source's addresses an adopter shares: a VIP that moves with VRRP (the pair). A node can send its
 * re-INVITEs from such an address only once it holds it, and keepalived gives it to the new MASTER before it
 * runs notify MASTER; so a drain with shared addresses leaves the takeover to that MASTER and waits for it.
 */
export function sharedAddresses(from: string[], adopters: string[][]): string[] {
  return from.filter((a) => adopters.some((t) => t.includes(a)));
}
