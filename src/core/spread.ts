/**
 * Spreading one node's calls over several adopters, pure. FreeSWITCH recovers one leg after another
 * (~3 ms each), so two adopters recovering in parallel halve the silence of the last call. The unit is
 * the group (core/groups.ts): a bridged call's legs and a conference's members always land on ONE
 * adopter, or they would never re-bridge / become two conferences of the same name.
 */
import type { CallGroup } from './groups';

export interface Adopter {
  name: string;
  /** relative share (nodes.<name>.weight, default 1) */
  weight: number;
}

/**
 * Each group's adopter (index into adopters), balanced by call count and weight: the largest groups first,
 * each to the adopter whose load after taking it, per unit of weight, is smallest (ties: the earlier adopter).
 * With equal weights the busiest and the idlest adopter differ by at most one group's size.
 */
export function assignGroups(groups: CallGroup[], adopters: Adopter[]): number[] {
  if (!adopters.length) throw new Error('assignGroups: no adopter');
  const out = new Array<number>(groups.length).fill(0);
  if (adopters.length === 1) return out;
  const load = adopters.map(() => 0);
  const order = groups.map((_g, i) => i).sort((a, b) => groups[b].rows.length - groups[a].rows.length || a - b);
  for (const i of order) {
    const size = groups[i].rows.length;
    let best = 0;
    for (let t = 1; t < adopters.length; t++) {
      if ((load[t] + size) / adopters[t].weight < (load[best] + size) / adopters[best].weight) best = t;
    }
    out[i] = best;
    load[best] += size;
  }
  return out;
}

/** Calls per adopter for an assignment. */
export function shares(groups: CallGroup[], assignment: number[], adopters: Adopter[]): Map<string, number> {
  const out = new Map(adopters.map((a) => [a.name, 0]));
  groups.forEach((g, i) => {
    const a = adopters[assignment[i]].name;
    out.set(a, out.get(a)! + g.rows.length);
  });
  return out;
}

export interface AdopterFacts {
  name: string;
  /** null when it can adopt; else why not (its event socket, core, a profile its share needs) */
  problem: string | null;
}

/**
 * Which adopters take part: the healthy ones. None healthy: refuse. More than one on the shared table:
 * refuse, since every adopter's recover would take every foreign row, its colleagues' shares included.
 */
export function decideAdopters(
  from: string,
  facts: AdopterFacts[],
  layout: 'shared' | 'per-node',
  weights: Map<string, number>,
):
  | { action: 'go'; adopters: Adopter[]; skipped: AdopterFacts[]; reason: string }
  | { action: 'refuse'; reason: string } {
  const healthy = facts.filter((f) => f.problem === null);
  const skipped = facts.filter((f) => f.problem !== null);
  if (!healthy.length) {
    if (facts.length === 1) return { action: 'refuse', reason: facts[0].problem! };
    return {
      action: 'refuse',
      reason: `refusing to take over ${from}: no adopter can take its calls (${skipped.map((s) => `${s.name}: ${s.problem}`).join('; ')})`,
    };
  }
  if (layout === 'shared' && healthy.length > 1) {
    return {
      action: 'refuse',
      reason:
        `refusing to spread ${from}'s calls over ${healthy.map((h) => h.name).join(', ')}: on the shared recovery table each adopter's ` +
        "recover takes every foreign row, its colleagues' shares too; spreading needs the per-node layout (fs-ha db init --layout per-node), or name one adopter",
    };
  }
  const adopters = healthy.map((h) => ({ name: h.name, weight: weights.get(h.name) ?? 1 }));
  const why = skipped.length ? `; skipped ${skipped.map((s) => `${s.name} (${s.problem})`).join(', ')}` : '';
  return {
    action: 'go',
    adopters,
    skipped,
    reason: `adopters of ${from}: ${adopters.map((a) => a.name).join(', ')}${why}`,
  };
}

/**
 * A profile's name on another node: nodes.<n>.profiles maps the name the cluster uses (the key) to the
 * node's own (the value). A row of `from`'s profile p is canonical(p) and becomes that node's name for it.
 */
export function profileFor(p: string, fromMap: Record<string, string>, toMap: Record<string, string>): string {
  const canonical = Object.entries(fromMap).find(([, local]) => local === p)?.[0] ?? p;
  return toMap[canonical] ?? canonical;
}
