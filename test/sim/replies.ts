/** Reply texts of FreeSWITCH 1.10.12, byte for byte as in fixtures/esl_transcripts*.txt. */
export const AUTH_REQUEST = 'Content-Type: auth/request\n\n';
/** mod_event_socket to a client its apply-inbound-acl does not admit (then the disconnect notice, then close) */
export const RUDE_REJECTION = 'Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n';
export const DISCONNECT_NOTICE =
  'Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n';

export function commandReply(text: string, extra = ''): string {
  return `Content-Type: command/reply\nReply-Text: ${text}\n${extra}\n`;
}

export function apiResponse(body: string): string {
  return `Content-Type: api/response\nContent-Length: ${Buffer.byteLength(body)}\n\n${body}`;
}

export function statusBody(uptimeMs: number, ready: boolean, sinceStart: number, now: number, peak: number): string {
  let rest = Math.floor(uptimeMs);
  const ms = rest % 1000;
  rest = Math.floor(rest / 1000);
  const s = rest % 60;
  rest = Math.floor(rest / 60);
  const m = rest % 60;
  rest = Math.floor(rest / 60);
  const h = rest % 24;
  const d = Math.floor(rest / 24);
  return (
    `UP 0 years, ${d} days, ${h} hours, ${m} minutes, ${s} seconds, ${ms} milliseconds, 0 microseconds\n` +
    `FreeSWITCH (Version 1.10.12-release  64bit) is ${ready ? 'ready' : 'not ready'}\n` +
    `${sinceStart} session(s) since startup\n` +
    `${now} session(s) - peak ${peak}, last 5min ${peak} \n` +
    `0 session(s) per Sec out of max 100, peak 0, last 5min 0 \n` +
    `1000 session(s) max\nmin idle cpu 0.00/90.30\nCurrent Stack Size/Max 240K/8192K\n`
  );
}

const RULE = '='.repeat(97);

export function sofiaStatusBody(profiles: Array<{ name: string; url: string; calls: number }>): string {
  let out = `${'Name'.padStart(25)}\t${'Type'.padStart(7)}\t${'Data'.padStart(42)}\tState\n${RULE}\n`;
  for (const p of profiles)
    out += `${p.name.padStart(25)}\t${'profile'.padStart(7)}\t${p.url.padStart(42)}\tRUNNING (${p.calls})\n`;
  return out + `${RULE}\n${profiles.length} profile${profiles.length === 1 ? '' : 's'} 0 aliases\n`;
}

export function xmlStatusBody(profiles: Array<{ name: string; url: string; calls: number }>): string {
  let out = '<?xml version="1.0" encoding="ISO-8859-1"?>\n<profiles>\n';
  for (const p of profiles) {
    out += `<profile>\n<name>${p.name}</name>\n<type>profile</type>\n<data>${p.url}</data>\n<state>RUNNING (${p.calls})</state>\n</profile>\n`;
  }
  return out + '</profiles>\n';
}

export function xmlStatusProfileBody(name: string, ip: string, callsIn: number): string {
  return `<?xml version="1.0" encoding="ISO-8859-1"?>
<profile>
  <profile-info>
    <name>${name}</name>
    <domain-name>N/A</domain-name>
    <auto-nat>false</auto-nat>
    <db-name>sofia_reg_${name}</db-name>
    <pres-hosts></pres-hosts>
    <dialplan>XML</dialplan>
    <context>public</context>
    <challenge-realm>auto_to</challenge-realm>
    <rtp-ip>${ip}</rtp-ip>
    <sip-ip>${ip}</sip-ip>
    <url>sip:mod_sofia@${ip}:5060</url>
    <bind-url>sip:mod_sofia@${ip}:5060;transport=udp,tcp</bind-url>
    <hold-music>N/A</hold-music>
    <outbound-proxy>N/A</outbound-proxy>
    <inbound-codecs>PCMU,PCMA</inbound-codecs>
    <outbound-codecs>PCMU,PCMA</outbound-codecs>
    <tel-event>101</tel-event>
    <dtmf-mode>rfc2833</dtmf-mode>
    <cng>13</cng>
    <session-to>0</session-to>
    <max-dialog>0</max-dialog>
    <max-recv-rps>1000</max-recv-rps>
    <nomedia>false</nomedia>
    <late-neg>false</late-neg>
    <proxy-media>false</proxy-media>
    <aggressive-nat>false</aggressive-nat>
    <calls-in>${callsIn}</calls-in>
    <calls-out>0</calls-out>
    <failed-calls-in>0</failed-calls-in>
    <failed-calls-out>0</failed-calls-out>
    <registrations>0</registrations>
  </profile-info>
</profile>
`;
}
