/**
 * The simulator's media plane, as FreeSWITCH 1.10.12 runs it (../shared/docs/freeswitch-recovery.md, "Media"):
 *  - a new call gets an even port picked at random in rtp-start-port..rtp-end-port from the node's allocator
 *    (src/switch_core_port_allocator.c), which remembers what IT handed out and nothing else; with
 *    rtp-port-usage-robustness it also test-binds the port and skips one that is bound;
 *  - a recovered call binds the port its row names (switch_core_media_recover_session), asking no allocator;
 *  - every RTP socket is bound with SO_REUSEADDR (src/switch_rtp.c): a second bind on a busy port succeeds and
 *    the kernel hands unicast datagrams to the socket bound last (node's reuseAddr is that same option);
 *  - each channel sends one RTP packet per ptime (20 ms) to the far end's media address and is hung up with
 *    MEDIA_TIMEOUT after rtp-timeout-sec without an inbound packet; a bind that fails (an address this host
 *    does not have) hangs the call up at once (Bind Error, INCOMPATIBLE_DESTINATION).
 * Each packet carries its call's uuid at the start of the payload, so a far end can tell the calls apart
 * across a failover (the real SSRC changes with the recovering process).
 */
import { createSocket, type Socket } from 'node:dgram';

export interface MediaOptions {
  /** rtp-start-port..rtp-end-port */
  ports: { lo: number; hi: number };
  /** the profile's rtp-timeout-sec (0: never) */
  timeoutSec: number;
  /** ptime */
  intervalMs?: number;
  /** switch.conf rtp-port-usage-robustness */
  robustness?: boolean;
  onEvent?: (what: string, detail: Record<string, unknown>) => void;
}

interface Channel {
  uuid: string;
  local: { ip: string; port: number };
  remote: { ip: string; port: number };
  sock: Socket;
  seq: number;
  /** when its next packet is due: each channel keeps its own phase, as real endpoints do (no burst per tick) */
  nextAt: number;
  /** when it was bound, and the last inbound packet (0: none yet) */
  since: number;
  lastRx: number;
  rx: number;
  recovered: boolean;
  /** handed out by the allocator (freed at hangup); recovered ports never were */
  allocated: boolean;
  /** where the last inbound packet came from, and when the first came */
  lastFrom?: string;
  firstRx?: number;
}

export interface ChannelMedia {
  uuid: string;
  port: number;
  rx: number;
  rxAgoMs: number | null;
  /** how long ago its socket was bound (a channel just recovered has not heard anything yet) */
  boundAgoMs: number;
  recovered: boolean;
  /** when the channel's first inbound packet came (epoch ms; null: none yet), and from where the last one did */
  firstRxAt: number | null;
  from: string | null;
}

const HEADER = 12;
const PAYLOAD = 160;

export class MediaPlane {
  private readonly channels = new Map<string, Channel>();
  /** the allocator's own table: ports it handed out and not yet freed */
  private readonly allocated = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  readonly intervalMs: number;

  constructor(private readonly o: MediaOptions) {
    this.intervalMs = o.intervalMs ?? 20;
  }

  get size(): number {
    return this.channels.size;
  }

  /** switch_core_port_allocator_request_port: a random even port of the range it has not handed out. */
  async allocate(ip: string): Promise<number> {
    const { lo, hi } = this.o.ports;
    const first = lo + (lo % 2);
    const pairs = Math.floor((hi - first) / 2) + 1;
    // a random pair first, then the ones after it in turn, so a free one is always found
    const start = Math.floor(Math.random() * pairs);
    for (let i = 0; i < pairs; i++) {
      const port = first + 2 * ((start + i) % pairs);
      if (port + 1 > hi || this.allocated.has(port)) continue;
      if (this.o.robustness && !(await canBind(ip, port))) continue;
      this.allocated.add(port);
      return port;
    }
    throw new Error(`no free RTP port in ${lo}-${hi}`);
  }

  /** A channel's media: bind local (SO_REUSEADDR), send to remote every ptime, watch inbound. */
  open(
    uuid: string,
    local: { ip: string; port: number },
    remote: { ip: string; port: number },
    how: { recovered: boolean; allocated: boolean },
  ): Promise<void> {
    this.close(uuid, null);
    const sock = createSocket({ type: local.ip.includes(':') ? 'udp6' : 'udp4', reuseAddr: true });
    const ch: Channel = {
      uuid,
      local,
      remote,
      sock,
      seq: 0,
      nextAt: Date.now() + Math.random() * this.intervalMs,
      since: Date.now(),
      lastRx: 0,
      rx: 0,
      recovered: how.recovered,
      allocated: how.allocated,
    };
    return new Promise((resolve, reject) => {
      sock.once('error', (e) => {
        if (how.allocated) this.allocated.delete(local.port);
        this.o.onEvent?.('bind-error', { uuid, local: `${local.ip}:${local.port}`, error: e.message });
        reject(e);
      });
      sock.bind(local.port, local.ip, () => {
        sock.removeAllListeners('error');
        sock.on('error', () => undefined);
        sock.on('message', (_m, r) => {
          ch.lastRx = Date.now();
          ch.firstRx ||= ch.lastRx;
          ch.rx++;
          ch.lastFrom = `${r.address}:${r.port}`;
        });
        this.channels.set(uuid, ch);
        this.tick();
        resolve();
      });
    });
  }

