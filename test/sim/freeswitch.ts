/**
 * A FreeSWITCH 1.10.12 stand-in: the inbound event socket (byte for byte as the fixtures show) and the
 * recovery table semantics of src/switch_core_sqldb.c + mod_sofia, on a real PostgreSQL:
 *  - a new core uuid at every start; at start `select hostname from recovery`, and if that fails it creates
 *    the table (unqualified, so in the first schema of its search_path), exactly like the real server;
 *  - an answered call INSERTs a row (hostname = switchname, metadata built from a real fixture row);
 *  - hangup DELETEs it;
 *  - `fsctl recover`: select runtime_uuid != own (all technologies), recover each sofia row whose profile
 *    runs here, then delete EVERY foreign row selected, recovered or not; `sofia recover`: the same per
 *    running profile (technology='sofia' and profile_name=that profile), and it clears standby;
 *  - recovered calls are re-tracked under this node's core uuid and switchname, a moment later (SQL queue).
 * Test-only controls live under the `simctl` api command. Faults: hang, slow, refuse, crash, profile down.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { fsUrlEncode, rewriteMetadata } from '../../src/core/rewrite';
import { xmlProblem } from '../../src/core/xml';
import { FIXTURES, loadRows, parseInserts } from '../helpers/fixtures';
import * as R from './replies';
import { sendReinvite } from './sip';
import { SipUa, sdpOffer, type Dialog } from './sip-ua';
import { SimDb } from './db';
import { MediaPlane, type ChannelMedia } from './media';
import { mediaPortsOf, rewritePorts } from '../../src/core/ports';

export interface SimOptions {
  host: string;
  port: number;
  password?: string;
  switchname: string;
  /** the node's SIP/RTP address, written into the metadata of its calls */
  address: string;
  profiles?: string[];
  /**
   * core-db-dsn: libpq's keyword form as FreeSWITCH is given it (pgsql://host=db1,db2 port=... dbname=...
   * target_session_attrs=read-write options='-c search_path=...'), or a postgres:// URL (multi-host too)
   */
  dsn: string;
  /** mod_pgsql's PQreset loop on a dead connection: attempts and the pause between them (real: 120, 1000 ms) */
  dbResetTries?: number;
  dbResetIntervalMs?: number;
  /** the far end (caller) written into new calls' metadata */
  farEnd?: string;
  farEndPort?: number;
  /** send a real SIP re-INVITE (UDP) to the far end of each recovered call */
  sip?: boolean;
  /** delay before a recovered call is re-tracked (FreeSWITCH's SQL queue) */
  retrackDelayMs?: number;
  /** per recovered leg (real: ~3 ms) */
  recoverDelayMs?: number;
  /**
   * event_socket.conf.xml apply-inbound-acl: the client networks admitted (IPv4 CIDRs). FreeSWITCH's default
   * is loopback.auto, so that is ours too; anything else gets a text/rude-rejection and the socket closes.
   */
  acl?: string[];
  /** rtp-start-port..rtp-end-port (default FreeSWITCH's 16384-32768): new calls' ports come from here */
  rtpPorts?: { lo: number; hi: number };
  /**
   * a media plane (test/sim/media.ts): every channel binds its RTP port and sends RTP to the far end's
   * media address (farEndMediaPort), hung up MEDIA_TIMEOUT after timeoutSec without inbound RTP
   */
  media?: { timeoutSec: number; intervalMs?: number; robustness?: boolean };
  /** the far end's RTP port written into new calls (remote_media_port) */
  farEndMediaPort?: number;
  /**
   * a SIP user agent on address:5060 (test/sim/sip-ua.ts): answers INVITEs (calls placed through a proxy), OPTIONS
   * and BYE, and re-INVITEs a recovered call along its route set (the proxy) when its row has one
   */
  sipUa?: boolean;
  /** where calls this node places go (a bridge's outbound leg), host:port: the SIP proxy */
  outboundProxy?: string;
  /**
   * calls made by the API (simctl call, bridged, conference) are placed through outboundProxy to the far end
   * (sip:callee@farEnd:5090), one dialog per leg: its route set and the proxy's media (RTPEngine) in its row
   */
  dialOut?: boolean;
  /** the user the `system` API runs commands as (FreeSWITCH's own; default: the simulator's) */
  systemUser?: string;
  onEvent?: (what: string, detail: Record<string, unknown>) => void;
}

const TEMPLATE_FILE = join(FIXTURES, 'recovery_rows.sql');
const TEMPLATE_ADDR = '127.0.0.11';
const TEMPLATE_FAR = '127.0.0.21';
let template: { uuid: string; metadata: string; runtime: string } | null = null;

function callTemplate() {
  if (!template) {
    const [v] = parseInserts(readFileSync(TEMPLATE_FILE, 'utf8'));
    template = { runtime: v[0], uuid: v[4], metadata: v[5] };
  }
  return template;
}

export class FsSim {
  coreUuid = randomUUID();
  readonly profiles = new Map<string, boolean>();
  standby = false;
  paused = false;
  /** hang: accept, never answer; slowMs: delay each reply; garbage: after auth, answer every api with bytes FreeSWITCH never sends */
  /** crashOnRecover: crash at the next recover; a path: only if this process is the first to claim that file
   *  (several armed nodes, one adopter crashing: the others recover) */
  fault: { hang: boolean; slowMs: number; garbage: boolean; crashOnRecover?: boolean | string } = {
    hang: false,
    slowMs: 0,
    garbage: false,
  };
  crashed = false;
  /** calls in set-up (ringing): channels FreeSWITCH counts, with no recovery row yet (only answered calls are tracked) */
  ringing = 0;
  private readonly startedAt = Date.now();
  private sessionsSinceStart = 0;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private db: SimDb | null = null;
  private readonly o: Required<
    Omit<
      SimOptions,
      'onEvent' | 'dbResetTries' | 'dbResetIntervalMs' | 'media' | 'sipUa' | 'outboundProxy' | 'dialOut' | 'systemUser'
    >
  > &
    Pick<
      SimOptions,
      'onEvent' | 'dbResetTries' | 'dbResetIntervalMs' | 'media' | 'sipUa' | 'outboundProxy' | 'dialOut' | 'systemUser'
    >;
  /** conference rooms by name: their conference_uuid */
  private readonly rooms = new Map<string, string>();
  private ua: SipUa | null = null;
  /** Call-ID -> call uuid, for the BYEs the user agent hears */
  private readonly dialogs = new Map<string, string>();
  /** the RTP ports and sockets of its channels (an allocator always; sockets and packets with options.media) */
  readonly media: MediaPlane;

