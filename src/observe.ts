/** Asks one FreeSWITCH over its event socket what check and takeover need to know. "Could not ask" is explicit. */
import type { EslTarget } from './config';
import { EslError, EslSession, type EslErrorKind } from './adapters/esl';
import { healthProblem, parseCoreUuid, parseStatus, parseXmlStatus } from './core/health';
import { identityProblem, type ProbeKind, type ProbeResult } from './core/liveness';

export interface NodeProbe extends ProbeResult {
  coreUuid: string | null;
  /** the switchname it gave (who answered), null when it did not answer */
  switchname: string | null;
  /** the core said "is ready" (false when it did not answer) */
  ready: boolean;
  profiles: Map<string, string> | null;
  ms: number;
}

/** Within timeoutMs: connect+auth, status, sofia xmlstatus, core uuid. Never longer. */
export async function probeNode(
  target: EslTarget | undefined,
  wanted: string[],
  timeoutMs: number,
): Promise<NodeProbe> {
  const started = Date.now();
  if (!target)
    return {
      kind: 'not-configured',
      detail: 'no event socket configured',
      coreUuid: null,
      switchname: null,
      ready: false,
      profiles: null,
      ms: 0,
    };
  let s: EslSession | null = null;
  try {
    s = await EslSession.open(target, timeoutMs);
  } catch (e) {
    return failed(e, started);
  }
  try {
    return await probeSession(s, wanted, timeoutMs, started); // one deadline: started + timeoutMs
  } finally {
    s.close();
  }
}

/**
 * The same questions over a session that is already open (watch and takeover keep one); answers due by
 * started + timeoutMs. The core uuid and switchname a session gave once (session.known: they change only
 * with a new FreeSWITCH process, i.e. a new session) are not asked again: the health loop's session, lent to
 * a takeover, answers its probe in two questions.
 */
export async function probeSession(
  s: EslSession,
  wanted: string[],
  timeoutMs: number,
  started = Date.now(),
): Promise<NodeProbe> {
  const deadline = started + timeoutMs;
  try {
    const left = () => Math.max(1, deadline - Date.now());
    const status = parseStatus(await s.api('status', left()));
    const profiles = parseXmlStatus(await s.api('sofia xmlstatus', left()));
    const coreUuid = s.known?.coreUuid ?? parseCoreUuid(await s.api('global_getvar core_uuid', left()));
    const switchname = s.known?.switchname ?? ((await s.api('switchname', left())).trim() || null);
    if (coreUuid && switchname) s.known = { coreUuid, switchname };
    const out = (kind: ProbeKind, detail: string): NodeProbe => ({
      kind,
      detail,
      coreUuid,
      switchname,
      ready: status.ready,
      profiles,
      ms: Date.now() - started,
    });
    const problem = healthProblem({ status, profiles, wanted });
    if (problem) return out('unhealthy', problem);
    if (!coreUuid) return out('unhealthy', 'global_getvar core_uuid gave no uuid');
    return out(
      'healthy',
      `core ${coreUuid} ready, profiles ${[...(profiles ?? new Map()).keys()].join(',') || 'none'} running`,
    );
  } catch (e) {
    return failed(e, started);
  }
}

const KIND: Record<EslErrorKind, ProbeKind> = {
  refused: 'refused',
  unreachable: 'unreachable',
  silent: 'silent',
  auth: 'auth',
  rejected: 'rejected',
  closed: 'closed',
  error: 'garbled',
};

/** What a probe that could not ask gives: its kind from the error (refused, unreachable, ...). */
export function failed(e: unknown, started: number): NodeProbe {
  const kind: ProbeKind = e instanceof EslError ? KIND[e.kind] : 'garbled';
  return {
    kind,
    detail: (e as Error).message,
    coreUuid: null,
    switchname: null,
    ready: false,
    profiles: null,
    ms: Date.now() - started,
  };
}

/** host:port of an event socket, as messages name it */
export const eslWhere = (t: EslTarget | undefined): string => (t ? `${t.host}:${t.port}` : 'no event socket');

/** Who answered at a node's event socket, against who should have (core/liveness.ts): null when it is the node. */
export function wrongNode(
  node: { name: string; switchname: string },
  esl: EslTarget | undefined,
  probe: ProbeResult,
): string | null {
  return identityProblem(node.name, node.switchname, probe, eslWhere(esl));
}
