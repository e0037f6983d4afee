/**
 * Is the failed node's FreeSWITCH provably not running? The one rule, pure:
 *   dead    = its event socket refused the connection (nothing listens), or it cannot be reached at all
 *             AND its check_fs heartbeat is stale, or a fence command succeeded (decided in decide.ts);
 *   alive   = anything that answers: serving, a missing profile, a paused core, a wrong password, a reply
 *             fs-ha cannot read, a socket that closes on us. A missing profile is a configuration fact;
 *   unknown = cannot be reached and no heartbeat proves anything: only a fence can make it dead;
 *   wait    = cannot be reached but its heartbeat is fresh: ask again once it would be stale.
 */

/** What asking a node's event socket gave, by what the answer proves. */
export type ProbeKind =
  | 'healthy'        // answered, core ready, wanted profiles RUNNING
  | 'unhealthy'      // answered, but the core is not ready or a wanted profile is not RUNNING
  | 'auth'           // answered, rejected our password
  | 'rejected'       // answered with a rude rejection (its inbound ACL does not admit us)
  | 'garbled'        // connected, then answers fs-ha cannot read, or it closed on us
  | 'silent'         // TCP connected but nothing answered within the deadline (a hung process)
  | 'refused'        // connection refused: nothing listens on the port
  | 'unreachable'    // no TCP connection within the deadline, or no route to it
  | 'not-configured';// no event socket configured for the node

export interface ProbeResult {
  kind: ProbeKind;
  detail: string;
}

export interface Heartbeat {
  ageMs: number;
  healthy: boolean;
  coreUuid: string | null;
}

export type Liveness =
  | { verdict: 'dead'; reason: string }
  | { verdict: 'alive'; reason: string; serving: boolean }
  | { verdict: 'unknown'; reason: string }
  | { verdict: 'wait'; waitMs: number; reason: string };

/** Probe kinds that say nothing about the process, so the heartbeat must speak. */
export function needsHeartbeat(kind: ProbeKind): boolean {
  return kind === 'unreachable' || kind === 'silent' || kind === 'not-configured';
}

export function judgeLiveness(node: string, probe: ProbeResult, hb: Heartbeat | null, staleMs: number): Liveness {
  switch (probe.kind) {
    case 'healthy':
      return { verdict: 'alive', serving: true, reason: `${node} is alive and serving its own calls (${probe.detail})` };
    case 'unhealthy':
      return { verdict: 'alive', serving: false, reason: `${node} answers but is not serving (${probe.detail}): it is running, so it is not dead` };
    case 'auth':
      return { verdict: 'alive', serving: false, reason: `${node} answers but rejected the password: it is running, fs-ha cannot prove it is down (${probe.detail})` };
    case 'rejected':
      return { verdict: 'alive', serving: false, reason: `${node} answers but its event-socket ACL rejects us: it is running (${probe.detail})` };
    case 'garbled':
      return { verdict: 'alive', serving: false, reason: `${node} answers, but not as FreeSWITCH does: it is running, fs-ha cannot prove it is down (${probe.detail})` };
    case 'refused':
      return { verdict: 'dead', reason: `${node}'s FreeSWITCH is down: its event socket refused the connection (${probe.detail})` };
    case 'unreachable':
    case 'silent':
    case 'not-configured': {
      const why = probe.kind === 'not-configured' ? 'no event socket configured for it' : probe.detail;
      if (!hb) return { verdict: 'unknown', reason: `${node} cannot be asked (${why}) and has no heartbeat on record: fs-ha cannot prove it is down` };
      if (hb.ageMs >= staleMs) return { verdict: 'dead', reason: `${node} cannot be asked (${why}) and its heartbeat is ${hb.ageMs} ms old (stale after ${staleMs} ms)` };
      return {
        verdict: 'wait',
        waitMs: staleMs - hb.ageMs,
        reason: `${node} cannot be asked (${why}) but its heartbeat is only ${hb.ageMs} ms old (stale after ${staleMs} ms)`,
      };
    }
  }
}
