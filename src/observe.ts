/** Asks one FreeSWITCH over its event socket what check and takeover need to know. "Could not ask" is explicit. */
import type { EslTarget } from './config';
import { EslError, EslSession } from './adapters/esl';
import { healthProblem, parseCoreUuid, parseStatus, parseXmlStatus } from './core/health';
import type { ProbeResult } from './core/plan';

export interface NodeProbe extends ProbeResult {
  coreUuid: string | null;
  profiles: Map<string, string> | null;
  ms: number;
}

/** Within timeoutMs: connect+auth, status, sofia xmlstatus, core uuid. Never longer. */
export async function probeNode(target: EslTarget | undefined, wanted: string[], timeoutMs: number): Promise<NodeProbe> {
  const started = Date.now();
  const out = (kind: ProbeResult['kind'], detail: string, coreUuid: string | null = null, profiles: Map<string, string> | null = null): NodeProbe =>
    ({ kind, detail, coreUuid, profiles, ms: Date.now() - started });
  if (!target) return out('not-configured', 'no event socket configured');
  let s: EslSession | null = null;
  try {
    s = await EslSession.open(target, timeoutMs);
    const left = () => Math.max(1, timeoutMs - (Date.now() - started));
    const status = parseStatus(await s.api('status', left()));
    const profiles = parseXmlStatus(await s.api('sofia xmlstatus', left()));
    const coreUuid = parseCoreUuid(await s.api('global_getvar core_uuid', left()));
    const problem = healthProblem({ status, profiles, wanted });
    if (problem) return out('unhealthy', problem, coreUuid, profiles);
    if (!coreUuid) return out('unhealthy', 'global_getvar core_uuid gave no uuid', null, profiles);
    return out('healthy', `core ${coreUuid} ready, profiles ${[...(profiles ?? new Map()).keys()].join(',') || 'none'} running`, coreUuid, profiles);
  } catch (e) {
    if (e instanceof EslError) {
      const kind = e.kind === 'closed' ? 'error' : e.kind;
      return out(kind, e.message);
    }
    return out('error', (e as Error).message);
  } finally {
    s?.close();
  }
}
