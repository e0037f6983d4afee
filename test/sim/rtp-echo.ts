/**
 * The far ends' media, as sipp -rtp_echo does it: every RTP packet is sent back to where it came from (so a
 * far end follows its call to whichever node now sends), and what arrived is recorded per call (the uuid the
 * simulator puts in each payload): first and last packet, and every silence longer than gapMs, which is the
 * audio gap a caller hears across a failover.
 */
import { createSocket, type Socket } from 'node:dgram';
import { callOfPacket } from './media';

export interface CallAudio {
  first: number;
  last: number;
  packets: number;
  /** silences longer than gapMs: [last packet before, first packet after] */
  gaps: Array<[number, number]>;
  /** where its packets came from last (ip:port) */
  from: string;
}

export class RtpEcho {
  readonly calls = new Map<string, CallAudio>();
  private sock: Socket | null = null;

  constructor(
    readonly ip: string,
    readonly port: number,
    private readonly gapMs = 60,
  ) {}

  start(): Promise<void> {
    const sock = createSocket(this.ip.includes(':') ? 'udp6' : 'udp4');
    this.sock = sock;
    sock.on('message', (pkt, rinfo) => {
      const now = Date.now();
      const id = callOfPacket(pkt);
      if (id) {
        const c = this.calls.get(id);
        if (!c)
          this.calls.set(id, { first: now, last: now, packets: 1, gaps: [], from: `${rinfo.address}:${rinfo.port}` });
        else {
          if (now - c.last > this.gapMs) c.gaps.push([c.last, now]);
          c.last = now;
          c.packets++;
          c.from = `${rinfo.address}:${rinfo.port}`;
        }
      }
      sock.send(pkt, rinfo.port, rinfo.address, () => undefined);
    });
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(this.port, this.ip, () => {
        sock.removeListener('error', reject);
        resolve();
      });
    });
  }

  /** Per call: the longest silence that started after `since` (0 when none), and whether audio flows now. */
  audio(uuid: string, since: number, now = Date.now()): { gapMs: number; flowing: boolean; from: string } | null {
    const c = this.calls.get(uuid);
    if (!c) return null;
    const gaps = c.gaps.filter(([a]) => a >= since - this.gapMs).map(([a, b]) => b - a);
    return { gapMs: gaps.length ? Math.max(...gaps) : 0, flowing: now - c.last <= this.gapMs * 2, from: c.from };
  }

  stop(): void {
    try {
      this.sock?.close();
    } catch {
      /* closed */
    }
    this.sock = null;
  }
}

/** Median and max of a list of gaps (ms). */
export function gapSummary(gaps: number[]): { median: number; max: number } {
  if (!gaps.length) return { median: 0, max: 0 };
  const s = [...gaps].sort((a, b) => a - b);
  return { median: s[Math.floor((s.length - 1) / 2)], max: s[s.length - 1] };
}
