/**
 * What a caller judges a failover by: the audio. After a fault, every moved call's audio must come back at its
 * far end (the RTP echo on the service net), no call of a live node may fall silent at its far end, and every
 * channel on the live nodes must hear its far end (a call whose port another socket took hears nothing: the
 * far end alone cannot see that). Returns the moved calls' audio gap (last packet before the fault -> first after).
 */
import assert from 'node:assert/strict';
import { gapSummary } from '../sim/rtp-echo';
import { waitFor, type Lab } from './lab';

/** Flowing: a packet within this long before the far end was asked; lost: a silence this long after the fault. */
const FLOWING_MS = 1000;

export async function assertAudio(
  lab: Lab,
  o: { since: number; moved: string[]; live?: string[]; nodes: string[]; timeoutMs?: number },
): Promise<{ median: number; max: number; calls: number }> {
  const heard = await waitFor(
    'audio back at the far end of every moved call',
    async () => {
      const r = await lab.audio();
      return o.moved.every((u) => {
        const c = r.calls[u];
        return c && c.last > o.since && r.at - c.last < FLOWING_MS;
      })
        ? r
        : null;
    },
    o.timeoutMs ?? 15000,
    250,
  );
  // a moved call's gap spans the fault (it ends after it); a live call may not fall silent after it
  const worstSince = (u: string) =>
    Math.max(0, ...(heard.calls[u]?.gaps ?? []).filter(([, b]) => b > o.since).map(([a, b]) => b - a));
  const silentAfter = (u: string) =>
    Math.max(0, ...(heard.calls[u]?.gaps ?? []).filter(([a]) => a >= o.since).map(([a, b]) => b - a));
  for (const u of o.live ?? []) {
    const c = heard.calls[u];
    assert.ok(c && heard.at - c.last < FLOWING_MS, `live call ${u}: its far end still hears it`);
    assert.ok(silentAfter(u) < FLOWING_MS, `live call ${u} fell silent for ${silentAfter(u)} ms at its far end`);
  }
  const channels = new Map<string, { node: string; rxAgoMs: number | null; port: number }>();
  for (const n of o.nodes)
    for (const ch of await lab.media(n)) channels.set(ch.uuid, { node: n, rxAgoMs: ch.rxAgoMs, port: ch.port });
  for (const u of [...o.moved, ...(o.live ?? [])]) {
    const ch = channels.get(u);
    assert.ok(ch, `call ${u} has a channel on one of ${o.nodes.join(', ')}`);
    assert.ok(
      ch.rxAgoMs !== null && ch.rxAgoMs < FLOWING_MS,
      `call ${u} on ${ch.node} (port ${ch.port}) hears its far end (last packet ${ch.rxAgoMs} ms ago)`,
    );
  }
  const gaps = o.moved.map(worstSince);
  return { ...gapSummary(gaps), calls: gaps.length };
}

export const formatAudio = (a: { median: number; max: number; calls: number }) =>
  `  audio gap at the far ends (${a.calls} calls): median ${a.median} ms, max ${a.max} ms`;