  constructor(opts: SimOptions) {
    this.o = {
      password: 'ClueCon',
      farEnd: '127.0.0.21',
      farEndPort: 5060,
      sip: false,
      retrackDelayMs: 5,
      recoverDelayMs: 0,
      ...opts,
      rtpPorts: opts.rtpPorts ?? { lo: 16384, hi: 32768 },
      farEndMediaPort: opts.farEndMediaPort ?? 30000,
      acl: opts.acl ?? ['127.0.0.0/8'],
      profiles: opts.profiles ?? ['internal'],
    };
    for (const p of this.o.profiles) this.profiles.set(p, true);
    this.media = new MediaPlane({
      ports: this.o.rtpPorts,
      timeoutSec: opts.media?.timeoutSec ?? 0,
      intervalMs: opts.media?.intervalMs,
      robustness: opts.media?.robustness,
      onEvent: (what, d) => this.o.onEvent?.(what, { node: this.o.switchname, ...d }),
    });
    // FreeSWITCH hangs a deaf channel up: its row goes (switch_core_recovery_untrack)
    this.media.onTimeout = (uuid) => {
      this.live.delete(uuid);
      void this.db?.query('delete from recovery where uuid = $1', [uuid]).catch(() => undefined);
    };
  }

  get switchname(): string {
    return this.o.switchname;
  }

