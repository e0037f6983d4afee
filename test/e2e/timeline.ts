/** The failover timeline of one scenario, from the logs of keepalived, fs-ha (log.file) and the simulator. */
import type { Lab, Line } from './lab';

export interface Timeline {
  crash: number;
  watchFailed: number | null;
  checkFailed: number | null;
  vrrpMaster: number | null;
  notifyStart: number | null;
  rowsRewritten: number | null;
  recoverDone: number | null;
  lastReinvite: number | null;
  reinvites: number;
}

const after = (lines: Line[], t0: number, re: RegExp) => lines.find((l) => l.at >= t0 && re.test(l.text))?.at ?? null;

export function timeline(lab: Lab, o: { failed: string; adopter: string; instance: string; crash: number }): Timeline {
  const failedLog = lab.fshaLog(o.failed);
  const adopterLog = lab.fshaLog(o.adopter);
  const k = lab.keepalived[o.adopter]?.lines ?? [];
  const sim = lab.sims[o.adopter]?.lines ?? [];
  const reinvites = sim
    .filter((l) => l.at >= o.crash && l.text.includes('"ev":"reinvite"'))
    .map((l) => (JSON.parse(l.text) as { at: number }).at);
  return {
    crash: o.crash,
    watchFailed: after(failedLog, o.crash, new RegExp(`(watch|agent): ${o.failed} FAILED`)),
    checkFailed: after(failedLog, o.crash, new RegExp(`check failed on ${o.failed}`)),
    vrrpMaster: after(k, o.crash, new RegExp(`\\(${o.instance}\\) Entering MASTER STATE`)),
    notifyStart: after(adopterLog, o.crash, new RegExp(`notify MASTER ${o.instance}: taking over ${o.failed}`)),
    rowsRewritten: after(adopterLog, o.crash, /takeover: moved \d+ row/),
    recoverDone: after(adopterLog, o.crash, /takeover (done|partial)/),
    lastReinvite: reinvites.length ? Math.max(...reinvites) : null,
    reinvites: reinvites.length,
  };
}

export function formatTimeline(title: string, t: Timeline): string {
  const row = (label: string, at: number | null) =>
    `  ${label.padEnd(22)} ${at === null ? '        -' : `+${String(at - t.crash).padStart(6)} ms`}`;
  return [
    `timeline: ${title}`,
    row('crash', t.crash),
    row('fs-ha watch: down', t.watchFailed),
    row('check_fs fails', t.checkFailed),
    row('VRRP MASTER', t.vrrpMaster),
    row('notify_master starts', t.notifyStart),
    row('rows rewritten', t.rowsRewritten),
    row('recover done', t.recoverDone),
    row(`last re-INVITE (${t.reinvites})`, t.lastReinvite),
  ].join('\n');
}
