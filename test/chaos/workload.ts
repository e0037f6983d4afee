/**
 * A switch's day: calls arrive continuously (a rate, hold times drawn between two bounds) on the nodes that take
 * calls now, most of them single calls, some bridged (two legs), now and then a conference of three; each is
 * answered with RTP both ways (the simulator's media plane and the far ends' echo) and ends by its far end's BYE
 * when its hold time is up: every node that answers is asked for each leg, as a BYE retransmitted to whichever
 * node now holds the dialog (retransmitted while no node holds it or a node does not answer, for up to 32 s: SIP's timer F).
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ByeReply } from '../sim/freeswitch';
import type { AbandonedSetUp, CallKind, CallRec, LegEnd } from './judge';
import type { Rng } from './rng';

export interface WorkloadOptions {
  /** calls per second */
  rate: number;
  holdMinMs: number;
  holdMaxMs: number;
  /** shares of bridged calls and conferences among new calls (the rest are single calls) */
  bridged: number;
  conference: number;
}

export interface CallPlane {
  /** the nodes that answer new calls now (not in standby, running) */
  accepting(): string[];
  /** every node whose FreeSWITCH may hold a channel (running, frozen or not) */
  nodes(): string[];
  /** can a far end's SIP reach node now (its service link is not cut)? */
  reachable(node: string): boolean;
  api(node: string, cmd: string, timeoutMs: number): Promise<string>;
}

/** RFC 3261 timer F: a non-INVITE request over UDP is given up after 64*T1 */
const TIMER_F_MS = 32000;