  async start(): Promise<void> {
    this.db = new SimDb(this.o.dsn, {
      appName: `fs-sim ${this.o.switchname}`,
      resetTries: this.o.dbResetTries,
      resetIntervalMs: this.o.dbResetIntervalMs,
      onEvent: (what, d) => this.o.onEvent?.(what, { node: this.o.switchname, ...d }),
    });
    await this.db.connect();
    try {
      await this.db.query('select hostname from recovery');
    } catch {
      // what switch_core_sqldb.c does when its probe fails: create the table where the search_path points
      await this.db.query(`CREATE TABLE recovery (
   runtime_uuid    VARCHAR(255),
   technology      VARCHAR(255),
   profile_name    VARCHAR(255),
   hostname        VARCHAR(255),
   uuid            VARCHAR(255),
   metadata        text
)`);
      for (const [i, col] of ['technology', 'profile_name', 'uuid', 'runtime_uuid'].entries()) {
        await this.db.query(`create index recovery${i + 1} on recovery(${col})`).catch(() => undefined);
      }
    }
    await this.listen();
    if (this.o.sipUa) {
      this.ua = new SipUa(this.o.address, 5060, {
        invite: (r) => this.answerInvite(r),
        bye: (callId) => void this.byeHeard(callId).catch(() => undefined),
        event: (what, d) => this.o.onEvent?.(`sip-${what}`, { node: this.o.switchname, ...d }),
      });
      await this.ua.start();
    }
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      // mod_event_socket sets TCP_NODELAY on every listener socket (listener_run); so do we
      const server = createServer({ noDelay: true }, (s) => this.onConnection(s));
      server.once('error', reject);
      server.listen(this.o.port, this.o.host, () => {
        this.server = server;
        resolve();
      });
    });
  }

  /** Stop accepting connections (ECONNREFUSED from now on), as when the process is gone. */
  async refuse(): Promise<void> {
    const s = this.server;
    this.server = null;
    for (const sock of this.sockets) sock.destroy();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  /** fsctl crash: sockets close, the process is gone; its rows stay as they were. */
  async crash(): Promise<void> {
    this.crashed = true;
    this.ua?.stop();
    this.media.closeAll();
    await this.refuse();
    await this.db?.end().catch(() => undefined);
    this.db = null;
    this.o.onEvent?.('crash', { node: this.o.switchname });
  }

  async stop(): Promise<void> {
    this.ua?.stop();
    this.media.closeAll();
    await this.refuse();
    await this.db?.end().catch(() => undefined);
    this.db = null;
  }

  private profileUrl(): string {
    return `sip:mod_sofia@${this.o.address}:5060`;
  }

  private running(): Array<{ name: string; url: string; calls: number }> {
    return [...this.profiles].filter(([, up]) => up).map(([name]) => ({ name, url: this.profileUrl(), calls: 0 }));
  }

  /** Armed to crash at this recover: unconditionally, or when it is the first to claim the fault's file. */
  private crashesOnRecover(): boolean {
    const armed = this.fault.crashOnRecover;
    if (typeof armed !== 'string') return armed === true;
    try {
      closeSync(openSync(armed, 'wx'));
      return true;
    } catch {
      this.fault.crashOnRecover = undefined; // another node claimed it: this one recovers
      return false;
    }
  }

  // ---------------------------------------------------------------- calls
  async answerCalls(
    n: number,
    profile = this.o.profiles[0],
    ringingAlready = false,
    named: string[] = [],
  ): Promise<string[]> {
    // standby turns new INVITEs away; a call that was already ringing may still be answered
    if (this.standby && !ringingAlready) throw new Error('503 System Paused');
    this.requireAddress();
    if (!this.profiles.get(profile)) throw new Error(`profile ${profile} not running`);
    const t = callTemplate();
    const uuids: string[] = [];
    const rows: string[][] = [];
    for (let i = 0; i < n; i++) {
      const uuid = named[i] ?? randomUUID();
      const md = await this.dialOut(uuid, await this.newCallMetadata(uuid, profile, i, t));
      uuids.push(uuid);
      rows.push([this.coreUuid, 'sofia', profile, this.o.switchname, uuid, md]);
      this.sessionsSinceStart++;
      this.live.add(uuid);
    }
    const db = this.requireDb();
    const BATCH = 200;
    for (let i = 0; i < rows.length; i += BATCH) {
      const chunk = rows.slice(i, i + BATCH);
      const params: string[] = [];
      const values = chunk.map((r, j) => {
        params.push(...r);
        const b = j * 6;
        return `($${b + 1},$${b + 2},$${b + 3},$${b + 4},$${b + 5},$${b + 6})`;
      });
      await db.query(
        `insert into recovery (runtime_uuid, technology, profile_name, hostname, uuid, metadata) values ${values.join(',')}`,
        params,
      );
    }
    await this.openMedia(
      rows.map((r) => ({ uuid: r[4], metadata: r[5] })),
      false,
    );
    return uuids;
  }

  /**
   * An INVITE through the proxy, answered as mod_sofia does (503 in standby): a row shaped like the real ones
   * with this dialog's Call-ID, tags, the far end's Contact and the received address, the Record-Route kept
   * (sip_invite_record_route, sip_invite_route_uri: what sofia recover routes the re-INVITE by), the far end's
   * media from its SDP (RTPEngine's address behind the proxy); then its media, and 200 OK with this node's SDP.
   */
  private async answerInvite(r: {
    dialog: Dialog;
    remoteMedia: { ip: string; port: number } | null;
    received: { ip: string; port: number };
  }): Promise<{ sdp: string } | { status: number; reason: string }> {
    const profile = this.o.profiles[0];
    if (this.crashed || !this.db) return { status: 500, reason: 'Server Internal Error' };
    if (this.standby) return { status: 503, reason: 'Maintenance' };
    if (!this.profiles.get(profile)) return { status: 480, reason: 'Temporarily Unavailable' };
    // what the dialplan does with it, by the called user: conf-ROOM joins a conference, bridge bridges to a
    // callee through the proxy (sip:callee@far-end:5090), anything else is answered and parked
    const user = /^sips?:([^@;]+)@/.exec(r.dialog.localUri)?.[1] ?? '';
    const inbound = dialogVars(r.dialog, r.received, r.remoteMedia);
    const rows: Array<{ uuid: string; md: string; callId: string }> = [];
    if (user.startsWith('conf-')) {
      const all = loadRows('conference_rows.sql');
      const room = this.rooms.get(user) ?? randomUUID();
      this.rooms.set(user, room);
      const map = new Map([[/<conference_uuid>([^<]+)</.exec(all[0].metadata)![1], room]]);
      const member = all[this.sessionsSinceStart % all.length];
      const md = await this.givePort(
        this.groupLeg(member.metadata, map, `m-${randomUUID().slice(0, 8)}`, all[0].runtime_uuid),
      );
      rows.push({ uuid: map.get(member.uuid)!, md: setVars(md, inbound), callId: r.dialog.callId });
    } else if (user === 'bridge' && this.ua && this.o.outboundProxy) {
      const all = loadRows('bridged_rows.sql');
      const map = new Map<string, string>();
      const tag = `b-${randomUUID().slice(0, 8)}`;
      const a = await this.givePort(this.groupLeg(all[0].metadata, map, tag, all[0].runtime_uuid));
      const b = await this.givePort(this.groupLeg(all[1].metadata, map, tag, all[0].runtime_uuid));
      const [host, port] = this.o.outboundProxy.split(/:(?=\d+$)/);
      const bPort = Number(/<local_media_port>(\d+)</.exec(b)?.[1] ?? 0);
      const out = await this.ua.invite(
        `sip:callee@${this.o.farEnd}:5090`,
        { host, port: Number(port ?? 5060) },
        sdpOffer(this.o.address, bPort, 1),
      );
      if (!out) return { status: 480, reason: 'Temporarily Unavailable' };
      rows.push({ uuid: map.get(all[0].uuid)!, md: setVars(a, inbound), callId: r.dialog.callId });
      // the outbound leg, kept as this simulator keeps every dialog (its tag as sip_to_tag, the far end's as sip_from_tag)
      rows.push({
        uuid: map.get(all[1].uuid)!,
        md: setVars(b, dialogVars(out.dialog, { ip: host, port: Number(port ?? 5060) }, out.media)),
        callId: out.dialog.callId,
      });
    } else {
      const uuid = randomUUID();
      rows.push({ uuid, md: setVars(await this.newCallMetadata(uuid, profile, 0), inbound), callId: r.dialog.callId });
    }
    for (const row of rows) {
      await this.requireDb().query(
        'insert into recovery (runtime_uuid, technology, profile_name, hostname, uuid, metadata) values ($1,$2,$3,$4,$5,$6)',
        [this.coreUuid, 'sofia', profile, this.o.switchname, row.uuid, row.md],
      );
      this.sessionsSinceStart++;
      this.live.add(row.uuid);
      this.dialogs.set(row.callId, row.uuid);
      this.o.onEvent?.('answered', {
        node: this.o.switchname,
        uuid: row.uuid,
        callId: row.callId,
        kind: user.startsWith('conf-') ? 'conference' : user === 'bridge' ? 'bridged' : 'single',
      });
    }
    await this.openMedia(
      rows.map((x) => ({ uuid: x.uuid, metadata: x.md })),
      false,
    );
    const port = Number(/<local_media_port>(\d+)</.exec(rows[0].md)?.[1] ?? 0);
    return { sdp: sdpOffer(this.o.address, port, 1) };
  }

  /** A BYE heard for a call: it ends, and a bridged call's other leg gets a BYE along its own route (B2BUA). */
  private async byeHeard(callId: string): Promise<void> {
    const uuid = this.dialogs.get(callId);
    this.dialogs.delete(callId);
    if (!uuid || !this.db) return;
    const md = (await this.db.query('select metadata from recovery where uuid = $1', [uuid])).rows[0]?.metadata as
      | string
      | undefined;
    const partner = md ? /<(?:signal_bond|bridge_to)>([0-9a-f-]{36})</.exec(md)?.[1] : undefined;
    await this.hangup(uuid);
    if (!partner || partner === uuid) return;
    const pmd = (await this.db.query('select metadata from recovery where uuid = $1', [partner])).rows[0]?.metadata as
      | string
      | undefined;
    if (!pmd) return;
    const d = dialogOf(pmd);
    this.dialogs.delete(d.callId);
    await this.hangup(partner);
    if (this.ua) await this.ua.request('BYE', d);
  }

  /** A recovered call's re-INVITE along its route set (the proxy), its answer's media taken as the new remote. */
  private reinviteViaRoute(uuid: string, md: string): void {
    const d = dialogOf(md);
    this.dialogs.set(d.callId, uuid);
    const port = Number(/<local_media_port>(\d+)</.exec(md)?.[1] ?? 0);
    void this.ua!.reinvite(d, sdpOffer(this.o.address, port, Math.floor(Date.now() / 1000)), (to) =>
      this.o.onEvent?.('reinvite', { to, at: Date.now(), uuid, via: 'route' }),
    ).then((answer) => {
      if (answer) {
        this.media.setRemote(uuid, answer);
        this.o.onEvent?.('reinvite-answered', { uuid, media: `${answer.ip}:${answer.port}` });
      } else this.o.onEvent?.('reinvite-failed', { uuid, error: 'no 2xx' });
    });
  }

  /** One new call's row metadata: the real template as this node's, its own uuid, Call-ID and RTP port. */
  private async newCallMetadata(uuid: string, profile: string, i: number, t = callTemplate()): Promise<string> {
    const rw = rewriteMetadata(t.metadata, {
      fromSwitchname: 'freeswitch01',
      toSwitchname: this.o.switchname,
      addresses: [
        [TEMPLATE_ADDR, this.o.address],
        [TEMPLATE_FAR, this.o.farEnd],
      ],
    });
    if (!rw.ok) throw new Error(rw.reason);
    let md = rw.metadata.split(t.uuid).join(uuid).split(t.runtime).join(this.coreUuid);
    md = md.replace(
      /<sip_call_id>[^<]*<\/sip_call_id>/,
      `<sip_call_id>${i}-${uuid.slice(0, 8)}%40${this.o.farEnd}</sip_call_id>`,
    );
    if (profile !== 'internal')
      md = md.replace(
        /<(recovery_profile_name|sofia_profile_name|sip_profile_name)>[^<]*</g,
        `<$1>${fsUrlEncode(profile)}<`,
      );
    if (this.o.farEndPort !== 5060)
      md = md.replace(/<sip_network_port>5060</, `<sip_network_port>${this.o.farEndPort}<`);
    return this.givePort(md);
  }

  /** A new call's RTP port from the allocator, written where FreeSWITCH writes it; its far end's media port. */
  private async givePort(md: string): Promise<string> {
    const ports = mediaPortsOf(md);
    if ('error' in ports || !ports.get('media')) return md;
    const port = await this.media.allocate(this.o.address);
    const rw = rewritePorts(md, ports, new Map([[ports.get('media')!, port]]));
    if (!rw.ok) throw new Error(rw.reason);
    return rw.metadata.replace(/<remote_media_port>\d+</, `<remote_media_port>${this.o.farEndMediaPort}<`);
  }

  /**
   * Channels' media from their rows: local_media_ip:local_media_port bound, RTP to remote_media_ip:remote_media_port.
   * New calls' ports came from the allocator; recovered ones are bound as their rows say, the allocator not asked.
   * A bind that fails hangs the call up (FreeSWITCH: Bind Error, INCOMPATIBLE_DESTINATION). Returns the failed uuids.
   */
  private async openMedia(calls: Array<{ uuid: string; metadata: string }>, recovered: boolean): Promise<string[]> {
    const failed: string[] = [];
    for (const c of calls) {
      const v = (name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(c.metadata)?.[1];
      const [ip, port, rip, rport] = [
        v('local_media_ip'),
        v('local_media_port'),
        v('remote_media_ip'),
        v('remote_media_port'),
      ];
      if (!ip || !port) continue;
      if (!this.o.media) continue;
      await this.media
        .open(
          c.uuid,
          { ip, port: Number(port) },
          { ip: rip ?? this.o.farEnd, port: Number(rport ?? this.o.farEndMediaPort) },
          { recovered, allocated: !recovered },
        )
        .catch(() => failed.push(c.uuid));
    }
    return failed;
  }

  /**
   * Calls shaped like the real bridged and conference rows (fixtures: bridged_rows.sql, conference_rows.sql),
   * as this node's: bridged = n calls of two legs tied by signal_bond/bridge_to; conference = n members of one
   * new conference (conference_uuid shared). Every uuid of a template is replaced consistently within its call
   * (so the ties hold), the core uuid, switchname and addresses become this node's, both far ends the far end.
   */
  async answerGroup(kind: 'bridged' | 'conference', n: number, named: string[] = []): Promise<string[]> {
    if (this.standby) throw new Error('503 System Paused');
    this.requireAddress();
    const all = loadRows(kind === 'bridged' ? 'bridged_rows.sql' : 'conference_rows.sql');
    const runtime = all[0].runtime_uuid;
    const copy = (md: string, map: Map<string, string>, tag: string): string => this.groupLeg(md, map, tag, runtime);
    const rows: string[][] = [];
    if (kind === 'bridged') {
      const pairs = [
        [0, 1],
        [2, 3],
        [4, 5],
      ].map(([a, b]) => [all[a], all[b]]);
      for (let i = 0; i < n; i++) {
        const map = new Map<string, string>();
        for (const [k, leg] of pairs[i % pairs.length].entries())
          if (named[2 * i + k]) map.set(leg.uuid, named[2 * i + k]);
        for (const leg of pairs[i % pairs.length]) {
          const md = copy(leg.metadata, map, `b${i}-${randomUUID().slice(0, 8)}`);
          rows.push([
            this.coreUuid,
            'sofia',
            'internal',
            this.o.switchname,
            map.get(leg.uuid)!,
            await this.dialOut(map.get(leg.uuid)!, await this.givePort(md)),
          ]);
        }
      }
    } else {
      const conf = /<conference_uuid>([^<]+)</.exec(all[0].metadata)![1];
      const shared = new Map<string, string>([[conf, randomUUID()]]);
      for (let i = 0; i < n; i++) {
        const member = all[i % all.length];
        const map = new Map(shared);
        if (named[i]) map.set(member.uuid, named[i]);
        const md = copy(member.metadata, map, `m${i}-${randomUUID().slice(0, 8)}`);
        rows.push([
          this.coreUuid,
          'sofia',
          'internal',
          this.o.switchname,
          map.get(member.uuid)!,
          await this.dialOut(map.get(member.uuid)!, await this.givePort(md)),
        ]);
      }
    }
    const db = this.requireDb();
    for (const r of rows) {
      await db.query(
        'insert into recovery (runtime_uuid, technology, profile_name, hostname, uuid, metadata) values ($1,$2,$3,$4,$5,$6)',
        r,
      );
      this.sessionsSinceStart++;
      this.live.add(r[4]);
    }
    await this.openMedia(
      rows.map((r) => ({ uuid: r[4], metadata: r[5] })),
      false,
    );
    return rows.map((r) => r[4]);
  }

  /**
   * With dialOut, one leg's call placed through the proxy to the far end, as mod_sofia places an outbound call
   * (the INVITE offers the row's RTP port): the row gets the dialog (route set, tags) and the answer's media
   * (RTPEngine's address), as a call answered through the proxy does. Without dialOut, md as it is.
   */
  private async dialOut(uuid: string, md: string): Promise<string> {
    if (!this.o.dialOut) return md;
    if (!this.ua || !this.o.outboundProxy) throw new Error('dial-out needs the SIP user agent and an outbound proxy');
    const [host, port] = this.o.outboundProxy.split(/:(?=\d+$)/);
    const proxy = { host, port: Number(port ?? 5060) };
    const local = Number(/<local_media_port>(\d+)</.exec(md)?.[1] ?? 0);
    const out = await this.ua.invite(`sip:callee@${this.o.farEnd}:5090`, proxy, sdpOffer(this.o.address, local, 1));
    if (!out) throw new Error('480 Temporarily Unavailable: the far end did not answer through the proxy');
    this.dialogs.set(out.dialog.callId, uuid);
    return setVars(md, dialogVars(out.dialog, { ip: host, port: proxy.port }, out.media));
  }

  /**
   * One leg of a real bridged or conference row as this node's: every uuid of the template replaced consistently
   * through map (so the ties hold), the core uuid, switchname and addresses this node's, both far ends the far end.
   */
  private groupLeg(md: string, map: Map<string, string>, tag: string, runtime: string): string {
    const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
    const rw = rewriteMetadata(md, {
      fromSwitchname: 'freeswitch01',
      toSwitchname: this.o.switchname,
      addresses: [
        [TEMPLATE_ADDR, this.o.address],
        [TEMPLATE_FAR, this.o.farEnd],
        ['127.0.0.22', this.o.farEnd],
      ],
    });
    if (!rw.ok) throw new Error(rw.reason);
    let out = rw.metadata.replace(UUID, (u) => {
      if (u === runtime) return this.coreUuid;
      if (!map.has(u)) map.set(u, randomUUID());
      return map.get(u)!;
    });
    out = out.replace(/<sip_call_id>(\d+-\d+)%40/, `<sip_call_id>${tag}-$1%40`); // A legs' call-ids are not uuids
    if (this.o.farEndPort !== 5060)
      out = out.replace(/<sip_network_port>5060</g, `<sip_network_port>${this.o.farEndPort}<`);
    return out;
  }

  /** legs hung up while a recover was under way: not re-tracked when it ends (their row went with the hangup) */
  private readonly hungUp = new Set<string>();
  /** the channels of this process (uuid_exists), media or not */
  private readonly live = new Set<string>();

  async hangup(uuid: string): Promise<void> {
    this.hungUp.add(uuid);
    this.live.delete(uuid);
    this.media.close(uuid);
    await this.requireDb().query('delete from recovery where uuid = $1', [uuid]);
  }

  /**
   * The far end's BYE for one leg, heard by this node: a channel it carries (its media, or a row under its own
   * core) is hung up, its own row deleted (no other node's); what its media heard until then is returned, and
   * when it was hung up (at).
   */
  async bye(uuid: string): Promise<ByeReply> {
    // a retransmitted BYE is answered by its server transaction as the first one was (a process frozen while the
    // first was on its way answers it once thawed: the far end may have given up on that answer and sent it again)
    const answered = this.byes.get(uuid);
    if (answered) return answered;
    const reply = await this.byeOnce(uuid);
    if (reply.here) this.byes.set(uuid, reply);
    return reply;
  }
  private readonly byes = new Map<string, ByeReply>();

  private async byeOnce(uuid: string): Promise<ByeReply> {
    // a channel it carries is hung up now, before its row goes: its media stops, and a recover's re-track that
    // runs while the row's delete waits in the SQL queue does not track it again (switch_core_recovery_untrack)
    let at = Date.now();
    let media = this.media.channel(uuid);
    const had = this.live.delete(uuid);
    if (had) {
      this.o.onEvent?.('bye-heard', { node: this.o.switchname, uuid });
      this.hungUp.add(uuid);
      this.media.close(uuid);
    }
    const res = await this.requireDb().query(
      'delete from recovery where uuid = $1 and runtime_uuid = $2 returning metadata',
      [uuid, this.coreUuid],
    );
    // a call placed through the proxy (dialOut): its dialog there ends too (the far end's side of it, and RTPEngine's)
    const md = res.rows[0]?.metadata as string | undefined;
    if (this.o.dialOut && this.ua && md && /<sip_invite_record_route>[^<]+</.test(md)) {
      const d = dialogOf(md);
      this.dialogs.delete(d.callId);
      void this.ua.request('BYE', d);
    }
    // a channel its recover bound while the row went: hung up now
    const bound = this.live.delete(uuid);
    if (bound) {
      at = Date.now();
      media = this.media.channel(uuid);
      this.hungUp.add(uuid);
      this.media.close(uuid);
    }
    const row = (res.rowCount ?? 0) > 0;
    return { here: row || media !== null || had || bound, media: had || bound ? media : null, row, at };
  }

  async ownCalls(): Promise<string[]> {
    const rows = await this.requireDb().query('select uuid from recovery where runtime_uuid = $1 order by uuid', [
      this.coreUuid,
    ]);
    return rows.rows.map((r) => r.uuid as string);
  }

  /**
   * An INVITE to the profile's address reaches this host only while it holds that address (a VIP bound with
   * ip_nonlocal_bind is held by keepalived's MASTER alone): a call placed here otherwise never arrives.
   */
  private requireAddress(): void {
    const a = this.o.address;
    if (a.startsWith('127.') || a === '::1') return;
    const held = Object.values(networkInterfaces()).some((l) => l?.some((x) => x.address === a));
    if (!held) throw new Error(`no INVITE reaches ${a}: this host does not hold it`);
  }

  /** host:port of the database server the simulator is connected to now */
  get dbServer(): string {
    return this.db?.server ?? '';
  }

  private requireDb(): SimDb {
    if (!this.db) throw new Error('no database');
    return this.db;
  }

  // ---------------------------------------------------------------- recovery (switch_core_recovery_recover)
  private async recoverWhere(technology: string | null, profile: string | null): Promise<number> {
    const db = this.requireDb();
    const cond = ['runtime_uuid != $1'];
    const params: string[] = [this.coreUuid];
    if (technology) {
      params.push(technology);
      cond.push(`technology = $${params.length}`);
    }
    if (profile) {
      params.push(profile);
      cond.push(`profile_name = $${params.length}`);
    }
    const where = cond.join(' and ');
    const res = await db.query(
      `select runtime_uuid, technology, profile_name, hostname, uuid, metadata from recovery where ${where}`,
      params,
    );
    for (const row of res.rows) this.hungUp.delete(row.uuid);
    const recovered: Array<{ uuid: string; profile: string; metadata: string }> = [];
    let firstLegAt: number | undefined;
    const paceFrom = Date.now();
    for (const row of res.rows) {
      // sofia_recover_callback: the channel is rebuilt from the XML; a row that does not parse is not recovered
      // sofia_recover_callback rebuilds the channel on the profile its recovery_profile_name variable names
      // ("Invalid profile" otherwise): selected by the column, recovered by the variable, deleted either way
      const onProfile = /<recovery_profile_name>([^<]*)</.exec(row.metadata ?? '')?.[1];
      if (
        row.technology === 'sofia' &&
        this.profiles.get(row.profile_name) &&
        row.metadata &&
        xmlProblem(row.metadata) === null &&
        onProfile !== undefined &&
        this.profiles.get(decodeURIComponent(onProfile))
      ) {
        // one leg after another, recoverDelayMs each: paced on the clock, so timer granularity does not add up
        const due = paceFrom + (recovered.length + 1) * this.o.recoverDelayMs;
        if (this.o.recoverDelayMs && due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
        // switch_core_media_recover_session: the row's port is bound before the re-INVITE offers it
        if ((await this.openMedia([row], true)).length) continue;
        firstLegAt ??= Date.now();
        recovered.push({ uuid: row.uuid, profile: decodeURIComponent(onProfile!), metadata: row.metadata });
        this.live.add(row.uuid);
        // behind a proxy the row has a route set: the re-INVITE goes along it (the user agent); else straight to the far end
        if (this.ua && /<sip_invite_record_route>[^<]+</.test(row.metadata))
          this.reinviteViaRoute(row.uuid, row.metadata);
        else if (this.o.sip)
          sendReinvite(
            row.metadata,
            this.o.address,
            (d) => this.o.onEvent?.('reinvite', d),
            (d) => this.o.onEvent?.('reinvite-failed', d),
          );
      }
    }
    const lastLegAt = Date.now();
    await db.query(`delete from recovery where ${where}`, params);
    this.o.onEvent?.('recover', {
      node: this.o.switchname,
      selected: res.rows.length,
      recovered: recovered.length,
      uuids: recovered.map((c) => c.uuid),
      firstLegAt: firstLegAt ?? lastLegAt,
      lastLegAt,
    });
    setTimeout(() => void this.retrack(recovered), this.o.retrackDelayMs);
    return recovered.length;
  }

  private async retrack(calls: Array<{ uuid: string; profile: string; metadata: string }>): Promise<void> {
    const db = this.db;
    if (!db || !calls.length) return;
    for (const c of calls) {
      // a channel hung up since it was recovered is gone: nothing to track (switch_core_recovery_untrack ran)
      if (this.hungUp.delete(c.uuid) || !this.live.has(c.uuid)) continue;
      const md = c.metadata
        .replace(
          /^<cdr core-uuid="[^"]*" switchname="[^"]*">/,
          `<cdr core-uuid="${this.coreUuid}" switchname="${this.o.switchname}">`,
        )
        .replace('<variables>', '<variables>\n    <recovered>true</recovered>');
      await db
        .query(
          'insert into recovery (runtime_uuid, technology, profile_name, hostname, uuid, metadata) values ($1,$2,$3,$4,$5,$6)',
          [this.coreUuid, 'sofia', c.profile, this.o.switchname, c.uuid, md],
        )
        .catch((e) => this.o.onEvent?.('retrack-error', { error: String(e) }));
    }
  }

  // ---------------------------------------------------------------- api
  /** alias add/stickyadd (switch_console's aliases table): a console word for a command line */
  private readonly aliases = new Map<string, string>();

  async api(cmd: string, o: { console?: boolean; depth?: number } = {}): Promise<string | null> {
    const [word, ...args] = cmd.trim().split(/\s+/);
    const rest = args.join(' ');
    // switch_console_execute (fs_cli sends console_execute: true): an alias is expanded, said, and run
    const alias = o.console ? this.aliases.get(word) : undefined;
    if (alias !== undefined && (o.depth ?? 0) < 100) {
      const full = rest ? `${alias} ${rest}` : alias;
      return `\nExpand Alias [${word}]->[${full}]\n\n${(await this.api(full, { console: true, depth: (o.depth ?? 0) + 1 })) ?? ''}`;
    }
    switch (word) {
      case 'alias': {
        // mod_commands alias_function: add and stickyadd (kept across restarts) store it, del removes it
        const [op, name, ...line] = args;
        if ((op === 'add' || op === 'stickyadd') && name && line.length) {
          this.aliases.set(name, line.join(' '));
          return '+OK\n';
        }
        if (op === 'del' && name) {
          this.aliases.delete(name);
          return '+OK\n';
        }
        return '-USAGE: [alias|stickyalias] [add|del] <alias> <command>\n';
      }
      case 'module_exists':
        return ['mod_commands', 'mod_sofia', 'mod_event_socket'].includes(rest) ? 'true' : 'false';
      case 'system':
        // mod_commands system_function: /bin/sh -c, as FreeSWITCH's user, its standard output streamed back
        if (!rest) return '-ERR No command specified\n';
        return this.system(rest);
      case 'uuid_exists':
        // mod_commands: whether a channel of that uuid exists here
        return this.live.has(rest) ? 'true' : 'false';
      case 'status':
        return R.statusBody(Date.now() - this.startedAt, !this.paused, this.sessionsSinceStart, 0, 0);
      case 'switchname':
        return this.o.switchname;
      case 'global_getvar':
        return rest === 'core_uuid' ? this.coreUuid : '';
      case 'show':
        if (rest === 'channels count' || rest === 'calls count') {
          const n =
            (this.db
              ? (await this.db.query('select count(*)::int n from recovery where runtime_uuid = $1', [this.coreUuid]))
                  .rows[0].n
              : 0) + this.ringing;
          return `\n${n} total.\n`;
        }
        return `-ERR ${cmd} Command not found!\n`;
      case 'fsctl':
        if (rest === 'recover' && this.crashesOnRecover()) {
          await this.crash();
          return null;
        }
        if (rest === 'recover') return `+OK ${await this.recoverWhere(null, null)} session(s) recovered in total\n`;
        if (rest === 'recover flush') return '+OK flushed\n';
        if (rest === 'pause') {
          this.paused = true;
          return '+OK\n';
        }
        if (rest === 'resume') {
          this.paused = false;
          return '+OK\n';
        }
        if (rest === 'crash') {
          await this.crash();
          return null;
        }
        return '-USAGE: ...\n';
      case 'sofia':
        return this.sofia(args);
      case 'simctl':
        return this.simctl(args);
      default:
        return `-ERR ${word} Command not found!\n`;
    }
  }

  private async sofia(args: string[]): Promise<string | null> {
    const rest = args.join(' ');
    if (rest === 'status') return R.sofiaStatusBody(this.running());
    if (rest === 'xmlstatus') return R.xmlStatusBody(this.running());
    let m = rest.match(/^(xmlstatus|status) profile (\S+)$/);
    if (m) {
      if (!this.profiles.get(m[2])) return 'Invalid Profile!\n';
      return m[1] === 'xmlstatus'
        ? R.xmlStatusProfileBody(m[2], this.o.address, 0)
        : `${R.sofiaStatusBody(this.running())}`;
    }
    m = rest.match(/^global standby (on|off)$/);
    if (m) {
      this.standby = m[1] === 'on';
      return `+OK Global standby ${m[1]}`;
    }
    m = rest.match(/^profile (\S+) (start|stop)$/);
    if (m) {
      if (!this.profiles.has(m[1])) return 'Reload XML [Success]\nInvalid Profile!\n';
      this.profiles.set(m[1], m[2] === 'start');
      return m[2] === 'stop'
        ? `Reload XML [Success]\nstopping: ${m[1]}`
        : `Reload XML [Success]\n${m[1]} started successfully\n`;
    }
    if (rest === 'recover flush') {
      for (const p of this.running())
        await this.requireDb().query(
          "delete from recovery where runtime_uuid != $1 and technology = 'sofia' and profile_name = $2",
          [this.coreUuid, p.name],
        );
      return 'Flushing recovery database.\n';
    }
    if (rest === 'recover' && this.crashesOnRecover()) {
      await this.crash();
      return null;
    }
    if (rest === 'recover') {
      let n = 0;
      for (const p of this.running()) {
        n += await this.recoverWhere('sofia', p.name);
      }
      this.standby = false; // sofia_glue_profile_recover clears PFLAG_STANDBY on every profile
      return n ? `Recovered ${n} call(s)\n` : 'No calls to recover.\n';
    }
    return '-ERR Usage: sofia ...\n';
  }

  /** switch_stream_system: the command's standard output (its standard error is not the caller's). */
  private system(line: string): Promise<string> {
    const user = this.o.systemUser;
    const argv = user ? ['runuser', '-u', user, '--', '/bin/sh', '-c', line] : ['/bin/sh', '-c', line];
    return new Promise((resolve) => {
      execFile(argv[0], argv.slice(1), { timeout: 60_000, encoding: 'utf8', cwd: '/' }, (_e, stdout) =>
        resolve(stdout ?? ''),
      );
    });
  }

  private async simctl(all: string[]): Promise<string> {
    // uuids=U1,U2,…: the legs of the calls placed take these uuids, in order (the caller names its calls, as a
    // SIP caller knows its dialogs whether or not the answer reaches it)
    const named = all.find((x) => x.startsWith('uuids='));
    const uuids = named ? named.slice(6).split(',').filter(Boolean) : [];
    const [what, a, b] = all.filter((x) => x !== named);
    try {
      switch (what) {
        case 'call':
          return (await this.answerCalls(Number(a ?? 1), b, false, uuids)).join('\n') + '\n';
        case 'hangup':
          await this.hangup(a);
          return '+OK\n';
        case 'bye':
          return JSON.stringify(await this.bye(a)) + '\n';
        case 'calls':
          return (await this.ownCalls()).join('\n') + '\n';
        case 'hang':
          this.fault.hang = true;
          return '+OK\n';
        case 'slow':
          this.fault.slowMs = Number(a ?? 0);
          return '+OK\n';
        case 'heal':
          this.fault = { hang: false, slowMs: 0, garbage: false };
          return '+OK\n';
        case 'garbage':
          this.fault.garbage = true;
          return '+OK\n';
        case 'bridged':
          return (await this.answerGroup('bridged', Number(a ?? 1), uuids)).join('\n') + '\n';
        case 'conference':
          return (await this.answerGroup('conference', Number(a ?? 3), uuids)).join('\n') + '\n';
        case 'ring':
          this.ringing += Number(a ?? 1);
          return '+OK\n';
        case 'answer-ringing': {
          const n = this.ringing;
          this.ringing = 0;
          return (await this.answerCalls(n, undefined, true)).join('\n') + '\n';
        }
        case 'crash-on-recover':
          this.fault.crashOnRecover = a || true;
          return '+OK\n';
        case 'refuse':
          setImmediate(() => void this.refuse());
          return '+OK\n';
        case 'media':
          return JSON.stringify(this.media.report()) + '\n';
        case 'state':
          return (
            JSON.stringify({
              switchname: this.o.switchname,
              coreUuid: this.coreUuid,
              standby: this.standby,
              profiles: Object.fromEntries(this.profiles),
              calls: (await this.ownCalls()).length,
              db: this.dbServer,
            }) + '\n'
          );
        default:
          return '-ERR simctl call N [profile] [uuids=U,…] | bridged N [uuids=…] | conference N [uuids=…] | hangup UUID | bye UUID | calls | state | hang | slow MS | garbage | heal | refuse\n';
      }
    } catch (e) {
      return `-ERR ${(e as Error).message}\n`;
    }
  }

  // ---------------------------------------------------------------- event socket
  /** event-socket connections accepted since start (tests: who opened how many) */
  eslConnections = 0;

  private onConnection(sock: Socket): void {
    this.eslConnections++;
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    const from = (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
    if (!this.o.acl.some((cidr) => inCidr(from, cidr))) {
      // mod_event_socket's listener_run: the ACL is checked before auth/request is sent
      sock.write(R.RUDE_REJECTION + R.DISCONNECT_NOTICE);
      sock.end();
      this.o.onEvent?.('acl-rejected', { from });
      return;
    }
    if (this.fault.hang) return; // accept, never answer
    let authed = false;
    let buf = '';
    const events = new Map<string, 'plain' | 'json'>();
    let chain = Promise.resolve();
    const write = (s: string) => {
      if (!sock.destroyed) sock.write(s);
    };
    const handle = async (block: string) => {
      // the command line, then its headers (fs_cli's api carries console_execute: true)
      const [cmd, ...headerLines] = block.split('\n');
      const headers = new Map(
        headerLines.map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      );
      if (this.fault.hang) return;
      if (this.fault.slowMs) await new Promise((r) => setTimeout(r, this.fault.slowMs));
      if (cmd === 'exit') {
        write(R.commandReply('+OK bye'));
        write(R.DISCONNECT_NOTICE);
        sock.end();
        return;
      }
      if (!authed) {
        const m = cmd.match(/^auth (.*)$/);
        if (!m) {
          write(R.commandReply('-ERR command not found'));
          return;
        }
        if (m[1] !== this.o.password) {
          write(R.commandReply('-ERR invalid'));
          write(R.DISCONNECT_NOTICE);
          sock.end();
          return;
        }
        authed = true;
        write(R.commandReply('+OK accepted'));
        return;
      }
      let m = cmd.match(/^api (.+)$/);
      if (m && this.fault.garbage && !m[1].startsWith('simctl')) {
        write(R.apiResponse('\u0000\u0007 ~~ not a FreeSWITCH reply ~~\n'));
        return;
      }
      if (m) {
        const body = await this.api(m[1], { console: headers.get('console_execute') === 'true' });
        if (body === null) return; // crashed: no reply, the socket just closes
        write(R.apiResponse(body));
        return;
      }
      m = cmd.match(/^event (plain|json) (.+)$/);
      if (m) {
        for (const e of m[2].split(/\s+/)) events.set(e, m[1] as 'plain' | 'json');
        write(R.commandReply(`+OK event listener enabled ${m[1]}`));
        return;
      }
      if (/^(noevents|nixevent|filter)\b/.test(cmd)) {
        write(R.commandReply('+OK'));
        return;
      }
      m = cmd.match(/^bgapi (.+)$/);
      if (m) {
        const job = randomUUID();
        write(R.commandReply(`+OK Job-UUID: ${job}`, `Job-UUID: ${job}\n`));
        const body = (await this.api(m[1])) ?? '';
        const fmt = events.get('BACKGROUND_JOB') ?? events.get('ALL') ?? events.get('all');
        if (fmt) write(this.backgroundJob(fmt, job, m[1], body));
        return;
      }
      write(R.commandReply('-ERR command not found'));
    };
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const cmd = buf.slice(0, i).replace(/\r/g, '').trim();
        buf = buf.slice(i + 2);
        if (!cmd) continue;
        chain = chain
          .then(() => handle(cmd))
          .catch(() => {
            sock.destroy();
          });
      }
    });
    sock.write(R.AUTH_REQUEST);
  }

  private backgroundJob(fmt: 'plain' | 'json', job: string, cmd: string, body: string): string {
    const headers: Array<[string, string]> = [
      ['Event-Name', 'BACKGROUND_JOB'],
      ['Core-UUID', this.coreUuid],
      ['FreeSWITCH-Hostname', 'vm'],
      ['FreeSWITCH-Switchname', this.o.switchname],
      ['FreeSWITCH-IPv4', this.o.address],
      ['Event-Calling-File', 'mod_event_socket.c'],
      ['Event-Calling-Function', 'api_exec'],
      ['Job-UUID', job],
      ['Job-Command', cmd],
    ];
    if (fmt === 'json') {
      const obj: Record<string, string> = Object.fromEntries(headers);
      obj['Content-Length'] = String(Buffer.byteLength(body));
      obj._body = body;
      const json = JSON.stringify(obj);
      return `Content-Length: ${Buffer.byteLength(json)}\nContent-Type: text/event-json\n\n${json}`;
    }
    const text =
      headers.map(([k, v]) => `${k}: ${encodeURIComponent(v)}`).join('\n') +
      `\nContent-Length: ${Buffer.byteLength(body)}\n\n${body}`;
    return `Content-Length: ${Buffer.byteLength(text)}\nContent-Type: text/event-plain\n\n${text}`;
  }
}

