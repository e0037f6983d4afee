/**
 * The simulator's SIP user agent on its profile's address (UDP, port 5060), as far as a FreeSWITCH behind a
 * SIP proxy needs one (../shared/docs/freeswitch-recovery.md, "Behind a SIP proxy and RTPEngine"):
 *  - answers OPTIONS (the proxy's dispatcher probes nodes with them);
 *  - answers an initial INVITE with 200 OK and SDP (its RTP port), keeping the dialog as mod_sofia tracks it
 *    (Call-ID, tags, the far end's Contact, the Record-Route as the route set), or 503 in standby;
 *  - answers BYE (the call ends), ACK and CANCEL;
 *  - sends a recovered call's re-INVITE as mod_sofia does: to the far end's Contact with the route set as Route
 *    headers, so it leaves for the first route (the proxy); its Contact is this node's; retransmitted (Timer A)
 *    until a final response; a 2xx is ACKed along the same route and its SDP gives the media's new remote.
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes, randomUUID } from 'node:crypto';

export interface SipMessage {
  method?: string;
  uri?: string;
  status?: number;
  headers: Array<[string, string]>;
  body: string;
}

const COMPACT: Record<string, string> = {
  v: 'via',
  f: 'from',
  t: 'to',
  i: 'call-id',
  m: 'contact',
  l: 'content-length',
  c: 'content-type',
};

export function parseSip(text: string): SipMessage | null {
  const split = text.indexOf('\r\n\r\n');
  const head = (split < 0 ? text : text.slice(0, split)).split('\r\n');
  const body = split < 0 ? '' : text.slice(split + 4);
  const start = head.shift() ?? '';
  const headers: Array<[string, string]> = [];
  for (const line of head) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    headers.push([COMPACT[name] ?? name, line.slice(i + 1).trim()]);
  }
  const res = /^SIP\/2\.0 (\d{3})/.exec(start);
  if (res) return { status: Number(res[1]), headers, body };
  const req = /^([A-Z]+) (\S+) SIP\/2\.0$/.exec(start);
  return req ? { method: req[1], uri: req[2], headers, body } : null;
}

/** Every value of a header, comma-separated values split (outside <...> and quotes). */
export function all(m: SipMessage, name: string): string[] {
  const out: string[] = [];
  for (const [n, v] of m.headers) {
    if (n !== name) continue;
    let depth = 0,
      quoted = false,
      from = 0;
    for (let i = 0; i < v.length; i++) {
      const ch = v[i];
      if (ch === '"') quoted = !quoted;
      else if (!quoted && ch === '<') depth++;
      else if (!quoted && ch === '>') depth--;
      else if (!quoted && depth === 0 && ch === ',') {
        out.push(v.slice(from, i).trim());
        from = i + 1;
      }
    }
    out.push(v.slice(from).trim());
  }
  return out;
}
const one = (m: SipMessage, name: string) => m.headers.find(([n]) => n === name)?.[1] ?? '';
export const tagOf = (v: string) => /;\s*tag=([^;>\s]+)/.exec(v.replace(/<[^>]*>/, ''))?.[1] ?? null;
/** The URI of a name-addr (<sip:...>) or addr-spec. */
export const uriOf = (v: string) => (/<([^>]+)>/.exec(v)?.[1] ?? v.split(';')[0]).trim();
/** host and port a SIP URI sends to. */
export function hostPort(uri: string): { host: string; port: number } {
  const m = /^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^;:>?]+)(?::(\d+))?/.exec(uri);
  return { host: (m?.[1] ?? '').replace(/^\[|\]$/g, ''), port: Number(m?.[2] ?? 5060) };
}

/** The first audio stream of an SDP body: c= address and m= port. */
export function sdpAudio(body: string): { ip: string; port: number } | null {
  const ip = /^c=IN IP[46] (\S+)/m.exec(body)?.[1];
  const port = /^m=audio (\d+)/m.exec(body)?.[1];
  return ip && port ? { ip, port: Number(port) } : null;
}

export function sdpOffer(ip: string, port: number, version: number): string {
  return (
    `v=0\r\no=FreeSWITCH 1795700223 ${version} IN IP4 ${ip}\r\ns=FreeSWITCH\r\nc=IN IP4 ${ip}\r\nt=0 0\r\n` +
    `m=audio ${port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n`
  );
}

const branch = () => 'z9hG4bK' + randomBytes(8).toString('hex');

/** An answered call's dialog, as the UAS kept it. */
export interface Dialog {
  callId: string;
  /** this node's tag (To of the initial INVITE), the far end's (From) */
  localTag: string;
  remoteTag: string;
  /** the far end's URI (From) and this node's (To) */
  remoteUri: string;
  localUri: string;
  /** the far end's Contact: the remote target */
  remoteContact: string;
  /** the Record-Route of the INVITE, in order: the route set */
  routeSet: string[];
}

