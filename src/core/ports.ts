/**
 * The media plane of a takeover, pure. FreeSWITCH's recover binds each call's RTP port from its row
 * (local_media_port, local_video_port, local_text_port) without asking or telling its port allocator, with
 * SO_REUSEADDR: on a port one of the adopter's own calls holds, the kernel then hands every datagram to the
 * socket bound last and the other call goes deaf (MEDIA_TIMEOUT). So each adopted call keeps its port only
 * where that is safe on its adopter; otherwise it is moved into the recovery band, a range outside every
 * node's allocator range:
 *  - a port inside the adopter's allocator range is moved (a new call there may be handed it any time);
 *  - a port (or its RTCP port, +1) in use on the adopter is moved (its own rows, the rows moved to it in this
 *    takeover, the UDP sockets bound on it when known);
 *  - a new port is an even port of the band whose pair (P, P+1) is in use nowhere on the adopter and lies
 *    outside its allocator range; a band that has none left is a refusal naming it, never a collision.
 * The row is rewritten in every place FreeSWITCH reads the port from: the <local_*_port> variables and the
 * m= and a=rtcp: lines of rtp_local_sdp_str (URL-encoded), whole tokens only.
 */

export interface PortRange {
  lo: number;
  hi: number;
}

/** FreeSWITCH's default rtp-start-port..rtp-end-port (switch.conf.xml), the same on every node. */
export const FREESWITCH_RTP_PORTS = '16384-32768';
/** fs-ha's default recovery band: just below FreeSWITCH's default range, below the kernel's ephemeral ports. */
export const DEFAULT_RECOVERY_PORTS = '12288-16383';

export function parseRange(text: string): PortRange | { error: string } {
  const m = /^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$/.exec(text);
  if (!m) return { error: `"${text}" is not a port range (LOW-HIGH, e.g. ${FREESWITCH_RTP_PORTS})` };
  const lo = Number(m[1]),
    hi = Number(m[2]);
  if (lo < 1024 || hi > 65535) return { error: `${text} must lie within 1024-65535` };
  if (hi - lo < 3) return { error: `${text} holds fewer than two RTP/RTCP port pairs` };
  return { lo, hi };
}

export const formatRange = (r: PortRange) => `${r.lo}-${r.hi}`;
const inRange = (p: number, r: PortRange) => p >= r.lo && p <= r.hi;
export const rangesOverlap = (a: PortRange, b: PortRange) => a.lo <= b.hi && b.lo <= a.hi;

/**
 * What overlaps what in the configured ranges, each a sentence saying what it risks (status and check print
 * them): a band inside an allocator range is a warning (fewer safe ports there); overlapping allocator
 * ranges are a note (their calls move into the band when adopted: safe, but their ports change).
 */
export function rangeProblems(
  nodes: Array<{ name: string; rtp: PortRange }>,
  band: PortRange,
): Array<{ level: 'warning' | 'note'; text: string }> {
  const out: Array<{ level: 'warning' | 'note'; text: string }> = [];
  for (const n of nodes) {
    if (rangesOverlap(n.rtp, band)) {
      out.push({
        level: 'warning',
        text:
          `recovery_ports ${formatRange(band)} overlaps ${n.name}'s rtp_ports ${formatRange(n.rtp)}: ` +
          `only the band's ports outside it can take adopted calls there (a band with none left holds calls back)`,
      });
    }
  }
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const [a, b] = [nodes[i], nodes[j]];
      if (rangesOverlap(a.rtp, b.rtp)) {
        out.push({
          level: 'note',
          text:
            `rtp_ports of ${a.name} (${formatRange(a.rtp)}) and ${b.name} (${formatRange(b.rtp)}) overlap: ` +
            `calls adopted between them move into recovery_ports ${formatRange(band)} (safe; disjoint ranges keep their ports)`,
        });
      }
    }
  }
  return out;
}

export type MediaKind = 'media' | 'video' | 'text';
const SDP_KIND: Record<MediaKind, string> = { media: 'audio', video: 'video', text: 'text' };

const VAR_RE = /<local_(media|video|text)_port>([^<]*)<\/local_\1_port>/g;

/** The RTP ports a row's channel binds, by kind; an error when its variables disagree or are not ports. */
export function mediaPortsOf(md: string): Map<MediaKind, number> | { error: string } {
  const out = new Map<MediaKind, number>();
  VAR_RE.lastIndex = 0;
  for (let m = VAR_RE.exec(md); m; m = VAR_RE.exec(md)) {
    const kind = m[1] as MediaKind;
    if (!m[2]) continue;
    if (!/^\d{1,5}$/.test(m[2]) || Number(m[2]) > 65535)
      return { error: `local_${kind}_port is "${m[2].slice(0, 20)}", not a port` };
    const p = Number(m[2]);
    if (p === 0) continue;
    if (out.has(kind) && out.get(kind) !== p) return { error: `local_${kind}_port appears twice with different ports` };
    out.set(kind, p);
  }
  return out;
}

/** The ports held by one adopter, and the new ones this takeover gives out there. */
export class PortBook {
  private readonly used = new Set<number>();
  private cursor: number;
  moved = 0;

