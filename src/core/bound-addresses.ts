/**
 * What a node's calls bind against what its config says they bind. The takeover rewrites a failed node's
 * `addresses` into its adopter's; an address its profiles bind (sip-ip, rtp-ip: the rows' local_media_ip and
 * sip_local_network_addr) that is not listed is left as it is, so the adopter binds the dead node's address
 * for the call's media and signalling: that works only while the adopter holds that address (a farm's VIP
 * that followed the instance), never after a spread, a drain or a takeover onto another node. Pure.
 */
import { isIP } from 'node:net';

const canonical = (a: string) => (isIP(a) === 6 ? new URL(`http://[${a}]/`).hostname.slice(1, -1) : a);

export function boundAddressProblem(node: string, configured: string[], bound: string[]): string | null {
  const listed = new Set(configured.map(canonical));
  const missing = [...new Set(bound.filter((a) => isIP(a)).map(canonical))].filter((a) => !listed.has(a)).sort();
  if (!missing.length) return null;
  return (
    `${node}'s calls bind ${missing.join(', ')} (local_media_ip / sip_local_network_addr of its rows), which nodes.${node}.addresses ` +
    `[${configured.join(', ')}] does not list: a takeover leaves its calls on ${missing.length > 1 ? 'those addresses' : 'that address'}, which works only ` +
    `while their adopter holds ${missing.length > 1 ? 'them' : 'it'}; list what its profiles bind (sip-ip, rtp-ip) as its addresses`
  );
}