/** IPv4 address in an IPv4 CIDR (what the simulator's ACL needs). */
export function inCidr(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split('/');
  const n = (a: string) => a.split('.').reduce((x, o) => x * 256 + Number(o), 0);
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip) || !/^\d+\.\d+\.\d+\.\d+$/.test(net)) return false;
  const size = 2 ** (32 - Number(bits ?? 32));
  return Math.floor(n(ip) / size) === Math.floor(n(net) / size);
}

/** sip_invite_record_route as mod_sofia keeps it: the Record-Route values, comma-separated, in order. */
function splitRoutes(v: string): string[] {
  const out: string[] = [];
  let depth = 0,
    from = 0;
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '<') depth++;
    else if (v[i] === '>') depth--;
    else if (v[i] === ',' && depth === 0) {
      out.push(v.slice(from, i).trim());
      from = i + 1;
    }
  }
  if (v.slice(from).trim()) out.push(v.slice(from).trim());
  return out;
}

/** What a node said to a far end's BYE for one leg (simctl bye). */
export interface ByeReply {
  /** it carried the leg: a channel, or a row under its own core */
  here: boolean;
  /** what its channel heard until the hang-up */
  media: ChannelMedia | null;
  /** its row was under this node's core */
  row: boolean;
  /** when it hung the leg up */
  at: number;
}