export interface UaHooks {
  /** an initial INVITE: the call's answer (its SDP) and dialog, or a failure status (503 in standby) */
  invite(req: {
    dialog: Dialog;
    remoteMedia: { ip: string; port: number } | null;
    received: { ip: string; port: number };
  }): Promise<{ sdp: string } | { status: number; reason: string }>;
  bye(callId: string): void;
  event(what: string, detail: Record<string, unknown>): void;
}

export class SipUa {
  private sock: Socket | null = null;
  private readonly waiting = new Map<string, (res: SipMessage) => void>();
  private cseq = 100;

  constructor(
    readonly address: string,
    readonly port: number,
    private readonly hooks: UaHooks,
  ) {}

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = createSocket({ type: this.address.includes(':') ? 'udp6' : 'udp4', reuseAddr: true });
      s.once('error', reject);
      s.on('message', (buf, rinfo) => this.onMessage(buf.toString('latin1'), { ip: rinfo.address, port: rinfo.port }));
      s.bind(this.port, this.address, () => {
        s.removeAllListeners('error');
        s.on('error', () => undefined);
        this.sock = s;
        resolve();
      });
    });
  }

  stop(): void {
    try {
      this.sock?.close();
    } catch {
      /* closed */
    }
    this.sock = null;
  }

  private send(text: string, to: { host: string; port: number }): void {
    this.sock?.send(text, to.port, to.host, () => undefined);
  }

  /** A response goes back along the Via: its sent-by, or received/rport when the request came from elsewhere. */
  private respond(
    req: SipMessage,
    from: { ip: string; port: number },
    status: number,
    reason: string,
    o: { toTag?: string; body?: string; recordRoute?: boolean } = {},
  ): void {
    const to = one(req, 'to');
    const lines = [
      `SIP/2.0 ${status} ${reason}`,
      ...all(req, 'via').map((v) => `Via: ${v}`),
      ...(o.recordRoute ? all(req, 'record-route').map((r) => `Record-Route: ${r}`) : []),
      `From: ${one(req, 'from')}`,
      `To: ${o.toTag && !tagOf(to) ? `${to};tag=${o.toTag}` : to}`,
      `Call-ID: ${one(req, 'call-id')}`,
      `CSeq: ${one(req, 'cseq')}`,
      `Contact: <sip:mod_sofia@${this.address}:${this.port}>`,
      'User-Agent: FreeSWITCH-mod_sofia/1.10.12-release~64bit (fs-ha simulator)',
      ...(o.body ? ['Content-Type: application/sdp'] : []),
      `Content-Length: ${Buffer.byteLength(o.body ?? '')}`,
      '',
      o.body ?? '',
    ];
    // RFC 3581: with rport, back to where the request came from; else to the top Via's sent-by
    const via = all(req, 'via')[0] ?? '';
    const sentBy = /^SIP\/2\.0\/UDP\s+([^;\s]+)/i.exec(via)?.[1] ?? '';
    this.send(lines.join('\r\n'), /;rport/.test(via) ? { host: from.ip, port: from.port } : hostPort(`sip:${sentBy}`));
  }

  private onMessage(text: string, from: { ip: string; port: number }): void {
    const m = parseSip(text);
    if (!m) return;
    if (m.status !== undefined) {
      const b = /branch=([^;\s,]+)/.exec(all(m, 'via')[0] ?? '')?.[1];
      if (b) this.waiting.get(b)?.(m);
      return;
    }
    const callId = one(m, 'call-id');
    switch (m.method) {
      case 'OPTIONS':
        this.respond(m, from, 200, 'OK');
        return;
      case 'ACK':
        return;
      case 'CANCEL':
        this.respond(m, from, 200, 'OK');
        return;
      case 'BYE':
        this.respond(m, from, 200, 'OK');
        this.hooks.event('bye', { callId });
        this.hooks.bye(callId);
        return;
      case 'INVITE': {
        if (tagOf(one(m, 'to'))) {
          this.respond(m, from, 200, 'OK');
          return;
        } // a far end's own re-INVITE: nothing changes here
        const dialog: Dialog = {
          callId,
          localTag: randomBytes(6).toString('hex'),
          remoteTag: tagOf(one(m, 'from')) ?? '',
          remoteUri: uriOf(one(m, 'from')),
          localUri: uriOf(one(m, 'to')),
          remoteContact: uriOf(one(m, 'contact')),
          routeSet: all(m, 'record-route'),
        };
        this.respond(m, from, 100, 'Trying');
        void this.hooks.invite({ dialog, remoteMedia: sdpAudio(m.body), received: from }).then(
          (r) => {
            if ('status' in r) this.respond(m, from, r.status, r.reason, { toTag: dialog.localTag });
            else this.respond(m, from, 200, 'OK', { toTag: dialog.localTag, body: r.sdp, recordRoute: true });
          },
          () => this.respond(m, from, 500, 'Server Internal Error', { toTag: dialog.localTag }),
        );
        return;
      }
      default:
        this.respond(m, from, 405, 'Method Not Allowed');
    }
  }

  /**
   * One client transaction along a dialog's route (Timer A/E retransmissions until a final response, 64*T1):
   * resolves with the final response, null when none came.
   */
  private transact(
    text: string,
    br: string,
    to: { host: string; port: number },
    onSent?: () => void,
  ): Promise<SipMessage | null> {
    return new Promise((resolve) => {
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const done = (v: SipMessage | null) => {
        clearTimeout(timer);
        this.waiting.delete(br);
        resolve(v);
      };
      this.waiting.set(br, (res) => {
        if ((res.status ?? 0) >= 200) done(res);
        else clearTimeout(timer);
      });
      const attempt = (n: number) => {
        this.send(text, to);
        if (n === 0) onSent?.();
        const wait = 500 * 2 ** n;
        timer = setTimeout(() => (Date.now() + wait - started > 32000 ? done(null) : attempt(n + 1)), wait);
      };
      attempt(0);
    });
  }

  /** An in-dialog request (BYE) along the route set to the remote target. */
  request(method: string, d: Dialog): Promise<SipMessage | null> {
    const b = branch();
    const next = d.routeSet.length ? hostPort(uriOf(d.routeSet[0])) : hostPort(d.remoteContact);
    return this.transact(this.inDialog(method, d, b, ++this.cseq), b, next);
  }

  private inDialog(method: string, d: Dialog, br: string, n: number, body = ''): string {
    return [
      `${method} ${d.remoteContact} SIP/2.0`,
      `Via: SIP/2.0/UDP ${this.address}:${this.port};rport;branch=${br}`,
      ...d.routeSet.map((r) => `Route: ${r}`),
      'Max-Forwards: 70',
      `From: <${d.localUri}>;tag=${d.localTag}`,
      `To: <${d.remoteUri}>${d.remoteTag ? `;tag=${d.remoteTag}` : ''}`,
      `Call-ID: ${d.callId}`,
      `CSeq: ${n} ${method}`,
      `Contact: <sip:mod_sofia@${this.address}:${this.port}>`,
      'User-Agent: FreeSWITCH-mod_sofia/1.10.12-release~64bit (fs-ha simulator)',
      ...(body ? ['Content-Type: application/sdp'] : []),
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body,
    ].join('\r\n');
  }

  /**
   * A call this node places (a bridge's outbound leg), through the outbound proxy (loose route): on 2xx, ACKed;
   * the dialog (route set = the Record-Route reversed, RFC 3261 12.1.2) and the callee's media.
   */
  async invite(
    target: string,
    proxy: { host: string; port: number },
    sdp: string,
  ): Promise<{ dialog: Dialog; media: { ip: string; port: number } | null } | null> {
    const b = branch();
    const d: Dialog = {
      // sofia's Call-ID for a call it places is a bare uuid (no host in it)
      callId: randomUUID(),
      localTag: randomBytes(6).toString('hex'),
      remoteTag: '',
      localUri: `sip:mod_sofia@${this.address}`,
      remoteUri: target,
      remoteContact: target,
      routeSet: [`<sip:${proxy.host}:${proxy.port};lr>`],
    };
    const res = await this.transact(this.inDialog('INVITE', d, b, 1, sdp), b, proxy);
    if (!res || (res.status ?? 0) >= 300) return null;
    const dialog: Dialog = {
      ...d,
      remoteTag: tagOf(one(res, 'to')) ?? '',
      remoteContact: uriOf(one(res, 'contact')) || target,
      routeSet: all(res, 'record-route').reverse(),
    };
    const next = dialog.routeSet.length ? hostPort(uriOf(dialog.routeSet[0])) : hostPort(dialog.remoteContact);
    this.send(this.inDialog('ACK', dialog, branch(), 1), next);
    return { dialog, media: sdpAudio(res.body) };
  }

  /**
   * A recovered call's re-INVITE (sofia_glue recover): R-URI the far end's Contact, Route the route set, sent to
   * the first route (loose routing) or else the Contact; Timer A retransmissions until a final response (64*T1).
   * Resolves with the 2xx's audio (after ACKing it), null on a failure response or none.
   */
  async reinvite(d: Dialog, sdp: string, onSent: (to: string) => void): Promise<{ ip: string; port: number } | null> {
    const b = branch();
    const n = ++this.cseq;
    const next = d.routeSet.length ? hostPort(uriOf(d.routeSet[0])) : hostPort(d.remoteContact);
    const res = await this.transact(this.inDialog('INVITE', d, b, n, sdp), b, next, () =>
      onSent(`${next.host}:${next.port}`),
    );
    if (!res || (res.status ?? 0) >= 300) return null;
    // the 2xx is ACKed as its own transaction, along the route set, to the (possibly new) remote target
    this.send(
      this.inDialog('ACK', { ...d, remoteContact: uriOf(one(res, 'contact')) || d.remoteContact }, branch(), n),
      next,
    );
    return sdpAudio(res.body);
  }
}
