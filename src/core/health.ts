/**
 * Pure readings of FreeSWITCH's answers (formats from fixtures/esl_transcripts*.txt) and the health verdict.
 */
export interface CoreStatus {
  ready: boolean;
  /** the "FreeSWITCH (Version ...) is ready|is not ready" line, or null if absent */
  line: string | null;
}

export function parseStatus(body: string): CoreStatus {
  const line = body.split('\n').find((l) => /^FreeSWITCH .* is (not )?ready\s*$/.test(l)) ?? null;
  const ready = line !== null && /is ready\s*$/.test(line) && body.startsWith('UP ');
  return { ready, line: line?.trim() ?? null };
}

/** `sofia xmlstatus`: profile name -> state ("RUNNING (0)"). A stopped profile is absent. */
export function parseXmlStatus(body: string): Map<string, string> | null {
  if (!/<profiles>/.test(body)) return null;
  const out = new Map<string, string>();
  const re = /<profile>([\s\S]*?)<\/profile>/g;
  for (let m = re.exec(body); m; m = re.exec(body)) {
    const name = m[1].match(/<name>([^<]*)<\/name>/)?.[1];
    const type = m[1].match(/<type>([^<]*)<\/type>/)?.[1];
    const state = m[1].match(/<state>([^<]*)<\/state>/)?.[1] ?? '';
    if (name && (type === undefined || type === 'profile')) out.set(name, state);
  }
  return out;
}

export function isRunning(state: string | undefined): boolean {
  return state !== undefined && /^RUNNING\b/.test(state);
}

export interface HealthFacts {
  status: CoreStatus;
  profiles: Map<string, string> | null;
  wanted: string[];
}

/** null = healthy, else the one-line reason. */
export function healthProblem(f: HealthFacts): string | null {
  if (!f.status.ready)
    return f.status.line ? `core not ready: "${f.status.line}"` : 'status did not say the core is up and ready';
  if (f.wanted.length) {
    if (!f.profiles) return 'sofia xmlstatus gave no profile list';
    const down = f.wanted.filter((p) => !isRunning(f.profiles!.get(p)));
    if (down.length)
      return `profile(s) not RUNNING: ${down.map((p) => `${p}=${f.profiles!.get(p) ?? 'absent'}`).join(', ')}`;
  }
  return null;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function parseCoreUuid(body: string): string | null {
  const v = body.trim();
  return UUID_RE.test(v) ? v : null;
}

/** `fsctl recover` -> "+OK N session(s) recovered in total"; `sofia recover` -> "Recovered N call(s)" | "No calls to recover." */
export function parseRecoverReply(body: string): number | null {
  const t = body.trim();
  let m = t.match(/^\+OK (\d+) session\(s\) recovered in total$/);
  if (m) return Number(m[1]);
  m = t.match(/^Recovered (\d+) call\(s\)$/);
  if (m) return Number(m[1]);
  if (t === 'No calls to recover.') return 0;
  return null;
}
