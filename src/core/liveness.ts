/**
 * Is the failed node's FreeSWITCH provably not running? The one rule, pure:
 *   dead    = its event socket refused the connection (nothing listens) and no heartbeat written since says
 *             it is healthy, or it cannot be reached at all AND its heartbeat is stale, or a fence command
 *             succeeded (decided in decide.ts);
 *   impostor = the address answers as ANOTHER FreeSWITCH (its switchname is not the node's): the probe proves
 *             nothing about the node, the configuration is wrong;
 *   contradiction = the address refuses, but the node's own health loop wrote, after that refusal, that its
 *             FreeSWITCH is healthy: it is alive and fs-ha is asking the wrong address;
 *   alive   = anything that answers: serving, a missing profile, a paused core, a wrong password, a reply
 *             fs-ha cannot read, a socket that keeps closing on us. A missing profile is a configuration fact;
 *   closing = a socket that closes (or resets) on us is what a FreeSWITCH in the middle of exiting gives:
 *             asked again for CLOSING_GRACE_MS ('wait'); still closing after that, it is 'alive';
 *   unknown = cannot be reached and no heartbeat proves anything: only a fence can make it dead;
 *   wait    = cannot be reached but its heartbeat is fresh: ask again once it would be stale.
 */

/** How long an address that accepts and then closes on us is asked again before it counts as alive. */
export const CLOSING_GRACE_MS = 3000;

/** What asking a node's event socket gave, by what the answer proves. */
export type ProbeKind =
  | 'healthy' // answered, core ready, wanted profiles RUNNING
  | 'unhealthy' // answered, but the core is not ready or a wanted profile is not RUNNING
  | 'auth' // answered, rejected our password
  | 'rejected' // answered with a rude rejection (its inbound ACL does not admit us)
  | 'garbled' // connected, then answers fs-ha cannot read
  | 'closed' // connected, then closed or reset on us before FreeSWITCH answered (what a process exiting does)
  | 'silent' // TCP connected but nothing answered within the deadline (a hung process)
  | 'refused' // connection refused: nothing listens on the port
  | 'unreachable' // no TCP connection within the deadline, or no route to it
  | 'not-configured'; // no event socket configured for the node

export interface ProbeResult {
  kind: ProbeKind;
  detail: string;
  /** who answered (healthy/unhealthy only): its switchname and core uuid, when it said */
  switchname?: string | null;
  coreUuid?: string | null;
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
  | { verdict: 'wait'; waitMs: number; reason: string }
  | { verdict: 'impostor'; reason: string }
  | { verdict: 'contradiction'; reason: string };

/** Who answered at an address, against who should have: null when it is the node (or it did not say). */
export function identityProblem(node: string, switchname: string, probe: ProbeResult, where: string): string | null {
  if (probe.kind !== 'healthy' && probe.kind !== 'unhealthy') return null;
  if (!probe.switchname || probe.switchname === switchname) return null;
  return (
    `the event socket configured for ${node} (${where}) is answered by FreeSWITCH "${probe.switchname}" (core ${probe.coreUuid ?? 'unknown'}), ` +
    `not ${node}'s switchname "${switchname}": a configuration error (nodes.${node}.esl or nodes.${node}.switchname)`
  );
}

/** Probe kinds that say nothing about the process, so the heartbeat must speak. */
export function needsHeartbeat(kind: ProbeKind): boolean {
  return kind === 'unreachable' || kind === 'silent' || kind === 'not-configured' || kind === 'refused';
}

/**
 * o.switchname: who the node is (its answers are checked against it); o.where: the address asked;
 * o.refusedForMs: how long ago its address first refused (a heartbeat younger than that was written after);
 * o.closedForMs: how long ago it first closed on us.
 */
export function judgeLiveness(
  node: string,
  probe: ProbeResult,
  hb: Heartbeat | null,
  staleMs: number,
  o: { switchname?: string; where?: string; refusedForMs?: number; closedForMs?: number } = {},
): Liveness {
  const impostor = o.switchname ? identityProblem(node, o.switchname, probe, o.where ?? 'its event socket') : null;
  if (impostor) return { verdict: 'impostor', reason: impostor };
  switch (probe.kind) {
    case 'healthy':
      return {
        verdict: 'alive',
        serving: true,
        reason: `${node} is alive and serving its own calls (${probe.detail})`,
      };
    case 'unhealthy':
      return {
        verdict: 'alive',
        serving: false,
        reason: `${node} answers but is not serving (${probe.detail}): it is running, so it is not dead`,
      };
    case 'auth':
      return {
        verdict: 'alive',
        serving: false,
        reason: `${node} answers but rejected the password: it is running, fs-ha cannot prove it is down (${probe.detail})`,
      };
    case 'rejected':
      return {
        verdict: 'alive',
        serving: false,
        reason: `${node} answers but its event-socket ACL rejects us: it is running (${probe.detail})`,
      };
    case 'closed': {
      const since = o.closedForMs ?? 0;
      if (since < CLOSING_GRACE_MS)
        return {
          verdict: 'wait',
          waitMs: 250,
          reason: `${node}'s event socket closed on us before FreeSWITCH answered (${probe.detail}): an exiting process does this; asking again`,
        };
      return {
        verdict: 'alive',
        serving: false,
        reason: `${node}'s event socket has kept closing on us for ${since} ms: something runs there, fs-ha cannot prove it is down (${probe.detail})`,
      };
    }
    case 'garbled':
      return {
        verdict: 'alive',
        serving: false,
        reason: `${node} answers, but not as FreeSWITCH does: it is running, fs-ha cannot prove it is down (${probe.detail})`,
      };
    case 'refused': {
      const down = `${node}'s FreeSWITCH is down: its event socket refused the connection (${probe.detail})`;
      if (!hb?.healthy || hb.ageMs >= staleMs)
        return { verdict: 'dead', reason: hb?.healthy ? `${down}; its heartbeat is stale (${hb.ageMs} ms)` : down };
      const since = o.refusedForMs ?? 0;
      if (hb.ageMs < since) {
        return {
          verdict: 'contradiction',
          reason:
            `${node}'s event socket refused the connection (${probe.detail}), but its own heartbeat, written ${hb.ageMs} ms ago (after that refusal), ` +
            `says its FreeSWITCH is healthy (core ${hb.coreUuid ?? 'unknown'}): it is alive and fs-ha is asking the wrong address (check nodes.${node}.esl)`,
        };
      }
      // written before the refusal: its health loop has not spoken since; the next beat (or its staleness) decides
      return {
        verdict: 'wait',
        waitMs: Math.min(250, staleMs - hb.ageMs),
        reason: `${down}, but its heartbeat said healthy ${hb.ageMs} ms ago: waiting for its next one`,
      };
    }
    case 'unreachable':
    case 'silent':
    case 'not-configured': {
      const why = probe.kind === 'not-configured' ? 'no event socket configured for it' : probe.detail;
      if (!hb)
        return {
          verdict: 'unknown',
          reason: `${node} cannot be asked (${why}) and has no heartbeat on record: fs-ha cannot prove it is down`,
        };
      if (hb.ageMs >= staleMs)
        return {
          verdict: 'dead',
          reason: `${node} cannot be asked (${why}) and its heartbeat is ${hb.ageMs} ms old (stale after ${staleMs} ms)`,
        };
      return {
        verdict: 'wait',
        waitMs: staleMs - hb.ageMs,
        reason: `${node} cannot be asked (${why}) but its heartbeat is only ${hb.ageMs} ms old (stale after ${staleMs} ms)`,
      };
    }
  }
}
