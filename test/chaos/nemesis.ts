/**
 * The nemesis: the faults a chaos round draws from (seeded), each injected into the running cluster and held
 * for as long as it lasts (a freeze, a cut, a starvation), then waited out until fs-ha has answered it. Bringing
 * the cluster back to full strength afterwards is the cluster's restore(), not the fault's.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../e2e/lab';
import type { ChaosCluster, Topology } from './cluster';
import type { Rng } from './rng';

export interface Injected {
  target: string;
  /** nodes hit beside the target */
  alsoHit?: string[];
  at: number;
  detail: string;
}

export interface Fault {
  kind: string;
  topologies: Topology[];
  run(c: ChaosCluster, rng: Rng): Promise<Injected>;
}

/** The node a fault hits: the pair's MASTER (the calls are there), any node of a farm. */
function victim(c: ChaosCluster, rng: Rng): string {
  if (c.topology !== 'pair') return rng.pick(c.names);
  const m = c.master();
  if (!m) throw new Error('the pair has no MASTER holding the VIP');
  return m;
}

function others(c: ChaosCluster, node: string): string[] {
  return c.names.filter((n) => n !== node);
}

/** Until a takeover of node's calls has its audit row (or ms passed: the checker judges what happened). */
async function takenOver(c: ChaosCluster, node: string, at: number, ms: number): Promise<string> {
  try {
    const a = await waitFor(`a takeover of ${node}`, () => c.takeoverSince(node, at), ms, 200);
    return `${a.command}: ${a.result}, ${a.adopted} to ${a.to} +${a.at - at} ms`;
  } catch {
    return `no takeover of ${node} within ${ms} ms`;
  }
}

export const FAULTS: Fault[] = [
  {
    kind: 'crash',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const target = victim(c, rng);
      const at = await c.lab.crash(target);
      return { target, at, detail: `FreeSWITCH on ${target} crashed; ${await takenOver(c, target, at, 20000)}` };
    },
  },
  {
    kind: 'freeze',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const target = victim(c, rng);
      const ms = rng.int(2, 8) * 1000;
      const at = Date.now();
      c.freeze(target);
      await sleep(ms);
      c.thaw(target);
      await sleep(2000);
      return { target, at, detail: `FreeSWITCH on ${target} frozen (SIGSTOP) ${ms} ms, then thawed` };
    },
  },
  {
    kind: 'keepalived-restart',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const target = victim(c, rng);
      const at = Date.now();
      c.lab.keepalived[target].kill('SIGTERM');
      await waitFor(`keepalived on ${target} stopped`, () => c.lab.keepalived[target].exitCode !== null, 10000);
      c.lab.startKeepalived(target);
      return {
        target,
        at,
        detail: `keepalived restarted on ${target}; ${await takenOver(c, target, at, c.topology === 'pair' ? 20000 : 6000)}`,
      };
    },
  },
  {
    kind: 'keepalived-kill',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const target = victim(c, rng);
      const ms = rng.int(2, 5) * 1000;
      const at = Date.now();
      c.lab.keepalived[target].kill('SIGKILL');
      await sleep(ms);
      return { target, at, detail: `keepalived killed (SIGKILL) on ${target}, restarted ${ms} ms later` };
    },
  },
  {
    kind: 'agent-kill',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const target = victim(c, rng);
      const at = Date.now();
      c.lab.watchers[target].kill('SIGKILL');
      await sleep(4000);
      return { target, at, detail: `fs-ha agent killed (SIGKILL) on ${target}, left dead 4 s` };
    },
  },
  {
    kind: 'agent-kill-restart',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const target = victim(c, rng);
      const at = Date.now();
      c.lab.watchers[target].kill('SIGKILL');
      await waitFor('the agent gone', () => c.lab.watchers[target].exitCode !== null, 5000);
      await c.lab.startAgent(target);
      await sleep(1000);
      return { target, at, detail: `fs-ha agent killed (SIGKILL) on ${target} and restarted at once (systemd)` };
    },
  },
  {
    kind: 'link-cut',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const target = victim(c, rng);
      const ms = rng.int(2, 5) * 1000;
      const at = Date.now();
      c.cutLink(target);
      await sleep(ms);
      c.healLink(target);
      await sleep(2000);
      return { target, at, detail: `${target}'s service link cut ${ms} ms (VRRP and media), then restored` };
    },
  },
  {
    kind: 'adopter-crash',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const target = victim(c, rng);
      // every other node is armed to crash in its recover; the first to recover claims the fault and crashes, the
      // others recover (a takeover spread over two adopters loses one of them, not both)
      const armed = others(c, target);
      const claim = join(c.lab.dir, `adopter-crash-${Date.now()}`);
      for (const n of armed) await c.api(n, `simctl crash-on-recover ${claim}`, 3000);
      const at = await c.lab.crash(target);
      let adopter = '';
      try {
        adopter = await waitFor(
          'an adopter crashing in its recover',
          () => armed.find((n) => !c.running(n)),
          20000,
          20,
        );
      } catch {
        adopter = '(none crashed)';
      }
      for (const n of armed) if (c.running(n)) await c.api(n, 'simctl heal', 3000).catch(() => undefined);
      const next = c.topology !== 'pair' ? await takenOver(c, adopter, at, 20000) : 'the pair has no node left';
      return {
        target,
        alsoHit: c.names.includes(adopter) ? [adopter] : [],
        at,
        detail: `FreeSWITCH on ${target} crashed, then its adopter ${adopter} in its recover; ${next}`,
      };
    },
  },
  {
    kind: 'drain',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const target = victim(c, rng);
      const on = rng.pick(others(c, target));
      const at = Date.now();
      const r = await c.fsha(on, ['drain', '--from', target, '--yes']);
      const last = r.out.trim().split('\n').pop() ?? '';
      return {
        target,
        at,
        detail: `fs-ha drain --from ${target} --yes on ${on}: exit ${r.code}: ${last.slice(0, 200)}`,
      };
    },
  },
  {
    kind: 'db-failover',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c) {
      const at = Date.now();
      const { stopped, promoted } = c.database.failover();
      const switched = Date.now() - at;
      // each FreeSWITCH resets its connection onto the new primary at its next write (a call answered, hung up)
      const onIt = async () =>
        (
          await Promise.all(
            c.names.map((n) =>
              c.lab.simState(n).then(
                (s) => s.db,
                () => '',
              ),
            ),
          )
        ).every((db) => String(db).endsWith(`:${promoted}`));
      const followed = await waitFor('every FreeSWITCH on the new primary', onIt, 15000, 250).then(
        () => `every FreeSWITCH on it +${Date.now() - at} ms`,
        () => 'not every FreeSWITCH on it within 15000 ms',
      );
      return {
        target: 'all',
        at,
        detail: `PostgreSQL primary (:${stopped}) stopped and the standby (:${promoted}) promoted in ${switched} ms; ${followed}`,
      };
    },
  },
  {
    kind: 'cpu-starve',
    topologies: ['pair', 'farm', 'proxy'],
    async run(c, rng) {
      const ms = rng.int(3, 6) * 1000;
      const at = Date.now();
      c.starve(6);
      await sleep(ms);
      c.feed();
      await sleep(1000);
      return { target: 'all', at, detail: `6 busy loops on 2 cores for ${ms} ms` };
    },
  },
];