  constructor(
    readonly node: string,
    readonly allocator: PortRange,
    readonly band: PortRange,
    inUse: Iterable<number>,
  ) {
    for (const p of inUse) this.used.add(p);
    this.cursor = band.lo + (band.lo % 2);
  }

  private free(p: number): boolean {
    return !this.used.has(p) && !this.used.has(p + 1) && !inRange(p, this.allocator) && !inRange(p + 1, this.allocator);
  }

  private hold(p: number): void {
    this.used.add(p);
    this.used.add(p + 1);
  }

  /**
   * Where each of one call's ports goes on this adopter: kept where safe, else the band's next free pair.
   * Ports are taken from the book at once (a call that is held back later wastes them, never shares them).
   */
  place(ports: Map<MediaKind, number>): { ok: true; moves: Map<number, number> } | { ok: false; reason: string } {
    const moves = new Map<number, number>();
    const needs: number[] = [];
    for (const p of ports.values()) {
      if (inRange(p, this.allocator) || inRange(p + 1, this.allocator) || this.used.has(p) || this.used.has(p + 1))
        needs.push(p);
      else this.hold(p);
    }
    for (const p of needs) {
      const q = this.next();
      if (q === null) {
        return {
          ok: false,
          reason:
            `recovery_ports ${formatRange(this.band)} has no free port pair left on ${this.node} for its port ${p} ` +
            `(it would collide with a call there): widen recovery_ports`,
        };
      }
      this.hold(q);
      moves.set(p, q);
      this.moved++;
    }
    return { ok: true, moves };
  }

  /**
   * The final ports of a row placed earlier (a prepared rewrite, core of the prepared takeover): taken when
   * every one is still safe here (outside the allocator, in use nowhere on the adopter, not taken in this
   * takeover), else none is taken and the row is placed afresh.
   */
  claim(ports: Iterable<number>): boolean {
    const list = [...ports];
    if (!list.every((p) => this.free(p))) return false;
    for (const p of list) this.hold(p);
    return true;
  }

  private next(): number | null {
    const span = this.band.hi - this.band.lo + 1;
    for (let tried = 0; tried < span; tried += 2) {
      const p = this.cursor;
      this.cursor += 2;
      if (this.cursor + 1 > this.band.hi) this.cursor = this.band.lo + (this.band.lo % 2);
      if (p + 1 <= this.band.hi && this.free(p)) return p;
    }
    return null;
  }
}

const SDP_RE = /<rtp_local_sdp_str>([^<]*)<\/rtp_local_sdp_str>/g;
/** In the URL-encoded SDP: m=KIND PORT and a=rtcp:PORT, whole tokens */
const SDP_M = /(m%3D(audio|video|text)%20)(\d+)(?=%20|%2F)/gi;
const SDP_RTCP = /(a%3Drtcp%3A)(\d+)(?=%20|%0D|%0A|$)/gi;

/**
 * The row with its ports moved (moves: old -> new), in the variables and in rtp_local_sdp_str. Each m= line's
 * port must be its kind's local port (else fs-ha cannot tell which stream binds what: not rewritten).
 */
export function rewritePorts(
  md: string,
  ports: Map<MediaKind, number>,
  moves: Map<number, number>,
): { ok: true; metadata: string; replaced: number } | { ok: false; reason: string } {
  if (!moves.size) return { ok: true, metadata: md, replaced: 0 };
  let replaced = 0;
  let problem: string | null = null;
  let out = md.replace(VAR_RE, (all, kind: string, value: string) => {
    const to = moves.get(Number(value));
    if (to === undefined || !value) return all;
    replaced++;
    return `<local_${kind}_port>${to}</local_${kind}_port>`;
  });
  out = out.replace(SDP_RE, (_all, sdp: string) => {
    const rtcpOf = new Map<number, number>();
    const body = sdp.replace(SDP_M, (m, head: string, kind: string, port: string) => {
      const p = Number(port);
      const own = [...ports].find(([k]) => SDP_KIND[k] === kind.toLowerCase())?.[1];
      if (own !== p) {
        problem ??= `rtp_local_sdp_str offers ${kind} on port ${p}, the row's local port is ${own ?? 'absent'}`;
        return m;
      }
      const to = moves.get(p);
      if (to === undefined) return m;
      rtcpOf.set(p + 1, to + 1).set(p, to); // RTCP on the next port, or muxed on the same one
      replaced++;
      return `${head}${to}`;
    });
    const done = body.replace(SDP_RTCP, (m, head: string, port: string) => {
      const to = rtcpOf.get(Number(port));
      if (to === undefined) return m;
      replaced++;
      return `${head}${to}`;
    });
    return `<rtp_local_sdp_str>${done}</rtp_local_sdp_str>`;
  });
  if (problem) return { ok: false, reason: problem };
  return { ok: true, metadata: out, replaced };
}

/** One row onto one adopter: its ports read, placed in the adopter's book, rewritten where they move. */
export function movePorts(
  md: string,
  book: PortBook,
): { ok: true; metadata: string; replaced: number } | { ok: false; reason: string } {
  const ports = mediaPortsOf(md);
  if ('error' in ports) return { ok: false, reason: ports.error };
  if (!ports.size) return { ok: true, metadata: md, replaced: 0 };
  const placed = book.place(ports);
  if (!placed.ok) return placed;
  return rewritePorts(md, ports, placed.moves);
}