export class Workload {
  readonly calls: CallRec[] = [];
  /** set-ups no node took (every node in standby or down at that moment, or its answer never came) */
  refused = 0;
  /** set-ups whose answer never came (the node crashed or froze with it): the node may have answered all the same */
  readonly abandoned: AbandonedSetUp[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly pending = new Set<Promise<void>>();
  private readonly byes = new Map<number, NodeJS.Timeout>();
  private seq = 0;

  constructor(
    private readonly plane: CallPlane,
    private readonly rng: Rng,
    private readonly o: WorkloadOptions,
  ) {}

  start(): void {
    const tick = () => {
      this.track(this.placeOne());
      // Poisson arrivals at the rate
      this.timer = setTimeout(tick, Math.min(5000, -Math.log(1 - this.rng.next()) * (1000 / this.o.rate)));
    };
    tick();
  }

  /** Calls up now (answered, BYE not yet done). */
  live(): CallRec[] {
    return this.calls.filter((c) => !c.end);
  }

  /** No new call; every call still up gets its BYE now; resolves when all are done. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.pending.size) await Promise.allSettled([...this.pending]);
    for (const [id, t] of this.byes) {
      clearTimeout(t);
      const c = this.calls.find((x) => x.id === id)!;
      this.track(this.bye(c));
    }
    this.byes.clear();
    while (this.pending.size) await Promise.allSettled([...this.pending]);
    await Promise.all(this.abandoned.map((s) => this.endAbandoned(s)));
  }

  /**
   * A set-up the caller gave up on (no answer within timer B) that a node answered all the same lives on: a
   * takeover carries it (its row), with nobody on the line. A real caller that never saw the 200 OK has no dialog:
   * it answers the adopter's re-INVITE with 481 and the call ends there. This caller knows the legs it named and
   * ends them, once the run is over, on whichever node carries them: no row of theirs may be left.
   */
  private async endAbandoned(s: AbandonedSetUp): Promise<void> {
    await Promise.all(
      this.plane.nodes().flatMap((node) =>
        s.legs.map(async (uuid) => {
          const out = await this.plane.api(node, `simctl bye ${uuid}`, 5000).catch(() => '');
          if (out.startsWith('{') && (JSON.parse(out) as ByeReply).here) s.endedOn.push(`${uuid} on ${node}`);
        }),
      ),
    );
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private async placeOne(): Promise<void> {
    const r = this.rng.next();
    const kind: CallKind =
      r < this.o.conference ? 'conference' : r < this.o.conference + this.o.bridged ? 'bridged' : 'single';
    const targets = this.plane.accepting();
    if (!targets.length) {
      this.refused++;
      return;
    }
    const node = this.rng.pick(targets);
    // the caller names its legs (a SIP caller knows its dialogs whether or not an answer reaches it)
    const named = Array.from({ length: kind === 'single' ? 1 : kind === 'bridged' ? 2 : 3 }, () => randomUUID());
    const cmd = `simctl ${kind === 'single' ? 'call 1' : kind === 'bridged' ? 'bridged 1' : 'conference 3'} uuids=${named.join(',')}`;
    let out: string;
    const asked = Date.now();
    try {
      // the INVITE transaction's own limit (timer B, 32 s): a set-up answered late (a starved node, a database
      // switching over) is a call all the same; one whose answer never comes may still have been answered
      out = await this.plane.api(node, cmd, TIMER_F_MS);
    } catch {
      this.refused++;
      this.abandoned.push({ kind, legs: named, node, at: asked, endedOn: [] });
      return;
    }
    const legs = out.trim().split('\n').filter(Boolean);
    if (!legs.length || legs.some((l) => l.startsWith('-ERR'))) {
      this.refused++;
      return;
    }
    const holdMs = Math.round(this.o.holdMinMs + this.rng.next() * (this.o.holdMaxMs - this.o.holdMinMs));
    const call: CallRec = { id: ++this.seq, kind, legs, node, answeredAt: Date.now(), holdMs };
    this.calls.push(call);
    if (this.timer === null) {
      this.track(this.bye(call));
      return;
    }
    this.byes.set(
      call.id,
      setTimeout(() => {
        this.byes.delete(call.id);
        this.track(this.bye(call));
      }, holdMs),
    );
  }

  /**
   * The far end's BYE for every leg, retransmitted as RFC 3261 does for a request over UDP (T1 = 500 ms, doubling
   * up to T2 = 4 s, given up after 64*T1 = 32 s): each node that can be reached is asked for each leg it has not
   * answered for, again at each retransmission while a leg has no holder (its takeover under way). A request a
   * node has not answered yet (it froze with it) is not resent to it: its answer counts whenever it comes within
   * the 32 s, as a late 200 OK completes the transaction. Each answer says when the node hung the leg up.
   */
  private async bye(call: CallRec): Promise<void> {
    const at = Date.now();
    const ends: LegEnd[] = call.legs.map((uuid) => ({ uuid, holders: [], rxAgoMs: null }));
    const inFlight = new Map<string, Promise<void>>();
    const ask = (node: string, leg: LegEnd): Promise<void> =>
      this.plane
        .api(node, `simctl bye ${leg.uuid}`, Math.max(2000, at + TIMER_F_MS - Date.now()))
        .then((out) => {
          const reply = JSON.parse(out) as ByeReply;
          if (!reply.here || leg.holders.includes(node)) return;
          leg.holders.push(node);
          leg.answeredAfterMs = reply.at - at;
          const ago = reply.media?.rxAgoMs ?? null;
          leg.rxAgoMs = leg.rxAgoMs === null ? ago : Math.min(leg.rxAgoMs, ago ?? leg.rxAgoMs);
          if (reply.media) leg.boundAgoMs = reply.media.boundAgoMs;
          // its row under the node's own core and no channel: rows moved to it, its recover not there yet
          if (reply.row && !reply.media) leg.inTakeover = true;
        })
        .catch(() => undefined); // refused, or the process ended while asked: asked again at the next retransmission
    for (let wait = 500; ; wait = Math.min(wait * 2, 4000)) {
      for (const node of this.plane.nodes()) {
        // a BYE that cannot reach a node (its link cut, the pair's VIP elsewhere, frozen) is retransmitted until it can
        if (!this.plane.reachable(node)) continue;
        for (const leg of ends) {
          const key = `${node} ${leg.uuid}`;
          if (leg.holders.includes(node) || inFlight.has(key)) continue;
          inFlight.set(
            key,
            ask(node, leg).finally(() => inFlight.delete(key)),
          );
        }
      }
      // the transaction ends with the first 200 OK: once a node answered for every leg, nothing is resent
      const resend = Date.now() + wait;
      await Promise.race([Promise.all([...inFlight.values()]), sleep(wait)]);
      if (!ends.some((l) => !l.holders.length) || Date.now() - at + wait > TIMER_F_MS) break;
      await sleep(Math.max(0, resend - Date.now()));
    }
    // answers still on their way (a node that froze with the request) count until timer F
    await Promise.race([Promise.all([...inFlight.values()]), sleep(Math.max(0, at + TIMER_F_MS - Date.now()))]);
    call.end = { at, legs: ends };
  }
}