  /** The far end's media moved (the answer to a re-INVITE: behind RTPEngine, its address): send there from now on. */
  setRemote(uuid: string, remote: { ip: string; port: number }): void {
    const ch = this.channels.get(uuid);
    if (ch) ch.remote = remote;
  }

  /** Hang up a channel's media (its port back to the allocator if it came from there). */
  close(uuid: string, cause: string | null = 'NORMAL_CLEARING'): void {
    const ch = this.channels.get(uuid);
    if (!ch) return;
    this.channels.delete(uuid);
    if (ch.allocated) this.allocated.delete(ch.local.port);
    try {
      ch.sock.close();
    } catch {
      /* closed */
    }
    if (cause && cause !== 'NORMAL_CLEARING')
      this.o.onEvent?.('media-hangup', { uuid, cause, port: ch.local.port, recovered: ch.recovered, rx: ch.rx });
    if (!this.channels.size && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** The process is gone: every socket closes at once, nothing is sent any more. */
  closeAll(): void {
    for (const uuid of [...this.channels.keys()]) this.close(uuid, null);
  }

  /** One channel's media as report() shows it, or null when this node has no such channel. */
  channel(uuid: string): ChannelMedia | null {
    return this.report([uuid])[0] ?? null;
  }

  report(only?: string[]): ChannelMedia[] {
    const now = Date.now();
    const chans = only ? only.flatMap((u) => this.channels.get(u) ?? []) : [...this.channels.values()];
    return chans.map((c) => ({
      uuid: c.uuid,
      port: c.local.port,
      rx: c.rx,
      rxAgoMs: c.lastRx ? now - c.lastRx : null,
      boundAgoMs: now - c.since,
      recovered: c.recovered,
      firstRxAt: c.firstRx ?? null,
      from: c.lastFrom ?? null,
    }));
  }

  /** Channels that went deaf: rtp-timeout-sec without inbound RTP (since the last packet, or since bound). */
  private expired(now: number): string[] {
    if (!this.o.timeoutSec) return [];
    const limit = this.o.timeoutSec * 1000;
    return [...this.channels.values()].filter((c) => now - (c.lastRx || c.since) > limit).map((c) => c.uuid);
  }

  /** Deaf channels found by the last tick, for the owner to hang up (row deleted, as FreeSWITCH does). */
  onTimeout: (uuid: string) => void = () => undefined;

  private tick(): void {
    if (this.timer) return;
    this.timer = setInterval(
      () => {
        const now = Date.now();
        for (const c of this.channels.values()) {
          if (now < c.nextAt) continue;
          c.nextAt = Math.max(c.nextAt + this.intervalMs, now - this.intervalMs);
          const pkt = Buffer.alloc(HEADER + PAYLOAD, 0xff);
          pkt[0] = 0x80;
          pkt[1] = 0; // v2, PCMU
          c.seq = (c.seq + 1) & 0xffff;
          pkt.writeUInt16BE(c.seq, 2);
          pkt.writeUInt32BE((c.seq * 160) >>> 0, 4);
          pkt.write(c.uuid, HEADER, 'latin1');
          c.sock.send(pkt, c.remote.port, c.remote.ip, () => undefined);
        }
        for (const uuid of this.expired(now)) {
          this.close(uuid, 'MEDIA_TIMEOUT');
          this.onTimeout(uuid);
        }
      },
      Math.max(2, Math.floor(this.intervalMs / 4)),
    );
    this.timer.unref();
  }
}

/** rtp-port-usage-robustness's test: a plain bind (no SO_REUSEADDR) fails on a port someone holds. */
function canBind(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket(ip.includes(':') ? 'udp6' : 'udp4');
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind(port, ip, () => {
      s.close();
      resolve(true);
    });
  });
}

/** The call a packet belongs to (its uuid at the start of the payload), or null. */
export function callOfPacket(pkt: Buffer): string | null {
  if (pkt.length < HEADER + 36) return null;
  const id = pkt.toString('latin1', HEADER, HEADER + 36);
  return /^[0-9a-f-]{36}$/.test(id) ? id : null;
}