/** A dialog's facts as mod_sofia keeps them in a call's variables (URL-encoded), the route set included. */
function dialogVars(
  d: Dialog,
  received: { ip: string; port: number },
  media: { ip: string; port: number } | null,
): Record<string, string> {
  const strip = (u: string) => fsUrlEncode(u.replace(/^sips?:/, ''));
  return {
    sip_call_id: fsUrlEncode(d.callId),
    sip_from_tag: fsUrlEncode(d.remoteTag),
    sip_to_tag: fsUrlEncode(d.localTag),
    sip_contact_uri: strip(d.remoteContact),
    sip_from_uri: strip(d.remoteUri),
    sip_to_uri: strip(d.localUri),
    sip_network_ip: received.ip,
    sip_network_port: String(received.port),
    sip_invite_record_route: fsUrlEncode(d.routeSet.join(',')),
    sip_invite_route_uri: fsUrlEncode(d.routeSet.join(',')),
    ...(media ? { remote_media_ip: media.ip, remote_media_port: String(media.port) } : {}),
  };
}

/** Set (or add) each variable of a row's metadata. */
function setVars(md: string, vars: Record<string, string>): string {
  let out = md;
  for (const [k, v] of Object.entries(vars)) {
    const re = new RegExp(`<${k}>[^<]*</${k}>`);
    out = re.test(out)
      ? out.replace(re, `<${k}>${v}</${k}>`)
      : out.replace('<variables>', `<variables>\n    <${k}>${v}</${k}>`);
  }
  return out;
}

/** The dialog a row keeps (dialogVars' inverse). */
function dialogOf(md: string): Dialog {
  const v = (name: string) => {
    const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(md);
    return m ? decodeURIComponent(m[1]) : '';
  };
  return {
    callId: v('sip_call_id'),
    localTag: v('sip_to_tag'),
    remoteTag: v('sip_from_tag'),
    remoteUri: `sip:${v('sip_from_uri')}`,
    localUri: `sip:${v('sip_to_uri')}`,
    remoteContact: `sip:${v('sip_contact_uri')}`,
    routeSet: splitRoutes(v('sip_invite_record_route')),
  };
}
