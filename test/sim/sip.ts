/**
 * The re-INVITE a recovering FreeSWITCH sends to the far end of each recovered call
 * (fixtures/reinvite_from_recovering_node.txt), over UDP to sip_network_ip:sip_network_port of the row.
 */
import { createSocket } from 'node:dgram';

function variable(md: string, name: string): string | null {
  const m = md.match(new RegExp(`<${name}>([^<]*)</${name}>`));
  return m ? decodeURIComponent(m[1]) : null;
}

export function buildReinvite(metadata: string, localIp: string): { to: string; port: number; text: string } | null {
  const ip = variable(metadata, 'sip_network_ip');
  const port = Number(variable(metadata, 'sip_network_port') ?? 5060);
  const callId = variable(metadata, 'sip_call_id');
  const fromTag = variable(metadata, 'sip_to_tag');
  const toTag = variable(metadata, 'sip_from_tag');
  const contact = variable(metadata, 'sip_contact_uri');
  const mediaPort = variable(metadata, 'local_media_port') ?? '20000';
  if (!ip || !callId || !contact) return null;
  const sdp =
    `v=0\r\no=FreeSWITCH 1795700223 1795700225 IN IP4 ${localIp}\r\ns=FreeSWITCH\r\nc=IN IP4 ${localIp}\r\nt=0 0\r\n` +
    `m=audio ${mediaPort} RTP/AVP 0 101 13\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/0\r\na=fmtp:101 0-15\r\na=rtpmap:13 CN/0\r\na=ptime:20\r\n`;
  const branch = 'z9hG4bK' + Math.random().toString(36).slice(2, 15);
  const text = [
    `INVITE sip:${contact} SIP/2.0`,
    `Via: SIP/2.0/UDP ${localIp};rport;branch=${branch}`,
    `Route: <sip:${contact};transport=udp>`,
    'Max-Forwards: 70',
    `From: <sip:7000@${localIp}:5060>;tag=${fromTag}`,
    `To: "sipp" <sip:${contact}>;tag=${toTag}`,
    `Call-ID: ${callId}`,
    'CSeq: 123306679 INVITE',
    `Contact: <sip:sipp@${localIp}:5060>`,
    'User-Agent: FreeSWITCH-mod_sofia/1.10.12-release~64bit',
    'Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY',
    'Supported: path, replaces',
    'Content-Type: application/sdp',
    'Content-Disposition: session',
    `Content-Length: ${Buffer.byteLength(sdp)}`,
    '',
    sdp,
  ].join('\r\n');
  return { to: ip, port, text };
}

/**
 * Send one recovered call's re-INVITE as a UDP client transaction does (RFC 3261 17.1.1): retransmitted at
 * T1 = 500 ms, doubling, until any response arrives or 64*T1 passes. A datagram the kernel refuses to send
 * (the node does not hold the address it sends from: a VIP not yet moved to it) is no re-INVITE: onSent fires
 * at the first one that actually left, onFailed when none did.
 */
export function sendReinvite(
  metadata: string,
  localIp: string,
  onSent?: (d: Record<string, unknown>) => void,
  onFailed?: (d: Record<string, unknown>) => void,
): void {
  const msg = buildReinvite(metadata, localIp);
  if (!msg) return;
  const sock = createSocket('udp4');
  const started = Date.now();
  let sent = false;
  let done = false;
  let lastError = '';
  let timer: NodeJS.Timeout | undefined;
  const close = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    try {
      sock.close();
    } catch {
      /* closed */
    }
  };
  sock.on('error', (e) => {
    lastError = e.message;
    close();
  });
  sock.on('message', (m) => {
    if (/^SIP\/2\.0 \d{3}/.test(m.toString('latin1'))) close();
  }); // a response ends Timer A
  const attempt = (n: number) => {
    if (done) return;
    sock.send(msg.text, msg.port, msg.to, (err) => {
      if (err) lastError = (err as NodeJS.ErrnoException).code ?? err.message;
      else if (!sent) {
        sent = true;
        onSent?.({ to: `${msg.to}:${msg.port}`, at: Date.now(), attempts: n + 1 });
      }
      const wait = 500 * 2 ** n;
      if (Date.now() + wait - started > 32000) {
        if (!sent) onFailed?.({ to: `${msg.to}:${msg.port}`, error: lastError, attempts: n + 1 });
        close();
        return;
      }
      timer = setTimeout(() => attempt(n + 1), wait);
      timer.unref();
    });
  };
  sock.bind(0, localIp, () => {
    sock.unref();
    attempt(0);
  });
}
